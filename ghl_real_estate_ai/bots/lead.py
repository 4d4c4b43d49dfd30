"""The Lead bot: a LangGraph ``StateGraph`` that reads intent, picks a path and acts.

Graph (``LeadBot.graph``, compiled once per bot)::

    analyze_intent -> determine_path -> generate_cma
                                      | ask_qualifying_question
                                      | send_day_3_sms | initiate_day_7_call
                                      | send_day_14_email | send_day_30_nudge
                                      | END (a handoff decision, executed by the service)

* ``analyze_intent`` decodes the whole conversation (span ``intent_decoder.analyze_lead``)
  and scores it: FRS, PCS and the temperature.
* ``determine_path`` asks for a handoff when buyer or seller confidence reaches
  the lead route's threshold (0.7; the :class:`~ghl_real_estate_ai.handoff.HandoffService`
  decides), answers a value question with a CMA, or asks the next qualifying question.
* The follow-up nodes run when the scheduler calls :meth:`LeadBot.run_followup`
  for a lead that went quiet (day 3 SMS, day 7 call task for the agent, day 14
  e-mail with the CMA summary when there is one, day 30 nudge, then nurture).

Every node is a ``@trace_workflow_node("lead_bot", ...)``; a conversation run is
wrapped in ``lead_bot.process_lead_conversation``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
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
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, decode_lead_intent
from ghl_real_estate_ai.bots.outbound import Outbound, last_inbound_text
from ghl_real_estate_ai.bots.runner import (
    address_new_objection,
    bot_outcome,
    cma_memory,
    cma_reply,
    cma_text,
    conversation_state,
    mark_reply,
    read_with_model,
    topic_answer,
    understand,
)
from ghl_real_estate_ai.bots.scoring import compute_frs, compute_pcs, temperature_from_frs
from ghl_real_estate_ai.bots.state import BotOutcome, BotTurn, HandoffRequest, LeadState
from ghl_real_estate_ai.bots.templates import phrasings, render, replying_in
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.handoff import THRESHOLDS
from ghl_real_estate_ai.integrations.llm.base import SlotFiller
from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span, trace_workflow_node
from ghl_real_estate_ai.storage.base import Contact, Store

__all__ = [
    "FOLLOWUP_NODES",
    "LEAD_QUESTIONS",
    "LEAD_TEMPLATES",
    "LEANING",
    "LeadBot",
    "cma_memory",
    "cma_text",
]

logger = logging.getLogger(__name__)

BOT = "lead_bot"

FOLLOWUP_NODES: dict[str, str] = {
    "send_day_3_sms": "day_3",
    "initiate_day_7_call": "day_7",
    "send_day_14_email": "day_14",
    "send_day_30_nudge": "day_30",
}
"""Follow-up node name -> the ``current_step`` it sets (the scheduler passes the node name)."""

LEAD_QUESTIONS: tuple[str, ...] = ("intent", "timeline")
"""What the lead bot asks first; then the leaning side's own questions (budget and
pre-approval for a buyer, motivation and price for a seller), until a handoff."""

LEAD_TEMPLATES: dict[str, str] = {
    "intent": "lead_ask_intent",
    "timeline": "lead_ask_timeline",
    "budget": "buyer_q_budget",
    "preapproval": "buyer_q_preapproval",
    "motivation": "seller_q_motivation",
    "price": "seller_q_price",
}
"""The reply template of each lead question."""

LEANING = 0.35
"""Buyer or seller confidence from which the lead has told us which way it leans."""


class LeadBot:
    """The Lead bot; build once, run per message (:meth:`process_lead_conversation`)."""

    name = "lead"

    def __init__(
        self,
        store: Store,
        outbound: Outbound,
        comps: CompsSource,
        *,
        clock: Callable[[], datetime] | None = None,
        slot_filler: SlotFiller | None = None,
    ) -> None:
        """Build the bot and compile its graph.

        Args:
            store: messages and contacts (follow-ups load the conversation from it).
            outbound: replies and agent tasks, through the outbox.
            comps: comparable sales for CMAs.
            clock: the current time (UTC).
            slot_filler: the LLM that fills the dialogue slots (LLM mode), or None.
        """
        self.store = store
        self.outbound = outbound
        self.comps = comps
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.slot_filler = slot_filler
        self.graph = self._build().compile()

    def _build(self) -> BotGraph[LeadState]:
        graph = BotGraph(LeadState)
        graph.add_node("analyze_intent", self.analyze_intent)
        graph.add_node("determine_path", self.determine_path)
        graph.add_node("generate_cma", self.generate_cma)
        graph.add_node("ask_qualifying_question", self.ask_qualifying_question)
        graph.add_node("send_day_3_sms", self.send_day_3_sms)
        graph.add_node("initiate_day_7_call", self.initiate_day_7_call)
        graph.add_node("send_day_14_email", self.send_day_14_email)
        graph.add_node("send_day_30_nudge", self.send_day_30_nudge)
        graph.add_edge(START, "analyze_intent")
        graph.add_edge("analyze_intent", "determine_path")
        actions = [
            "generate_cma",
            "ask_qualifying_question",
            *FOLLOWUP_NODES,
        ]
        graph.add_conditional_edges(
            "determine_path",
            _route,
            {**{name: name for name in actions}, "handoff": END},
        )
        for name in actions:
            graph.add_edge(name, END)
        return graph

    # -- entry points ------------------------------------------------------------
    async def process_lead_conversation(self, turn: BotTurn) -> BotOutcome:
        """Answer the newest message of a lead (span ``lead_bot.process_lead_conversation``).

        Args:
            turn: the contact, the conversation and where to answer.

        Returns:
            What the bot decided: a handoff request, or the reply it sent.
        """
        contact = turn.contact
        async with async_workflow_span(BOT, "process_lead_conversation", contact_id=contact.contact_id):
            state = conversation_state(LeadState, turn, "lead", "new")
            state["followup_step"] = None
            if contact.temperature:
                state["temperature"] = contact.temperature
            with replying_in(turn_language(turn.turns, turn.slots)):
                final = await self.graph.run(state)
            return bot_outcome("lead", final, "new")

    async def run_followup(self, step: str, contact: Contact) -> BotOutcome:
        """Run one follow-up node for a lead that went quiet, and save the contact.

        Called by :class:`~ghl_real_estate_ai.followups.FollowUpRunner` under the
        contact's lock, in the follow-up's own (linked) trace.

        Args:
            step: the node to run: ``send_day_3_sms``, ``initiate_day_7_call``,
                ``send_day_14_email`` or ``send_day_30_nudge``.
            contact: the contact.

        Returns:
            What the step did.

        Raises:
            ValueError: ``step`` is not a follow-up node.
        """
        if step not in FOLLOWUP_NODES:
            raise ValueError(f"unknown follow-up step {step!r}: use one of {sorted(FOLLOWUP_NODES)}")
        messages = await self.store.list_messages(contact.contact_id, limit=50)
        last_inbound = next((m for m in reversed(messages) if m.direction == "inbound"), None)
        # One scheduled instance of a step per silence: the sequence restarts at every
        # inbound message, so (step, last inbound message) names it and a retry re-uses it.
        anchor = last_inbound.id if last_inbound is not None else 0
        followup = BotTurn(
            contact,
            messages,
            channel=str(contact.state.get("lead", {}).get("channel", "SMS")),
            event_key=f"fu-{anchor}",
            allow_handoff=False,
        )
        state = conversation_state(LeadState, followup, "lead", "new")
        state["followup_step"] = step
        with replying_in(turn_language(messages, [])):
            final = await self.graph.run(state)
        outcome = bot_outcome("lead", final, "new")
        contact.state = {**contact.state, "lead": outcome.memory}
        contact.temperature = outcome.temperature
        await self.store.upsert_contact(contact)
        return outcome

    # -- nodes -------------------------------------------------------------------
    @trace_workflow_node(BOT, "analyze_intent")
    async def analyze_intent(self, state: LeadState) -> dict[str, Any]:
        """Decode intent over the conversation and score it (FRS, PCS, temperature)."""
        turns = state.get("turns", [])
        intent = await decode_lead_intent(
            turns, contact_id=state["contact_id"], known_areas=self.comps.areas()
        )
        intent = await read_with_model(self.slot_filler, state.get("turns", []), intent)
        frs = compute_frs(intent)
        pcs = compute_pcs(turns, intent)
        span = trace.get_current_span()
        span.set_attribute("lead.frs_score", float(frs.total))
        span.set_attribute("lead.pcs_score", float(pcs.total))
        dialogue = understand(state, intent, "lead")
        return {
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

    @trace_workflow_node(BOT, "determine_path")
    async def determine_path(self, state: LeadState) -> dict[str, Any]:
        """Pick the branch: a follow-up step, a handoff, a CMA or a qualifying question."""
        intent = state["intent"]
        followup = state.get("followup_step")
        if followup:
            return {"path": followup, "current_step": FOLLOWUP_NODES[followup]}
        if state.get("allow_handoff", True):
            request = _handoff_request(intent, state.get("dialogue"))
            if request is not None:
                trace.get_current_span().set_attribute("lead.handoff_target", request.target_bot)
                return {"path": "handoff", "handoff": request, "current_step": "handoff"}
        value_asked = intent.value_question or intent.question_topic == "value"
        if value_asked and _value_still_asked(intent, state.get("memory", {})):
            return {"path": "generate_cma", "current_step": "cma"}
        return {"path": "ask_qualifying_question", "current_step": "qualifying"}

    @trace_workflow_node(BOT, "generate_cma")
    async def generate_cma(self, state: LeadState) -> dict[str, Any]:
        """Answer a value question with a CMA from the comps, or ask for what it needs."""
        intent = state["intent"]
        dialogue = state.get("dialogue") or Dialogue()
        memory = dict(state.get("memory", {}))
        purpose, text, result = cma_reply(self.comps, dialogue.facts("sell", intent.facts), memory)
        sent = sent_texts(state.get("turns", []))
        ack, acked = acknowledgement(dialogue)
        if result is not None:
            span = trace.get_current_span()
            span.set_attribute("cma.comps", len(result.comps))
            span.set_attribute("cma.estimate", result.estimate)
            text = compose(answer=text, sent=sent)
            marks = mark_reply(answered="value")
        elif purpose == "cma_need_details":
            memory["questions_asked"] = _once(memory.get("questions_asked", []), "property_details")
            text = compose(ack=ack, body=phrasings("cma_need_details"), sent=sent)
            marks = mark_reply(answered="value", asked="property_details", acknowledged=acked)
        else:
            text = compose(answer=text, sent=sent)
            marks = mark_reply(answered="value")
        key = f"{state.get('event_key', '')}:lead:cma"
        await self.outbound.reply(
            state["contact_id"],
            state.get("channel", "SMS"),
            key=key,
            purpose=purpose,
            context={"facts": _facts_context(intent), "cma": memory.get("cma")},
            fallback=text,
        )
        return {**_acted(state, memory, key), **marks}

    @trace_workflow_node(BOT, "ask_qualifying_question")
    async def ask_qualifying_question(self, state: LeadState) -> dict[str, Any]:
        """Answer the lead's question and any new objection, acknowledge, then ask what is missing."""
        intent = state["intent"]
        dialogue = state.get("dialogue") or Dialogue()
        turns = state.get("turns", [])
        memory = dict(state.get("memory", {}))
        asked: list[str] = list(memory.get("questions_asked", []))
        topic, answer = topic_answer(intent, self.comps, dialogue.get("buy", "areas") or ())
        parts: list[str] = [answer] if answer else []
        objections = address_new_objection(intent, memory, parts)
        question = _next_lead_question(intent, dialogue, asked)
        body: list[str] = []
        if question is not None:
            first_contact = not any(t.direction == "outbound" for t in turns)
            template = "lead_greeting" if question == "intent" and first_contact else LEAD_TEMPLATES[question]
            if not objections or question != "intent":
                body = phrasings(template)
            asked.append(question)
            purpose = f"lead_question_{question}"
        elif not parts:
            body = [render("followup_day_3")]
            purpose = "lead_check_in"
        else:
            purpose = "lead_objection"
        ack, acked = acknowledgement(dialogue)
        text = compose(
            answer=" ".join(parts),
            ack=ack,
            body=body,
            sent=sent_texts(turns),
            negative=is_negative(last_inbound_text(turns), intent),
        )
        memory["questions_asked"] = asked
        trace.get_current_span().set_attribute("lead.question", question or "none")
        marks = mark_reply(answered=topic, asked=question, acknowledged=acked)
        key = f"{state.get('event_key', '')}:lead:reply"
        await self.outbound.reply(
            state["contact_id"],
            state.get("channel", "SMS"),
            key=key,
            purpose=purpose,
            context={"facts": _facts_context(intent), "objections": objections, "slots": dialogue.context()},
            fallback=text,
        )
        return {**_acted(state, memory, key), **marks}

    @trace_workflow_node(BOT, "send_day_3_sms")
    async def send_day_3_sms(self, state: LeadState) -> dict[str, Any]:
        """Day 3 of silence: a short check-in SMS."""
        return await self._followup_message(state, "followup_day_3", "SMS")

    @trace_workflow_node(BOT, "initiate_day_7_call")
    async def initiate_day_7_call(self, state: LeadState) -> dict[str, Any]:
        """Day 7 of silence: a GHL call task for the agent, due within four hours."""
        memory = dict(state.get("memory", {}))
        intent = state["intent"]
        key = f"{state.get('event_key', '')}:lead:day_7_call"
        await self.outbound.create_task(
            state["contact_id"],
            key=key,
            title="Call lead: no reply for 7 days",
            body=render(
                "followup_day_7_call_task",
                temperature=state.get("temperature", "cold"),
                summary=_summary(intent, memory),
            ),
            due_at=self.clock() + timedelta(hours=4),
        )
        return _acted(state, memory, key)

    @trace_workflow_node(BOT, "send_day_14_email")
    async def send_day_14_email(self, state: LeadState) -> dict[str, Any]:
        """Day 14 of silence: an e-mail, with the CMA summary when the lead got one."""
        memory = dict(state.get("memory", {}))
        cma = memory.get("cma")
        if cma:
            values = {k: cma[k] for k in ("estimate", "low", "high", "comp_count", "area")}
            html_body = render("followup_day_14_email_html_cma", **values)
            text = cma_text(cma)
        else:
            html_body = render("followup_day_14_email_html")
            text = render("followup_day_3")
        key = f"{state.get('event_key', '')}:lead:day_14_email"
        await self.outbound.reply(
            state["contact_id"],
            "Email",
            key=key,
            purpose="followup_day_14_email",
            context={"cma": cma},
            fallback=text,
            subject=render("followup_day_14_email_subject"),
            html_body=html_body,
        )
        trace.get_current_span().set_attribute("followup.with_cma", bool(cma))
        return _acted(state, memory, key)

    @trace_workflow_node(BOT, "send_day_30_nudge")
    async def send_day_30_nudge(self, state: LeadState) -> dict[str, Any]:
        """Day 30 of silence: a last SMS; the lead then moves to nurture."""
        update = await self._followup_message(state, "followup_day_30", "SMS")
        update["current_step"] = "nurture"
        update["memory"]["current_step"] = "nurture"
        return update

    async def _followup_message(self, state: LeadState, template: str, channel: str) -> dict[str, Any]:
        memory = dict(state.get("memory", {}))
        key = f"{state.get('event_key', '')}:lead:{template}"
        await self.outbound.reply(
            state["contact_id"], channel, key=key, purpose=template, context={}, fallback=render(template)
        )
        return _acted(state, memory, key)


async def _route(state: LeadState) -> str:
    # A coroutine: LangGraph runs a plain function's routing in a worker thread.
    return state.get("path", "ask_qualifying_question")


def _handoff_request(intent: LeadIntent, dialogue: Dialogue | None) -> HandoffRequest | None:
    """A handoff to the stronger of buyer/seller intent, when it reaches the lead route's threshold.

    The confidence of a side is the stronger of the decoder's evidence and the
    classifier's probability for that intent in the latest message, so a plain
    "we wanna sell our fourplex" hands off. A lead who must sell before buying
    (or wants to do both) goes to the seller bot first: the sale shapes the budget.
    """
    scores = intent.intent_scores
    buyer = max(intent.buyer_confidence, scores.get("buy", 0.0))
    seller = max(intent.seller_confidence, scores.get("sell", 0.0))
    both = scores.get("both", 0.0)
    sell_first = intent.facts.must_sell_first or (
        dialogue is not None and bool(dialogue.get("contact", "must_sell_first"))
    )
    if sell_first:
        seller = max(seller, both, buyer)
    elif both > max(buyer, seller):
        seller = both
    candidates = [("buyer", buyer), ("seller", seller)]
    if sell_first:
        candidates.reverse()  # equal evidence: the sale comes first
    target, confidence = max(candidates, key=lambda c: c[1])
    if confidence >= THRESHOLDS[("lead", target)]:
        return HandoffRequest("lead", target, round(confidence, 3), f"{target}_intent_detected")
    return None


def _next_lead_question(intent: LeadIntent, dialogue: Dialogue, asked: Sequence[str]) -> str | None:
    """The first question of the lead sequence that is neither answered nor asked yet."""
    side = "buyer" if intent.buyer_confidence >= intent.seller_confidence else "seller"
    if dialogue.sides == ("sell",):
        side = "seller"
    elif dialogue.sides == ("buy",):
        side = "buyer"
    facts = dialogue.facts("buy" if side == "buyer" else "sell", intent.facts)
    answered = {
        "intent": max(intent.buyer_confidence, intent.seller_confidence) >= LEANING or bool(dialogue.sides),
        "timeline": dialogue.has_timeline("buy") or dialogue.has_timeline("sell"),
        "budget": facts.budget is not None,
        "preapproval": facts.preapproved is not None or dialogue.has("buy", "financing"),
        "motivation": dialogue.has("buy", "motivation") or dialogue.has("sell", "motivation"),
        "price": facts.price_expectation is not None,
    }
    sequence = [*LEAD_QUESTIONS, *(("budget", "preapproval") if side == "buyer" else ("motivation", "price"))]
    for question in sequence:
        if not answered[question] and question not in asked:
            return question
    return None


def _once(items: Sequence[str], item: str) -> list[str]:
    return [*items] if item in items else [*items, item]


def _facts_context(intent: LeadIntent) -> dict[str, Any]:
    facts = intent.facts
    return {
        "budget": facts.budget,
        "bedrooms": facts.bedrooms,
        "areas": list(facts.areas),
        "timeline_days": facts.timeline_days,
        "motivation": facts.motivation,
    }


def _summary(intent: LeadIntent, memory: dict[str, Any]) -> str:
    """A one-line, text-free summary of what the lead told us, for the agent's call task."""
    side = "buying" if intent.buyer_confidence >= intent.seller_confidence else "selling"
    parts = [f"leaning {side}"]
    if intent.facts.timeline_days is not None:
        parts.append(f"timeline about {intent.facts.timeline_days} days")
    if memory.get("cma"):
        parts.append(f"got a CMA of ${memory['cma']['estimate']:,}")
    return ", ".join(parts)


def _acted(state: LeadState, memory: dict[str, Any], key: str) -> dict[str, Any]:
    step = state.get("current_step")
    if step:
        memory["current_step"] = step
    return {"memory": memory, "replies": [*state.get("replies", []), key]}


def _value_still_asked(intent: LeadIntent, memory: Mapping[str, Any]) -> bool:
    """Whether a value question still wants an answer.

    ``value_question`` holds for the whole conversation once asked; after the CMA
    went out, only a newest message that asks again gets another one (a "thanks,
    maybe later" must not repeat the estimate).
    """
    return memory.get("cma") is None or "value_question" in intent.latest_signals
