"""FRS, PCS, buyer readiness and temperatures follow what the contact said and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ghl_real_estate_ai.bots.cma import CMAResult
from ghl_real_estate_ai.bots.intent_decoder import analyze_lead
from ghl_real_estate_ai.bots.scoring import (
    FRS_WEIGHTS,
    buyer_readiness,
    compute_frs,
    compute_pcs,
    temperature_from_frs,
    timeline_score,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
AREAS = ("Upland", "Fontana", "Claremont")


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime = T0


def convo(*parts: tuple[str, str, float]) -> list[Msg]:
    """(direction, body, minutes after T0) triples."""
    return [Msg(d, b, T0 + timedelta(minutes=m)) for d, b, m in parts]


def inbound(*bodies: str) -> list[Msg]:
    return [Msg("inbound", b, T0 + timedelta(minutes=i)) for i, b in enumerate(bodies)]


# --- temperature and pillars ------------------------------------------------------


@pytest.mark.parametrize(
    ("frs", "temperature"),
    [
        (100, "hot"),
        (75, "hot"),
        (74.9, "warm"),
        (50, "warm"),
        (49.9, "lukewarm"),
        (25, "lukewarm"),
        (24.9, "cold"),
        (0, "cold"),
    ],
)
def test_temperature_thresholds(frs: float, temperature: str) -> None:
    assert temperature_from_frs(frs) == temperature


def test_timeline_pillar_falls_as_the_move_gets_further_away() -> None:
    scores = [timeline_score(d) for d in (7, 14, 30, 45, 60, 90, 180, 365, 730, 2000)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == 100.0 and timeline_score(30) > 90 and timeline_score(365) <= 20
    assert timeline_score(None) == 0.0


def test_a_fully_qualified_motivated_seller_is_hot() -> None:
    turns = inbound(
        "We're relocating for work and need to sell my house",
        "within 30 days",
        "it's in good condition",
        "hoping to get 650k",
    )
    frs = compute_frs(analyze_lead(turns, known_areas=AREAS))
    assert (frs.motivation, frs.timeline, frs.condition, frs.price_awareness) == (90.0, 95.0, 85.0, 70.0)
    expected = 0.35 * 90 + 0.30 * 95 + 0.20 * 85 + 0.15 * 70
    assert frs.total == pytest.approx(round(expected, 1))
    assert frs.temperature == "hot"


def test_a_lead_who_said_nothing_useful_is_cold_with_zero_pillars() -> None:
    frs = compute_frs(analyze_lead(inbound("hi", "who is this?"), known_areas=AREAS))
    assert (frs.total, frs.motivation, frs.timeline, frs.condition, frs.price_awareness) == (0, 0, 0, 0, 0)
    assert frs.temperature == "cold"


def test_frs_changes_with_each_answer() -> None:
    """Every qualification answer moves the score: no pillar is a constant."""
    answers = [
        "I want to sell my house",
        "we're downsizing",
        "next year",
        "it needs some updates",
        "about 600k",
    ]
    totals = [
        compute_frs(analyze_lead(inbound(*answers[: n + 1]), known_areas=AREAS)).total for n in range(5)
    ]
    assert totals == sorted(totals) and len(set(totals)) == 5


def test_price_awareness_compares_the_expectation_with_the_cma() -> None:
    intent = analyze_lead(inbound("I want to sell, hoping to get 700k"), known_areas=AREAS)
    cma = CMAResult(estimate=700_000, low=650_000, high=750_000, price_per_sqft=400.0, comps=(), method="t")
    far = CMAResult(estimate=450_000, low=400_000, high=500_000, price_per_sqft=300.0, comps=(), method="t")
    assert compute_frs(intent, cma=cma).price_awareness == 100.0
    assert compute_frs(intent, cma=far).price_awareness == 40.0
    assert compute_frs(intent).price_awareness == 70.0


def test_frs_weights_sum_to_one() -> None:
    assert sum(FRS_WEIGHTS.values()) == pytest.approx(1.0)


# --- PCS ---------------------------------------------------------------------------


def test_fast_replies_score_higher_velocity_than_slow_ones() -> None:
    fast = convo(("outbound", "Are you buying or selling?", 0), ("inbound", "selling", 2))
    slow = convo(("outbound", "Are you buying or selling?", 0), ("inbound", "selling", 60 * 30))
    never_asked = convo(("inbound", "selling", 0))
    pcs_fast = compute_pcs(fast, analyze_lead(fast, known_areas=AREAS))
    pcs_slow = compute_pcs(slow, analyze_lead(slow, known_areas=AREAS))
    assert pcs_fast.response_velocity == 100.0
    assert 0 < pcs_slow.response_velocity < 50
    assert pcs_fast.total > pcs_slow.total
    assert compute_pcs(never_asked, analyze_lead(never_asked, known_areas=AREAS)).response_velocity == 0.0


def test_ignoring_a_run_of_messages_counts_from_the_first() -> None:
    turns = convo(
        ("outbound", "Hi there!", 0),
        ("outbound", "Just checking in", 3 * 24 * 60),
        ("inbound", "sorry, busy week", 3 * 24 * 60 + 1),
    )
    assert compute_pcs(turns, analyze_lead(turns, known_areas=AREAS)).response_velocity == 0.0


def test_depth_and_questions_come_from_the_messages() -> None:
    short = inbound("ok")
    rich = inbound(
        "We have two kids and a dog, so a yard matters a lot. How are the schools in Upland? "
        "And what are HOA fees like? Are there any homes near the park?"
    )
    pcs_short = compute_pcs(short, analyze_lead(short, known_areas=AREAS))
    pcs_rich = compute_pcs(rich, analyze_lead(rich, known_areas=AREAS))
    assert pcs_short.message_depth == 4.0 and pcs_short.questions_asked == 0.0
    assert pcs_rich.message_depth == 100.0 and pcs_rich.questions_asked == 75.0


def test_an_objection_followed_by_engagement_is_handled() -> None:
    handled = inbound("prices are too high right now", "ok, what could I get with 500k in Fontana?")
    dropped = inbound("prices are too high right now")
    pcs_handled = compute_pcs(handled, analyze_lead(handled, known_areas=AREAS))
    pcs_dropped = compute_pcs(dropped, analyze_lead(dropped, known_areas=AREAS))
    assert pcs_handled.objections_handled == 100.0
    assert pcs_dropped.objections_handled == 0.0


def test_wanting_to_meet_or_talk_raises_engagement_and_opt_out_zeroes_it() -> None:
    meet = inbound("Can we see the house on Saturday? Also please call me")
    gone = inbound("Can we see the house on Saturday?", "STOP")
    assert compute_pcs(meet, analyze_lead(meet, known_areas=AREAS)).engagement == 80.0
    assert compute_pcs(gone, analyze_lead(gone, known_areas=AREAS)).engagement == 0.0


# --- buyer readiness ----------------------------------------------------------------


def test_buyer_readiness_adds_up_what_the_buyer_told_us() -> None:
    ready = analyze_lead(
        inbound(
            "Pre-approved for 500k with 100k down, 3 bed in Upland, within 30 days. Can I see the house?"
        ),
        known_areas=AREAS,
    )
    assert buyer_readiness(ready) == pytest.approx(30 + 20 + 15 * 0.95 + 10 + 10 + 10 + 5, abs=0.05)
    unsure = analyze_lead(inbound("not pre-approved yet, maybe a 3 bed"), known_areas=AREAS)
    assert buyer_readiness(unsure) == 10.0


# --- properties (acceptance 3) ---------------------------------------------------------

NEUTRAL = [
    "hi", "thanks!", "who is this?", "ok sounds good", "we have two dogs", "I work from home",
    "what are the schools like?", "just looking", "prices are too high", "I already have an agent",
]  # fmt: skip
INTENT = [
    "I want to sell my house", "looking to buy a home", "what's my home worth?", "3 bed 2 bath",
    "in Upland", "pre-approved", "not pre-approved yet", "budget is 450k", "can I see the house?",
    "call me", "1,850 sq ft",
]  # fmt: skip
SIGNALS = {
    "timeline": ["asap", "within 30 days", "in 3 months", "next year", "in a couple of months", "30-45 days"],
    "motivation": ["we're relocating for work", "we are downsizing", "going through a divorce",
                   "I inherited it", "tired of renting", "we're retiring"],
    "condition": ["it's move-in ready", "in good condition", "it needs some updates",
                  "it needs a lot of work"],
    "price": ["hoping to get 650k", "I'd list it for $700,000", "I think it's worth about 600k"],
}  # fmt: skip
QUESTIONS = ["What price range are you comfortable with?", "Do you have a price in mind?", "Hi!"]

base_messages = st.lists(
    st.one_of(
        st.tuples(st.just("inbound"), st.sampled_from(NEUTRAL + INTENT)),
        st.tuples(st.just("inbound"), st.sampled_from([f for v in SIGNALS.values() for f in v])),
        st.tuples(st.just("outbound"), st.sampled_from(QUESTIONS)),
        st.tuples(
            st.just("inbound"), st.text(alphabet="abcdefghijklmnopqrstuvwxyz ?!.,0123456789$k", max_size=40)
        ),
    ),
    max_size=8,
)
CMA = CMAResult(estimate=640_000, low=600_000, high=690_000, price_per_sqft=350.0, comps=(), method="t")


def _fact_missing(kind: str, turns: list[Msg]) -> bool:
    facts = analyze_lead(turns, known_areas=AREAS).facts
    return {
        "timeline": facts.timeline_days is None,
        "motivation": facts.motivation is None,
        "condition": facts.condition is None,
        "price": facts.price_expectation is None,
    }[kind]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    base=base_messages,
    kind=st.sampled_from(sorted(SIGNALS)),
    pick=st.integers(0, 100),
    as_new_message=st.booleans(),
    with_cma=st.booleans(),
)
def test_adding_a_readiness_signal_never_lowers_frs(
    base: list[tuple[str, str]], kind: str, pick: int, as_new_message: bool, with_cma: bool
) -> None:
    turns = [Msg(d, b, T0 + timedelta(minutes=i)) for i, (d, b) in enumerate(base)]
    assume(_fact_missing(kind, turns))
    fragment = SIGNALS[kind][pick % len(SIGNALS[kind])]
    if as_new_message or not turns or turns[-1].direction != "inbound":
        more = [*turns, Msg("inbound", fragment, T0 + timedelta(minutes=len(turns)))]
    else:
        more = [*turns[:-1], Msg("inbound", f"{turns[-1].body}. {fragment}", turns[-1].created_at)]
    cma = CMA if with_cma else None
    before = compute_frs(analyze_lead(turns, known_areas=AREAS), cma=cma)
    after = compute_frs(analyze_lead(more, known_areas=AREAS), cma=cma)
    assert after.total >= before.total
    for pillar in ("motivation", "timeline", "condition", "price_awareness"):
        assert getattr(after, pillar) >= getattr(before, pillar)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["inbound", "outbound"]), st.text(max_size=300), st.integers(0, 10**7)),
        max_size=10,
    )
)
def test_scores_stay_in_range_for_any_text(parts: list[tuple[str, str, int]]) -> None:
    turns: list[Msg] = []
    when = T0
    for direction, body, gap_seconds in parts:
        when += timedelta(seconds=gap_seconds)
        turns.append(Msg(direction, body, when))
    intent = analyze_lead(turns, known_areas=AREAS)
    assert 0.0 <= intent.buyer_confidence <= 1.0 and 0.0 <= intent.seller_confidence <= 1.0
    frs = compute_frs(intent, cma=CMA)
    pcs = compute_pcs(turns, intent)
    values = [
        frs.total,
        frs.motivation,
        frs.timeline,
        frs.condition,
        frs.price_awareness,
        buyer_readiness(intent),
    ]
    values += [pcs.total, pcs.response_velocity, pcs.message_depth, pcs.questions_asked]
    values += [pcs.objections_handled, pcs.engagement]
    assert all(0.0 <= v <= 100.0 for v in values)
    assert temperature_from_frs(frs.total) in ("hot", "warm", "lukewarm", "cold")
