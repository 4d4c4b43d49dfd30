"""The background worker retries the outbox, picks up events left behind, and stops cleanly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace

from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.integrations.ghl.webhook import InboundMessage
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import propagate_trace_context
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import Store, WebhookEvent
from ghl_real_estate_ai.worker import BackgroundWorker
from tests.ghl_fixtures import *  # noqa: F403  (the pytest fixtures cache, ghl, sandbox, store)

PAYLOAD = {
    "type": "InboundMessage",
    "locationId": "loc",
    "contactId": "c1",
    "body": "Looking to buy a 3 bedroom",
    "messageType": "SMS",
    "messageId": "m1",
    "webhookId": "w1",
}


class Processor:
    """Records events, answers with one SMS through the outbox, and can be told to fail."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.events: list[tuple[int, str]] = []
        self.failures_left = 0

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        self.events.append((event.id, message.body))
        if self.failures_left > 0:
            self.failures_left -= 1
            raise RuntimeError("bot failed")
        await self.outbox.submit(
            f"{event.id}:reply:1", "send_message", {"contact_id": "c1", "channel": "SMS", "message": "ok"}
        )


class Clock:
    """A clock the test moves; starts at the real time (the store stamps rows with it)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(store: Store, ghl: GHLClient, clock: Clock) -> Outbox:
    return Outbox(store, ghl, clock=clock)


@pytest.fixture
def processor(outbox: Outbox) -> Processor:
    return Processor(outbox)


@pytest.fixture
def worker(store: Store, outbox: Outbox, processor: Processor, clock: Clock) -> BackgroundWorker:
    return BackgroundWorker(store, outbox, processor, poll_seconds=0.01, clock=clock, max_event_attempts=3)


async def _record(store: Store, **overrides: Any) -> int:
    payload = {**PAYLOAD, **overrides}
    inserted = await store.record_webhook_event(
        webhook_id=payload.get("webhookId"),
        message_id=payload.get("messageId"),
        event_type=payload["type"],
        contact_id=payload.get("contactId"),
        payload=payload,
    )
    return inserted.event_id


async def test_an_event_stored_but_never_claimed_is_processed_once_it_is_due(
    worker: BackgroundWorker, store: Store, processor: Processor, clock: Clock, sandbox: FastAPI
) -> None:
    event_id = await _record(store)
    assert (await worker.run_once())["webhooks"] == 0  # too fresh: the request may still be on it
    clock.now += timedelta(minutes=3)
    assert (await worker.run_once())["webhooks"] == 1
    assert processor.events == [(event_id, "Looking to buy a 3 bedroom")]
    event = await store.get_webhook_event(event_id)
    assert event is not None and event.status == "processed"
    assert len(get_sandbox_state(sandbox).messages) == 1
    assert (await worker.run_once())["webhooks"] == 0


async def test_an_event_stuck_processing_after_a_crash_is_taken_over(
    worker: BackgroundWorker, store: Store, processor: Processor, clock: Clock
) -> None:
    event_id = await _record(store)
    assert await store.claim_webhook_event(event_id)  # the process died after this
    clock.now += timedelta(minutes=1)
    assert (await worker.run_once())["webhooks"] == 0
    clock.now += timedelta(minutes=2)
    assert (await worker.run_once())["webhooks"] == 1
    event = await store.get_webhook_event(event_id)
    assert event is not None and event.status == "processed" and event.attempts == 2


async def test_a_failing_event_is_retried_then_given_up(
    worker: BackgroundWorker, store: Store, processor: Processor, clock: Clock
) -> None:
    event_id = await _record(store)
    processor.failures_left = 10
    for _ in range(5):
        clock.now += timedelta(minutes=3)
        await worker.run_once()
    event = await store.get_webhook_event(event_id)
    assert event is not None and event.status == "failed" and event.attempts == 3
    assert event.error is not None and "bot failed" in event.error
    assert len(processor.events) == 3


async def test_a_retry_after_a_failure_succeeds_without_a_second_sms(
    worker: BackgroundWorker, store: Store, processor: Processor, clock: Clock, sandbox: FastAPI
) -> None:
    event_id = await _record(store)
    processor.failures_left = 1
    clock.now += timedelta(minutes=3)
    await worker.run_once()
    clock.now += timedelta(minutes=3)
    await worker.run_once()
    event = await store.get_webhook_event(event_id)
    assert event is not None and event.status == "processed"
    assert len(get_sandbox_state(sandbox).messages) == 1


async def test_due_outbox_items_are_delivered_by_the_worker(
    worker: BackgroundWorker, outbox: Outbox, sandbox: FastAPI, clock: Clock
) -> None:
    get_sandbox_state(sandbox).failure_rate = 1.0
    item = await outbox.submit(
        "x:reply:1", "send_message", {"contact_id": "c1", "channel": "SMS", "message": "m"}
    )
    assert item.status == "pending"
    get_sandbox_state(sandbox).failure_rate = 0.0
    clock.now = item.next_attempt_at + timedelta(seconds=1)
    assert (await worker.run_once())["outbox"] == 1
    assert len(get_sandbox_state(sandbox).messages) == 1


async def test_reprocessing_starts_its_own_trace_with_the_ghl_call_under_it(
    worker: BackgroundWorker, store: Store, clock: Clock
) -> None:
    await _record(store)
    clock.now += timedelta(minutes=3)
    with capture_spans() as capture:
        await worker.run_once()
    root = capture.by_name("worker.process_webhook_event")[0]
    posts = [s for s in capture.spans() if s.name == "POST /conversations/messages"]
    assert len(posts) == 1 and posts[0].context.trace_id == root.context.trace_id
    assert root.attributes is not None and root.attributes["webhook.event_id"] == 1


async def test_a_reprocessed_event_links_to_the_request_that_stored_it(
    worker: BackgroundWorker, store: Store, clock: Clock
) -> None:
    """The request's trace ended long ago: the re-run is a new trace with a span link back."""
    with capture_spans() as capture:
        with trace.get_tracer("test").start_as_current_span("POST /api/v1/webhooks/ghl") as request:
            carrier = dict(propagate_trace_context({}))
            payload = {**PAYLOAD}
            await store.record_webhook_event(
                webhook_id=payload["webhookId"],
                message_id=payload["messageId"],
                event_type=payload["type"],
                contact_id=payload["contactId"],
                payload=payload,
                trace_context=carrier,
            )
        clock.now += timedelta(minutes=3)
        await worker.run_once()
    (root,) = capture.by_name("worker.process_webhook_event")
    assert root.parent is None
    assert root.context.trace_id != request.get_span_context().trace_id
    assert [link.context.span_id for link in root.links] == [request.get_span_context().span_id]


async def test_one_failing_job_does_not_stop_the_others(worker: BackgroundWorker) -> None:
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("boom")

    async def followups() -> int:
        ran.append("followups")
        return 3

    worker.add_job("broken", broken)
    worker.add_job("followups", followups)
    results = await worker.run_once()
    assert results["broken"] is None and results["followups"] == 3 and ran == ["followups"]
    with pytest.raises(ValueError, match="exists already"):
        worker.add_job("followups", followups)


async def test_start_runs_periodically_and_stop_ends_the_task(worker: BackgroundWorker) -> None:
    passes = asyncio.Event()
    count = 0

    async def tick() -> None:
        nonlocal count
        count += 1
        if count >= 3:
            passes.set()

    worker.add_job("tick", tick)
    worker.start()
    worker.start()  # idempotent
    assert worker.running
    await asyncio.wait_for(passes.wait(), timeout=10)
    await worker.stop()
    assert not worker.running
    settled = count
    await asyncio.sleep(0.05)
    assert count == settled
    await worker.stop()  # a second stop is a no-op


async def test_stop_cancels_a_pass_that_overruns_its_grace(
    store: Store, outbox: Outbox, processor: Processor
) -> None:
    worker = BackgroundWorker(store, outbox, processor, poll_seconds=0.01, stop_grace=0.05)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker.add_job("hang", hang)
    worker.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    await worker.stop()
    assert cancelled.is_set() and not worker.running


def test_poll_seconds_must_be_positive(store: Store, outbox: Outbox, processor: Processor) -> None:
    with pytest.raises(ValueError, match="poll_seconds"):
        BackgroundWorker(store, outbox, processor, poll_seconds=0)
