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


async def test_items_fail_for_good_after_max_attempts(store: Store, ghl: GHLClient, sandbox: FastAPI) -> None:
    outbox = Outbox(store, ghl, max_attempts=2)
    _fail_everything(sandbox)
    item = await outbox.submit("ev4:reply:1", "send_message", dict(SMS))
    assert item.status == "pending"
    assert await outbox.deliver_due(now=item.next_attempt_at + timedelta(seconds=1)) == 0
    final = await store.get_outbox_item(item.id)
    assert final is not None and final.status == "failed" and final.attempts == 2


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


async def test_an_item_stuck_sending_is_taken_over_after_the_stale_delay(
    outbox: Outbox, store: Store, sandbox: FastAPI
) -> None:
    item = await outbox.submit("ev6:reply:1", "send_message", dict(SMS), send_now=False)
    assert await store.claim_outbox_item(item.id) is not None  # a sender that then died
    now = datetime.now(UTC)
    assert await outbox.deliver_due(now=now + timedelta(minutes=1)) == 0
    assert await outbox.deliver_due(now=now + timedelta(minutes=11)) == 1
    assert _sms_count(sandbox) == 1


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
