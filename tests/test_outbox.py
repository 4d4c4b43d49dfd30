"""The outbox writes before sending, never sends a key twice, and keeps failures for later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from ghl_real_estate_ai.cache import Cache
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import Store
from tests.ghl_fixtures import *  # noqa: F403  (the pytest fixtures cache, ghl, sandbox, store)

SMS = {"contact_id": "c1", "channel": "SMS", "message": "Thanks! When would you like to move?"}


@pytest.fixture
def outbox(store: Store, ghl: GHLClient) -> Outbox:
    return Outbox(store, ghl)


def _sms_count(sandbox: FastAPI) -> int:
    return len(get_sandbox_state(sandbox).messages)


def _fail_everything(sandbox: FastAPI, on: bool = True) -> None:
    get_sandbox_state(sandbox).failure_rate = 1.0 if on else 0.0


async def test_submit_stores_then_sends_now(outbox: Outbox, store: Store, sandbox: FastAPI) -> None:
    item = await outbox.submit("ev1:reply:1", "send_message", dict(SMS))
    assert item.status == "sent" and item.attempts == 1
    assert item.response is not None and item.response["messageId"]
    assert item.contact_id == "c1"
    assert _sms_count(sandbox) == 1
    assert [i.idempotency_key for i in await store.list_outbox("sent")] == ["ev1:reply:1"]


async def test_a_known_key_returns_the_stored_item_and_sends_nothing(
    outbox: Outbox, sandbox: FastAPI
) -> None:
    first = await outbox.submit("ev1:reply:1", "send_message", dict(SMS))
    second = await outbox.submit("ev1:reply:1", "send_message", {**SMS, "message": "different text"})
    assert second.id == first.id and second.status == "sent"
    assert _sms_count(sandbox) == 1


async def test_a_ghl_outage_leaves_the_item_pending_and_raises_nothing(
    outbox: Outbox, sandbox: FastAPI
) -> None:
    _fail_everything(sandbox)
    before = datetime.now(UTC)
    item = await outbox.submit("ev2:reply:1", "send_message", dict(SMS))
    assert item.status == "pending"
    assert item.last_error is not None and "503" in item.last_error
    assert item.next_attempt_at > before
    assert _sms_count(sandbox) == 0


async def test_deliver_due_waits_for_the_backoff_then_delivers_exactly_once(
    outbox: Outbox, sandbox: FastAPI
) -> None:
    _fail_everything(sandbox)
    item = await outbox.submit("ev3:reply:1", "send_message", dict(SMS))
    _fail_everything(sandbox, on=False)
    assert await outbox.deliver_due(now=item.next_attempt_at - timedelta(seconds=1)) == 0
    assert await outbox.deliver_due(now=item.next_attempt_at + timedelta(seconds=1)) == 1
    assert await outbox.deliver_due(now=item.next_attempt_at + timedelta(days=1)) == 0
    assert _sms_count(sandbox) == 1


async def test_send_now_false_leaves_the_item_to_the_worker(outbox: Outbox, sandbox: FastAPI) -> None:
    item = await outbox.submit("f:1:day_3", "send_message", dict(SMS), send_now=False)
    assert item.status == "pending" and _sms_count(sandbox) == 0
    assert await outbox.deliver_due() == 1
    assert _sms_count(sandbox) == 1


async def test_every_kind_is_delivered(outbox: Outbox, sandbox: FastAPI) -> None:
    due = datetime(2025, 3, 5, 17, 0, tzinfo=UTC).isoformat()
    start = datetime(2025, 3, 5, 18, 0, tzinfo=UTC).isoformat()
    items = [
        await outbox.submit("k:add", "add_tags", {"contact_id": "c1", "tags": ["Hot-Seller", "Old"]}),
        await outbox.submit("k:remove", "remove_tags", {"contact_id": "c1", "tags": ["Old"]}),
        await outbox.submit(
            "k:task", "create_task", {"contact_id": "c1", "title": "Call", "body": "d7", "due_at": due}
        ),
        await outbox.submit(
            "k:book",
            "book_appointment",
            {"calendar_id": "cal", "contact_id": "c1", "start_time": start, "title": "CMA"},
        ),
        await outbox.submit(
            "k:mail",
            "send_message",
            {"contact_id": "c1", "channel": "Email", "message": "m", "subject": "s", "html": "<p>h</p>"},
        ),
    ]
    assert [i.status for i in items] == ["sent"] * 5
    state = get_sandbox_state(sandbox)
    assert state.contacts["c1"]["tags"] == ["Hot-Seller"]
    assert state.tasks[0]["title"] == "Call"
    assert state.appointments[0]["title"] == "CMA"
    assert state.messages[0]["subject"] == "s"


async def test_a_refusal_ghl_will_repeat_fails_for_good_at_once(outbox: Outbox) -> None:
    start = datetime(2025, 3, 5, 18, 0, tzinfo=UTC).isoformat()
    payload = {"calendar_id": "cal", "contact_id": "c1", "start_time": start}
    assert (await outbox.submit("book:1", "book_appointment", dict(payload))).status == "sent"
    clash = await outbox.submit("book:2", "book_appointment", {**payload, "contact_id": "c2"})
    assert clash.status == "failed"
    assert clash.last_error is not None and "no longer available" in clash.last_error


async def test_items_are_retried_until_their_max_age_then_dead_with_the_reason(
    store: Store, ghl: GHLClient, sandbox: FastAPI
) -> None:
    outbox = Outbox(store, ghl, max_age=timedelta(hours=2))
    _fail_everything(sandbox)
    item = await outbox.submit("ev4:reply:1", "send_message", dict(SMS))
    assert item.status == "pending"
    one_hour = item.created_at + timedelta(hours=1)
    assert await outbox.deliver_due(now=one_hour) == 0
    still = await store.get_outbox_item(item.id)
    assert still is not None and still.status == "pending"  # an hour into the outage: still trying
    assert await outbox.deliver_due(now=item.created_at + timedelta(hours=2, seconds=1)) == 0
    final = await store.get_outbox_item(item.id)
    assert final is not None and final.status == "dead"
    assert final.last_error is not None and "OUTBOX_MAX_AGE_HOURS" in final.last_error
    assert "503" in final.last_error
    assert _sms_count(sandbox) == 0


async def test_retry_after_from_ghl_sets_the_next_attempt(store: Store, cache: Cache) -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "900"}, json={"message": "too many"})

    client = GHLClient(
        base_url="https://ghl.test",
        api_key="k",
        location_id="loc",
        http=httpx.AsyncClient(transport=httpx.MockTransport(busy)),
        cache=cache,
        max_retry_wait=1,
    )
    fixed = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    outbox = Outbox(store, client, clock=lambda: fixed)
    item = await outbox.submit("ev5:reply:1", "send_message", dict(SMS))
    assert item.status == "pending"
    assert item.next_attempt_at >= fixed + timedelta(seconds=900)
    await client.aclose()


async def test_an_item_a_dead_process_left_sending_is_read_back_then_sent_once(
    outbox: Outbox, store: Store, sandbox: FastAPI
) -> None:
    """Issue 13: taken over once the owner's heartbeat is stale (not after 10 minutes), and
    read back from GHL before sending: not there, so sent once."""
    item = await outbox.submit("ev6:reply:1", "send_message", dict(SMS), send_now=False)
    assert await store.claim_outbox_item(item.id) is not None  # a sender that then died
    now = datetime.now(UTC)
    assert await outbox.deliver_due(now=now + timedelta(seconds=5)) == 0  # it may still be alive
    assert await outbox.deliver_due(now=now + timedelta(seconds=30)) == 1
    assert _sms_count(sandbox) == 1
    calls = [c["path"] for c in get_sandbox_state(sandbox).calls]
    assert calls == ["/conversations/search", "/conversations/messages"]


async def test_a_dead_senders_delivered_message_is_found_and_not_sent_again(
    store: Store, ghl: GHLClient, sandbox: FastAPI
) -> None:
    dead = Outbox(store, ghl, owner="dead-process")
    live = Outbox(store, ghl, owner="live-process")
    await dead.heartbeat()
    item = await dead.submit("evt-9:reply:1", "send_message", dict(SMS), send_now=False)
    [claimed] = await store.claim_outbox_work(
        datetime.now(UTC), 1, owner="dead-process", dead_before=datetime.now(UTC) - timedelta(minutes=1)
    )
    await ghl.send_message("c1", "SMS", SMS["message"])  # it went out, then the process died
    now = datetime.now(UTC)
    await live.heartbeat()
    assert await live.deliver_due(now=now + timedelta(seconds=5)) == 0  # its heartbeat is fresh
    assert await live.deliver_due(now=now + timedelta(seconds=60)) == 1
    assert _sms_count(sandbox) == 1
    final = await store.get_outbox_item(claimed.id)
    assert final is not None and final.status == "sent" and final.response is not None
    assert final.response["reconciled"] is True
    assert final.response["messageId"] == get_sandbox_state(sandbox).messages[0]["id"]
    assert item.id == claimed.id


async def test_the_same_text_sent_by_another_item_is_not_taken_for_ours(
    outbox: Outbox, store: Store, sandbox: FastAPI
) -> None:
    first = await outbox.submit("evt-1:reply:1", "send_message", dict(SMS))
    assert first.status == "sent"
    second = await outbox.submit("evt-2:reply:1", "send_message", dict(SMS), send_now=False)
    assert await store.claim_outbox_item(second.id) is not None  # left sending by a dead sender
    assert await outbox.deliver_due(now=datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert _sms_count(sandbox) == 2  # the first item's message is not the second's


async def test_a_late_reply_whose_conversation_moved_on_is_dropped(
    outbox: Outbox, store: Store, ghl: GHLClient, sandbox: FastAPI
) -> None:
    _fail_everything(sandbox)
    old = await outbox.submit("evt-3:reply:1", "send_message", {**SMS, "message": "old answer"})
    assert old.status == "pending"
    _fail_everything(sandbox, on=False)
    await store.outbox_circuit_closed(outbox.location_id)
    # Another replica, which saw GHL answer again, replies to the newer message.
    other = Outbox(store, ghl)
    newer = await other.submit("evt-4:reply:1", "send_message", {**SMS, "message": "new answer"})
    assert newer.status == "sent"
    assert await outbox.deliver_due(now=datetime.now(UTC) + timedelta(hours=1)) == 0
    dropped = await store.get_outbox_item(old.id)
    assert dropped is not None and dropped.status == "dropped"
    assert dropped.last_error is not None and "evt-4:reply:1" in dropped.last_error
    assert [m["message"] for m in get_sandbox_state(sandbox).messages] == ["new answer"]


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("fax", {}, "unknown outbox kind"),
        ("send_message", {"contact_id": "c"}, "lacks"),
        ("add_tags", {"contact_id": "c", "tags": ["a"], "colour": "red"}, "unknown keys"),
        (
            "create_task",
            {"contact_id": "c", "title": "t", "body": "b", "due_at": "2025-01-01T10:00"},
            "offset",
        ),
    ],
)
async def test_caller_mistakes_raise_before_anything_is_stored(
    outbox: Outbox, store: Store, kind: str, payload: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await outbox.submit("bad:1", kind, payload)
    assert await store.list_outbox() == []


async def test_final_outcomes_are_counted_in_the_outbox_metric(
    store: Store, ghl: GHLClient, sandbox: FastAPI
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from ghl_real_estate_ai.observability import _provider
    from ghl_real_estate_ai.observability.metrics import metric_points

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    previous = _provider.current_meter_delegate()
    _provider.set_meter_delegate(meter_provider)
    try:
        outbox = Outbox(store, ghl, max_age=timedelta(minutes=1))
        assert (await outbox.submit("evt-1:reply:1", "send_message", dict(SMS))).status == "sent"
        _fail_everything(sandbox)
        item = await outbox.submit("evt-2:reply:1", "send_message", {**SMS, "contact_id": "c2"})
        await outbox.deliver_due(now=item.created_at + timedelta(minutes=2))
        points = metric_points(reader.get_metrics_data())
    finally:
        _provider.set_meter_delegate(previous)
        meter_provider.shutdown()
    counted = {labels["outcome"]: value for labels, value in points["jorge.outbox.outcomes"]}
    assert counted == {"sent": 1, "dead": 1}


async def test_an_item_is_taken_over_only_once_sending_for_long_and_its_owner_silent(store: Store) -> None:
    payload = {**SMS, "contact_id": "c9"}
    item, _ = await store.enqueue_outbox("evt-9:reply:1", "send_message", payload, claim=True, owner="fresh")
    now = datetime.now(UTC)
    # Claimed a moment ago by a process that has not beaten yet: left alone.
    assert await store.claim_outbox_work(now, 5, owner="other", dead_before=now - timedelta(seconds=20)) == []
    await store.outbox_heartbeat("fresh", now + timedelta(seconds=30))
    later = now + timedelta(seconds=40)
    # Sending for long, but its owner beats: still left alone.
    assert (
        await store.claim_outbox_work(later, 5, owner="other", dead_before=later - timedelta(seconds=20))
        == []
    )
    much_later = now + timedelta(minutes=5)
    [taken] = await store.claim_outbox_work(
        much_later, 5, owner="other", dead_before=much_later - timedelta(seconds=20)
    )
    assert taken.id == item.id and taken.owner == "other" and taken.check_first
