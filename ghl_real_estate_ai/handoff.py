"""Cross-bot handoffs: decide with database-backed safeguards, then swap tags through the outbox.

A bot that sees another bot's intent returns a :class:`~ghl_real_estate_ai.bots.state.HandoffRequest`;
the conversation service passes it to :meth:`HandoffService.hand_off`, which opens the
``handoff.<source>_to_<target>`` span and runs, inside it:

* :meth:`HandoffService.evaluate_handoff` (span ``jorge.handoff.evaluate_handoff``):
  the route's confidence threshold (lead->buyer 0.7, lead->seller 0.7,
  buyer->seller 0.8, seller->buyer 0.6) and the safeguards, read from the
  handoffs table so they hold across restarts and replicas: no repeat of the
  same route within 30 minutes, at most 3 handoffs an hour and 10 a day per
  contact, and one handoff at a time per contact;
* :meth:`HandoffService.execute_handoff` (span ``jorge.handoff.execute_handoff``):
  remove the source bot's tag (when the contact carries it), add the target
  bot's tag and a ``Handoff-Lead-to-Buyer`` style tag, record the handoff and
  move ``contact.current_bot``.

A blocked handoff is recorded too (outcome ``blocked:<reason>``) and sets the
span's ``handoff.outcome``. :meth:`HandoffService.escalate` hands a contact to a
person (target ``human``): a tag, a GHL task for the agent, one notice to the
contact, and ``contact.escalated`` so the bots stop answering.

Usage::

    handoffs = HandoffService(store, outbox, clock=SystemClock())
    result = await handoffs.hand_off(contact, request, key="evt-42")
    if result.executed:
        ...  # run the target bot on the same message
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace

from ghl_real_estate_ai.bots.state import HandoffRequest
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.observability.workflow_tracing import (
    create_handoff_span,
    set_handoff_outcome,
)
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import Contact, Handoff, Store

__all__ = [
    "BOT_TAGS",
    "DAILY_LIMIT",
    "ESCALATION_TAG",
    "HOURLY_LIMIT",
    "IN_FLIGHT_WINDOW",
    "REPEAT_WINDOW",
    "THRESHOLDS",
    "HandoffDecision",
    "HandoffResult",
    "HandoffService",
    "handoff_tag",
]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("ghl_real_estate_ai.handoff")

THRESHOLDS: dict[tuple[str, str], float] = {
    ("lead", "buyer"): 0.7,
    ("lead", "seller"): 0.7,
    ("buyer", "seller"): 0.8,
    ("seller", "buyer"): 0.6,
}
"""Minimum confidence per (source, target) route. Escalation to ``human`` has none."""

REPEAT_WINDOW = timedelta(minutes=30)
"""The same route is not executed twice for a contact within this window."""
HOURLY_LIMIT = 3
"""At most this many executed handoffs per contact in any rolling hour."""
DAILY_LIMIT = 10
"""At most this many executed handoffs per contact in any rolling day."""
IN_FLIGHT_WINDOW = timedelta(minutes=2)
"""An ``in_progress`` row younger than this, with no outcome after it, blocks a new handoff.
Older ones are treated as a crashed attempt, so a crash cannot block a contact forever."""

BOT_TAGS: dict[str, str] = {"lead": "Lead-Bot", "buyer": "Buyer-Bot", "seller": "Seller-Bot"}
"""The GHL tag that marks which bot owns a contact."""
ESCALATION_TAG = "Needs-Human"
"""Tag added when a contact is escalated to a person."""

_IN_PROGRESS = "in_progress"
_EXECUTED = "executed"


def handoff_tag(source_bot: str, target_bot: str) -> str:
    """The GHL tag recording a route, e.g. ``Handoff-Lead-to-Buyer``.

    Args:
        source_bot: ``lead``, ``buyer`` or ``seller``.
        target_bot: ``lead``, ``buyer``, ``seller`` or ``human``.

    Returns:
        The tag text.
    """
    return f"Handoff-{source_bot.capitalize()}-to-{target_bot.capitalize()}"


@dataclass(frozen=True, slots=True)
class HandoffDecision:
    """The answer of :meth:`HandoffService.evaluate_handoff`.

    Attributes:
        allowed: True when the handoff may run.
        outcome: ``allowed`` or ``blocked:<reason>`` (``below_threshold``,
            ``unknown_route``, ``repeat_within_30m``, ``hourly_limit``,
            ``daily_limit``, ``handoff_in_progress``, ``already_escalated``).
    """

    allowed: bool
    outcome: str

    @property
    def reason(self) -> str:
        """The part after ``blocked:`` (empty when allowed)."""
        return self.outcome.split(":", 1)[1] if ":" in self.outcome else ""


@dataclass(frozen=True, slots=True)
class HandoffResult:
    """What :meth:`HandoffService.hand_off` did.

    Attributes:
        request: the handoff asked for.
        outcome: ``executed`` or ``blocked:<reason>``.
        contact: the contact after the handoff (``current_bot`` moved when executed).
    """

    request: HandoffRequest
    outcome: str
    contact: Contact

    @property
    def executed(self) -> bool:
        """True when the contact now belongs to the target."""
        return self.outcome == _EXECUTED


class HandoffService:
    """Evaluates and executes handoffs between the bots, and escalations to a person."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        *,
        clock: Callable[[], datetime] | None = None,
        agent_task_due: timedelta = timedelta(hours=1),
    ) -> None:
        """Build the service.

        Args:
            store: where handoffs are recorded and the safeguards are read from.
            outbox: GHL tag and task changes go through it (idempotent, retried).
            clock: the current time (UTC); the system clock by default.
            agent_task_due: how soon the agent's task for an escalation is due.
        """
        self._store = store
        self._outbox = outbox
        self._clock: Callable[[], datetime] = clock or SystemClock()
        self._agent_task_due = agent_task_due

    # -- decide ----------------------------------------------------------------
    async def evaluate_handoff(
        self, contact_id: str, source_bot: str, target_bot: str, confidence: float
    ) -> HandoffDecision:
        """Decide whether a handoff may run now (span ``jorge.handoff.evaluate_handoff``).

        Args:
            contact_id: the GHL contact id.
            source_bot: the bot that has the contact.
            target_bot: the bot (or ``human``) it should go to.
            confidence: the source bot's confidence in the target intent, 0-1.

        Returns:
            The decision; blocked ones name the safeguard that stopped them.
        """
        with _tracer.start_as_current_span("jorge.handoff.evaluate_handoff") as span:
            span.set_attribute("handoff.contact_id", contact_id)
            span.set_attribute("handoff.route", f"{source_bot}_to_{target_bot}")
            decision = await self._decide(contact_id, source_bot, target_bot, confidence)
            span.set_attribute("handoff.decision", decision.outcome)
            return decision

    async def _decide(
        self, contact_id: str, source_bot: str, target_bot: str, confidence: float
    ) -> HandoffDecision:
        now = self._clock()
        history = await self._store.list_handoffs(contact_id, since=now - timedelta(days=1))
        if _in_flight(history, now):
            return _blocked("handoff_in_progress")
        if target_bot == "human":
            # A person must always be reachable; only a second escalation is pointless.
            escalated = any(h.target_bot == "human" and h.outcome == _EXECUTED for h in history)
            return _blocked("already_escalated") if escalated else HandoffDecision(True, "allowed")
        threshold = THRESHOLDS.get((source_bot, target_bot))
        if threshold is None:
            return _blocked("unknown_route")
        if confidence < threshold:
            return _blocked("below_threshold")
        executed = [h for h in history if h.outcome == _EXECUTED and h.target_bot != "human"]
        if any(
            h.source_bot == source_bot and h.target_bot == target_bot and now - h.created_at < REPEAT_WINDOW
            for h in executed
        ):
            return _blocked("repeat_within_30m")
        if sum(1 for h in executed if now - h.created_at < timedelta(hours=1)) >= HOURLY_LIMIT:
            return _blocked("hourly_limit")
        if len(executed) >= DAILY_LIMIT:
            return _blocked("daily_limit")
        return HandoffDecision(True, "allowed")

    # -- act -------------------------------------------------------------------
    async def execute_handoff(
        self, contact: Contact, source_bot: str, target_bot: str, confidence: float, reason: str, *, key: str
    ) -> Contact:
        """Move a contact to another bot (span ``jorge.handoff.execute_handoff``).

        Swaps the bot tags through the outbox, records the handoff and sets
        ``contact.current_bot``. The caller saves the contact.

        Args:
            contact: the contact; its ``tags`` and ``current_bot`` are updated.
            source_bot: the bot giving the contact away.
            target_bot: the bot taking it.
            confidence: the confidence that triggered it.
            reason: a short machine-readable reason (``buyer_intent_detected``).
            key: idempotency base (the webhook event's), so a replay sends nothing twice.

        Returns:
            The updated contact.
        """
        with _tracer.start_as_current_span("jorge.handoff.execute_handoff") as span:
            span.set_attribute("handoff.contact_id", contact.contact_id)
            span.set_attribute("handoff.route", f"{source_bot}_to_{target_bot}")
            await self._mark_in_progress(contact.contact_id, source_bot, target_bot, confidence, reason)
            try:
                route = f"{source_bot}_to_{target_bot}"
                await self._remove_tags(contact, [BOT_TAGS.get(source_bot, "")], key=f"{key}:{route}")
                await self._add_tags(
                    contact, [BOT_TAGS[target_bot], handoff_tag(source_bot, target_bot)], key=f"{key}:{route}"
                )
            except BaseException as exc:
                await self._record(
                    contact.contact_id, source_bot, target_bot, confidence, reason, _failed(exc)
                )
                raise
            await self._record(contact.contact_id, source_bot, target_bot, confidence, reason, _EXECUTED)
            contact.current_bot = target_bot
            return contact

    async def hand_off(self, contact: Contact, request: HandoffRequest, *, key: str) -> HandoffResult:
        """Evaluate and, when allowed, execute a handoff inside its ``handoff.<route>`` span.

        Args:
            contact: the contact (updated in place when the handoff runs).
            request: what the source bot asked for.
            key: idempotency base for the outbound GHL actions.

        Returns:
            The outcome: ``executed`` or ``blocked:<reason>`` (also recorded in the store).
        """
        with create_handoff_span(
            source_bot=request.source_bot,
            target_bot=request.target_bot,
            contact_id=contact.contact_id,
            confidence=request.confidence,
            reason=request.reason,
        ):
            decision = await self.evaluate_handoff(
                contact.contact_id, request.source_bot, request.target_bot, request.confidence
            )
            if not decision.allowed:
                set_handoff_outcome(decision.outcome)
                await self._record(
                    contact.contact_id,
                    request.source_bot,
                    request.target_bot,
                    request.confidence,
                    request.reason,
                    decision.outcome,
                )
                logger.info(
                    "handoff blocked",
                    extra={"contact_id": contact.contact_id, "outcome": decision.outcome},
                )
                return HandoffResult(request, decision.outcome, contact)
            await self.execute_handoff(
                contact,
                request.source_bot,
                request.target_bot,
                request.confidence,
                request.reason,
                key=key,
            )
            return HandoffResult(request, _EXECUTED, contact)

    async def escalate(
        self,
        contact: Contact,
        source_bot: str,
        reason: str,
        *,
        key: str,
        notice: str | None,
        channel: str = "SMS",
        confidence: float = 1.0,
    ) -> HandoffResult:
        """Hand a contact to a person: span ``handoff.<bot>_to_human``.

        Adds the ``Needs-Human`` and ``Handoff-<Bot>-to-Human`` tags, creates a
        GHL task for the agent, sends ``notice`` to the contact (when given) and
        sets ``contact.escalated`` so no bot answers it again.

        Args:
            contact: the contact (updated in place).
            source_bot: the bot that had the contact.
            reason: ``human_requested`` or ``red_flag:<flag>``.
            key: idempotency base for the GHL actions.
            notice: the message telling the contact a person will follow up.
            channel: the channel the notice goes out on.
            confidence: how sure the decoder was (1.0 for an explicit request).

        Returns:
            The outcome (``executed`` or ``blocked:already_escalated``).
        """
        request = HandoffRequest(source_bot, "human", confidence, reason)
        with create_handoff_span(
            source_bot=source_bot,
            target_bot="human",
            contact_id=contact.contact_id,
            confidence=confidence,
            reason=reason,
        ):
            decision = await self.evaluate_handoff(contact.contact_id, source_bot, "human", confidence)
            if not decision.allowed:
                set_handoff_outcome(decision.outcome)
                contact.escalated = True
                return HandoffResult(request, decision.outcome, contact)
            with _tracer.start_as_current_span("jorge.handoff.execute_handoff") as span:
                span.set_attribute("handoff.contact_id", contact.contact_id)
                span.set_attribute("handoff.route", f"{source_bot}_to_human")
                await self._mark_in_progress(contact.contact_id, source_bot, "human", confidence, reason)
                base = f"{key}:{source_bot}_to_human"
                await self._add_tags(contact, [ESCALATION_TAG, handoff_tag(source_bot, "human")], key=base)
                await self._outbox.submit(
                    f"{base}:create_task",
                    "create_task",
                    {
                        "contact_id": contact.contact_id,
                        "title": f"Take over conversation ({reason})",
                        "body": (
                            f"The {source_bot} bot escalated this contact to a person ({reason}). "
                            "Read the conversation in GHL and reply yourself; the bots have stopped."
                        ),
                        "due_at": (self._clock() + self._agent_task_due).isoformat(),
                    },
                    contact_id=contact.contact_id,
                )
                if notice:
                    await self._outbox.submit(
                        f"{base}:notice",
                        "send_message",
                        {"contact_id": contact.contact_id, "channel": channel, "message": notice},
                        contact_id=contact.contact_id,
                    )
                await self._record(contact.contact_id, source_bot, "human", confidence, reason, _EXECUTED)
            contact.escalated = True
            return HandoffResult(request, _EXECUTED, contact)

    # -- helpers ---------------------------------------------------------------
    async def _add_tags(self, contact: Contact, tags: Sequence[str], *, key: str) -> None:
        new = [t for t in tags if t and t not in contact.tags]
        if not new:
            return
        await self._outbox.submit(
            f"{key}:add_tags",
            "add_tags",
            {"contact_id": contact.contact_id, "tags": new},
            contact_id=contact.contact_id,
        )
        contact.tags.extend(new)

    async def _remove_tags(self, contact: Contact, tags: Sequence[str], *, key: str) -> None:
        # Only tags we know the contact carries: removing one it never had is a wasted API call.
        present = [t for t in tags if t and t in contact.tags]
        if not present:
            return
        await self._outbox.submit(
            f"{key}:remove_tags",
            "remove_tags",
            {"contact_id": contact.contact_id, "tags": present},
            contact_id=contact.contact_id,
        )
        contact.tags[:] = [t for t in contact.tags if t not in present]

    async def _mark_in_progress(
        self, contact_id: str, source_bot: str, target_bot: str, confidence: float, reason: str
    ) -> None:
        await self._record(contact_id, source_bot, target_bot, confidence, reason, _IN_PROGRESS)

    async def _record(
        self, contact_id: str, source_bot: str, target_bot: str, confidence: float, reason: str, outcome: str
    ) -> Handoff:
        return await self._store.record_handoff(
            contact_id, source_bot, target_bot, confidence, reason, outcome, created_at=self._clock()
        )


def _blocked(reason: str) -> HandoffDecision:
    return HandoffDecision(False, f"blocked:{reason}")


def _failed(exc: BaseException) -> str:
    return f"failed:{type(exc).__name__}"


def _in_flight(history: Sequence[Handoff], now: datetime) -> bool:
    """True when the newest row is a recent ``in_progress`` with no outcome recorded after it."""
    if not history:
        return False
    ordered: list[Any] = sorted(history, key=lambda h: (h.created_at, h.id))
    last = ordered[-1]
    return bool(last.outcome == _IN_PROGRESS and now - last.created_at < IN_FLIGHT_WINDOW)
