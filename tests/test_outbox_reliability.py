"""Issue 13 acceptance: a slow GHL gets exactly one SMS; a 30-minute outage is waited out.

Real SQLite store, real GHL sandbox (over TCP where timing matters), the real
client and outbox; the outage runs on a virtual clock (``ManualClock``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ghl_real_estate_ai.cache import Cache
from ghl_real_estate_ai.clock import ManualClock
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app, get_sandbox_state, serve_in_thread
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import Store
from tests.ghl_fixtures import cache, store  # noqa: F401  (fixtures)

SMS = {"contact_id": "slow-1", "channel": "SMS", "message": "Thanks! What area are you looking in?"}


@pytest.fixture
async def slow_ghl(cache: Cache) -> AsyncIterator[tuple[GHLClient, object]]:  # noqa: F811
    """A client with a 0.5 s timeout to a sandbox over TCP answering after 1.5 s."""
    app = create_sandbox_app(latency_ms=1500)
    with serve_in_thread(app) as base_url:
        http = httpx.AsyncClient(timeout=httpx.Timeout(0.5, connect=2.0))
        client = GHLClient(
            base_url=base_url, api_key="k", location_id="loc-slow", http=http, cache=cache, backoff_base=0.01
        )
        yield client, app
        await client.aclose()


async def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_sandbox_slower_than_the_client_timeout_gets_exactly_one_sms(
    store: Store,  # noqa: F811
    slow_ghl: tuple[GHLClient, object],
) -> None:
    client, app = slow_ghl
    state = get_sandbox_state(app)  # type: ignore[arg-type]
    clock = ManualClock(datetime.now(UTC))
    outbox = Outbox(store, client, clock=clock, settle=timedelta(seconds=10), base_delay=1.0)
    item = await outbox.submit("evt-1:reply:1", "send_message", dict(SMS))
    assert item.status == "pending" and item.check_first  # it left; no answer in time
    await _wait_until(lambda: len(state.messages) == 1, "the slow send to land at GHL")

    # While GHL is still slow, the read-back times out too: nothing is sent blindly.
    clock.advance(seconds=11)
    assert await outbox.deliver_due() == 0
    assert len(state.messages) == 1

    state.latency_ms = 0  # GHL answers in time again
    for _ in range(5):
        clock.advance(minutes=5)
        await outbox.deliver_due()
    final = await store.get_outbox_item(item.id)
    assert final is not None and final.status == "sent"
    assert final.response is not None and final.response["reconciled"] is True
    assert final.response["messageId"] == state.messages[0]["id"]
    sends = [c for c in state.calls if c["method"] == "POST" and c["path"] == "/conversations/messages"]
    assert len(state.messages) == 1 and len(sends) == 1  # exactly one SMS, one send


async def test_a_30_minute_outage_is_waited_out_and_every_reply_delivered_once(
    store: Store,  # noqa: F811
    cache: Cache,  # noqa: F811
) -> None:
    app = create_sandbox_app(seed=13, rate_limit=100_000)
    state = get_sandbox_state(app)
    clock = ManualClock(datetime.now(UTC))  # items are stored at wall time; the clock moves on from it
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = GHLClient(
        base_url="http://ghl",
        api_key="k",
        location_id="loc-1",
        http=httpx.AsyncClient(transport=transport),
        cache=cache,
        backoff_base=0.001,
    )
    outbox = Outbox(store, client, clock=clock, base_delay=5.0, max_delay=300.0)
    try:
        state.failure_rate = 1.0  # GHL is down
        outage_ends = clock.now() + timedelta(minutes=30)
        items = []
        for n in range(20):
            payload = {"contact_id": f"c{n}", "channel": "SMS", "message": f"reply {n}"}
            items.append(await outbox.submit(f"evt-{n}:reply:1", "send_message", payload))
            clock.advance(seconds=3)
        assert len(state.calls) == 1  # the first reply found the outage; the others waited

        calls_per_pass: list[int] = []
        while clock.now() < outage_ends:
            before = len(state.calls)
            await outbox.deliver_due()
            calls_per_pass.append(len(state.calls) - before)
            clock.advance(seconds=1)
        probes = len(state.calls) - 1
        assert max(calls_per_pass) <= 1  # one probe at a time
        # Backoff 5 s doubling to a 300 s cap, jitter down to half: at most ~20 steps in 30 min.
        assert 5 <= probes <= 25, probes
        assert not [i for i in await store.list_outbox() if i.status != "pending"]

        state.failure_rate = 0.0  # GHL is back
        for _ in range(400):
            if not await store.list_outbox("pending"):
                break
            await outbox.deliver_due()
            clock.advance(seconds=1)
        assert {i.status for i in await store.list_outbox()} == {"sent"}, [
            (i.idempotency_key, i.status, i.next_attempt_at, i.last_error)
            for i in await store.list_outbox()
            if i.status != "sent"
        ]
        delivered = sorted(m["contactId"] for m in state.messages)
        assert delivered == sorted(f"c{n}" for n in range(20))  # every reply, once each
        assert clock.now() - outage_ends < timedelta(minutes=6)  # within one capped step of recovery
    finally:
        await client.aclose()
