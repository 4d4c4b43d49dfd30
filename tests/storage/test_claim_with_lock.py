"""The webhook's own event is claimed in the round trip that takes its contact's lock (issue 14).

Store-and-claim in one go: when a unit of work names an event to ``claim`` and that event
is then the contact's only ``received`` one, the lock's own round trip claims it (SQLite:
one more statement of the lease's batch, made only by the lease's owner; PostgreSQL: in
the statement that reads the contact's rows), and ``claim_webhook_event`` answers for it
without a statement. Otherwise nothing changes: the drain claims event by event, oldest
first, as before. Against SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ghl_real_estate_ai.dispatch import drain_contact, settles_at
from ghl_real_estate_ai.errors import LockTimeoutError
from ghl_real_estate_ai.integrations.ghl.webhook import InboundMessage
from ghl_real_estate_ai.storage import Store, open_store
from ghl_real_estate_ai.storage.base import WebhookEvent
from tests.webhook_events import store_inbound

BOUND = 60.0  # seconds: a failure bound only


async def _status(store: Store, event_id: int) -> tuple[str, int]:
    event = await store.get_webhook_event(event_id)
    assert event is not None
    return event.status, event.attempts


async def test_the_lock_claims_the_event_when_it_is_the_only_one_waiting(store: Store) -> None:
    event = await store_inbound(store, "c1", 1, datetime.now(UTC) - timedelta(hours=1))
    async with store.unit_of_work(), store.contact_lock("c0"):
        pass  # SQLite teaches its connection the release's writes once
    before = store.stats.snapshot()
    async with store.unit_of_work(), store.contact_lock("c0"):
        pass
    lock_alone = store.stats.snapshot().round_trips - before.round_trips

    before = store.stats.snapshot()
    async with store.unit_of_work() as uow:
        uow.claim = event.id
        async with store.contact_lock("c1"):
            taken = store.stats.snapshot()
            assert await store.claim_webhook_event(event.id)
            # The lock's read saw the event as it was (received): the drain takes it from there.
            assert [e.id for e in await store.pending_contact_events("c1")] == [event.id]
            assert store.stats.snapshot() == taken  # both answered from memory
    # The claim rode along: the lock cost the round trips it costs without one.
    assert store.stats.snapshot().round_trips - before.round_trips == lock_alone
    assert await _status(store, event.id) == ("processing", 1)
    assert not await store.claim_webhook_event(event.id)  # claimed once, and only once


async def test_the_lock_leaves_the_event_when_an_earlier_one_waits(store: Store) -> None:
    now = datetime.now(UTC)
    first = await store_inbound(store, "c2", 1, now - timedelta(hours=2))
    mine = await store_inbound(store, "c2", 2, now - timedelta(hours=1))
    async with store.unit_of_work() as uow:
        uow.claim = mine.id
        async with store.contact_lock("c2"):
            # Neither was claimed: the earlier one goes first, claimed on its own.
            assert await _status(store, mine.id) == ("received", 0)
            assert await _status(store, first.id) == ("received", 0)
            assert await store.claim_webhook_event(first.id)
            assert await store.claim_webhook_event(mine.id)
    assert await _status(store, first.id) == ("processing", 1)
    assert await _status(store, mine.id) == ("processing", 1)


async def test_a_lock_not_taken_claims_nothing(database_url: str, store: Store) -> None:
    event = await store_inbound(store, "c3", 1, datetime.now(UTC) - timedelta(hours=1))
    other = open_store(database_url, pool_size=2)  # another process's store on the same database
    await other.open()
    try:
        async with other.contact_lock("c3"):
            async with store.unit_of_work() as uow:
                uow.claim = event.id
                with pytest.raises(LockTimeoutError):
                    async with store.contact_lock("c3", timeout=0.3):
                        pass  # pragma: no cover - the lock is held by the other store
            assert await _status(store, event.id) == ("received", 0)
    finally:
        await other.close()


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        self.seen.append((message.message_id or "", event.status, event.attempts))


async def test_a_drain_claims_its_own_event_with_the_lock_and_keeps_the_order(store: Store) -> None:
    now = datetime.now(UTC)
    window = timedelta(0)
    await store_inbound(store, "warm", 1, now - timedelta(minutes=5))
    await drain_contact(store, _Recorder(), "warm", order_window=window)  # SQLite learns the writes once
    alone = await store_inbound(store, "c4", 1, now - timedelta(minutes=5))
    recorder = _Recorder()
    before = store.stats.snapshot()
    outcomes = await asyncio.wait_for(
        drain_contact(
            store, recorder, "c4", order_window=window, not_before=settles_at(alone, window), claim=alone.id
        ),
        BOUND,
    )
    claimed_with_lock = store.stats.snapshot().statements - before.statements
    assert outcomes == {alone.id: "processed"}
    assert recorder.seen == [("c4-m1", "processing", 1)]
    assert await _status(store, alone.id) == ("processed", 1)

    # The same drain without the claim sends one statement more (PostgreSQL) or as many (SQLite,
    # where the claim is a statement of the lock's batch): never fewer.
    again = await store_inbound(store, "c5", 1, now - timedelta(minutes=5))
    before = store.stats.snapshot()
    await asyncio.wait_for(drain_contact(store, _Recorder(), "c5", order_window=window), BOUND)
    claimed_after = store.stats.snapshot().statements - before.statements
    assert claimed_with_lock == claimed_after - (0 if store.backend == "sqlite" else 1)
    assert await _status(store, again.id) == ("processed", 1)

    # An earlier message still waiting is processed first, the caller's own after it.
    earlier = await store_inbound(store, "c6", 1, now - timedelta(minutes=9))
    mine = await store_inbound(store, "c6", 2, now - timedelta(minutes=5))
    recorder = _Recorder()
    outcomes = await asyncio.wait_for(
        drain_contact(
            store, recorder, "c6", order_window=window, not_before=settles_at(mine, window), claim=mine.id
        ),
        BOUND,
    )
    assert outcomes == {earlier.id: "processed", mine.id: "processed"}
    assert recorder.seen == [("c6-m1", "processing", 1), ("c6-m2", "processing", 1)]
