"""The intent decoder: what a contact wants, read from what they actually wrote.

:func:`analyze_lead` reads the inbound messages of a conversation, in order,
and returns a :class:`LeadIntent`: buyer and seller confidences (0-1), the
facts the contact gave (:class:`PropertyFacts`: budget, pre-approval, beds,
areas, timeline, motivation, condition, price...), opt-out and human-request
flags, legal/financial red flags, objections, and the names of every signal
found. :func:`decode_lead_intent` does the same inside the
``intent_decoder.analyze_lead`` span::

    intent = await decode_lead_intent(messages, contact_id=contact.contact_id)
    if intent.opt_out: ...
    elif intent.buyer_confidence >= 0.7: ...

The reading of each message is the understanding pipeline's
(:mod:`ghl_real_estate_ai.understanding`: normalisation, classifier, phrase
tables, quantities, dates, places, rules); this module keeps the public types
and combines the messages of a conversation. Rules:

- Facts: a later message wins over an earlier one (areas accumulate, the most
  recently named last). A bare amount ("450k") is read against the
  question the bot asked just before it, else against the side (buyer or
  seller) the conversation has taken; a bare "3" after a bedrooms question is
  the bedrooms.
- Negation: a phrase preceded, in the same clause, by a negator within four
  words ("not", "don't", "never", "no", "without"...) does not count, so "I'm
  not looking to buy" is no buy signal and "not pre-approved yet" sets
  ``preapproved=False``.
- Confidence: additive evidence weights (:data:`BUYER_WEIGHTS`,
  :data:`SELLER_WEIGHTS`), one per distinct signal, summed and clipped to
  [0, 1]. Negated phrases add nothing.
- Opt-out (English and Spanish): a message or sentence that is nothing but an
  opt-out word ("STOP", "unsubscribe", "cancel", "quit", "end", "para",
  "alto", "cancelar", "baja", with "please"/"por favor" allowed), or a clear
  phrase anywhere ("stop texting me", "no more texts", "remove me from your
  list", "no me escriba"...). A word inside a longer sentence is not enough:
  "cancel my appointment" and "don't stop sending listings" are not opt-outs.
  A later "START"/"UNSTOP" message lifts it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span
from ghl_real_estate_ai.understanding.classifier import load_classifier
from ghl_real_estate_ai.understanding.language import conversation_language
from ghl_real_estate_ai.understanding.reading import (
    BUYER_MOTIVES,
    SELLER_MOTIVES,
    Reading,
    asked_about,
    read_message_cached,
)

__all__ = [
    "BUYER_WEIGHTS",
    "SCORE_ATTRIBUTE_MIN",
    "SELLER_WEIGHTS",
    "LeadIntent",
    "PropertyFacts",
    "Turn",
    "analyze_lead",
    "decode_lead_intent",
]


class Turn(Protocol):
    """One message of a conversation (``storage.base.Message`` satisfies it)."""

    @property
    def direction(self) -> str:
        """``"inbound"`` (from the contact) or ``"outbound"`` (from us)."""
        ...

    @property
    def body(self) -> str:
        """The message text."""
        ...

    @property
    def created_at(self) -> datetime:
        """When it was sent."""
        ...


@dataclass(frozen=True)
class PropertyFacts:
    """Facts the contact stated; ``None`` when they have not said."""

    budget: int | None = None
    """Dollars the buyer means to spend ("$450k", "450,000", "1.2m")."""
    preapproved: bool | None = None
    """Mortgage pre-approval: True stated, False denied or pending ("not pre-approved yet")."""
    down_payment: int | None = None
    """Dollars available for the down payment."""
    monthly_income: int | None = None
    """Gross monthly income in dollars (an annual figure is divided by 12)."""
    bedrooms: int | None = None
    bathrooms: float | None = None
    sqft: int | None = None
    areas: tuple[str, ...] = ()
    """Cities/neighbourhoods named, the most recently named last."""
    timeline_days: int | None = None
    """How soon they want to move: "asap" 14, "next month" 30, "in 3 months" 90, "next year" 365."""
    motivation: str | None = None
    """relocation, job, downsizing, upsizing, divorce, inheritance, financial, retirement,
    first_home or investment."""
    condition: str | None = None
    """excellent, good, fair or needs_work."""
    price_expectation: int | None = None
    """Dollars the seller hopes to get."""
    property_address: str | None = None
    """A street address the contact gave (PII: never put it in spans or logs)."""
    wants_showing: bool = False
    wants_appointment: bool = False
    # Issue 10 (understanding): the slots the dialogue keeps, all optional.
    financing: str | None = None
    """How the buyer pays: "cash", "va", "fha", "conventional", "usda" or "preapproved"
    (pre-approved with no loan kind named)."""
    must_sell_first: bool = False
    """A buyer who has to sell their current home before buying (a two-sided lead)."""
    agent_status: str | None = None
    """"has_agent" (already working with an agent) or "no_agent" (said they have none)."""
    target_date: date | None = None
    """When they want to move, as an absolute date computed from the timestamp of the
    message that said it ("end of next month" sent on 3 March gives 30 April)."""
    monthly_rent: int | None = None
    """Dollars a month: the rent they pay now, or the rent they are looking for."""
    property_type: str | None = None
    """"single_family", "condo", "townhouse", "multi_unit" (duplex to fourplex and
    apartment buildings), "land" or "mobile"."""
    buyer_for: str | None = None
    """Who the home is for when it is not the contact ("parents", "daughter", "son",
    "family", "investment")."""


@dataclass(frozen=True)
class LeadIntent:
    """What the decoder read from a conversation."""

    buyer_confidence: float
    seller_confidence: float
    value_question: bool
    """They asked what their home is worth."""
    opt_out: bool
    human_request: bool
    """They asked for a person ("talk to an agent", "call me", "hablar con una persona")."""
    red_flags: tuple[str, ...]
    """Legal/financial situations a human should handle: foreclosure, probate, attorney..."""
    objections: tuple[str, ...]
    """price_too_high, just_looking, not_ready, has_agent, commission, rates_too_high,
    need_to_think, market_timing, not_interested."""
    facts: PropertyFacts
    signals: tuple[str, ...]
    """Names of every signal found in the conversation, in a stable order."""
    latest_signals: tuple[str, ...] = field(default=())
    """The signals found in the latest inbound message alone."""
    # Issue 10 (understanding): what the classifier read from the latest inbound message.
    intent_scores: Mapping[str, float] = field(default_factory=dict)
    """Label -> probability (0-1) from the intent classifier for the latest inbound
    message; the labels are those of the shipped corpus (buy, sell, both, rent, opt_out...)."""
    acts: tuple[str, ...] = ()
    """Dialogue acts of the latest inbound message: labels from the classifier's label set
    whose probability passed the act threshold, plus "question" when the lead asked something."""
    question_topic: str | None = None
    """What the lead asked in the latest message: "value", "process", "fees",
    "availability", "market" or "other"; ``None`` when they asked nothing."""
    not_prospect: str | None = None
    """Why the contact is no prospect, from the latest inbound message: "renter",
    "has_agent", "wrong_number" or "not_interested"; ``None`` otherwise."""
    slots_filled: tuple[str, ...] = ()
    """Names of the :class:`PropertyFacts` fields the latest inbound message gave a value
    (names only: the values may be personal)."""
    classifier_version: str = ""
    """Version of the trained intent classifier that produced ``intent_scores``."""
    opt_in: bool = False
    """The latest inbound message asked to receive texts again (START, UNSTOP, "text me again")."""
    language: str | None = None
    """The language the contact writes in, "en" or "es" (most of the messages that clearly are in
    one); ``None`` when no message said enough to tell."""
    value_confidence: float = 0.0
    """How sure the reading is that the latest inbound message asks what the contact's home is
    worth (the classifier and the phrase table combined), 0-1."""


BUYER_WEIGHTS: dict[str, float] = {
    "looking_to_buy": 0.35,
    "stated_buy_intent": 0.40,
    "preapproved": 0.35,
    "cash_buyer": 0.35,
    "budget": 0.25,
    "wants_showing": 0.20,
    "down_payment": 0.15,
    "financing": 0.10,
    "bedrooms": 0.10,
    "buyer_motivation": 0.10,
    "buyer_timeline": 0.10,
    "bathrooms": 0.05,
    "areas": 0.05,
    "monthly_income": 0.05,
}
"""Evidence each buyer signal adds to ``buyer_confidence`` (summed, clipped to 1)."""

SELLER_WEIGHTS: dict[str, float] = {
    "sell_my_house": 0.45,
    "stated_sell_intent": 0.30,
    "list_my_house": 0.35,
    "value_question": 0.30,
    "price_expectation": 0.20,
    "condition": 0.15,
    "seller_motivation": 0.15,
    "seller_timeline": 0.15,
    "property_address": 0.10,
    "wants_appointment": 0.05,
}
"""Evidence each seller signal adds to ``seller_confidence`` (summed, clipped to 1)."""

SCORE_ATTRIBUTE_MIN = 0.01
"""A classifier label this probable (1 %) or more is put on the analyze spans (``intent.score.<label>``)."""

_SIGNAL_ORDER = (
    *BUYER_WEIGHTS,
    *SELLER_WEIGHTS,
    "not_preapproved",
    "must_sell_first",
    "monthly_rent",
    "sqft",
    "timeline",
    "motivation",
    "human_request",
    "opt_out",
    "resume",
    "red_flag",
    "objection",
)

_SELLER_MOTIVES = SELLER_MOTIVES
_BUYER_MOTIVES = BUYER_MOTIVES


def _side(signals: Sequence[str]) -> str:
    """``buyer`` or ``seller`` when the conversation so far leans one way only."""
    buying = "looking_to_buy" in signals
    selling = bool({"sell_my_house", "list_my_house", "value_question"} & set(signals))
    if buying == selling:
        return ""
    return "buyer" if buying else "seller"


@functools.cache
def _bundled_areas() -> tuple[str, ...]:
    # Imported here so the decoder does not read the CSV until it first needs the areas.
    from ghl_real_estate_ai.bots.cma import CompsSource

    return CompsSource.from_csv(None).areas()


def _ordered(signals: Iterable[str]) -> tuple[str, ...]:
    present = set(signals)
    return tuple(name for name in _SIGNAL_ORDER if name in present)


_FACT_FIELDS = (
    "budget", "preapproved", "down_payment", "monthly_income", "bedrooms", "bathrooms", "sqft",
    "timeline_days", "motivation", "condition", "price_expectation", "property_address", "financing",
    "agent_status", "target_date", "monthly_rent", "property_type", "buyer_for",
)  # fmt: skip


def _slots_filled(reading: Reading) -> tuple[str, ...]:
    """Names of the :class:`PropertyFacts` fields one message gave a value."""
    names = [name for name in _FACT_FIELDS if getattr(reading, name) is not None]
    if reading.areas:
        names.append("areas")
    names.extend(
        name for name in ("must_sell_first", "wants_showing", "wants_appointment") if getattr(reading, name)
    )
    return tuple(name for name in PropertyFacts.__dataclass_fields__ if name in names)


def analyze_lead(turns: Sequence[Turn], *, known_areas: Sequence[str] | None = None) -> LeadIntent:
    """Read a conversation and decide what the contact wants.

    Args:
        turns: the conversation in the order it happened; only inbound messages
            are read, the outbound one just before each is used to read bare answers.
            Relative dates count from each message's ``created_at``.
        known_areas: area names to recognise besides the US cities and states
            (the comps data's areas); ``None`` uses the areas of the bundled sample comps.

    Returns:
        The intent; an empty or outbound-only conversation gives zero confidences
        and no facts.
    """
    areas_known = tuple(known_areas) if known_areas is not None else _bundled_areas()
    # What the decoder reads of each turn, and nothing else: the same conversation decodes alike.
    said = tuple(
        (
            turn.direction == "inbound",
            turn.body or "",
            turn.created_at.date() if turn.direction == "inbound" else None,
        )
        for turn in turns
    )
    return _decode(said, areas_known)


ANALYZE_CACHE_SIZE = 64
"""Conversations :func:`_decode` keeps decoded (the least recently used go first): a turn decodes the
same conversation several times (the service's check of the newest message, then each bot that
runs), and never needs more than the turns in flight."""


@functools.lru_cache(maxsize=ANALYZE_CACHE_SIZE)
def _decode(said: tuple[tuple[bool, str, date | None], ...], areas_known: tuple[str, ...]) -> LeadIntent:
    """:func:`analyze_lead` of ``(inbound, body, day sent)`` turns; the intent is shared, never changed."""
    facts: dict[str, object] = {}
    area_list: list[str] = []
    signals: list[str] = []
    latest: Reading | None = None
    red_flags: list[str] = []
    objections: list[str] = []
    wants_showing = wants_appointment = value_question = human_request = opt_out = False
    must_sell_first = False
    languages: list[str | None] = []
    asked = ""
    for inbound, body, day in said:
        if not inbound or day is None:
            asked = asked_about(body)
            continue
        # Read once: the same message is read again by the turn's other analyses and later turns.
        found = read_message_cached(body, day, asked, areas_known, _side(signals))
        asked = ""
        latest = found
        languages.append(found.language)
        signals.extend(found.signals)
        for name in _FACT_FIELDS:
            value = getattr(found, name)
            if value is not None:
                facts[name] = value
        for area in found.areas:
            if area in area_list:
                area_list.remove(area)
            area_list.append(area)
        wants_showing |= found.wants_showing
        wants_appointment |= found.wants_appointment
        value_question |= found.value_question
        human_request |= found.human_request
        must_sell_first |= found.must_sell_first
        if found.opt_out:
            opt_out = True
        elif found.opt_in:
            opt_out = False
        red_flags.extend(f for f in found.red_flags if f not in red_flags)
        objections.extend(o for o in found.objections if o not in objections)

    # The latest pre-approval answer decides which of the two signals stands.
    present = set(signals)
    if facts.get("preapproved") is True:
        present.discard("not_preapproved")
    elif facts.get("preapproved") is False:
        present.discard("preapproved")
    if not opt_out:
        present.discard("opt_out")
    # A timeline or a motive that fits either side ("relocating", "within 30 days") counts for
    # the side the contact has declared: "sell our house within 30 days" is a seller ready to move.
    side = _side(tuple(present))
    if side and "timeline" in present:
        present.add(f"{side}_timeline")
    if side and "motivation" in present:
        present.add(f"{side}_motivation")

    property_facts = PropertyFacts(
        areas=tuple(area_list),
        wants_showing=wants_showing,
        wants_appointment=wants_appointment,
        must_sell_first=must_sell_first,
        **facts,  # type: ignore[arg-type]
    )
    buyer = min(1.0, sum((w for name, w in BUYER_WEIGHTS.items() if name in present), 0.0))
    seller = min(1.0, sum((w for name, w in SELLER_WEIGHTS.items() if name in present), 0.0))
    return LeadIntent(
        buyer_confidence=round(buyer, 4),
        seller_confidence=round(seller, 4),
        value_question=value_question,
        opt_out=opt_out,
        human_request=human_request,
        red_flags=tuple(red_flags),
        objections=tuple(objections),
        facts=property_facts,
        signals=_ordered(present),
        latest_signals=_ordered(latest.signals) if latest else (),
        intent_scores={k: round(v, 4) for k, v in latest.intent_scores.items()} if latest else {},
        acts=latest.acts if latest else (),
        question_topic=latest.question_topic if latest else None,
        not_prospect=latest.not_prospect if latest else None,
        slots_filled=_slots_filled(latest) if latest else (),
        classifier_version=load_classifier().version,
        opt_in=latest.opt_in if latest else False,
        value_confidence=round(latest.value_confidence, 4) if latest else 0.0,
        language=conversation_language(languages),
    )


async def decode_lead_intent(
    turns: Sequence[Turn],
    *,
    contact_id: str | None = None,
    known_areas: Sequence[str] | None = None,
) -> LeadIntent:
    """:func:`analyze_lead` inside the ``intent_decoder.analyze_lead`` span.

    The span gets the two confidences, the number of signals, the classifier's
    label probabilities for the latest message (``intent.score.<label>``, those of
    1 % or more), its dialogue acts, the names of the slots it filled
    (``intent.slots_filled``, and a ``slot_filled`` event each) and the
    classifier's version: never message text nor slot values.

    Args:
        turns: the conversation, in order.
        contact_id: recorded as ``workflow.contact_id``.
        known_areas: as for :func:`analyze_lead`.

    Returns:
        The intent.
    """
    async with async_workflow_span("intent_decoder", "analyze_lead", contact_id=contact_id) as span:
        intent = analyze_lead(turns, known_areas=known_areas)
        if not span.is_recording():
            return intent
        # What the classifier read from the latest message: label confidences, the slot names
        # it filled (names only: values can be personal), and which model read it.
        attributes: dict[str, Any] = {
            "intent.buyer_confidence": intent.buyer_confidence,
            "intent.seller_confidence": intent.seller_confidence,
            "intent.signal_count": len(intent.signals),
        }
        for label, score in intent.intent_scores.items():
            if score >= SCORE_ATTRIBUTE_MIN:
                attributes[f"intent.score.{label}"] = score
        attributes["intent.acts"] = list(intent.acts)
        attributes["intent.slots_filled"] = list(intent.slots_filled)
        attributes["intent.classifier_version"] = intent.classifier_version
        if intent.not_prospect:
            attributes["intent.not_prospect"] = intent.not_prospect
        span.set_attributes(attributes)
        for slot in intent.slots_filled:
            span.add_event("slot_filled", {"slot": slot})
        return intent
