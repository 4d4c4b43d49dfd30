"""The Buyer bot: a LangGraph ``StateGraph`` that qualifies a buyer and books showings.

Graph (``BuyerBot.graph``, compiled once per bot)::

    analyze_buyer_intent -> qualify_buyer -> generate_buyer_response -> schedule_showing
                         \\-> END (a buyer->seller handoff decision)    \\-> END

* ``analyze_buyer_intent`` reads the conversation, scores buyer readiness
  (0-100, its temperature on the FRS scale) and asks for a handoff to the seller
  bot when seller confidence reaches 0.8 and the newest message itself carries a
  seller signal.
* ``qualify_buyer`` finds the unanswered questions (budget, pre-approval,
  bedrooms/areas, timeline) and the affordable price: a 43 % debt-to-income
  ceiling on the monthly payment, 20 % down, a 30-year loan at
  ``MORTGAGE_RATE`` (:func:`affordable_price`).
* ``generate_buyer_response`` asks the next question, notes a budget above what
  the income supports, or offers a showing; when the buyer is qualified and asks
  for (or accepts) a showing, ``schedule_showing`` books the first free GHL slot
  and sends the reply with its time.
"""

from __future__ import annotations

import math
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
from ghl_real_estate_ai.bots.intent_decoder import SELLER_WEIGHTS, LeadIntent, PropertyFacts, analyze_lead
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
from ghl_real_estate_ai.bots.scoring import buyer_readiness, temperature_from_frs
from ghl_real_estate_ai.bots.state import BotOutcome, BotTurn, BuyerState, HandoffRequest
from ghl_real_estate_ai.bots.templates import phrasings, render, replying_in
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.handoff import THRESHOLDS
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.llm.base import SlotFiller
from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span, trace_workflow_node

__all__ = [
    "BUYER_QUESTIONS",
    "DOWN_PAYMENT_SHARE",
    "MAX_DTI",
    "BuyerBot",
    "affordable_price",
]

BOT = "buyer_bot"
BUYER_QUESTIONS: tuple[str, ...] = ("budget", "preapproval", "bedrooms_areas", "timeline")
"""The buyer qualification questions, in asking order."""
MAX_DTI = 0.43
"""Highest share of gross monthly income the mortgage payment may take."""
DOWN_PAYMENT_SHARE = 0.20
"""Down payment assumed (and required at least) as a share of the price."""
LOAN_YEARS = 30
_SHOWING = Booking(bot="buyer", what="showing", book_key="book_showing", title="Home showing")


def affordable_price(
    monthly_income: int | None,
    down_payment: int | None,
    annual_rate: float,
    *,
    max_dti: float = MAX_DTI,
    down_share: float = DOWN_PAYMENT_SHARE,
    years: int = LOAN_YEARS,
) -> int | None:
    """The highest price a buyer can afford, or None when the income is unknown.

    The monthly principal-and-interest payment may take ``max_dti`` of the gross
    monthly income; the loan that payment carries over ``years`` at
    ``annual_rate`` plus the down payment gives the price. With no known down
    payment it is assumed to be ``down_share`` of the price; a known one caps the
    price at ``down_payment / down_share``.

    Args:
        monthly_income: gross monthly income in dollars.
        down_payment: cash available for the down payment, in dollars.
        annual_rate: yearly mortgage rate (0.07 = 7 %).
        max_dti: highest payment-to-income share.
        down_share: minimum down payment share.
        years: loan term.

    Returns:
        The price in whole dollars.

    Raises:
        ValueError: the rate or a share is out of range.
    """
    if not 0 < annual_rate < 1:
        raise ValueError(f"annual_rate must be between 0 and 1 (0.07 = 7 %), got {annual_rate!r}")
    if not 0 < max_dti < 1 or not 0 < down_share < 1:
        raise ValueError(f"max_dti and down_share must be between 0 and 1, got {max_dti!r}, {down_share!r}")
    if monthly_income is None or monthly_income <= 0:
        return None
    payment = monthly_income * max_dti
    r = annual_rate / 12
    n = years * 12
    loan = payment * (1 - math.pow(1 + r, -n)) / r
    if down_payment is None or down_payment <= 0:
        return int(loan / (1 - down_share))
    return int(min(down_payment / down_share, loan + down_payment))


class BuyerBot:
    """The Buyer bot; build once, run per message (:meth:`process_buyer_conversation`)."""

    name = "buyer"

    def __init__(
        self,
        outbound: Outbound,
        ghl: GHLClient,
        *,
        calendar_id: str,
        mortgage_rate: float,
        clock: Callable[[], datetime] | None = None,
        timezone: str = "America/Los_Angeles",
        comps: CompsSource | None = None,
        slot_filler: SlotFiller | None = None,
    ) -> None:
        """Build the bot and compile its graph.

        Args:
            outbound: replies and bookings, through the outbox.
            ghl: the GHL client (free slots are read directly; bookings go through the outbox).
            calendar_id: the GHL calendar showings are booked on.
            mortgage_rate: annual rate for affordability (settings.mortgage_rate).
            clock: the current time (UTC).
            slot_filler: the LLM that fills the dialogue slots (LLM mode), or None.
            timezone: the calendar's time zone for free-slot queries.
            comps: comparable sales (answers to market questions).
        """
        self.comps = comps
        self.outbound = outbound
        self.ghl = ghl
        self.calendar_id = calendar_id
        self.mortgage_rate = mortgage_rate
        self.timezone = timezone
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.slot_filler = slot_filler
        self.graph = self._build().compile()

    def _build(self) -> BotGraph[BuyerState]:
        graph = BotGraph(BuyerState)
        graph.add_node("analyze_buyer_intent", self.analyze_buyer_intent)
        graph.add_node("qualify_buyer", self.qualify_buyer)
        graph.add_node("generate_buyer_response", self.generate_buyer_response)
        graph.add_node("schedule_showing", self.schedule_showing)
        graph.add_edge(START, "analyze_buyer_intent")
        graph.add_conditional_edges(
            "analyze_buyer_intent",
            after_analysis,
            {"handoff": END, "qualify": "qualify_buyer"},
        )
        graph.add_edge("qualify_buyer", "generate_buyer_response")
        graph.add_conditional_edges(
            "generate_buyer_response",
            _after_reply,
            {"book": "schedule_showing", "done": END},
        )
        graph.add_edge("schedule_showing", END)
        return graph

    async def process_buyer_conversation(self, turn: BotTurn) -> BotOutcome:
        """Answer the newest message of a buyer (span ``buyer_bot.process_buyer_conversation``).

        Args:
            turn: the contact, the conversation and where to answer.

        Returns:
            What the bot decided and sent.
        """
        contact = turn.contact
        async with async_workflow_span(BOT, "process_buyer_conversation", contact_id=contact.contact_id):
            state = conversation_state(BuyerState, turn, "buyer", "qualifying")
            with replying_in(turn_language(turn.turns, turn.slots)):
                final = await self.graph.run(state)
            return bot_outcome("buyer", final, "qualifying")

    # -- nodes -------------------------------------------------------------------
    @trace_workflow_node(BOT, "analyze_buyer_intent")
    async def analyze_buyer_intent(self, state: BuyerState) -> dict[str, Any]:
        """Read the conversation, score readiness and spot seller intent."""
        intent = analyze_lead(state.get("turns", []))
        intent = await read_with_model(self.slot_filler, state.get("turns", []), intent)
        readiness = float(buyer_readiness(intent))
        trace.get_current_span().set_attribute("buyer.readiness_score", readiness)
        dialogue = understand(state, intent, "buyer")
        update: dict[str, Any] = {
            "intent": intent,
            "dialogue": dialogue,
            "temperature": temperature_from_frs(readiness),
            "scores": {
                "readiness": readiness,
                "buyer_confidence": intent.buyer_confidence,
                "seller_confidence": intent.seller_confidence,
            },
        }
        if state.get("allow_handoff", True):
            request = _seller_handoff(intent, dialogue, state.get("memory", {}))
            if request is not None:
                update["handoff"] = request
                update["current_step"] = "handoff"
        return update

    @trace_workflow_node(BOT, "qualify_buyer")
    async def qualify_buyer(self, state: BuyerState) -> dict[str, Any]:
        """List the unanswered questions and work out the affordable price."""
        facts = _facts(state)
        answered = {
            "budget": facts.budget is not None,
            # A cash buyer is never asked about a lender; a named loan kind is not a pre-approval.
            "preapproval": facts.preapproved is not None,
            "bedrooms_areas": facts.bedrooms is not None or bool(facts.areas),
            "timeline": facts.timeline_days is not None,
        }
        missing = [q for q in BUYER_QUESTIONS if not answered[q]]
        price = affordable_price(facts.monthly_income, facts.down_payment, self.mortgage_rate)
        if price is not None:
            trace.get_current_span().set_attribute("buyer.affordable_price", price)
        memory = dict(state.get("memory", {}))
        if price is not None:
            memory["affordable_price"] = price
        return {
            "missing": missing,
            "affordable_price": price,
            "memory": memory,
            "current_step": "qualified" if not missing else "qualifying",
        }

    @trace_workflow_node(BOT, "generate_buyer_response")
    async def generate_buyer_response(self, state: BuyerState) -> dict[str, Any]:
        """Write the reply; send it now, or leave it to ``schedule_showing`` when booking."""
        intent = state["intent"]
        dialogue = state.get("dialogue") or Dialogue()
        facts = _facts(state)
        turns = state.get("turns", [])
        memory = dict(state.get("memory", {}))
        asked: list[str] = list(memory.get("questions_asked", []))
        missing = state.get("missing", [])
        topic, answer = topic_answer(intent, self.comps, facts.areas)
        parts: list[str] = [answer] if answer else []
        if intent.question_topic == "value" and self.comps is not None:
            # Their own home's value, asked while buying (the seller bot was not reached):
            # the estimate still comes first.
            topic = "value"
            parts = [cma_reply(self.comps, dialogue.facts("sell", intent.facts), memory)[1]]
        source = state.get("handoff_from")
        if source == "seller" and dialogue.get("contact", "listing_booked"):
            parts.append(render("handoff_seller_to_buyer_after_listing"))
        elif source:
            parts.append(render(f"handoff_{source}_to_buyer"))
        address_new_objection(intent, memory, parts)
        price = state.get("affordable_price")
        budget = facts.budget
        if price is not None and memory.get("affordability_noted") != price:
            # Said once per affordable price: repeated only when the income or down payment changes.
            parts.append(render("buyer_affordability", max_price=price))
            memory["affordability_noted"] = price
            if budget is not None and budget > price:
                memory["over_budget"] = True
        qualified = _qualified(facts)
        booked = memory.get("showing_booked")
        said_yes = bool(memory.get("showing_offered")) and is_affirmative(last_inbound_text(turns))
        ack, acked = acknowledgement(dialogue)
        negative = is_negative(last_inbound_text(turns), intent)
        if qualified and not booked and (intent.facts.wants_showing or said_yes):
            marks = mark_reply(answered=topic, acknowledged=acked)
            return {
                "draft_reply": compose(answer=" ".join(parts), ack=ack, sent=set(), negative=negative),
                "wants_showing": True,
                "memory": memory,
                "path": "showing",
                **marks,
            }
        question = next_question(missing, asked)
        body: list[str]
        if question is not None:
            body = phrasings(f"buyer_q_{question}")
            if question not in asked:
                asked.append(question)
            path = f"question:{question}"
        elif booked:
            body = [
                render("showing_confirmed", slot=format_slot(datetime.fromisoformat(booked), self.timezone))
            ]
            path = "showing_booked"
        elif qualified:
            body = [render("buyer_qualified")]
            memory["showing_offered"] = True
            path = "offer_showing"
        else:
            # Every question answered but not pre-approved: the pre-approval question, reworded.
            question = "preapproval"
            body = phrasings("buyer_q_preapproval")
            path = "question:preapproval"
        text = compose(answer=" ".join(parts), ack=ack, body=body, sent=sent_texts(turns), negative=negative)
        memory["questions_asked"] = asked
        trace.get_current_span().set_attribute("buyer.reply_path", path)
        marks = mark_reply(answered=topic, asked=question, acknowledged=acked)
        key = f"{state.get('event_key', '')}:buyer:reply"
        await self.outbound.reply(
            state["contact_id"],
            state.get("channel", "SMS"),
            key=key,
            purpose=path,
            context={
                "budget": budget,
                "affordable_price": price,
                "missing": missing,
                "slots": dialogue.context(),
            },
            fallback=text,
        )
        return {
            "memory": memory,
            "replies": [*state.get("replies", []), key],
            **marks,
            "wants_showing": False,
            "path": path,
        }

    @trace_workflow_node(BOT, "schedule_showing")
    async def schedule_showing(self, state: BuyerState) -> dict[str, Any]:
        """Book the first free slot and send the reply with its time."""
        return await book_first_slot(
            state,
            _SHOWING,
            outbound=self.outbound,
            ghl=self.ghl,
            calendar_id=self.calendar_id,
            timezone=self.timezone,
            clock=self.clock,
        )


def _facts(state: BuyerState) -> PropertyFacts:
    """The buying side's facts: the stored buy slots over what the decoder read."""
    intent: LeadIntent = state["intent"]
    dialogue = state.get("dialogue")
    return dialogue.facts("buy", intent.facts) if dialogue is not None else intent.facts


def _qualified(facts: PropertyFacts) -> bool:
    """Ready for a showing: pre-approved (or paying cash), with a budget."""
    return bool(facts.preapproved) and facts.budget is not None


def _seller_handoff(intent: LeadIntent, dialogue: Dialogue, memory: dict[str, Any]) -> HandoffRequest | None:
    """A buyer->seller handoff when the latest message is about selling first.

    Three cases: the buyer must sell before buying (a two-sided lead), the buyer
    asks what their own home is worth (the seller bot answers with the CMA), or
    the seller evidence of the whole conversation reaches the route's threshold
    with the newest message itself about selling (else a buyer who once
    mentioned their house would bounce back on every message). The confidence
    is the strongest of the decoder's seller evidence, the classifier's
    probability of sell or both, and the reading's confidence that the latest
    message is a value question.
    """
    if dialogue.get("contact", "listing_booked"):
        return None  # the sale is under way: this contact is back to buying
    scores = intent.intent_scores
    confidence = max(
        intent.seller_confidence,
        scores.get("sell", 0.0),
        scores.get("both", 0.0),
        intent.value_confidence,
    )
    latest = set(intent.latest_signals)
    must_sell = ("contact", "must_sell_first") in dialogue.filled
    value = intent.question_topic == "value" or "value_question" in latest
    selling_now = bool(latest & set(SELLER_WEIGHTS)) or bool(set(intent.acts) & {"sell", "both"})
    if not (must_sell or value or selling_now):
        return None
    if confidence < THRESHOLDS[("buyer", "seller")]:
        return None
    reason = "must_sell_first" if must_sell else "value_question" if value else "seller_intent_detected"
    return HandoffRequest("buyer", "seller", round(confidence, 3), reason)


# A coroutine, as runner.after_analysis: LangGraph runs a plain routing function in a worker thread.
async def _after_reply(state: BuyerState) -> str:
    return "book" if state.get("wants_showing") else "done"
