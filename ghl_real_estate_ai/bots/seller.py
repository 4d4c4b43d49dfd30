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

from langgraph.graph import END, START, StateGraph
from opentelemetry import trace

from ghl_real_estate_ai.bots.cma import CompsSource
from ghl_real_estate_ai.bots.intent_decoder import BUYER_WEIGHTS, analyze_lead
from ghl_real_estate_ai.bots.outbound import Outbound, format_slot, is_affirmative, last_inbound_text
from ghl_real_estate_ai.bots.runner import (
    Booking,
    address_new_objection,
    book_first_slot,
    bot_outcome,
    cma_reply,
    conversation_state,
    next_question,
)
from ghl_real_estate_ai.bots.scoring import compute_frs, compute_pcs, temperature_from_frs
from ghl_real_estate_ai.bots.state import BotOutcome, BotTurn, HandoffRequest, SellerState
from ghl_real_estate_ai.bots.templates import render
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.handoff import THRESHOLDS
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
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
    ) -> None:
        """Build the bot and compile its graph.

        Args:
            outbound: replies and bookings, through the outbox.
            ghl: the GHL client (free slots).
            comps: comparable sales, for a CMA once the seller is qualified.
            calendar_id: the GHL calendar CMA appointments are booked on.
            clock: the current time (UTC).
            timezone: the calendar's time zone.
        """
        self.outbound = outbound
        self.ghl = ghl
        self.comps = comps
        self.calendar_id = calendar_id
        self.timezone = timezone
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.graph = self._build().compile()

    def _build(self) -> StateGraph[SellerState]:
        graph: StateGraph[SellerState] = StateGraph(SellerState)
        graph.add_node("analyze_seller_intent", self.analyze_seller_intent)
        graph.add_node("qualify_seller", self.qualify_seller)
        graph.add_node("generate_seller_response", self.generate_seller_response)
        graph.add_node("schedule_cma_appointment", self.schedule_cma_appointment)
        graph.add_edge(START, "analyze_seller_intent")
        graph.add_conditional_edges(
            "analyze_seller_intent",
            lambda s: "handoff" if s.get("handoff") else "qualify",
            {"handoff": END, "qualify": "qualify_seller"},
        )
        graph.add_edge("qualify_seller", "generate_seller_response")
        graph.add_conditional_edges(
            "generate_seller_response",
            lambda s: "book" if s.get("book_appointment") else "done",
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
            return bot_outcome("seller", await self.graph.ainvoke(state), "qualifying")

    # -- nodes -------------------------------------------------------------------
    @trace_workflow_node(BOT, "analyze_seller_intent")
    async def analyze_seller_intent(self, state: SellerState) -> dict[str, Any]:
        """Read the conversation, compute FRS and PCS, and spot buyer intent."""
        turns = state.get("turns", [])
        intent = analyze_lead(turns, known_areas=self.comps.areas())
        frs = compute_frs(intent)
        pcs = compute_pcs(turns, intent)
        span = trace.get_current_span()
        span.set_attribute("seller.frs_score", float(frs.total))
        span.set_attribute("seller.pcs_score", float(pcs.total))
        update: dict[str, Any] = {
            "intent": intent,
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
        ):
            update["handoff"] = HandoffRequest(
                "seller", "buyer", round(intent.buyer_confidence, 3), "buyer_intent_detected"
            )
            update["current_step"] = "handoff"
        return update

    @trace_workflow_node(BOT, "qualify_seller")
    async def qualify_seller(self, state: SellerState) -> dict[str, Any]:
        """Check the four questions and set the seller's temperature."""
        facts = state["intent"].facts
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
        memory = dict(state.get("memory", {}))
        asked: list[str] = list(memory.get("questions_asked", []))
        missing = state.get("missing", [])
        parts: list[str] = []
        source = state.get("handoff_from")
        if source:
            parts.append(render(f"handoff_{source}_to_seller"))
        address_new_objection(intent, memory, parts)
        hot = state.get("temperature") == "hot"
        booked = memory.get("appointment_booked")
        said_yes = bool(memory.get("appointment_offered")) and is_affirmative(
            last_inbound_text(state.get("turns", []))
        )
        if hot and not booked and (intent.facts.wants_appointment or said_yes):
            return {
                "draft_reply": " ".join(parts),
                "book_appointment": True,
                "memory": memory,
                "path": "booking",
            }
        question = next_question(missing, asked)
        if question is not None:
            parts.append(render(f"seller_q_{question}"))
            if question not in asked:
                asked.append(question)
            path = f"question:{question}"
        elif booked:
            slot = format_slot(datetime.fromisoformat(booked), self.timezone)
            parts.append(render("appointment_confirmed", slot=slot))
            path = "appointment_booked"
        elif hot:
            parts.append(render("seller_qualified"))
            memory["appointment_offered"] = True
            path = "offer_appointment"
        else:
            # Qualified but the timeline is beyond the window: a CMA keeps them engaged.
            parts.append(cma_reply(self.comps, intent.facts, memory)[1])
            path = "cma" if memory.get("cma") else "cma_need_details"
        memory["questions_asked"] = asked
        trace.get_current_span().set_attribute("seller.reply_path", path)
        key = f"{state.get('event_key', '')}:seller:reply"
        await self.outbound.reply(
            state["contact_id"],
            state.get("channel", "SMS"),
            key=key,
            purpose=path,
            context={"missing": missing, "temperature": state.get("temperature"), "cma": memory.get("cma")},
            fallback=" ".join(parts),
        )
        return {
            "memory": memory,
            "replies": [*state.get("replies", []), key],
            "book_appointment": False,
            "path": path,
        }

    @trace_workflow_node(BOT, "schedule_cma_appointment")
    async def schedule_cma_appointment(self, state: SellerState) -> dict[str, Any]:
        """Book the first free slot for a CMA appointment and confirm it."""
        return await book_first_slot(
            state,
            _CMA_APPOINTMENT,
            outbound=self.outbound,
            ghl=self.ghl,
            calendar_id=self.calendar_id,
            timezone=self.timezone,
            clock=self.clock,
        )
