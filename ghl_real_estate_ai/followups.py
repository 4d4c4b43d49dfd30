"""The lead follow-up sequence: durable day-3/7/14/30 steps, run days later in their own traces.

When a lead goes quiet, four steps are stored in the follow-ups table, each with
the W3C trace context of the request that scheduled it:

=====  =======================  ============================================
day    step (lead bot node)     what it does
=====  =======================  ============================================
3      ``send_day_3_sms``       a check-in SMS
7      ``initiate_day_7_call``  a GHL call task for the agent
14     ``send_day_14_email``    an e-mail, with the CMA summary when there is one
30     ``send_day_30_nudge``    a last SMS; the contact then moves to nurture
=====  =======================  ============================================

Rules (this module is their one home):

* :func:`restart_sequence` is what a conversation calls on every inbound message:
  it cancels the contact's pending steps and schedules the four again from now,
  so a reply always restarts the count.
* Opted-out and escalated contacts get nothing: no step is scheduled for them,
  and a step that comes due after they opted out or escalated is skipped.
* :class:`FollowUpRunner` claims due rows (exactly once across replicas: the
  store's ``claim_due_followups``), runs each step under the contact's lock in a
  NEW trace whose root span ``lead_bot.followup`` LINKS to the trace that
  scheduled it (no trace spans 30 days), and records the outcome. A failing step
  is retried with exponential backoff and marked ``dead`` after ``max_attempts``,
  logged at ERROR and counted in the :class:`RunReport`.

Usage::

    runner = FollowUpRunner(store, lead_bot, clock=SystemClock())
    report = await runner.run_due()          # what is due now
    report = await runner.run_due(now=when)  # what is due at ``when``
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from opentelemetry.trace import Span, Status, StatusCode

from ghl_real_estate_ai.clock import Clock, SystemClock, ensure_utc
from ghl_real_estate_ai.observability.workflow_tracing import start_linked_trace
from ghl_real_estate_ai.storage.base import Contact, FollowUp, Store

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "FOLLOWUP_SPAN_NAME",
    "FOLLOWUP_STEPS",
    "NURTURE_STEP",
    "FollowUpRunner",
    "FollowUpStepRunner",
    "RunReport",
    "StepOutcome",
    "exponential_backoff",
    "restart_sequence",
    "schedule_sequence",
]

logger = logging.getLogger(__name__)

FOLLOWUP_STEPS: tuple[tuple[str, timedelta], ...] = (
    ("send_day_3_sms", timedelta(days=3)),
    ("initiate_day_7_call", timedelta(days=7)),
    ("send_day_14_email", timedelta(days=14)),
    ("send_day_30_nudge", timedelta(days=30)),
)
"""The sequence: (lead bot node name, delay after the last inbound message)."""

NURTURE_STEP = "send_day_30_nudge"
"""The last step; once it has run the contact is in nurture."""

FOLLOWUP_SPAN_NAME = "lead_bot.followup"
"""Name of the root span of every follow-up run (static; ids go in attributes)."""

DEFAULT_MAX_ATTEMPTS = 5
"""Runs of one step before it is marked ``dead``."""


def _eligible(contact: Contact | None) -> str | None:
    """Why a contact must get no follow-up, or None when it may."""
    if contact is None:
        return None
    if contact.opted_out:
        return "opted_out"
    if contact.escalated:
        return "escalated"
    return None


async def schedule_sequence(
    store: Store,
    contact_id: str,
    *,
    now: datetime,
    trace_context: Mapping[str, str],
) -> list[FollowUp]:
    """Store the four follow-up steps of a contact, due 3, 7, 14 and 30 days after ``now``.

    Nothing is scheduled for a contact that opted out or was escalated to a human.

    Args:
        store: where the steps are kept.
        contact_id: the GHL contact.
        now: the instant the count starts from (the last inbound message); naive means UTC.
        trace_context: W3C carrier of the scheduling trace, from
            ``propagate_trace_context({})``; each run links to it.

    Returns:
        The stored steps in due order (empty when the contact gets none).
    """
    start = ensure_utc(now, name="now")
    reason = _eligible(await store.get_contact(contact_id))
    if reason is not None:
        logger.info("no follow-ups scheduled for contact %s: %s", contact_id, reason)
        return []
    carrier = {str(k): str(v) for k, v in trace_context.items()}
    return [
        await store.schedule_followup(contact_id, step, start + delay, carrier)
        for step, delay in FOLLOWUP_STEPS
    ]


async def restart_sequence(
    store: Store,
    contact_id: str,
    *,
    now: datetime,
    trace_context: Mapping[str, str],
    defer: bool = False,
) -> list[FollowUp]:
    """Cancel a contact's pending steps and schedule the sequence again from ``now``.

    Call it on every inbound message: a reply cancels what was pending, and the
    count of silent days starts again. Both happen in one transaction.

    Args:
        store: where the steps are kept.
        contact_id: the GHL contact.
        now: the instant of the reply; naive means UTC.
        trace_context: W3C carrier of the current trace (``propagate_trace_context({})``).
        defer: inside a unit of work, write the steps with its other writes (their ids are then 0).

    Returns:
        The newly stored steps (empty for an opted-out or escalated contact).
    """
    start = ensure_utc(now, name="now")
    contact = await store.get_contact(contact_id)
    reason = _eligible(contact)
    if reason is not None:
        logger.info("no follow-ups scheduled for contact %s: %s", contact_id, reason)
        await store.cancel_followups(contact_id)
        return []
    carrier = {str(k): str(v) for k, v in trace_context.items()}
    # One transaction, one round trip (issue 14): cancel, then the four steps in one INSERT.
    steps = [(step, start + delay) for step, delay in FOLLOWUP_STEPS]
    return await store.replace_followups(contact_id, steps, carrier, defer=defer)


class FollowUpStepRunner(Protocol):
    """What runs one step: the lead bot (``LeadBot.run_followup``)."""

    async def run_followup(self, step: str, contact: Contact) -> Any:
        """Run the lead bot node named ``step`` for ``contact``; raise on failure."""
        ...


def exponential_backoff(
    base: timedelta = timedelta(minutes=5),
    *,
    factor: float = 2.0,
    cap: timedelta = timedelta(hours=6),
) -> Callable[[int], timedelta]:
    """A retry delay policy: ``base * factor**(attempt-1)``, at most ``cap``.

    Args:
        base: delay after the first failed attempt.
        factor: growth per further attempt.
        cap: longest delay.

    Returns:
        A function from the number of the attempt that failed (1-based) to the delay.
    """
    if base <= timedelta() or factor < 1 or cap < base:
        raise ValueError(
            f"exponential_backoff needs base > 0, factor >= 1, cap >= base; got {base!r}, {factor!r}, {cap!r}"
        )

    ceiling = cap / base

    def delay(attempt: int) -> timedelta:
        # Cap the multiplier before multiplying: a big attempt number must not overflow timedelta.
        return min(cap, base * min(factor ** min(max(0, attempt - 1), 64), ceiling))

    return delay


Outcome = Literal["done", "skipped", "retry", "dead"]


@dataclass(slots=True)
class StepOutcome:
    """What happened to one claimed step."""

    followup_id: int
    contact_id: str
    step: str
    due_at: datetime
    outcome: Outcome
    attempt: int
    trace_id: str | None = None
    reason: str | None = None
    """Why a step was skipped (``opted_out``, ``escalated``, ``cancelled``, ...)."""
    error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(slots=True)
class RunReport:
    """The result of one :meth:`FollowUpRunner.run_due` (or ``run_all_due``) call."""

    now: datetime
    outcomes: list[StepOutcome] = field(default_factory=list)

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def claimed(self) -> int:
        """Steps this run claimed."""
        return len(self.outcomes)

    @property
    def done(self) -> int:
        """Steps that ran successfully."""
        return self._count("done")

    @property
    def skipped(self) -> int:
        """Steps not run because the contact opted out, escalated or replied."""
        return self._count("skipped")

    @property
    def retried(self) -> int:
        """Steps that failed and will be tried again."""
        return self._count("retry")

    @property
    def dead(self) -> int:
        """Steps that failed for the last time."""
        return self._count("dead")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (datetimes as ISO-8601)."""

        def _iso(value: object) -> object:
            return value.isoformat() if isinstance(value, datetime) else value

        return {
            "now": self.now.isoformat(),
            "claimed": self.claimed,
            "done": self.done,
            "skipped": self.skipped,
            "retried": self.retried,
            "dead": self.dead,
            "steps": [{k: _iso(v) for k, v in asdict(o).items()} for o in self.outcomes],
        }


class FollowUpRunner:
    """Runs the follow-up steps that are due, each exactly once, in its own linked trace."""

    def __init__(
        self,
        store: Store,
        lead_bot: FollowUpStepRunner,
        *,
        clock: Clock | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Callable[[int], timedelta] | None = None,
        lock_timeout: float = 30.0,
        stale_after: timedelta | None = timedelta(minutes=15),
    ) -> None:
        """Build a runner.

        Args:
            store: the store holding the follow-ups table.
            lead_bot: runs a step (``LeadBot``).
            clock: gives ``now`` when :meth:`run_due` gets none.
            max_attempts: runs of one step before it is marked ``dead`` (>= 1).
            backoff: delay before the next attempt, from the number of the attempt that
                failed; :func:`exponential_backoff` (5 min doubling, at most 6 h) by default.
            lock_timeout: seconds to wait for the contact's lock (a webhook may hold it).
            stale_after: a step left ``running`` this long by a worker that died is
                taken over (None: never).
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts!r}")
        self.store = store
        self.lead_bot = lead_bot
        self.clock: Clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self.backoff = backoff or exponential_backoff()
        self.lock_timeout = lock_timeout
        self.stale_after = stale_after

    async def run_due(self, now: datetime | None = None, limit: int = 20) -> RunReport:
        """Claim the steps due at ``now`` and run them, oldest first.

        Steps of one contact run in due order. Safe to call from several
        processes at once: the store hands each due row to one caller only.

        Args:
            now: the instant to run at (naive means UTC); the clock's time when None.
            limit: most steps claimed in this call.

        Returns:
            What happened to each claimed step.
        """
        at = ensure_utc(now, name="now") if now is not None else self.clock.now()
        # The store stamps ``updated_at`` with the database host's wall clock, so
        # "stuck since" is measured on the wall clock, not on an injected one
        # (a simulated day 31 must not declare a step another worker runs stale).
        stale_before = SystemClock().now() - self.stale_after if self.stale_after is not None else None
        claimed = await self.store.claim_due_followups(at, limit, stale_before=stale_before)
        report = RunReport(now=at)
        for followup in sorted(claimed, key=lambda f: (f.due_at, f.id)):
            report.outcomes.append(await self._run_one(followup, at))
        return report

    async def run_all_due(self, now: datetime | None = None, *, batch: int = 20) -> RunReport:
        """Run batches of :meth:`run_due` until nothing is due at ``now`` any more.

        Ends: a failed step is due again only after its backoff, later than ``now``.

        Args:
            now: the instant to run at (naive means UTC); the clock's time when None.
            batch: steps claimed per batch.

        Returns:
            One report over every batch.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch!r}")
        at = ensure_utc(now, name="now") if now is not None else self.clock.now()
        report = RunReport(now=at)
        while True:
            part = await self.run_due(at, batch)
            report.outcomes += part.outcomes
            if part.claimed < batch:
                return report

    async def _run_one(self, followup: FollowUp, now: datetime) -> StepOutcome:
        # The store counts the claim as an attempt.
        attempt = max(1, followup.attempts)
        outcome = StepOutcome(
            followup_id=followup.id,
            contact_id=followup.contact_id,
            step=followup.step,
            due_at=followup.due_at,
            outcome="done",
            attempt=attempt,
        )
        # A new root that LINKS to the trace that scheduled the step: the run is
        # its own trace, days after the request that asked for it (no 30-day trace).
        with start_linked_trace(
            FOLLOWUP_SPAN_NAME,
            followup.trace_context,
            **{
                "workflow.bot_type": "lead_bot",
                "workflow.node_name": "followup",
                "workflow.contact_id": followup.contact_id,
                "followup.id": followup.id,
                "followup.step": followup.step,
                "followup.attempt": attempt,
                "followup.due_at": followup.due_at.isoformat(),
                "followup.lag_seconds": max(0.0, (now - followup.due_at).total_seconds()),
            },
        ) as span:
            span_context = span.get_span_context()
            outcome.trace_id = f"{span_context.trace_id:032x}" if span_context.is_valid else None
            try:
                await self._execute(followup, outcome)
            except Exception as exc:  # a failing step is recorded and retried, never raised
                await self._record_failure(followup, outcome, exc, now, span)
            span.set_attribute("followup.outcome", outcome.outcome)
            if outcome.reason:
                span.set_attribute("followup.skip_reason", outcome.reason)
        return outcome

    async def _execute(self, followup: FollowUp, outcome: StepOutcome) -> None:
        # The contact's lock serialises the step with a webhook for the same
        # contact: a reply that lands now either restarts the sequence first
        # (and this step is skipped) or waits until the step has been sent.
        async with self.store.contact_lock(followup.contact_id, timeout=self.lock_timeout):
            contact = await self.store.get_contact(followup.contact_id)
            reason = "unknown_contact" if contact is None else _eligible(contact)
            if reason is None:
                reason = await self._superseded(followup)
            if reason is not None or contact is None:
                outcome.outcome = "skipped"
                outcome.reason = reason
                await self.store.complete_followup(followup.id)
                if reason in ("opted_out", "escalated", "unknown_contact"):
                    await self.store.cancel_followups(followup.contact_id)
                logger.info(
                    "follow-up %s (%s) for contact %s skipped: %s",
                    followup.id,
                    followup.step,
                    followup.contact_id,
                    reason,
                )
                return
            await self.lead_bot.run_followup(followup.step, contact)
            await self.store.complete_followup(followup.id)

    async def _superseded(self, followup: FollowUp) -> str | None:
        """Why a claimed step must not run any more, or None.

        ``cancel_followups`` only reaches steps still waiting, so a reply that
        arrived after this step was claimed shows as a newer schedule of the same
        step (every reply restarts the whole sequence).
        """
        rows = await self.store.list_followups(followup.contact_id)
        for row in rows:
            if row.id == followup.id and row.status != "running":
                return "cancelled"
            if row.step == followup.step and row.id > followup.id:
                return "replied"
        return None

    async def _record_failure(
        self, followup: FollowUp, outcome: StepOutcome, exc: Exception, now: datetime, span: Span
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        outcome.error = error
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, error))
        if outcome.attempt >= self.max_attempts:
            outcome.outcome = "dead"
            await self.store.fail_followup(followup.id, error, None)
            logger.error(
                "follow-up %s (%s) for contact %s is dead after %d attempts: %s",
                followup.id,
                followup.step,
                followup.contact_id,
                outcome.attempt,
                error,
            )
            return
        next_at = now + self.backoff(outcome.attempt)
        outcome.outcome = "retry"
        outcome.next_attempt_at = next_at
        await self.store.fail_followup(followup.id, error, next_at)
        logger.warning(
            "follow-up %s (%s) for contact %s failed (attempt %d of %d), retrying at %s: %s",
            followup.id,
            followup.step,
            followup.contact_id,
            outcome.attempt,
            self.max_attempts,
            next_at.isoformat(),
            error,
        )
