"""The order window counts from a message's own ``dateAdded`` and is waited for outside the lock.

An event settles ``CONTACT_ORDER_WINDOW_MS`` after it was written (clamped between
when it was stored and the whole window after that); a message that arrives already
older than the window is processed at once, and a lock holder never sleeps for an
event that has not settled: it leaves it to the request that stored it.

Hour-long windows make the rule visible without measuring time: had a drain waited
for the window, it could not finish within the (generous) failure bound.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ghl_real_estate_ai.dispatch import drain_contact, settles_at
from ghl_real_estate_ai.integrations.ghl.webhook import InboundMessage
from ghl_real_estate_ai.storage import Store
from ghl_real_estate_ai.storage.base import WebhookEvent
from tests.webhook_events import store_inbound

HOUR = timedelta(hours=1)
BOUND = 60.0  # seconds: a failure bound, far below the hour a wrong wait would take


class Recorder:
    """An event processor that notes which messages it was given, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        self.seen.append(message.message_id or "")


async def _store_event(store: Store, n: int, date_added: datetime | None) -> WebhookEvent:
    return await store_inbound(store, "window-1", n, date_added)


def _event(received_at: datetime, date_added: datetime | None) -> WebhookEvent:
    return WebhookEvent(
        1, None, None, "InboundMessage", "c", {}, "received", 0, received_at, date_added=date_added
    )


def test_an_event_settles_the_window_after_it_was_written_within_its_stored_time_and_the_window() -> None:
    stored = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    window = timedelta(milliseconds=300)
    # Written 100 ms before it was stored: 200 ms left to wait.
    assert settles_at(_event(stored, stored - timedelta(milliseconds=100)), window) == stored + timedelta(
        milliseconds=200
    )
    # Already older than the window: at once.
    assert settles_at(_event(stored, stored - timedelta(minutes=5)), window) == stored
    # Dated in the future (a skewed clock) or not dated at all: the whole window, no more.
    assert settles_at(_event(stored, stored + timedelta(minutes=5)), window) == stored + window
    assert settles_at(_event(stored, None), window) == stored + window


async def test_the_store_gives_back_the_date_added_it_was_given(store: Store) -> None:
    written = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    event = await _store_event(store, 1, written)
    assert event.date_added == written
    [pending] = await store.pending_contact_events("window-1")
    assert pending.date_added == written
    assert (await _store_event(store, 2, None)).date_added is None


async def test_a_message_older_than_the_window_is_processed_at_once(store: Store) -> None:
    event = await _store_event(store, 1, datetime.now(UTC) - 2 * HOUR)
    recorder = Recorder()
    outcomes = await asyncio.wait_for(
        drain_contact(store, recorder, "window-1", order_window=HOUR, not_before=settles_at(event, HOUR)),
        BOUND,
    )
    assert outcomes == {event.id: "processed"}
    assert recorder.seen == ["window-1-m1"]


async def test_a_holder_leaves_an_unsettled_event_instead_of_waiting_for_it(store: Store) -> None:
    # m1 was written long ago and has settled; m2 was written just now, so with an hour's
    # window it settles in an hour. The drain takes m1 and leaves m2 for its own request,
    # without sleeping under the lock (it could not return within the bound otherwise).
    old = await _store_event(store, 1, datetime.now(UTC) - 2 * HOUR)
    new = await _store_event(store, 2, datetime.now(UTC))
    recorder = Recorder()
    outcomes = await asyncio.wait_for(drain_contact(store, recorder, "window-1", order_window=HOUR), BOUND)
    assert outcomes == {old.id: "processed"}
    assert [e.id for e in await store.pending_contact_events("window-1")] == [new.id]


async def test_an_unsettled_event_blocks_the_later_written_ones_behind_it(store: Store) -> None:
    # m2 was written before m3 but has not settled: m3 (settled, stored earlier) must not
    # overtake it, so nothing is processed yet.
    now = datetime.now(UTC)
    await _store_event(store, 3, now - 2 * HOUR)
    late = await _store_event(store, 2, now - 3 * HOUR)  # stored last, written first
    assert settles_at(late, HOUR) == late.received_at  # older than the window: settled at once
    recorder = Recorder()
    await asyncio.wait_for(drain_contact(store, recorder, "window-1", order_window=HOUR), BOUND)
    assert recorder.seen == ["window-1-m2", "window-1-m3"]  # written order, not stored order

    # A fresh message written between two settled ones (in dateAdded order) holds them back.
    await _store_event(store, 4, now - HOUR / 2)  # written 30 min ago: settles in 30 min
    await _store_event(store, 5, now - timedelta(minutes=10))
    await asyncio.wait_for(drain_contact(store, recorder, "window-1", order_window=HOUR), BOUND)
    assert recorder.seen == ["window-1-m2", "window-1-m3"]
