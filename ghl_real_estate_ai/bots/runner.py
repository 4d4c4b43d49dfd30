"""What the three bot graphs share: a run's input state, its outcome, and the common node steps.

The graphs themselves (their nodes, edges and ``@trace_workflow_node`` names)
stay in :mod:`.lead`, :mod:`.buyer` and :mod:`.seller`; this module holds the
pieces that are the same logic in each:

* :func:`conversation_state` turns a :class:`~.state.BotTurn` into a graph's
  input (the common keys plus the bot's id key, ``buyer_id``...).
* :func:`bot_outcome` reads the final graph state into a :class:`~.state.BotOutcome`.
* :func:`address_new_objection`, :func:`next_question` and :func:`cma_reply` are
  node steps two or three bots take alike.
* :func:`book_first_slot` is the booking node of the buyer and seller bots.

Usage (inside a bot's ``process_*_conversation`` span)::

    state = conversation_state(BuyerState, turn, "buyer", "qualifying")
    return bot_outcome("buyer", await self.graph.run(state), "qualifying")
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from opentelemetry import trace

from ghl_real_estate_ai.bots.cma import CMAResult, CompsSource, SubjectProperty
from ghl_real_estate_ai.bots.dialogue import Dialogue, merge, record_understanding
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, PropertyFacts
from ghl_real_estate_ai.bots.outbound import Outbound, format_slot, objection_text, upcoming_slots
from ghl_real_estate_ai.bots.state import BotName, BotOutcome, BotTurn, CommonState
from ghl_real_estate_ai.bots.templates import render
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.llm.base import SlotFiller

__all__ = [
    "QUESTION_SLOTS",
    "Booking",
    "address_new_objection",
    "after_analysis",
    "book_first_slot",
    "bot_outcome",
    "cma_memory",
    "cma_reply",
    "cma_text",
    "conversation_state",
    "mark_reply",
    "next_question",
    "read_with_model",
    "topic_answer",
    "understand",
]

QUESTION_SLOTS: dict[str, str] = {
    "intent": "sides",
    "timeline": "timeline",
    "budget": "budget",
    "preapproval": "preapproved",
    "bedrooms_areas": "bedrooms_areas",
    "motivation": "motivation",
    "condition": "condition",
    "price": "price_expectation",
    "property_details": "property_details",
}
"""The slot each qualification question asks for (``reply.asked_slot`` on the reply span)."""


def mark_reply(
    *, answered: str = "", asked: str | None = None, acknowledged: Sequence[str] = ()
) -> dict[str, Any]:
    """Record on the current (reply node) span what the reply does: answers, asks, acknowledges.

    Args:
        answered: the topic of the lead's question answered first (``value``, ``process``...).
        asked: the question asked (a key of :data:`QUESTION_SLOTS`), if any.
        acknowledged: the slot names the acknowledgement clause repeated back.

    Returns:
        The state update ``{"reply_marks": {...}}`` (read into :class:`BotOutcome`).
    """
    marks = {
        "answered": answered,
        "asked": QUESTION_SLOTS.get(asked, asked) if asked else None,
        "acknowledged": list(acknowledged),
    }
    span = trace.get_current_span()
    if not span.is_recording():
        return {"reply_marks": marks}
    # Always set (empty: the reply answered no question), so the first reply of a turn is graded.
    span.set_attribute("reply.answered", answered)
    if asked:
        span.set_attribute("reply.asked_slot", QUESTION_SLOTS.get(asked, asked))
    if acknowledged:
        span.set_attribute("reply.acknowledged", list(acknowledged))
    return {"reply_marks": marks}


BOOKING_ATTEMPTS = 3
"""Free slots tried, in order, when GHL refuses a booking because the slot was taken meanwhile."""

S = TypeVar("S", bound=CommonState)


def conversation_state(schema: type[S], turn: BotTurn, bot: BotName, default_step: str) -> S:
    """The input state of a conversation run of ``bot``.

    Args:
        schema: the graph's state type (``BuyerState``...).
        turn: the contact, the conversation and where to answer.
        bot: whose memory (``contact.state[bot]``) the run continues; also names
            the id key (``<bot>_id``).
        default_step: ``current_step`` when the memory has none yet.

    Returns:
        The state keys every graph shares plus the bot's id key.
    """
    contact = turn.contact
    memory = dict(contact.state.get(bot, {}))
    values: dict[str, Any] = {
        "contact_id": contact.contact_id,
        f"{bot}_id": contact.contact_id,
        "current_step": str(memory.get("current_step", default_step)),
        "turns": list(turn.turns),
        "channel": turn.channel,
        "event_key": turn.event_key,
        "handoff_from": turn.handoff_from,
        "allow_handoff": turn.allow_handoff,
        "memory": memory,
        "replies": [],
        "stored_slots": list(turn.slots),
    }
    return schema(**values)


async def after_analysis(state: Mapping[str, Any]) -> str:
    """The buyer and seller graphs' route after their analysis: ``handoff`` or ``qualify``.

    Routing functions are coroutines: LangGraph's runtime (``graph.ainvoke``) would run a
    plain one in a worker thread.
    """
    return "handoff" if state.get("handoff") else "qualify"


def bot_outcome(bot: BotName, final: Mapping[str, Any], default_step: str) -> BotOutcome:
    """What a finished graph run of ``bot`` decided, with its step saved into the memory.

    Args:
        bot: the bot that ran.
        final: the graph's final state.
        default_step: ``current_step`` when the run set none.

    Returns:
        The outcome; its ``path`` is ``handoff`` whenever the run asked for one.
    """
    memory = dict(final.get("memory", {}))
    memory["current_step"] = final.get("current_step", default_step)
    return BotOutcome(
        bot=bot,
        temperature=str(final.get("temperature", "cold")),
        memory=memory,
        handoff=final.get("handoff"),
        replies=list(final.get("replies", [])),
        path="handoff" if final.get("handoff") else str(final.get("path", "")),
        scores=dict(final.get("scores", {})),
        dialogue=final.get("dialogue"),
        reply_marks=dict(final.get("reply_marks") or {}),
        question_topic=getattr(final.get("intent"), "question_topic", None),
    )


async def read_with_model(filler: SlotFiller | None, turns: Sequence[Any], intent: LeadIntent) -> LeadIntent:
    """LLM mode: the model's slots in place of the pipeline's, when it gave them.

    The model fills the same slots through structured output (its ``chat``
    span sits under the calling node). Without a model, or when it fails, times
    out or answers off-schema, the pipeline's reading stands: same request, no error.

    Args:
        filler: the configured model, or None (no LLM).
        turns: the conversation, oldest first.
        intent: the pipeline's reading.

    Returns:
        The intent with the model's facts, ``slots_filled`` and intent act.
    """
    if filler is None:
        return intent
    slots = await filler.fill_slots([(t.direction, t.body or "") for t in turns])
    if slots is None:
        return intent
    names = {f.name for f in fields(PropertyFacts)}
    updates: dict[str, Any] = {}
    for name, value in slots.items():
        if name in names and value not in (None, [], False):
            updates[name] = tuple(value) if name == "areas" else value
    acts = intent.acts if slots["intent"] in intent.acts else (*intent.acts, slots["intent"])
    return replace(
        intent,
        facts=replace(intent.facts, **updates),
        slots_filled=tuple(slots["filled_now"]),
        acts=acts,
    )


def understand(state: Mapping[str, Any], intent: LeadIntent, bot: BotName) -> Dialogue:
    """Merge the decoded conversation into the stored slots and record it on the current span.

    Called by every bot's analyze node (see :func:`.dialogue.record_understanding`).

    Args:
        state: the graph state (its ``stored_slots``).
        intent: the decoded conversation.
        bot: the bot running.

    Returns:
        The dialogue state of this turn.
    """
    dialogue = merge(state.get("stored_slots", []), intent, bot)
    record_understanding(trace.get_current_span(), intent, dialogue)
    return dialogue


def topic_answer(intent: LeadIntent, comps: CompsSource | None, areas: Sequence[str]) -> tuple[str, str]:
    """The answer to the lead's own question in the latest message, other than a value question.

    A market question is answered from the comps data (recent sales and their
    median price in the lead's newest area, or across all the data).

    Args:
        intent: the decoded conversation (``question_topic``).
        comps: comparable sales (market questions), or None.
        areas: the areas the lead named, the newest last.

    Returns:
        ``(topic, text)``; ``("", "")`` when there is nothing to answer here
        (no question, or a value question, which gets the CMA).
    """
    topic = intent.question_topic
    if not topic or topic == "value":
        return "", ""
    if topic == "market":
        sales = comps.comps if comps is not None else ()
        area = next((a for a in reversed(areas) if any(c.area == a for c in sales)), None)
        chosen = [c for c in sales if area is None or c.area == area]
        if not chosen:
            return topic, render("answer_market_unknown")
        median = int(statistics.median(c.sale_price for c in chosen))
        return topic, render("answer_market", comp_count=len(chosen), area=area or "our area", median=median)
    if topic in ("process", "fees", "availability"):
        return topic, render(f"answer_{topic}")
    return topic, render("answer_other")


def address_new_objection(intent: LeadIntent, memory: dict[str, Any], parts: list[str]) -> list[str]:
    """Answer the first objection not answered before, and remember all new ones as answered.

    Args:
        intent: the decoded conversation.
        memory: the bot's memory (``objections_addressed`` is updated in place).
        parts: the reply so far; the answer is appended.

    Returns:
        The new objections (empty when there are none).
    """
    handled = memory.get("objections_addressed", [])
    objections = [o for o in intent.objections if o not in handled]
    if objections:
        parts.append(objection_text(objections[0]))
        memory["objections_addressed"] = [*handled, *objections]
    return objections


def next_question(missing: Sequence[str], asked: Sequence[str]) -> str | None:
    """The first missing question not asked yet; the first missing one when all were asked.

    Args:
        missing: unanswered questions, in asking order.
        asked: questions asked already.

    Returns:
        The question to ask, or None when nothing is missing.
    """
    for question in missing:
        if question not in asked:
            return question
    # Everything still missing was asked once already: ask the first again rather than stall.
    return missing[0] if missing else None


def cma_memory(result: CMAResult, subject: SubjectProperty) -> dict[str, Any]:
    """A CMA result as the JSON a bot keeps in its memory (and the day-14 e-mail reads)."""
    return {
        "estimate": result.estimate,
        "low": result.low,
        "high": result.high,
        "price_per_sqft": round(result.price_per_sqft, 2),
        "comp_count": len(result.comps),
        "area": subject.area,
        "beds": subject.beds,
        "sqft": subject.sqft,
        "method": result.method,
    }


def cma_text(cma: dict[str, Any]) -> str:
    """The CMA summary reply for a CMA kept in a bot's memory.

    Args:
        cma: ``estimate``, ``low``, ``high``, ``comp_count`` and ``area``.

    Returns:
        The rendered ``cma_summary`` text.
    """
    return render(
        "cma_summary",
        area=cma.get("area") or "your area",
        estimate=cma["estimate"],
        low=cma["low"],
        high=cma["high"],
        comp_count=cma["comp_count"],
    )


def cma_reply(
    comps: CompsSource, facts: PropertyFacts, memory: dict[str, Any]
) -> tuple[str, str, CMAResult | None]:
    """Estimate the contact's home from the comps, or say what is missing.

    A CMA found is saved as ``memory["cma"]``.

    Args:
        comps: comparable sales.
        facts: what the contact told us (the newest area, beds, sqft, baths).
        memory: the bot's memory.

    Returns:
        ``(template purpose, reply text, result)``: ``cma_summary`` with the result,
        ``cma_unavailable`` (no comps for the area) or ``cma_need_details`` (no area
        or size yet), both with None.
    """
    area = facts.areas[-1] if facts.areas else None
    if not (area and facts.sqft):
        return "cma_need_details", render("cma_need_details"), None
    subject = SubjectProperty(area=area, beds=facts.bedrooms, sqft=facts.sqft, baths=facts.bathrooms)
    result = comps.estimate(subject)
    if result is None:
        return "cma_unavailable", render("cma_unavailable", area=area), None
    memory["cma"] = cma_memory(result, subject)
    return "cma_summary", cma_text(memory["cma"]), result


@dataclass(frozen=True, slots=True)
class Booking:
    """What a booking node books: ``what`` names its memory key, template and steps.

    Attributes:
        bot: ``buyer`` or ``seller`` (the idempotency key's part).
        what: ``showing`` or ``appointment``: memory ``<what>_booked``, template
            ``<what>_confirmed``, step ``<what>_booked`` or ``<what>_requested``.
        book_key: the booking's own key suffix (``book_showing``...).
        title: the calendar entry's title.
    """

    bot: str
    what: str
    book_key: str
    title: str


async def book_first_slot(
    state: Mapping[str, Any],
    booking: Booking,
    *,
    outbound: Outbound,
    ghl: GHLClient,
    calendar_id: str,
    timezone: str,
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    """Book the first free slot from 20 hours to 8 days ahead and send the reply with its time.

    With no free slot (or every tried slot taken meanwhile) the draft reply goes
    out with a "no slots" note and the step is ``<what>_requested``; when GHL
    cannot be reached the reply says the slot is being reserved.

    Args:
        state: the graph state (``contact_id``, ``event_key``, ``channel``,
            ``memory``, ``replies``, ``draft_reply``).
        booking: what is booked.
        outbound: the outbox sender.
        ghl: the GHL client (free slots).
        calendar_id: the calendar booked on.
        timezone: the calendar's time zone.
        clock: the current time (UTC).

    Returns:
        The node's state update.
    """
    memory = dict(state.get("memory", {}))
    now = clock()
    slots = await ghl.get_free_slots(
        calendar_id, now + timedelta(hours=20), now + timedelta(days=8), timezone
    )
    draft = state.get("draft_reply", "")
    key = f"{state.get('event_key', '')}:{booking.bot}"
    booked_key = f"{booking.what}_booked"
    step = f"{booking.what}_requested"
    note = render("no_slots")
    # Another contact may take a slot between the free-slot query and the booking: GHL then
    # refuses it for good and the next slot is tried. Only what GHL accepted is confirmed.
    for attempt, slot in enumerate(upcoming_slots(slots, now)[:BOOKING_ATTEMPTS]):
        suffix = booking.book_key if attempt == 0 else f"{booking.book_key}:{attempt + 1}"
        item = await outbound.book(
            state["contact_id"],
            key=f"{key}:{suffix}",
            calendar_id=calendar_id,
            start_time=slot,
            title=booking.title,
        )
        if item.status == "failed":
            continue
        if item.status == "sent":
            memory[booked_key] = slot.isoformat()
            note = render(f"{booking.what}_confirmed", slot=format_slot(slot, timezone))
            step = booked_key
        else:  # GHL is unreachable: the outbox keeps trying this slot
            memory[f"{booking.what}_pending"] = slot.isoformat()
            note = render("booking_pending", slot=format_slot(slot, timezone))
        break
    text = " ".join(p for p in (draft, note) if p)
    await outbound.reply(
        state["contact_id"],
        state.get("channel", "SMS"),
        key=f"{key}:reply",
        purpose=step,
        context={"slot": memory.get(booked_key)},
        fallback=text,
    )
    return {
        "memory": memory,
        "replies": [*state.get("replies", []), f"{key}:reply"],
        "current_step": step,
        "path": step,
    }
