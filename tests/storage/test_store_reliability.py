"""The outbox's reliability queries and the per-contact event order, on every backend (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ghl_real_estate_ai.storage import Store

SMS = {"contact_id": "c", "channel": "SMS", "message": "hello"}


async def test_takeover_needs_a_long_send_and_a_silent_owner(store: Store) -> None:
    item, _ = await store.enqueue_outbox("evt-1:reply:1", "send_message", dict(SMS), claim=True, owner="p1")
    now = datetime.now(UTC)
    assert await store.claim_outbox_work(now, 5, owner="p2", dead_before=now - timedelta(seconds=20)) == []
    await store.outbox_heartbeat("p1", now + timedelta(seconds=30))
    later = now + timedelta(seconds=40)
    assert (
        await store.claim_outbox_work(later, 5, owner="p2", dead_before=later - timedelta(seconds=20)) == []
    )
    much_later = now + timedelta(minutes=5)
    [taken] = await store.claim_outbox_work(
        much_later, 5, owner="p2", dead_before=much_later - timedelta(seconds=20)
    )
    assert (taken.id, taken.owner, taken.check_first, taken.attempts) == (item.id, "p2", True, 2)
    assert taken.first_attempt_at is not None


async def test_release_finish_and_retry(store: Store) -> None:
    item, _ = await store.enqueue_outbox("evt-2:reply:1", "send_message", dict(SMS), claim=True, owner="p1")
    now = datetime.now(UTC)
    await store.release_outbox_item(item.id, next_attempt_at=now, error="boom", check_first=True)
    [again] = await store.claim_outbox_work(now, 5, owner="p1", dead_before=now)
    assert again.check_first and again.last_error == "boom"
    await store.finish_outbox_item(again.id, "dead", "gave up")
    (dead,) = await store.list_outbox("dead")
    assert dead.last_error == "gave up"
    with pytest.raises(ValueError, match="final"):
        await store.finish_outbox_item(again.id, "sent", "no")
    assert await store.retry_outbox_items(deadline_at=now + timedelta(hours=1)) == [item.id]
    (pending,) = await store.list_outbox("pending")
    assert pending.deadline_at is not None and pending.deadline_at > now
    assert await store.retry_outbox_items(deadline_at=now, ids=[]) == []


async def test_one_probe_at_a_time_per_location(store: Store) -> None:
    now = datetime.now(UTC)
    assert await store.outbox_circuit("loc") is None
    await store.outbox_circuit_failed("loc", 3, now + timedelta(seconds=10))
    circuit = await store.outbox_circuit("loc")
    assert circuit is not None and circuit.failures == 3
    assert not await store.claim_outbox_probe("loc", now, "p1", now + timedelta(minutes=1))  # too early
    step = now + timedelta(seconds=11)
    assert await store.claim_outbox_probe("loc", step, "p1", step + timedelta(minutes=1))
    assert not await store.claim_outbox_probe("loc", step, "p2", step + timedelta(minutes=1))
    await store.outbox_circuit_closed("loc")
    assert await store.outbox_circuit("loc") is None


async def test_a_contacts_received_events_come_in_date_added_order(store: Store) -> None:
    base = datetime(2026, 2, 15, 9, 30, tzinfo=UTC)
    for n, offset in enumerate([3, 1, 2]):
        await store.record_webhook_event(
            webhook_id=f"w{n}",
            message_id=f"m{n}",
            event_type="InboundMessage",
            contact_id="c",
            payload={"n": n},
            date_added=base + timedelta(seconds=offset),
        )
    await store.record_webhook_event(
        webhook_id="w9", message_id="m9", event_type="InboundMessage", contact_id="c", payload={"n": 9}
    )
    events = await store.pending_contact_events("c")
    assert [e.payload["n"] for e in events] == [1, 2, 0, 9]  # by dateAdded, undated last
