"""The intent decoder reads facts, intents, opt-outs, escalations and objections from real wording."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ghl_real_estate_ai.bots.intent_decoder import (
    BUYER_WEIGHTS,
    SELLER_WEIGHTS,
    LeadIntent,
    analyze_lead,
    decode_lead_intent,
)
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.storage.base import Message

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Msg:
    direction: str
    body: str
    created_at: datetime = T0


def said(*bodies: str) -> LeadIntent:
    return analyze_lead([Msg("inbound", b, T0 + timedelta(minutes=i)) for i, b in enumerate(bodies)])


# --- facts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "budget"),
    [
        ("My budget is $450k", 450_000),
        ("we can spend up to 450,000", 450_000),
        ("budget around 1.2m", 1_200_000),
        ("I'm pre-approved for $525,000", 525_000),
        ("looking between 400k and 500k", 500_000),
        ("under 650 thousand please", 650_000),
    ],
)
def test_budget_amounts_in_every_common_spelling(text: str, budget: int) -> None:
    assert said(text).facts.budget == budget


def test_money_is_sorted_into_budget_down_payment_income_and_price() -> None:
    facts = said("We make 120k a year, have 60k down, and our budget is 550k").facts
    assert (facts.monthly_income, facts.down_payment, facts.budget) == (10_000, 60_000, 550_000)
    assert said("I earn $9,000 a month").facts.monthly_income == 9_000
    assert said("I think it's worth 650k, hoping to get around 700k").facts.price_expectation == 700_000
    assert said("I'd want at least $700,000 for it").facts.price_expectation == 700_000


def test_numbers_that_are_not_money_are_ignored() -> None:
    facts = said("We've lived here since 2004, 3 kids, 1,850 sq ft").facts
    assert (facts.budget, facts.price_expectation, facts.sqft) == (None, None, 1_850)


def test_a_bare_answer_is_read_against_the_question_asked_before_it() -> None:
    intent = analyze_lead(
        [
            Msg("outbound", "What price range are you comfortable with?"),
            Msg("inbound", "around 450k"),
            Msg("outbound", "How many bedrooms do you need?"),
            Msg("inbound", "3"),
        ]
    )
    assert (intent.facts.budget, intent.facts.bedrooms) == (450_000, 3)
    # The same bare amount after a price question is a price expectation.
    seller = analyze_lead([Msg("outbound", "Do you have a price in mind?"), Msg("inbound", "$725k")])
    assert (seller.facts.price_expectation, seller.facts.budget) == (725_000, None)


@pytest.mark.parametrize(
    ("text", "preapproved"),
    [
        ("I'm pre-approved", True),
        ("We got preapproved last week", True),
        ("not pre-approved yet", False),
        ("I need to get pre-approved", False),
        ("haven't been prequalified", False),
        ("Do I need a pre-approval?", None),
        ("hi there", None),
    ],
)
def test_preapproval_and_its_negations(text: str, preapproved: bool | None) -> None:
    assert said(text).facts.preapproved is preapproved


@pytest.mark.parametrize(
    ("text", "beds", "baths", "sqft"),
    [
        ("a 3 bed 2 bath", 3, 2.0, None),
        ("three bedrooms and 2.5 baths", 3, 2.5, None),
        ("3br, about 1,850 sq ft", 3, None, 1_850),
        ("4bd with 2200 square feet", 4, None, 2_200),
    ],
)
def test_rooms_and_size(text: str, beds: int | None, baths: float | None, sqft: int | None) -> None:
    facts = said(text).facts
    assert (facts.bedrooms, facts.bathrooms, facts.sqft) == (beds, baths, sqft)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("asap", 14),
        ("we need to move as soon as possible", 14),
        ("within 30 days", 30),
        ("next month", 30),
        ("in 3 months", 90),
        ("in a couple of months", 60),
        ("next year", 365),
        ("30-45 days", 45),
        ("in six weeks", 42),
        ("lo antes posible", 14),
    ],
)
def test_timeline_phrases(text: str, days: int) -> None:
    assert said(text).facts.timeline_days == days


def test_past_durations_are_not_timelines() -> None:
    assert said("We've lived here 10 years").facts.timeline_days is None


def test_later_messages_win_for_facts_and_areas_accumulate() -> None:
    intent = said(
        "budget is 400k, maybe next year", "actually our budget is 475k and we want to move in 3 months"
    )
    assert (intent.facts.budget, intent.facts.timeline_days) == (475_000, 90)
    areas = said("Looking in Upland", "or maybe Claremont, and Upland again").facts.areas
    assert areas == ("Claremont", "Upland")


def test_known_and_unknown_areas() -> None:
    assert said("a home in rancho cucamonga or Chino Hills").facts.areas == (
        "Rancho Cucamonga",
        "Chino Hills",
    )
    assert said("We live in Pasadena").facts.areas == ("Pasadena",)
    assert said("In June we move").facts.areas == ()
    custom = analyze_lead([Msg("inbound", "something in Eastvale")], known_areas=["Eastvale"])
    assert custom.facts.areas == ("Eastvale",)


@pytest.mark.parametrize(
    ("text", "motivation"),
    [
        ("I'm relocating for work", "relocation"),
        ("we are downsizing, the kids moved out", "downsizing"),
        ("going through a divorce", "divorce"),
        ("I inherited my mom's house", "inheritance"),
        ("we're behind on payments", "financial"),
        ("tired of renting", "first_home"),
        ("need more space for a growing family", "upsizing"),
    ],
)
def test_motivations(text: str, motivation: str) -> None:
    assert said(text).facts.motivation == motivation


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("it's move-in ready, fully renovated", "excellent"),
        ("in good condition", "good"),
        ("it needs some updates", "fair"),
        ("the house needs a lot of work, roof leaks", "needs_work"),
        ("it's not in good shape", "fair"),
        ("it doesn't need any work", "good"),
    ],
)
def test_condition(text: str, condition: str) -> None:
    assert said(text).facts.condition == condition


def test_address_showing_and_appointment() -> None:
    facts = said("Our house is at 1234 Foothill Blvd. Can you come by Tuesday?").facts
    assert facts.property_address == "1234 Foothill Blvd"
    assert facts.wants_appointment
    assert said("Can I see the house this weekend?").facts.wants_showing
    assert said("3 kids, no way we fit here").facts.property_address is None
    assert not said("Cancel my appointment").facts.wants_appointment


# --- intent confidence --------------------------------------------------------------


def test_buyer_confidence_adds_documented_weights() -> None:
    intent = said("I'm pre-approved for $450k and want a 3 bed in Upland")
    expected = min(1.0, sum(BUYER_WEIGHTS[s] for s in intent.signals if s in BUYER_WEIGHTS))
    assert intent.buyer_confidence == pytest.approx(expected)
    assert intent.seller_confidence == 0.0
    assert {"preapproved", "budget", "bedrooms", "areas"} <= set(intent.signals)


def test_seller_confidence_adds_documented_weights() -> None:
    intent = said("I want to sell my house. What's it worth? What's my home worth?")
    assert {"sell_my_house", "value_question"} <= set(intent.signals)
    assert intent.seller_confidence == pytest.approx(
        min(1.0, sum(SELLER_WEIGHTS[s] for s in intent.signals if s in SELLER_WEIGHTS))
    )
    assert intent.value_question


def test_confidence_is_clipped_to_one() -> None:
    intent = said(
        "Looking to buy, pre-approved, budget 600k, 20% down so 120k down, 3 bed 2 bath in Fontana, "
        "first home, can we see the house Saturday? our lender says fine"
    )
    assert intent.buyer_confidence == 1.0


@pytest.mark.parametrize(
    "text",
    ["I'm not looking to buy", "we don't want to sell our house", "never going to sell my home"],
)
def test_negated_intent_counts_nothing(text: str) -> None:
    intent = said(text)
    assert (intent.buyer_confidence, intent.seller_confidence) == (0.0, 0.0)


def test_no_conversation_no_confidence() -> None:
    intent = analyze_lead([Msg("outbound", "Hi! Are you buying or selling?")])
    assert (intent.buyer_confidence, intent.seller_confidence, intent.signals) == (0.0, 0.0, ())


# --- opt-out, human requests, red flags, objections --------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "STOP", "stop.", "Stop please", "unsubscribe", "Cancel", "QUIT", "end", "Stop all",
        "please stop texting me", "no more texts", "remove me from your list", "Don't text me",
        "STOP. Not interested", "para", "ALTO", "cancelar", "No me escriba más", "Por favor no me escriban",
        "deja de escribirme",
    ],
)  # fmt: skip
def test_opt_out_words_and_phrases(text: str) -> None:
    assert said(text).opt_out


@pytest.mark.parametrize(
    "text",
    [
        "don't stop sending listings",
        "please don't stop texting me, I like the updates",
        "Cancel my appointment, I'll rebook",
        "can't stop thinking about that house",
        "the bus stop is close to the house",
        "para mi familia",
        "we'll end up in Upland",
    ],
)
def test_words_inside_ordinary_sentences_are_not_opt_outs(text: str) -> None:
    assert not said(text).opt_out


def test_start_after_stop_lifts_the_opt_out() -> None:
    assert said("STOP").opt_out
    assert not said("STOP", "START").opt_out


@pytest.mark.parametrize(
    "text",
    [
        "Can I talk to a real person?",
        "please call me",
        "I want to speak with an agent",
        "hablar con una persona",
    ],
)
def test_human_requests(text: str) -> None:
    assert said(text).human_request


def test_a_refused_call_is_not_a_human_request() -> None:
    assert not said("please don't call me, text is fine").human_request


def test_red_flags_with_negation() -> None:
    intent = said("We're facing foreclosure, my attorney says to sell; there's also a tax lien")
    assert intent.red_flags == ("foreclosure", "attorney", "tax_lien")
    assert said("I'm not in foreclosure").red_flags == ()
    assert said("It's a probate sale and a short sale").red_flags == ("probate", "short_sale")


def test_objections() -> None:
    intent = said("Just looking for now, prices are too high and we already have an agent")
    assert intent.objections == ("price_too_high", "just_looking", "has_agent")
    assert said("what's your commission?").objections == ("commission",)


def test_latest_signals_cover_only_the_last_message() -> None:
    intent = said("I want to sell my house", "What's my home worth?")
    assert "sell_my_house" in intent.signals
    assert intent.latest_signals == ("value_question",)


def test_storage_messages_satisfy_the_turn_protocol() -> None:
    message = Message(1, "c1", "inbound", "Looking to buy in Ontario", "SMS", T0)
    intent = analyze_lead([message])
    assert intent.facts.areas == ("Ontario",)
    assert "looking_to_buy" in intent.signals


async def test_decode_lead_intent_span_carries_numbers_never_text() -> None:
    with capture_spans() as capture:
        intent = await decode_lead_intent(
            [Msg("inbound", "pre-approved for 500k, call me at 909-555-0100")], contact_id="c-42"
        )
    (span,) = capture.by_name("intent_decoder.analyze_lead")
    attributes = dict(span.attributes or {})
    assert attributes["workflow.contact_id"] == "c-42"
    assert attributes["intent.buyer_confidence"] == intent.buyer_confidence
    assert attributes["intent.seller_confidence"] == 0.0
    assert all(not isinstance(v, str) or ("909" not in v and "500k" not in v) for v in attributes.values())


def test_a_bare_amount_follows_the_side_the_conversation_took() -> None:
    seller = said("I want to sell my house", "about 600k")
    buyer = said("We're looking to buy a home", "about 600k")
    both = said("about 600k")
    assert (seller.facts.price_expectation, seller.facts.budget) == (600_000, None)
    assert (buyer.facts.budget, buyer.facts.price_expectation) == (600_000, None)
    assert (both.facts.budget, both.facts.price_expectation) == (None, None)


def test_a_timeline_and_motive_count_for_the_side_the_contact_declared() -> None:
    """'Sell our house within 30 days, relocating' is a seller ready to move, past the 0.7 handoff bar.

    Issue 10 changed this test: a plain statement of intent now passes the bar on its own
    (it used to stay under it), and a timeline and a motive still add to it."""
    plain = said("We want to sell our house in Ontario")
    ready = said("We are relocating for work and want to sell our house in Ontario within 30 days")
    assert ready.seller_confidence >= plain.seller_confidence >= 0.7
    assert {"seller_timeline", "seller_motivation"} <= set(ready.signals)
    assert ready.buyer_confidence < 0.2
    buyer = said("We are relocating and looking to buy in Upland within 60 days")
    assert {"buyer_timeline", "buyer_motivation"} <= set(buyer.signals)
    assert "seller_timeline" not in buyer.signals
