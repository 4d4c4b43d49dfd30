"""The Seller bot: a LangGraph ``StateGraph`` that qualifies a seller and books a CMA appointment.

Graph (``SellerBot.graph``, compiled once per bot)::

    analyze_seller_intent -> qualify_seller -> generate_seller_response -> schedule_cma_appointment
                          \\-> END (a seller->buyer handoff decision)     \\-> END

* ``analyze_seller_intent`` reads the conversation and computes FRS and PCS;
  it asks for a handoff to the buyer bot when buyer confidence reaches 0.6 and
  the newest message itself carries a buyer signal.
* ``qualify_seller`` checks the four questions (motivation, timeline,
  condition, price). The seller is ``hot`` when all four are answered and the
  timeline fits the 30-45 day window (45 days or less); until then the FRS
  temperature applies, capped at ``warm``.
* ``generate_seller_response`` asks the next question, or offers a CMA
  appointment to a hot seller; when a hot seller asks for (or accepts) one,
  ``schedule_cma_appointment`` books the first free GHL slot.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from langgraph.graph import END, START
from opentelemetry import trace

from ghl_real_estate_ai.bots.cma import CompsSource
from ghl_real_estate_ai.bots.dialogue import (
    Dialogue,
    acknowledgement,
    compose,
    is_negative,
    sent_texts,
    turn_language,
)
from ghl_real_estate_ai.bots.graph import BotGraph
from ghl_real_estate_ai.bots.intent_decoder import BUYER_WEIGHTS, LeadIntent, PropertyFacts, analyze_lead
from ghl_real_estate_ai.bots.outbound import Outbound, format_slot, is_affirmative, last_inbound_text
from ghl_real_estate_ai.bots.runner import (
    Booking,
    address_new_objection,
    after_analysis,
    book_first_slot,
    bot_outcome,
    cma_reply,
    conversation_state,
    mark_reply,
    next_question,
    read_with_model,
    topic_answer,
    understand,
)
from ghl_real_estate_ai.bots.scoring import compute_frs, compute_pcs, temperature_from_frs
from ghl_real_estate_ai.bots.state import BotOutcome, BotTurn, HandoffRequest, SellerState
from ghl_real_estate_ai.bots.templates import phrasings, render, replying_in
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.handoff import THRESHOLDS
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.llm.base import SlotFiller
from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span, trace_workflow_node

__all__ = ["SELLER_QUESTIONS", "TIMELINE_WINDOW_DAYS", "SellerBot"]

BOT = "seller_bot"
SELLER_QUESTIONS: tuple[str, ...] = ("motivation", "timeline", "condition", "price")
"""The four seller qualification questions, in asking order."""
TIMELINE_WINDOW_DAYS = 45
"""A seller whose timeline is within this many days "works" (the 30-45 day window)."""
_CMA_APPOINTMENT = Booking(bot="seller", what="appointment", book_key="book_cma", title="CMA appointment")


class SellerBot:
    """The Seller bot; build once, run per message (:meth:`process_seller_conversation`)."""

    name = "seller"

    def __init__(
        self,
        outbound: Outbound,
        ghl: GHLClient,
        comps: CompsSource,
        *,
        calendar_id: str,
        clock: Callable[[], datetime] | None = None,
        timezone: str = "America/Los_Angeles",
        slot_filler: SlotFiller | None = None,
    ) -> None:
        """Build the bot and compile its graph.

        Args:
            outbound: replies and bookings, through the outbox.
            ghl: the GHL client (free slots).
            comps: comparable sales, for a CMA once the seller is qualified.
            calendar_id: the GHL calendar CMA appointments are booked on.
            clock: the current time (UTC).
            slot_filler: the LLM that fills the dialogue slots (LLM mode), or None.
            timezone: the calendar's time zone.
        """
        self.outbound = outbound
        self.ghl = ghl
        self.comps = comps
        self.calendar_id = calendar_id
        self.timezone = timezone
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.slot_filler = slot_filler
        self.graph = self._build().compile()

    def _build(self) -> BotGraph[SellerState]:
        graph = BotGraph(SellerState)
        graph.add_node("analyze_seller_intent", self.analyze_seller_intent)
        graph.add_node("qualify_seller", self.qualify_seller)
        graph.add_node("generate_seller_response", self.generate_seller_response)
        graph.add_node("schedule_cma_appointment", self.schedule_cma_appointment)
        graph.add_edge(START, "analyze_seller_intent")
        graph.add_conditional_edges(
            "analyze_seller_intent",
            after_analysis,
            {"handoff": END, "qualify": "qualify_seller"},
        )
        graph.add_edge("qualify_seller", "generate_seller_response")
        graph.add_conditional_edges(
            "generate_seller_response",
            _after_reply,
            {"book": "schedule_cma_appointment", "done": END},
        )
        graph.add_edge("schedule_cma_appointment", END)
        return graph

    async def process_seller_conversation(self, turn: BotTurn) -> BotOutcome:
        """Answer the newest message of a seller (span ``seller_bot.process_seller_conversation``).

        Args:
            turn: the contact, the conversation and where to answer.

        Returns:
            What the bot decided and sent.
        """
        contact = turn.contact
        async with async_workflow_span(BOT, "process_seller_conversation", contact_id=contact.contact_id):
            state = conversation_state(SellerState, turn, "seller", "qualifying")
            with replying_in(turn_language(turn.turns, turn.slots)):
                final = await self.graph.run(state)
            return bot_outcome("seller", final, "qualifying")

    # -- nodes -------------------------------------------------------------------
    @trace_workflow_node(BOT, "analyze_seller_intent")
    async def analyze_seller_intent(self, state: SellerState) -> dict[str, Any]:
        """Read the conversation, compute FRS and PCS, and spot buyer intent."""
        turns = state.get("turns", [])
        intent = analyze_lead(turns, known_areas=self.comps.areas())
        intent = await read_with_model(self.slot_filler, state.get("turns", []), intent)
        frs = compute_frs(intent)
        pcs = compute_pcs(turns, intent)
        span = trace.get_current_span()
        span.set_attribute("seller.frs_score", float(frs.total))
        span.set_attribute("seller.pcs_score", float(pcs.total))
        dialogue = understand(state, intent, "seller")
        update: dict[str, Any] = {
            "intent": intent,
            "dialogue": dialogue,
            "temperature": temperature_from_frs(frs.total),
            "scores": {
                "frs": float(frs.total),
                "pcs": float(pcs.total),
                "buyer_confidence": intent.buyer_confidence,
                "seller_confidence": intent.seller_confidence,
            },
        }
        threshold = THRESHOLDS[("seller", "buyer")]
        if (
            state.get("allow_handoff", True)
            and intent.buyer_confidence >= threshold
            # As for buyer->seller: the newest message itself must be about buying.
            and bool(set(intent.latest_signals) & set(BUYER_WEIGHTS))
            # A buyer who must sell first stays here until the listing visit is booked.
            and not (
                dialogue.get("contact", "must_sell_first") and not dialogue.get("contact", "listing_booked")
            )
        ):
            update["handoff"] = HandoffRequest(
                "seller", "buyer", round(intent.buyer_confidence, 3), "buyer_intent_detected"
            )
            update["current_step"] = "handoff"
        return update

    @trace_workflow_node(BOT, "qualify_seller")
    async def qualify_seller(self, state: SellerState) -> dict[str, Any]:
        """Check the four questions and set the seller's temperature."""
        facts = _facts(state)
        answered = {
            "motivation": facts.motivation is not None,
            "timeline": facts.timeline_days is not None,
            "condition": facts.condition is not None,
            "price": facts.price_expectation is not None,
        }
        missing = [q for q in SELLER_QUESTIONS if not answered[q]]
        timeline_works = facts.timeline_days is not None and facts.timeline_days <= TIMELINE_WINDOW_DAYS
        if not missing and timeline_works:
            temperature = "hot"
        else:
            frs_temperature = temperature_from_frs(state.get("scores", {}).get("frs", 0.0))
            # Not fully qualified yet: never hot, whatever the partial FRS says.
            temperature = "warm" if frs_temperature == "hot" else frs_temperature
        trace.get_current_span().set_attribute(
            "seller.questions_answered", len(SELLER_QUESTIONS) - len(missing)
        )
        return {
            "missing": missing,
            "temperature": temperature,
            "current_step": "qualified" if not missing else "qualifying",
        }

    @trace_workflow_node(BOT, "generate_seller_response")
    async def generate_seller_response(self, state: SellerState) -> dict[str, Any]:
        """Write the reply; send it now, or leave it to ``schedule_cma_appointment`` when booking."""
        intent = state["intent"]
        dialogue = state.get("dialogue") or Dialogue()
        facts = _facts(state)
        turns = state.get("turns", [])
        memory = dict(state.get("memory", {}))
        asked: list[str] = list(memory.get("questions_asked", []))
        missing = state.get("missing", [])
        parts: list[str] = []
        topic = ""
        if intent.question_topic == "value" or "value_question" in intent.latest_signals:
            # Their own question first: what the home is worth, from the comps.
            topic = "value"
            _, value_text, _ = cma_reply(self.comps, facts, memory)
            parts.append(value_text)
        else:
            topic, answer = topic_answer(intent, self.comps, facts.areas)
            if answer:
                parts.append(answer)
        source = state.get("handoff_from")
        if source:
            parts.append(render(f"handoff_{source}_to_seller"))
        address_new_objection(intent, memory, parts)
        hot = state.get("temperature") == "hot"
        booked = memory.get("appointment_booked")
        said_yes = bool(memory.get("appointment_offered")) and is_affirmative(last_inbound_text(turns))
        ack, acked = acknowledgement(dialogue)
        negative = is_negative(last_inbound_text(turns), intent)
        if hot and not booked and (intent.facts.wants_appointment or said_yes):
            marks = mark_reply(answered=topic, acknowledged=acked)
            return {
                "draft_reply": compose(answer=" ".join(parts), ack=ack, sent=set(), negative=negative),
                "book_appointment": True,
                "memory": memory,
                "path": "booking",
                **marks,
            }
        question = next_question(missing, asked)
        body: list[str]
        if question is not None:
            body = phrasings(f"seller_q_{question}")
            if question not in asked:
                asked.append(question)
            path = f"question:{question}"
        elif booked:
            slot = format_slot(datetime.fromisoformat(booked), self.timezone)
            body = [render("appointment_confirmed", slot=slot)]
            path = "appointment_booked"
        elif hot:
            body = [render("seller_qualified")]
            memory["appointment_offered"] = True
            path = "offer_appointment"
        elif topic == "value":
            body = []  # the CMA just went out as the answer
            path = "cma" if memory.get("cma") else "cma_need_details"
        else:
            # Qualified but the timeline is beyond the window: a CMA keeps them engaged.
            purpose, cma_text_now, _ = cma_reply(self.comps, facts, memory)
            body = phrasings(purpose) if purpose == "cma_need_details" else [cma_text_now]
            path = "cma" if memory.get("cma") else "cma_need_details"
        text = compose(answer=" ".join(parts), ack=ack, body=body, sent=sent_texts(turns), negative=negative)
        memory["questions_asked"] = asked
        trace.get_current_span().set_attribute("seller.reply_path", path)
        marks = mark_reply(answered=topic, asked=question, acknowledged=acked)
        key = f"{state.get('event_key', '')}:seller:reply"
        await self.outbound.reply(
            state["contact_id"],
            state.get("channel", "SMS"),
            key=key,
            purpose=path,
            context={
                "missing": missing,
                "temperature": state.get("temperature"),
                "cma": memory.get("cma"),
                "slots": dialogue.context(),
            },
            fallback=text,
        )
        return {
            "memory": memory,
            "replies": [*state.get("replies", []), key],
            **marks,
            "book_appointment": False,
            "path": path,
        }

    @trace_workflow_node(BOT, "schedule_cma_appointment")
    async def schedule_cma_appointment(self, state: SellerState) -> dict[str, Any]:
        """Book the first free slot for a CMA appointment and confirm it.

        A two-sided lead (one who also buys) goes back to the buyer bot once the
        listing visit is booked: the run asks for the seller->buyer handoff.
        """
        update = await book_first_slot(
            state,
            _CMA_APPOINTMENT,
            outbound=self.outbound,
            ghl=self.ghl,
            calendar_id=self.calendar_id,
            timezone=self.timezone,
            clock=self.clock,
        )
        dialogue = state.get("dialogue")
        if dialogue is not None and update["memory"].get("appointment_booked") and dialogue.two_sided:
            dialogue.set("contact", "listing_booked", True)
            update["dialogue"] = dialogue
            intent: LeadIntent = state["intent"]
            # The buying intent this lead stated before the handoff here.
            confidence = max(intent.buyer_confidence, intent.intent_scores.get("buy", 0.0))
            if state.get("allow_handoff", True) and confidence >= THRESHOLDS[("seller", "buyer")]:
                update["handoff"] = HandoffRequest("seller", "buyer", round(confidence, 3), "listing_booked")
        return update


def _facts(state: SellerState) -> PropertyFacts:
    """The selling side's facts: the stored sell slots over what the decoder read."""
    intent: LeadIntent = state["intent"]
    dialogue = state.get("dialogue")
    return dialogue.facts("sell", intent.facts) if dialogue is not None else intent.facts


def _selling_first(dialogue: Dialogue) -> bool:
    """A buyer who must sell first, whose listing visit is not booked yet."""
    return bool(dialogue.get("contact", "must_sell_first")) and not dialogue.get("contact", "listing_booked")


# A coroutine, as runner.after_analysis: LangGraph runs a plain routing function in a worker thread.
async def _after_reply(state: SellerState) -> str:
    return "book" if state.get("book_appointment") else "done"
