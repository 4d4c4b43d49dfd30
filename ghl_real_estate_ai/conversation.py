"""The conversation service: one stored webhook event in, the right bot's answer out.

:class:`ConversationService` implements the webhook layer's ``EventProcessor``.
For an inbound message it, under the contact's lock (``store.contact_lock``):

1. loads or creates the contact and records the message (once, even when the
   event is processed again);
2. stops for a contact that opted out or was escalated: the bots never answer
   it again;
3. checks the newest message for an opt-out (English or Spanish: tag
   ``Opted-Out``, one confirmation at most, the follow-ups cancelled) and for a
   request for a person or a legal/financial red flag (an escalation: a
   ``handoff.<bot>_to_human`` span, a tag, a GHL task for the agent);
   and for a contact who is no prospect (a renter, has an agent, a wrong number,
   "no thanks"): one polite closing reply, a tag, the follow-ups stopped, and
   silence afterwards unless they come back wanting to buy or sell;
4. runs the contact's current bot (unknown contacts start with the lead bot);
   when the bot asks for a handoff, evaluates and executes it and runs the
   TARGET bot on the same message, in the same request and trace; a blocked
   handoff re-runs the source bot, told not to ask again;
5. saves the contact (``current_bot``, ``temperature``, tags and every bot's
   memory in ``contact.state``, so the conversation continues after a restart)
   and the dialogue slots the message filled (``dialogue_slots``, one statement)
   and restarts the day-3/7/14/30 follow-up sequence while the contact is still
   with the lead bot (the steps carry this trace's context; a reply cancels them).

Build it with :func:`build_conversation_service` (what the app does) or by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ghl_real_estate_ai.bots.buyer import BuyerBot
from ghl_real_estate_ai.bots.cma import CompsSource
from ghl_real_estate_ai.bots.dialogue import turn_language
from ghl_real_estate_ai.bots.intent_decoder import LeadIntent, analyze_lead
from ghl_real_estate_ai.bots.lead import LeadBot
from ghl_real_estate_ai.bots.outbound import Outbound
from ghl_real_estate_ai.bots.seller import SellerBot
from ghl_real_estate_ai.bots.state import BOT_NAMES, BotOutcome, BotTurn
from ghl_real_estate_ai.bots.templates import render, replying_in
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.followups import restart_sequence
from ghl_real_estate_ai.handoff import HandoffService
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.ghl.webhook import InboundMessage
from ghl_real_estate_ai.integrations.llm import ReplyWriter, SlotFiller, build_reply_writer
from ghl_real_estate_ai.observability.workflow_tracing import add_workflow_event, propagate_trace_context
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage.base import Contact, Message, Slot, Store, WebhookEvent

__all__ = [
    "NOT_PROSPECT_TAGS",
    "OPT_OUT_TAG",
    "Bots",
    "ConversationResult",
    "ConversationService",
    "build_bots",
    "build_conversation_service",
]

logger = logging.getLogger(__name__)

OPT_OUT_TAG = "Opted-Out"
"""Tag added to a contact that asked the bots to stop."""

HISTORY_LIMIT = 50
"""Messages of a conversation the bots read (the newest ones)."""

NOT_PROSPECT_TAGS: dict[str, str] = {
    "renter": "Not-Prospect-Renter",
    "has_agent": "Not-Prospect-Has-Agent",
    "wrong_number": "Not-Prospect-Wrong-Number",
    "not_interested": "Not-Prospect-Not-Interested",
}
"""The tag a contact gets for each reason it is no prospect (issue 10)."""

_COMEBACK_ACTS = frozenset({"buy", "sell", "both", "value_question"})
"""Acts with which a closed contact is a prospect again."""


@dataclass(slots=True)
class Bots:
    """The three bots the service routes to."""

    lead: LeadBot
    buyer: BuyerBot
    seller: SellerBot

    async def run(self, bot: str, turn: BotTurn) -> BotOutcome:
        """Run bot ``bot`` (``lead``, ``buyer`` or ``seller``) on a turn.

        Raises:
            ValueError: ``bot`` is not one of the three.
        """
        if bot == "lead":
            return await self.lead.process_lead_conversation(turn)
        if bot == "buyer":
            return await self.buyer.process_buyer_conversation(turn)
        if bot == "seller":
            return await self.seller.process_seller_conversation(turn)
        raise ValueError(f"unknown bot {bot!r}: use one of {BOT_NAMES}")


@dataclass(slots=True)
class ConversationResult:
    """What :meth:`ConversationService.handle` did with one message (for logs and tests).

    Attributes:
        contact: the saved contact.
        action: ``answered``, ``opted_out``, ``opted_in``, ``escalated``, ``closed``
            (no prospect), ``ignored_opted_out``, ``ignored_escalated``, ``ignored_closed``
            or ``no_contact``.
        outcomes: each bot run, in order (source bot, then target after a handoff).
        handoff_outcome: ``executed`` / ``blocked:<reason>`` when a handoff was tried.
    """

    contact: Contact | None
    action: str
    outcomes: list[BotOutcome]
    handoff_outcome: str | None = None


class ConversationService:
    """Routes inbound messages to the bots; the webhook layer's ``EventProcessor``."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        ghl_client: GHLClient,
        handoffs: HandoffService,
        bots: Bots,
        outbound: Outbound,
        settings: Settings,
        *,
        clock: Callable[[], datetime] | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        """Build the service.

        Args:
            store: contacts, messages, handoffs and follow-ups.
            outbox: outbound GHL actions (idempotent, retried).
            ghl_client: the GHL API client.
            handoffs: evaluates and executes handoffs and escalations.
            bots: the lead, buyer and seller bots.
            outbound: the bots' sender (used here for the opt-out confirmation).
            settings: the configuration (``ghl_location_id``).
            clock: the current time (UTC).
            lock_timeout: seconds to wait for a contact's lock.
        """
        self.store = store
        self.outbox = outbox
        self.ghl_client = ghl_client
        self.handoffs = handoffs
        self.bots = bots
        self.outbound = outbound
        self.settings = settings
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.lock_timeout = lock_timeout

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        """Handle one claimed webhook event (the ``EventProcessor`` protocol).

        Args:
            event: the stored event (its id makes the idempotency keys).
            message: the parsed GHL message.
        """
        await self.handle(message, event_key=f"evt-{event.id}")

    async def handle(self, message: InboundMessage, *, event_key: str) -> ConversationResult:
        """Handle one inbound message; see the module docstring for the steps.

        Args:
            message: the parsed GHL message.
            event_key: idempotency base of every outbound action (``evt-<event id>``).

        Returns:
            What was done.
        """
        contact_id = message.contact_id
        if not contact_id:
            logger.warning("inbound message %s has no contactId; nothing to answer", message.message_id)
            return ConversationResult(None, "no_contact", [])
        async with self.store.contact_lock(contact_id, timeout=self.lock_timeout):
            return await self._handle_locked(contact_id, message, event_key)

    async def _handle_locked(
        self, contact_id: str, message: InboundMessage, event_key: str
    ) -> ConversationResult:
        contact = await self.store.get_contact(contact_id)
        if contact is None:
            contact = await self.store.upsert_contact(
                Contact(
                    contact_id=contact_id, location_id=message.location_id or self.settings.ghl_location_id
                )
            )
        channel = message.reply_channel
        turns = await self._record_inbound(contact_id, message, channel)
        # Every reply of this turn, the closings and confirmations included, in the contact's language.
        with replying_in(turn_language(turns, ())):
            return await self._answer(contact_id, contact, message, turns, channel, event_key)

    async def _answer(
        self,
        contact_id: str,
        contact: Contact,
        message: InboundMessage,
        turns: list[Message],
        channel: str,
        event_key: str,
    ) -> ConversationResult:
        newest = analyze_lead([_InboundTurn(message.body, self.clock())])
        if contact.opted_out:
            # The opt-out confirmation promises that START brings the texts back.
            if newest.opt_in or "resume" in newest.latest_signals:
                return await self._opt_in(contact, channel, event_key)
            return ConversationResult(contact, "ignored_opted_out", [])
        if contact.escalated:
            return ConversationResult(contact, "ignored_escalated", [])

        current = contact.current_bot if contact.current_bot in BOT_NAMES else "lead"
        contact.current_bot = current
        if newest.not_prospect == "wrong_number" and not _carrier_keyword(message.body):
            # "wrong number" reads as an opt-out too; the precise answer is the wrong-number
            # closing, and the contact is never texted again (issue 10, not a prospect).
            contact.opted_out = True
            return await self._close(contact, "wrong_number", channel, event_key)
        if newest.opt_out:
            return await self._opt_out(contact, channel, event_key)
        if newest.human_request or newest.red_flags:
            return await self._escalate(contact, current, newest, channel, event_key)
        if newest.not_prospect in NOT_PROSPECT_TAGS:
            return await self._close(contact, newest.not_prospect, channel, event_key)
        if contact.state.get("closed"):
            if not (set(newest.acts) & _COMEBACK_ACTS):
                return ConversationResult(contact, "ignored_closed", [])
            # Back with a real plan to buy or sell: a prospect again.
            contact.state = {k: v for k, v in contact.state.items() if k != "closed"}

        slots = await self.store.list_slots(contact_id)
        turn = BotTurn(contact=contact, turns=turns, channel=channel, event_key=event_key, slots=slots)
        first = await self.bots.run(current, turn)
        outcomes = [first]
        self._remember(contact, first)
        handoff_outcome: str | None = None
        if first.handoff is not None:
            result = await self.handoffs.hand_off(contact, first.handoff, key=event_key)
            handoff_outcome = result.outcome
            if result.executed:
                # The target answers the same message now, in the same trace.
                target = BotTurn(
                    contact=contact,
                    turns=turns,
                    channel=channel,
                    event_key=event_key,
                    handoff_from=first.bot,
                    allow_handoff=False,
                    slots=_after(slots, first),
                )
                second = await self.bots.run(contact.current_bot, target)
            else:
                retry = BotTurn(
                    contact=contact,
                    turns=turns,
                    channel=channel,
                    event_key=event_key,
                    allow_handoff=False,
                    blocked_handoff=result.outcome,
                    slots=slots,
                )
                second = await self.bots.run(current, retry)
            outcomes.append(second)
            self._remember(contact, second)
        await self.store.save_slots(contact_id, _changed(outcomes))
        contact = await self.store.upsert_contact(contact)
        await self._schedule_followups(contact)
        return ConversationResult(contact, "answered", outcomes, handoff_outcome)

    # -- steps ---------------------------------------------------------------------
    async def _record_inbound(self, contact_id: str, message: InboundMessage, channel: str) -> list[Message]:
        """Store the inbound message once; returns the conversation's last 50 messages, oldest first."""
        recent = await self.store.list_messages(contact_id, limit=HISTORY_LIMIT)
        # The worker may process a stored event again after a crash: record it once.
        if message.message_id and any(
            m.message_id == message.message_id and m.direction == "inbound" for m in recent
        ):
            return recent
        stored = await self.store.add_message(
            contact_id,
            "inbound",
            message.body,
            channel,
            message_id=message.message_id,
            created_at=message.date_added or self.clock(),
            defer=True,  # written with the turn's other writes (issue 14)
        )
        # The same order the store reads in, so a late-delivered message sits where it belongs.
        return sorted([*recent, stored], key=lambda m: (m.created_at, m.id))[-HISTORY_LIMIT:]

    def _remember(self, contact: Contact, outcome: BotOutcome) -> None:
        state = dict(contact.state)
        state[outcome.bot] = outcome.memory
        contact.state = state
        contact.temperature = outcome.temperature

    async def _opt_out(self, contact: Contact, channel: str, event_key: str) -> ConversationResult:
        add_workflow_event("contact_opted_out", contact_id=contact.contact_id)
        contact.opted_out = True
        if OPT_OUT_TAG not in contact.tags:
            await self.outbox.submit(
                f"{event_key}:opt_out:add_tags",
                "add_tags",
                {"contact_id": contact.contact_id, "tags": [OPT_OUT_TAG]},
                contact_id=contact.contact_id,
            )
            contact.tags.append(OPT_OUT_TAG)
        # Keyed by contact (and how often it came back), not event: one confirmation per opt-out.
        await self.outbound.reply(
            contact.contact_id,
            channel,
            key=f"opt-out-confirmation:{contact.contact_id}:{contact.state.get('opt_ins', 0)}",
            purpose="opt_out_confirmation",
            context={},
            fallback=render("opt_out_confirmation"),
        )
        await self.store.cancel_followups(contact.contact_id)
        contact = await self.store.upsert_contact(contact)
        return ConversationResult(contact, "opted_out", [])

    async def _opt_in(self, contact: Contact, channel: str, event_key: str) -> ConversationResult:
        add_workflow_event("contact_opted_in", contact_id=contact.contact_id)
        contact.opted_out = False
        contact.state = {**contact.state, "opt_ins": int(contact.state.get("opt_ins", 0)) + 1}
        if OPT_OUT_TAG in contact.tags:
            await self.outbox.submit(
                f"{event_key}:opt_in:remove_tags",
                "remove_tags",
                {"contact_id": contact.contact_id, "tags": [OPT_OUT_TAG]},
                contact_id=contact.contact_id,
            )
            contact.tags = [t for t in contact.tags if t != OPT_OUT_TAG]
        await self.outbound.reply(
            contact.contact_id,
            channel,
            key=f"{event_key}:opt_in",
            purpose="opt_in_confirmation",
            context={},
            fallback=render("opt_in_confirmation"),
        )
        contact = await self.store.upsert_contact(contact)
        return ConversationResult(contact, "opted_in", [])

    async def _close(self, contact: Contact, reason: str, channel: str, event_key: str) -> ConversationResult:
        """No prospect: one polite closing reply, a tag, the follow-ups stopped (issue 10)."""
        add_workflow_event("contact_closed", contact_id=contact.contact_id, reason=reason)
        tag = NOT_PROSPECT_TAGS[reason]
        if tag not in contact.tags:
            await self.outbox.submit(
                f"{event_key}:close:add_tags",
                "add_tags",
                {"contact_id": contact.contact_id, "tags": [tag]},
                contact_id=contact.contact_id,
            )
            contact.tags.append(tag)
        if contact.state.get("closed") != reason:
            await self.outbound.reply(
                contact.contact_id,
                channel,
                key=f"{event_key}:close",
                purpose=f"close_{reason}",
                context={},
                fallback=render(f"close_{reason}"),
            )
        contact.state = {**contact.state, "closed": reason}
        await self.store.cancel_followups(contact.contact_id)
        contact = await self.store.upsert_contact(contact)
        return ConversationResult(contact, "closed", [])

    async def _escalate(
        self, contact: Contact, bot: str, intent: LeadIntent, channel: str, event_key: str
    ) -> ConversationResult:
        reason = f"red_flag:{intent.red_flags[0]}" if intent.red_flags else "human_requested"
        result = await self.handoffs.escalate(
            contact,
            bot,
            reason,
            key=event_key,
            notice=render("escalation_notice"),
            channel=channel,
        )
        await self.store.cancel_followups(contact.contact_id)
        contact = await self.store.upsert_contact(result.contact)
        return ConversationResult(contact, "escalated", [], result.outcome)

    async def _schedule_followups(self, contact: Contact) -> None:
        # Only a lead still with the lead bot gets the silence sequence; the buyer and
        # seller bots have their own appointments. A reply always cancels what was pending.
        if contact.current_bot != "lead" or contact.opted_out or contact.escalated:
            # Replacing them with nothing cancels them, written with the turn's other writes.
            await self.store.replace_followups(contact.contact_id, [], {})
            return
        await restart_sequence(
            self.store,
            contact.contact_id,
            now=self.clock(),
            trace_context=dict(propagate_trace_context({})),
            defer=True,  # nobody reads the new steps back: written with the turn's other writes
        )


_CARRIER_KEYWORDS = frozenset({"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit"})


def _carrier_keyword(body: str) -> bool:
    """The message is a carrier-standard opt-out keyword: always an opt-out, whatever else it reads as."""
    return " ".join(body.lower().strip(" .!").split()) in _CARRIER_KEYWORDS


def _after(slots: list[Slot], outcome: BotOutcome) -> list[Slot]:
    """What the next bot of the turn starts from: the stored slots plus what the first bot decided.

    The slots read from the message are left to the next bot's own analysis, so
    it sees (and acknowledges) them as filled by this message too.
    """
    if outcome.dialogue is None or not outcome.dialogue.decided:
        return slots
    decided = {(s.side, s.name): s for s in outcome.dialogue.decided}
    return [s for s in slots if (s.side, s.name) not in decided] + list(decided.values())


def _changed(outcomes: list[BotOutcome]) -> list[Slot]:
    """Every slot the turn's bot runs changed, the later run winning."""
    changed: dict[tuple[str, str], Slot] = {}
    for outcome in outcomes:
        if outcome.dialogue is not None:
            for slot in outcome.dialogue.changed:
                changed[(slot.side, slot.name)] = slot
    return list(changed.values())


@dataclass(frozen=True, slots=True)
class _InboundTurn:
    body: str
    created_at: datetime
    direction: str = "inbound"


def build_bots(
    store: Store,
    outbound: Outbound,
    ghl_client: GHLClient,
    settings: Settings,
    *,
    comps: CompsSource | None = None,
    clock: Callable[[], datetime] | None = None,
    slot_filler: SlotFiller | None = None,
) -> Bots:
    """Build the three bots from the settings.

    Args:
        store: the store.
        outbound: the bots' sender.
        ghl_client: the GHL client (free slots).
        settings: ``ghl_calendar_id``, ``mortgage_rate``, ``comps_csv_path``.
        comps: comparable sales; None loads ``COMPS_CSV_PATH`` (or the bundled sample).
        clock: the current time (UTC).
        slot_filler: the LLM filling the dialogue slots (LLM mode), or None.

    Returns:
        The bots.
    """
    comps = comps or CompsSource.from_csv(settings.comps_csv_path)
    return Bots(
        lead=LeadBot(store, outbound, comps, clock=clock, slot_filler=slot_filler),
        buyer=BuyerBot(
            outbound,
            ghl_client,
            calendar_id=settings.ghl_calendar_id,
            mortgage_rate=settings.mortgage_rate,
            clock=clock,
            comps=comps,
            slot_filler=slot_filler,
        ),
        seller=SellerBot(
            outbound,
            ghl_client,
            comps,
            calendar_id=settings.ghl_calendar_id,
            clock=clock,
            slot_filler=slot_filler,
        ),
    )


def build_conversation_service(
    store: Store,
    outbox: Outbox,
    ghl_client: GHLClient,
    settings: Settings,
    *,
    clock: Callable[[], datetime] | None = None,
    reply_writer: ReplyWriter | None = None,
    comps: CompsSource | None = None,
) -> ConversationService:
    """Build the conversation service with its bots and handoff service.

    Args:
        store: the opened store.
        outbox: the outbox over the same store and the GHL client.
        ghl_client: the GHL client.
        settings: the configuration.
        clock: the current time (UTC); the system clock by default.
        reply_writer: how reply texts are written; None builds it from the settings
            (templates, or the configured LLM provider).
        comps: comparable sales; None loads them from the settings.

    Returns:
        The service; ``app.state.processor`` in the app.
    """
    clock = clock or SystemClock()
    writer = reply_writer or build_reply_writer(settings)
    outbound = Outbound(store, outbox, writer, clock=clock)
    handoffs = HandoffService(store, outbox, clock=clock)
    # LLM mode: the model that writes the replies fills the dialogue slots too.
    filler = writer if isinstance(writer, SlotFiller) else None
    bots = build_bots(store, outbound, ghl_client, settings, comps=comps, clock=clock, slot_filler=filler)
    return ConversationService(store, outbox, ghl_client, handoffs, bots, outbound, settings, clock=clock)
