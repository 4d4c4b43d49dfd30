"""Per-contact dispatch: one contact's events run one at a time, in ``dateAdded`` order.

A contact's messages can reach different replicas (GHL retries, load
balancing) and be stored in any order. Whoever holds the contact's lock drains
every ``received`` event of that contact, oldest ``dateAdded`` first (then
arrival), so the bots see the conversation in the order the lead wrote it::

    outcomes = await drain_contact(store, processor, contact_id)

An event is processed once it has been stored for :data:`ORDER_WINDOW` (300 ms),
so a message written a moment earlier but stored a moment later (through
another replica) still goes first. A caller that cannot take the lock at once
leaves its event to the holder: the
holder checks again after letting the lock go, so an event stored while the
lock was held is never stranded (and the background worker takes whatever a
crashed holder left). The drain runs in one unit of work, which keeps the lock
until its writes are stored (issue 14); the bot turn's own ``contact_lock``
inside it is then a no-op.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from ghl_real_estate_ai.errors import LockTimeoutError
from ghl_real_estate_ai.integrations.ghl.webhook import (
    EventProcessor,
    ProcessOutcome,
    parse_webhook,
    process_claimed_event,
)
from ghl_real_estate_ai.storage.base import Store

__all__ = ["ORDER_WINDOW", "TRY_LOCK_SECONDS", "drain_contact"]

logger = logging.getLogger(__name__)

TRY_LOCK_SECONDS = 0.2
"""How long a caller waits for a contact's lock before leaving its event to the holder."""

ORDER_WINDOW = timedelta(milliseconds=300)
"""How long an event waits after it was stored before it is processed (the default of
``CONTACT_ORDER_WINDOW_MS``), so that a message written just before it but stored a
moment later (another replica, a slower request) is processed first."""

_BATCH = 20


async def drain_contact(
    store: Store,
    processor: EventProcessor,
    contact_id: str,
    *,
    max_attempts: int = 5,
    wait: float = TRY_LOCK_SECONDS,
    order_window: timedelta = ORDER_WINDOW,
) -> dict[int, ProcessOutcome]:
    """Process the contact's ``received`` events in ``dateAdded`` order while holding its lock.

    Args:
        store: the store holding the events.
        processor: runs the bots.
        contact_id: the contact.
        max_attempts: claims after which a failing event is given up.
        wait: seconds to wait for the lock; when another holder keeps it, return
            (the holder drains what is stored).
        order_window: how long an event must have been stored before it is processed.

    Returns:
        The outcome of each event this call processed, by event id (empty when
        the lock was held by someone else).
    """
    outcomes: dict[int, ProcessOutcome] = {}
    tried: set[int] = set()  # a failed event goes back to received: it waits for the worker
    while True:
        try:
            async with store.unit_of_work(), store.contact_lock(contact_id, timeout=wait):
                await _drain_locked(store, processor, contact_id, max_attempts, outcomes, tried, order_window)
        except LockTimeoutError:
            logger.debug("contact %s is being drained by another holder", contact_id)
            return outcomes
        # Released: a replica that found the lock taken may have stored an event meanwhile.
        pending = await store.pending_contact_events(contact_id, limit=len(tried) + 1)
        if all(event.id in tried for event in pending):
            return outcomes


async def _drain_locked(
    store: Store,
    processor: EventProcessor,
    contact_id: str,
    max_attempts: int,
    outcomes: dict[int, ProcessOutcome],
    tried: set[int],
    order_window: timedelta,
) -> None:
    # One batch per hold: what arrives meanwhile is found by the check after the release.
    # Only settled events go: an event stored ORDER_WINDOW ago or more. A message sent a
    # moment earlier through another replica has been stored by then, and sorts first.
    while True:
        pending = [e for e in await store.pending_contact_events(contact_id, _BATCH) if e.id not in tried]
        if not pending:
            return
        wait = (pending[0].received_at + order_window - datetime.now(UTC)).total_seconds()
        if wait <= 0:
            break
        await asyncio.sleep(wait)
    cutoff = datetime.now(UTC) - order_window
    events = list(itertools.takewhile(lambda e: e.received_at <= cutoff, pending))
    for event in events:
        tried.add(event.id)
        if not await store.claim_webhook_event(event.id):
            continue
        try:
            message = parse_webhook(event.payload)
        except ValidationError as exc:
            await store.finish_webhook_event(event.id, "failed", f"payload no longer valid: {exc}")
            logger.error("webhook event %d has an unreadable payload: %s", event.id, exc)
            outcomes[event.id] = "failed"
            continue
        outcomes[event.id] = await process_claimed_event(
            store, processor, event.id, message, max_attempts=max_attempts
        )
