"""Each follow-up run is its own trace whose root span LINKS to the webhook trace that scheduled it.

Checked twice: with the in-memory span capture (whole trees), and through a
real OTLP/gRPC receiver after ``setup_observability(exporter_type="otlp")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from ghl_real_estate_ai.errors import GHLError
from ghl_real_estate_ai.followups import FOLLOWUP_SPAN_NAME, FOLLOWUP_STEPS, FollowUpRunner
from ghl_real_estate_ai.observability.otel_config import (
    flush_observability,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans, render_tree
from ghl_real_estate_ai.storage.base import Contact
from tests.conversation_kit import Harness
from tests.observability.receivers import OTLPGrpcReceiver, ReceivedSpan

STEP_NAMES = [step for step, _ in FOLLOWUP_STEPS]
WEBHOOK_SPAN = "POST /api/v1/webhooks/ghl"
_tracer = trace.get_tracer("tests.followups")


@pytest.fixture
def capture() -> Iterator[SpanCapture]:
    with capture_spans() as spans:
        yield spans


async def _silence_after_a_webhook(h: Harness, runner: FollowUpRunner, days: int = 31) -> None:
    """A lead writes once inside a webhook-like SERVER span, then stays quiet for ``days`` days."""
    with _tracer.start_as_current_span(WEBHOOK_SPAN, kind=SpanKind.SERVER):
        await h.say("c-1", "Hi, who is this?")
    for _ in range(days):
        h.clock.advance(days=1)
        await runner.run_due()


def _bot_level(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """Our spans and the GHL client calls, without database, cache and sandbox-server detail."""
    return [
        s
        for s in spans
        if s.name.startswith(("lead_bot.", "intent_decoder."))
        or (s.kind == SpanKind.CLIENT and (s.attributes or {}).get("db.system") is None)
    ]


async def test_each_run_is_a_new_trace_linked_to_the_webhook_trace(
    sqlite_url: str, capture: SpanCapture
) -> None:
    async with Harness.open(sqlite_url) as h:
        await _silence_after_a_webhook(h, FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock))

    [webhook] = capture.by_name(WEBHOOK_SPAN)
    webhook_trace = webhook.context.trace_id
    webhook_span_ids = {s.context.span_id for s in capture.spans() if s.context.trace_id == webhook_trace}
    roots = capture.by_name(FOLLOWUP_SPAN_NAME)
    assert [r.attributes["followup.step"] for r in roots] == STEP_NAMES
    assert len({r.context.trace_id for r in roots} | {webhook_trace}) == 5, "one new trace per run"
    for root in roots:
        assert root.parent is None
        [link] = root.links
        assert link.context.trace_id == webhook_trace
        assert link.context.span_id in webhook_span_ids
        assert root.attributes["workflow.contact_id"] == "c-1"
        assert root.attributes["followup.outcome"] == "done"
        assert root.status.status_code != StatusCode.ERROR
        # No span of the run sits in the 30-day-long webhook trace.
        assert root.context.trace_id != webhook_trace

    day_7 = roots[1].context.trace_id
    tree = render_tree(
        _bot_level([s for s in capture.spans() if s.context.trace_id == day_7]), ["followup.step"]
    )
    assert tree == (
        "lead_bot.followup [followup.step=initiate_day_7_call]\n"
        "├─ lead_bot.analyze_intent\n"
        "│  └─ intent_decoder.analyze_lead\n"
        "├─ lead_bot.determine_path\n"
        "└─ lead_bot.initiate_day_7_call\n"
        "   └─ POST /contacts/{contactId}/tasks"
    )


class _Down:
    """The lead bot behind a GHL that is down (the edge, faked)."""

    async def run_followup(self, step: str, contact: Contact) -> None:
        raise GHLError(f"GHL answered 503 for {step}", status_code=503)


async def test_a_failed_run_is_an_error_trace_with_the_exception_once(
    sqlite_url: str, capture: SpanCapture
) -> None:
    async with Harness.open(sqlite_url) as h:
        await _silence_after_a_webhook(
            h, FollowUpRunner(h.store, _Down(), clock=h.clock, max_attempts=1), days=3
        )

    [root] = capture.by_name(FOLLOWUP_SPAN_NAME)
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes["followup.outcome"] == "dead"
    assert [e.name for e in root.events] == ["exception"]
    assert len(root.links) == 1


async def test_skipped_runs_are_traced_with_their_reason(sqlite_url: str, capture: SpanCapture) -> None:
    async with Harness.open(sqlite_url) as h:
        with _tracer.start_as_current_span(WEBHOOK_SPAN, kind=SpanKind.SERVER):
            await h.say("c-1", "Hi, who is this?")
        contact = await h.contact("c-1")
        contact.opted_out = True
        await h.store.upsert_contact(contact)
        h.clock.advance(days=3)
        await FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock).run_due()

    [root] = capture.by_name(FOLLOWUP_SPAN_NAME)
    assert root.attributes["followup.outcome"] == "skipped"
    assert root.attributes["followup.skip_reason"] == "opted_out"
    assert capture.by_name("lead_bot.send_day_3_sms") == []


async def test_the_links_arrive_through_a_real_otlp_receiver(sqlite_url: str) -> None:
    with OTLPGrpcReceiver() as receiver:
        assert setup_observability(exporter_type="otlp", endpoint=receiver.endpoint)
        try:
            async with Harness.open(sqlite_url) as h:
                await _silence_after_a_webhook(h, FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock))
            assert flush_observability()

            def arrived(spans: list[ReceivedSpan]) -> bool:
                names = [s.name for s in spans]
                return WEBHOOK_SPAN in names and names.count(FOLLOWUP_SPAN_NAME) == 4

            spans = receiver.wait_for(arrived)
        finally:
            shutdown_observability()

    [webhook] = [s for s in spans if s.name == WEBHOOK_SPAN]
    webhook_span_ids = {s.span_id for s in spans if s.trace_id == webhook.trace_id}
    roots = sorted((s for s in spans if s.name == FOLLOWUP_SPAN_NAME), key=lambda s: s.start_time_unix_nano)
    assert [r.attributes["followup.step"] for r in roots] == STEP_NAMES
    for root in roots:
        assert root.parent_span_id is None
        assert root.trace_id != webhook.trace_id
        [link] = root.links
        assert link.trace_id == webhook.trace_id
        assert link.span_id in webhook_span_ids
        node = [
            s
            for s in spans
            if s.trace_id == root.trace_id and s.name == f"lead_bot.{root.attributes['followup.step']}"
        ]
        assert len(node) == 1 and node[0].parent_span_id == root.span_id


@pytest.mark.slow
def test_end_to_end_webhook_then_admin_run_due_under_uvicorn(sqlite_url: str) -> None:
    """The real app: a GHL webhook schedules the sequence; 31 days later the admin route runs it.

    Every follow-up root span that reaches the OTLP receiver links to the FastAPI
    SERVER span's trace of the webhook request.
    """
    import httpx

    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.settings import Settings
    from tests.conversation_kit import inbound_payload
    from tests.serving import serve_in_thread

    now = datetime.now(UTC)
    with OTLPGrpcReceiver() as receiver:
        settings = Settings(
            database_url=sqlite_url,
            otel_exporter_type="otlp",
            otel_endpoint=receiver.endpoint,
            followup_poll_seconds=3600,
        )
        with serve_in_thread(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
            hook = client.post(
                "/api/v1/webhooks/ghl", json=inbound_payload("c-e2e", "Hi, who is this?", when=now)
            )
            assert hook.status_code == 200, hook.text
            client.delete("/sandbox/ghl/_calls").raise_for_status()
            run = client.post(
                "/admin/followups/run-due", json={"now": (now + timedelta(days=31)).isoformat()}
            )
            assert run.status_code == 200, run.text
            assert [(s["step"], s["outcome"]) for s in run.json()["steps"]] == [
                (s, "done") for s in STEP_NAMES
            ]
            calls = client.get("/sandbox/ghl/_calls").json()["calls"]
            kinds = [c["body"].get("type", "task") for c in calls if c["method"] == "POST"]
            assert kinds == ["SMS", "task", "Email", "SMS"]

        def arrived(spans: list[ReceivedSpan]) -> bool:
            return [s.name for s in spans].count(FOLLOWUP_SPAN_NAME) == 4

        spans = receiver.wait_for(arrived)

    [webhook] = [s for s in spans if s.kind == SpanKind.SERVER and s.name == WEBHOOK_SPAN]
    webhook_span_ids = {s.span_id for s in spans if s.trace_id == webhook.trace_id}
    roots = [s for s in spans if s.name == FOLLOWUP_SPAN_NAME]
    assert sorted(r.attributes["followup.step"] for r in roots) == sorted(STEP_NAMES)
    for root in roots:
        assert root.parent_span_id is None
        [link] = root.links
        assert (link.trace_id, link.span_id in webhook_span_ids) == (webhook.trace_id, True)
