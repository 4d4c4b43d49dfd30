"""Lead scores: FRS, PCS, buyer readiness and the one temperature vocabulary.

Every score is computed from what the contact said and when they said it;
nothing is a constant standing in for a measurement, and a pillar with no
evidence scores 0.

- **FRS**, Financial Readiness Score, 0-100 (:func:`compute_frs`): motivation
  35 %, timeline 30 %, condition 20 %, price awareness 15 %. Each pillar is
  0-100 and only grows when the contact tells us more, so adding a readiness
  signal never lowers the FRS.
- **PCS**, Psychological Commitment Score, 0-100 (:func:`compute_pcs`): how
  fast they answer us, how much they write, how many questions they ask,
  whether they keep talking after an objection, and whether they want to talk
  or meet.
- **Temperature** from the FRS (:func:`temperature_from_frs`): ``hot`` >= 75,
  ``warm`` >= 50, ``lukewarm`` >= 25, else ``cold``.
- **Buyer readiness** 0-100 (:func:`buyer_readiness`) for the buyer bot.

Usage::

    intent = analyze_lead(messages)
    frs = compute_frs(intent, cma=cma_result)
    pcs = compute_pcs(messages, intent)
    temperature = temperature_from_frs(frs.total)
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ghl_real_estate_ai.bots.cma import CMAResult
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, Turn, analyze_lead
from ghl_real_estate_ai.understanding.reading import objections_of

__all__ = [
    "CONDITION_SCORES",
    "FRS",
    "FRS_WEIGHTS",
    "MOTIVATION_SCORES",
    "PCS",
    "PCS_WEIGHTS",
    "TEMPERATURES",
    "Temperature",
    "buyer_readiness",
    "compute_frs",
    "compute_pcs",
    "temperature_from_frs",
    "timeline_score",
]

Temperature = Literal["hot", "warm", "lukewarm", "cold"]
TEMPERATURES: tuple[Temperature, ...] = ("hot", "warm", "lukewarm", "cold")
"""Every temperature, hottest first."""

FRS_WEIGHTS = {"motivation": 0.35, "timeline": 0.30, "condition": 0.20, "price_awareness": 0.15}
PCS_WEIGHTS = {
    "response_velocity": 0.25,
    "message_depth": 0.20,
    "questions_asked": 0.15,
    "objections_handled": 0.15,
    "engagement": 0.25,
}

MOTIVATION_SCORES: dict[str, float] = {
    "financial": 100.0,
    "divorce": 100.0,
    "relocation": 90.0,
    "job": 90.0,
    "inheritance": 85.0,
    "downsizing": 75.0,
    "upsizing": 70.0,
    "retirement": 70.0,
    "first_home": 65.0,
    "investment": 55.0,
}
"""How strongly each stated reason pushes a move (a forced move scores highest)."""

STATED_INTENT_MOTIVATION = 30.0
"""Motivation pillar when the contact says they want to buy or sell but gives no reason."""

CONDITION_SCORES: dict[str, float] = {"excellent": 100.0, "good": 85.0, "fair": 65.0, "needs_work": 50.0}
"""Condition pillar: a known condition is readiness; a home ready to list is most ready."""

# Timeline pillar: (days, score) points, linear in between. Sooner is readier.
_TIMELINE_POINTS = ((14, 100.0), (30, 95.0), (45, 85.0), (90, 65.0), (180, 40.0), (365, 20.0), (730, 5.0))


def temperature_from_frs(frs: float) -> Temperature:
    """The temperature of a lead with FRS ``frs``.

    Args:
        frs: 0-100.

    Returns:
        ``hot`` (>= 75), ``warm`` (>= 50), ``lukewarm`` (>= 25) or ``cold``.
    """
    if frs >= 75:
        return "hot"
    if frs >= 50:
        return "warm"
    if frs >= 25:
        return "lukewarm"
    return "cold"


def timeline_score(days: int | None) -> float:
    """The timeline pillar for a move ``days`` away (0 when unknown).

    Args:
        days: how soon the contact wants to move.

    Returns:
        100 for two weeks or less, falling to 5 at two years and beyond.
    """
    if days is None:
        return 0.0
    first_days, first_score = _TIMELINE_POINTS[0]
    if days <= first_days:
        return first_score
    for (d0, s0), (d1, s1) in itertools.pairwise(_TIMELINE_POINTS):
        if days <= d1:
            return s0 + (s1 - s0) * (days - d0) / (d1 - d0)
    return _TIMELINE_POINTS[-1][1]


@dataclass(frozen=True)
class FRS:
    """Financial Readiness Score and its pillars, each 0-100."""

    total: float
    motivation: float
    timeline: float
    condition: float
    price_awareness: float

    @property
    def temperature(self) -> Temperature:
        """The temperature this FRS gives."""
        return temperature_from_frs(self.total)


@dataclass(frozen=True)
class PCS:
    """Psychological Commitment Score and its pillars, each 0-100."""

    total: float
    response_velocity: float
    message_depth: float
    questions_asked: float
    objections_handled: float
    engagement: float


def _price_awareness(intent: LeadIntent, cma: CMAResult | None) -> float:
    facts = intent.facts
    # Each known number can only raise the pillar (max), so telling us more never lowers it.
    score = 20.0 if intent.value_question else 0.0
    if facts.budget is not None:
        budget = 60.0
        if facts.preapproved:
            budget += 25.0
        if facts.down_payment is not None:
            budget += 15.0
        score = max(score, budget)
    if facts.price_expectation is not None:
        if cma is None:
            score = max(score, 70.0)
        else:
            # A price close to what the market says is real awareness; far off, still a number.
            gap = abs(facts.price_expectation - cma.estimate) / max(cma.estimate, 1)
            score = max(score, max(40.0, 100.0 - 200.0 * gap))
    return score


def _motivation(intent: LeadIntent) -> float:
    score = 0.0
    if intent.facts.motivation is not None:
        score = MOTIVATION_SCORES.get(intent.facts.motivation, STATED_INTENT_MOTIVATION)
    stated = {"looking_to_buy", "sell_my_house", "list_my_house"} & set(intent.signals)
    if stated:
        score = max(score, STATED_INTENT_MOTIVATION)
    return score


def compute_frs(intent: LeadIntent, *, cma: CMAResult | None = None) -> FRS:
    """The Financial Readiness Score of a lead.

    Args:
        intent: what the decoder read from the conversation.
        cma: the CMA of the contact's home, when there is one; a price expectation
            close to it scores higher on price awareness.

    Returns:
        The FRS, total and pillars 0-100 (one decimal).
    """
    motivation = _motivation(intent)
    timeline = timeline_score(intent.facts.timeline_days)
    condition = CONDITION_SCORES.get(intent.facts.condition or "", 0.0)
    price = _price_awareness(intent, cma)
    total = (
        FRS_WEIGHTS["motivation"] * motivation
        + FRS_WEIGHTS["timeline"] * timeline
        + FRS_WEIGHTS["condition"] * condition
        + FRS_WEIGHTS["price_awareness"] * price
    )
    return FRS(
        total=_clip(total),
        motivation=_clip(motivation),
        timeline=_clip(timeline),
        condition=_clip(condition),
        price_awareness=_clip(price),
    )


# Response velocity: a reply within 5 minutes scores 100, one after 3 days 0, log scale between.
_FAST_REPLY_MINUTES = 5.0
_SLOW_REPLY_MINUTES = 3 * 24 * 60.0
_WORDS_FOR_FULL_DEPTH = 25.0
_QUESTIONS_FOR_FULL_SCORE = 4.0
_WORD = re.compile(r"\w+")


def _velocity(turns: Sequence[Turn]) -> float | None:
    scores: list[float] = []
    waiting_since = None
    for turn in turns:
        if turn.direction == "outbound":
            # A run of unanswered messages counts from the first one: ignoring us is slow.
            if waiting_since is None:
                waiting_since = turn.created_at
        elif turn.direction == "inbound" and waiting_since is not None:
            minutes = max(0.0, (turn.created_at - waiting_since).total_seconds() / 60.0)
            waiting_since = None
            if minutes <= _FAST_REPLY_MINUTES:
                scores.append(100.0)
            else:
                span = math.log(_SLOW_REPLY_MINUTES / _FAST_REPLY_MINUTES)
                scores.append(100.0 * max(0.0, 1.0 - math.log(minutes / _FAST_REPLY_MINUTES) / span))
    if not scores:
        return None
    return sum(scores) / len(scores)


def _objections_handled(turns: Sequence[Turn], intent: LeadIntent) -> float | None:
    if not intent.objections:
        return None
    inbound = [t for t in turns if t.direction == "inbound"]
    raised = 0
    handled = 0
    for index, turn in enumerate(inbound):
        # The objections of one message are all analyze_lead([turn]) would be asked for here.
        if not objections_of(turn.body or ""):
            continue
        raised += 1
        # Handled: the contact kept talking afterwards, with substance, and did not opt out.
        later = inbound[index + 1 :]
        if later and not intent.opt_out:
            after = analyze_lead(later, known_areas=())
            substantive = any(len(_WORD.findall(t.body or "")) >= 4 for t in later)
            if (set(after.signals) - {"objection", "opt_out"}) or substantive:
                handled += 1
    if raised == 0:
        return None
    return 100.0 * handled / raised


def compute_pcs(turns: Sequence[Turn], intent: LeadIntent) -> PCS:
    """The Psychological Commitment Score of a lead.

    Pillars (each 0-100): response velocity (how soon each inbound message followed
    our message before it; 5 minutes or less 100, three days or more 0), message
    depth (words per inbound message, 25 words for 100), questions asked (``?`` in
    their messages, 25 each), objections handled (share of objections after which
    the contact kept engaging), engagement (asked to meet or see a home 50, to talk
    30, each reply after the first 5, up to 20; 0 after an opt-out).

    When a pillar cannot be measured (no objection was raised, or the contact never
    answered a message of ours because they wrote first) it is left out and the
    other pillars share its weight; it is reported as 0.

    Args:
        turns: the conversation in order.
        intent: :func:`analyze_lead` of the same conversation.

    Returns:
        The PCS, total and pillars 0-100 (one decimal).
    """
    inbound = [t for t in turns if t.direction == "inbound"]
    velocity = _velocity(turns)
    if inbound:
        words = sum(len(_WORD.findall(t.body or "")) for t in inbound) / len(inbound)
        depth = min(100.0, 100.0 * words / _WORDS_FOR_FULL_DEPTH)
        questions = sum((t.body or "").count("?") for t in inbound)
        questions_score = min(100.0, 100.0 * questions / _QUESTIONS_FOR_FULL_SCORE)
    else:
        depth = questions_score = 0.0
    objections = _objections_handled(turns, intent)
    if intent.opt_out:
        engagement = 0.0
    else:
        facts = intent.facts
        engagement = 50.0 if (facts.wants_showing or facts.wants_appointment) else 0.0
        engagement += 30.0 if intent.human_request else 0.0
        engagement += 5.0 * min(4, max(0, len(inbound) - 1))
        engagement = min(100.0, engagement)

    pillars: dict[str, float | None] = {
        "response_velocity": velocity,
        "message_depth": depth,
        "questions_asked": questions_score,
        "objections_handled": objections,
        "engagement": engagement,
    }
    measured = {name: value for name, value in pillars.items() if value is not None}
    weight = sum(PCS_WEIGHTS[name] for name in measured)
    total = sum(PCS_WEIGHTS[name] * value for name, value in measured.items()) / weight if weight else 0.0
    return PCS(
        total=_clip(total),
        response_velocity=_clip(velocity or 0.0),
        message_depth=_clip(depth),
        questions_asked=_clip(questions_score),
        objections_handled=_clip(objections or 0.0),
        engagement=_clip(engagement),
    )


def buyer_readiness(intent: LeadIntent) -> float:
    """How ready a buyer is to see and buy homes, 0-100.

    Points: pre-approved 30, a budget 20, timeline up to 15 (the timeline pillar
    scaled), bedrooms 10, areas 10, a down payment 10, asked to see a home 5.

    Args:
        intent: what the decoder read.

    Returns:
        0-100 (one decimal).
    """
    facts = intent.facts
    score = 30.0 if facts.preapproved else 0.0
    score += 20.0 if facts.budget is not None else 0.0
    score += 15.0 * timeline_score(facts.timeline_days) / 100.0
    score += 10.0 if facts.bedrooms is not None else 0.0
    score += 10.0 if facts.areas else 0.0
    score += 10.0 if facts.down_payment is not None else 0.0
    score += 5.0 if facts.wants_showing else 0.0
    return _clip(score)


def _clip(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 1)
