"""The LangGraph states of the three bots, and what a bot run hands back.

Each graph (:mod:`.lead`, :mod:`.buyer`, :mod:`.seller`) runs on one of the
``TypedDict`` states below. The keys the tracing decorator reads are part of
every state: ``contact_id`` (plus the bot's own ``lead_id`` / ``buyer_id`` /
``seller_id``), ``current_step`` and ``temperature``, so every node span gets
``workflow.contact_id``, ``workflow.current_step`` and ``workflow.temperature``.

A run's *input* is built by the bot's ``process_*_conversation`` method from a
:class:`BotTurn` (the contact, its messages, the channel and the idempotency
base of the webhook event); its *output* is a :class:`BotOutcome` the
conversation service acts on (save ``memory`` into ``contact.state``, execute
the requested handoff). ``memory`` is the bot's part of ``contact.state``: plain
JSON, so a conversation continues after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from ghl_real_estate_ai.bots.dialogue import Dialogue
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, Turn
from ghl_real_estate_ai.storage.base import Contact, Slot

__all__ = [
    "BOT_NAMES",
    "BotName",
    "BotOutcome",
    "BotTurn",
    "BuyerState",
    "CommonState",
    "HandoffRequest",
    "LeadState",
    "SellerState",
]

BotName = Literal["lead", "buyer", "seller"]
BOT_NAMES: tuple[BotName, ...] = ("lead", "buyer", "seller")


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """A bot's wish to pass the contact to another bot (the service decides and executes)."""

    source_bot: str
    target_bot: str
    confidence: float
    reason: str


@dataclass(slots=True)
class BotTurn:
    """Everything one bot run needs: who, what was said, where to answer.

    Attributes:
        contact: the contact (its ``state`` holds every bot's memory).
        turns: the conversation so far, oldest first, the new inbound message last.
        channel: GHL message type to answer on (``SMS``, ``Email``, ...).
        event_key: idempotency base for every outbound action of this run
            (``evt-<webhook event id>``); a replayed event sends nothing twice.
        handoff_from: the bot that just handed the contact over, if any.
        allow_handoff: False when this run may not ask for another handoff
            (the target of a handoff, or a re-run after a blocked one).
        blocked_handoff: the ``blocked:<reason>`` outcome that made this a re-run.
        slots: the contact's dialogue slots as stored before this message.
    """

    contact: Contact
    turns: Sequence[Turn]
    channel: str = "SMS"
    event_key: str = ""
    handoff_from: str | None = None
    allow_handoff: bool = True
    blocked_handoff: str | None = None
    slots: list[Slot] = field(default_factory=list)


@dataclass(slots=True)
class BotOutcome:
    """What a bot run decided and did.

    Attributes:
        bot: ``lead``, ``buyer`` or ``seller``.
        temperature: ``hot`` / ``warm`` / ``lukewarm`` / ``cold``.
        memory: the bot's JSON memory, saved into ``contact.state[bot]``.
        handoff: a handoff the service should evaluate, or None.
        replies: idempotency keys of the messages this run put in the outbox.
        path: the branch the graph took (e.g. ``generate_cma``, ``handoff``).
        scores: numeric scores of the run (``frs``, ``pcs``, ``readiness``...).
        dialogue: the merged dialogue state (its ``changed`` slots are saved).
        reply_marks: what the reply did: ``answered`` (the topic of the lead's
            question it answered first), ``asked`` (the slot it asked for),
            ``acknowledged`` (slot names it repeated back).
        question_topic: the topic of the question in the lead's latest message, if any.
    """

    bot: str
    temperature: str
    memory: dict[str, Any]
    handoff: HandoffRequest | None = None
    replies: list[str] = field(default_factory=list)
    path: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    dialogue: Dialogue | None = None
    reply_marks: dict[str, Any] = field(default_factory=dict)
    question_topic: str | None = None


class CommonState(TypedDict, total=False):
    """The keys every bot graph's state has (built by :func:`.runner.conversation_state`)."""

    contact_id: str
    current_step: str
    temperature: str
    turns: Sequence[Turn]
    channel: str
    event_key: str
    handoff_from: str | None
    allow_handoff: bool
    intent: LeadIntent
    memory: dict[str, Any]
    replies: list[str]
    handoff: HandoffRequest | None
    path: str
    scores: dict[str, float]
    stored_slots: list[Slot]
    dialogue: Dialogue
    reply_marks: dict[str, Any]


class LeadState(CommonState, total=False):
    """State of the lead graph (``lead_bot``)."""

    lead_id: str
    followup_step: str | None
    """Set when the follow-up scheduler runs a step (``day_3``, ``day_7``, ``day_14``, ``day_30``)."""
    contact_name: str


class BuyerState(CommonState, total=False):
    """State of the buyer graph (``buyer_bot``)."""

    buyer_id: str
    missing: list[str]
    """Qualification questions still unanswered, in asking order."""
    affordable_price: int | None
    draft_reply: str
    wants_showing: bool


class SellerState(CommonState, total=False):
    """State of the seller graph (``seller_bot``)."""

    seller_id: str
    missing: list[str]
    """Qualification questions still unanswered, in asking order."""
    draft_reply: str
    book_appointment: bool
