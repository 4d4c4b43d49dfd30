"""Per-contact dispatch: one contact's events run one at a time, in ``dateAdded`` order.

A contact's messages can reach different replicas (GHL retries, load
balancing) and be stored in any order. Whoever holds the contact's lock drains
every ``received`` event of that contact, oldest ``dateAdded`` first (then
arrival), so the bots see the conversation in the order the lead wrote it::

    outcomes = await drain_contact(store, processor, contact_id)

An event is processed once it has *settled*: :data:`ORDER_WINDOW` (300 ms) after
the message was written (its ``dateAdded``), so that a message written a moment
earlier but stored a moment later (through another replica) still goes first.
The wait is counted from ``dateAdded`` and clamped between "at once" and the
whole window after the event was stored (:func:`settles_at`): a message that
reaches us already older than the window is processed at once, and an undated
one waits the whole window. The request that stored an event waits for it to
settle *before* it asks for the contact's lock, so no lock, connection or unit
of work is held while it waits; a lock holder processes only the settled
events, oldest ``dateAdded`` first, and stops at the first one that has not
settled (its own request takes it when it has).

A caller that cannot take the lock at once leaves its event to the holder: the
holder checks again after letting the lock go, so a settled event stored while
the lock was held is never stranded (and the background worker takes whatever a
crashed holder left). The drain runs in one unit of work, which keeps the lock
until its writes are stored (issue 14); the bot turn's own ``contact_lock``
inside it is then a no-op.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from ghl_real_estate_ai.errors import LockTimeoutError
from ghl_real_estate_ai.integrations.ghl.webhook import (
    EventProcessor,
    ProcessOutcome,
    parse_webhook,
    process_claimed_event,
)
from ghl_real_estate_ai.storage.base import Store, WebhookEvent

__all__ = ["ORDER_WINDOW", "TRY_LOCK_SECONDS", "drain_contact", "settles_at"]

logger = logging.getLogger(__name__)

TRY_LOCK_SECONDS = 0.2
"""How long a caller waits for a contact's lock before leaving its event to the holder."""

ORDER_WINDOW = timedelta(milliseconds=300)
"""How long after it was written (``dateAdded``) an event waits before it is processed (the
default of ``CONTACT_ORDER_WINDOW_MS``), so that a message written just before it but stored
a moment later (another replica, a slower request) is processed first."""

_BATCH = 20


def _utcnow() -> datetime:
    return datetime.now(UTC)


def settles_at(event: WebhookEvent, window: timedelta) -> datetime:
    """When ``event`` may be processed: ``dateAdded`` + ``window``, within [stored, stored + ``window``].

    A message older than the window when it was stored is processed at once; one
    without a ``dateAdded`` (or dated in the future) waits the whole window after
    it was stored.
    """
    latest = event.received_at + window
    if event.date_added is None:
        return latest
    return min(max(event.date_added + window, event.received_at), latest)


async def drain_contact(
    store: Store,
    processor: EventProcessor,
    contact_id: str,
    *,
    max_attempts: int = 5,
    wait: float = TRY_LOCK_SECONDS,
    order_window: timedelta = ORDER_WINDOW,
    not_before: datetime | None = None,
    claim: int | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> dict[int, ProcessOutcome]:
    """Process the contact's ``received`` events in ``dateAdded`` order while holding its lock.

    Args:
        store: the store holding the events.
        processor: runs the bots.
        contact_id: the contact.
        max_attempts: claims after which a failing event is given up.
        wait: seconds to wait for the lock; when another holder keeps it, return
            (the holder drains what is stored).
        order_window: the settling time of an event (see :func:`settles_at`).
        not_before: wait until then before asking for the lock (the caller's own
            event's :func:`settles_at`); the wait holds nothing.
        claim: the caller's own event, settled by ``not_before``: when it is the contact's
            only ``received`` event, the round trip that takes the lock claims it too
            (one round trip fewer than claiming it after; on PostgreSQL one statement fewer too).
        clock: the current time, against which events settle (the worker passes its own).

    Returns:
        The outcome of each event this call processed, by event id (empty when
        the lock was held by someone else).
    """
    outcomes: dict[int, ProcessOutcome] = {}
    tried: set[int] = set()  # a failed event goes back to received: it waits for the worker
    if not_before is not None:
        delay = (not_before - clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
    while True:
        # Settled by now: everything settled when this pass began (the clock of a sleep that
        # just ended may still read a hair before ``not_before``).
        now = clock() if not_before is None else max(clock(), not_before)
        try:
            async with store.unit_of_work() as uow:
                # The caller's own event has settled: when nothing else of the contact waits,
                # it is the one to process first, and the lock's round trip claims it.
                uow.claim = claim if not tried else None
                try:
                    async with store.contact_lock(contact_id, timeout=wait):
                        # The release reads the contact's events again in its own batch.
                        uow.recheck, uow.rechecked = contact_id, None
                        await _drain_locked(
                            store, processor, contact_id, max_attempts, outcomes, tried, order_window, now
                        )
                finally:
                    uow.claim = uow.claimed = None
        except LockTimeoutError:
            logger.debug("contact %s is being drained by another holder", contact_id)
            return outcomes
        # Released: a replica that found the lock taken may have stored an event meanwhile.
        # One that has not settled yet is left to its own request, which waits for it.
        pending = uow.rechecked
        if pending is None:
            pending = await store.pending_contact_events(contact_id, limit=len(tried) + _BATCH)
        now = clock()
        if all(event.id in tried or settles_at(event, order_window) > now for event in pending):
            return outcomes


async def _drain_locked(
    store: Store,
    processor: EventProcessor,
    contact_id: str,
    max_attempts: int,
    outcomes: dict[int, ProcessOutcome],
    tried: set[int],
    order_window: timedelta,
    now: datetime,
) -> None:
    # One batch per hold: what arrives meanwhile is found by the check after the release.
    # Only settled events go, oldest dateAdded first, up to the first one that has not
    # settled: a message written before it may still be on its way. Nothing waits here.
    pending = [e for e in await store.pending_contact_events(contact_id, _BATCH) if e.id not in tried]
    events = list(itertools.takewhile(lambda e: settles_at(e, order_window) <= now, pending))
    for event in events:
        tried.add(event.id)
        if not await store.claim_webhook_event(event.id):
            continue
        claimed = replace(event, status="processing", attempts=event.attempts + 1)
        try:
            message = parse_webhook(event.payload)
        except ValidationError as exc:
            await store.finish_webhook_event(event.id, "failed", f"payload no longer valid: {exc}")
            logger.error("webhook event %d has an unreadable payload: %s", event.id, exc)
            outcomes[event.id] = "failed"
            continue
        outcomes[event.id] = await process_claimed_event(
            store, processor, event.id, message, max_attempts=max_attempts, event=claimed
        )
