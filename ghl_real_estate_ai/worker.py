"""The in-app background worker: retries the outbox and picks up webhook events left behind.

Every ``poll_seconds`` it runs its jobs in order, each isolated (one failing
job is logged and the others still run):

1. ``outbox``: :meth:`Outbox.deliver_due` sends the actions whose retry time came,
   reconciles what a dead process left ``sending`` and probes a failing GHL;
2. ``webhooks``: events stored but not processed (still ``received`` because a
   processing attempt failed or the process died before claiming them, or
   stuck ``processing`` for more than ``stuck_after``: a crash) are claimed and
   run through the same path as the webhook route.

Beside the jobs, the outbox heartbeat runs every quarter of the outbox's
``owner_timeout``, whatever ``poll_seconds`` is: a live process's items are
never taken for a dead one's.

More periodic work (e.g. the follow-up runner) joins with :meth:`add_job`::

    worker = BackgroundWorker(store, outbox, processor, poll_seconds=settings.followup_poll_seconds)
    worker.add_job("followups", runner.run_due)
    await worker.run_once()      # at start-up: catch up before serving
    worker.start()
    ...
    await worker.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import ValidationError

from ghl_real_estate_ai.dispatch import ORDER_WINDOW, drain_contact
from ghl_real_estate_ai.integrations.ghl.webhook import EventProcessor, parse_webhook, process_claimed_event
from ghl_real_estate_ai.observability.workflow_tracing import link_from_trace_context
from ghl_real_estate_ai.outbox import Outbox, utcnow
from ghl_real_estate_ai.storage.base import Store

__all__ = ["BackgroundWorker", "Job"]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

Job = Callable[[], Awaitable[Any]]
"""A periodic job: an async callable with no arguments; its result is logged at debug level."""


class BackgroundWorker:
    """Runs periodic jobs in one asyncio task.

    Args:
        store: the store holding webhook events.
        outbox: delivers due outbox items.
        processor: runs the bots for a webhook event.
        poll_seconds: pause between runs.
        clock: the current time (tests pass their own).
        stuck_after: how long an event may sit ``processing`` before the worker takes
            it over (its process died mid-turn).
        received_grace: how long a ``received`` event is left to the request (or
            lock holder) that stored it before the worker drains its contact.
        order_window: how long after its ``dateAdded`` an event is processed (see
            :func:`~ghl_real_estate_ai.dispatch.settles_at`).
        max_event_attempts: processing attempts before an event is ``failed`` for good.
        batch: events and outbox items handled per run.
        stop_grace: seconds :meth:`stop` lets a running pass finish before cancelling it.
    """

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        processor: EventProcessor,
        *,
        poll_seconds: float,
        clock: Callable[[], datetime] = utcnow,
        stuck_after: timedelta = timedelta(minutes=2),
        max_event_attempts: int = 5,
        batch: int = 50,
        stop_grace: float = 5.0,
        received_grace: timedelta = timedelta(seconds=2),
        order_window: timedelta = ORDER_WINDOW,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be > 0, got {poll_seconds!r}")
        self.store = store
        self.outbox = outbox
        self.processor = processor
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.stuck_after = stuck_after
        self.max_event_attempts = max_event_attempts
        self.batch = batch
        self.stop_grace = stop_grace
        self.received_grace = received_grace
        self.order_window = order_window
        self.jobs: list[tuple[str, Job]] = [
            ("outbox", self.deliver_outbox),
            ("webhooks", self.reprocess_events),
        ]
        self._task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def add_job(self, name: str, job: Job) -> None:
        """Run ``job`` on every pass, after the jobs already there."""
        if any(existing == name for existing, _ in self.jobs):
            raise ValueError(f"a worker job named {name!r} exists already: pick another name")
        self.jobs.append((name, job))

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None and not self._task.done()

    async def run_once(self) -> dict[str, Any]:
        """Run every job once, in order.

        Returns:
            Each job's result by name (None for a job that raised; its error is logged).
        """
        results: dict[str, Any] = {}
        for name, job in self.jobs:
            try:
                results[name] = await job()
            except Exception:
                logger.exception("worker job %r failed; the next pass retries it", name)
                results[name] = None
        return results

    async def deliver_outbox(self) -> int:
        """Send due outbox items; returns how many were delivered."""
        return await self.outbox.deliver_due(self.clock(), self.batch)

    async def reprocess_events(self) -> int:
        """Process stored events nobody finished; returns how many were processed."""
        now = self.clock()
        cutoff = now - self.stuck_after
        # A received event is safe to drain at once (claims happen under the contact's lock):
        # a short grace lets the request that stored it drain it first.
        events = await self.store.list_unprocessed_webhook_events(now - self.received_grace, self.batch)
        processed = 0
        drained: set[str] = set()
        for event in events:
            if event.status == "received" and event.contact_id:
                # A contact's events go in dateAdded order: drain the contact, not one event.
                if event.contact_id in drained:
                    continue
                drained.add(event.contact_id)
                with _tracer.start_as_current_span(
                    "worker.process_webhook_event",
                    context=Context(),
                    links=link_from_trace_context(event.trace_context),
                    attributes={"webhook.event_id": event.id, "webhook.attempt": event.attempts + 1},
                ):
                    outcomes = await drain_contact(
                        self.store,
                        self.processor,
                        event.contact_id,
                        max_attempts=self.max_event_attempts,
                        wait=5.0,
                        order_window=self.order_window,
                        clock=self.clock,
                    )
                processed += sum(outcome == "processed" for outcome in outcomes.values())
                continue
            if not await self.store.claim_webhook_event(event.id, stale_before=cutoff):
                continue  # another replica, or the request itself, has it
            # A new trace (the request is long gone) that links to the one that stored the event.
            with _tracer.start_as_current_span(
                "worker.process_webhook_event",
                context=Context(),
                links=link_from_trace_context(event.trace_context),
                attributes={"webhook.event_id": event.id, "webhook.attempt": event.attempts + 1},
            ):
                try:
                    message = parse_webhook(event.payload)
                except ValidationError as exc:
                    # Stored payloads passed validation once; a model change could break that.
                    await self.store.finish_webhook_event(
                        event.id, "failed", f"payload no longer valid: {exc}"
                    )
                    logger.error("webhook event %d has an unreadable payload: %s", event.id, exc)
                    continue
                outcome = await process_claimed_event(
                    self.store, self.processor, event.id, message, max_attempts=self.max_event_attempts
                )
            if outcome == "processed":
                processed += 1
        return processed

    def start(self) -> None:
        """Start the periodic loop in a task (no-op when it runs already)."""
        if self.running:
            return
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="jorge-background-worker")
        self._beat_task = asyncio.create_task(self._beat(), name="jorge-outbox-heartbeat")

    async def stop(self) -> None:
        """Stop the loop: let a running pass finish for ``stop_grace`` seconds, then cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        beat, self._beat_task = self._beat_task, None
        if beat is not None:
            beat.cancel()
            await asyncio.wait({beat})
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.stop_grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            logger.warning("background worker cancelled after a %.1fs grace period", self.stop_grace)

    async def _beat(self) -> None:
        interval = max(0.5, self.outbox.owner_timeout.total_seconds() / 4)
        while not self._stopping.is_set():
            try:
                await self.outbox.heartbeat()
            except Exception as exc:  # a database blip: the next beat tries again
                logger.warning("outbox heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.poll_seconds)
