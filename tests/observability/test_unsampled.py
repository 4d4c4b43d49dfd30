"""Unsampled means nearly free (issue 14): under an unsampled parent the node decorator, custom
and handoff spans start nothing and build no attributes, while the metrics stay exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from ghl_real_estate_ai.observability import _instrument
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    async_workflow_span,
    create_handoff_span,
    trace_workflow_node,
)

# A buyer and a seller text hand the lead over (the heaviest path); the last stays with the lead bot.
WEBHOOK_TEXTS = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days.",
    "Thinking about selling our condo in Upland, it's in good condition, hoping to get $480k",
    "Hello, saw your sign on Foothill Blvd. Just looking around for now.",
)


def _webhook(contact: str, text: str) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": text,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-{contact}",
        "conversationId": f"conv-{contact}",
        "webhookId": f"wh-{contact}",
    }


@trace_workflow_node("lead_bot", "analyze_intent")
async def analyze_intent(state: dict[str, Any]) -> dict[str, Any]:
    return {"temperature": "warm"}


async def test_nothing_is_started_under_an_unsampled_parent_and_metrics_stay_exact(
    monkeypatch: Any,
) -> None:
    built: list[str] = []
    real = _instrument._state_attributes

    def counting(spec: _instrument.NodeSpec, state: Any) -> Any:
        built.append(spec.span_name)
        return real(spec, state)

    monkeypatch.setattr(_instrument, "_state_attributes", counting)
    # Root traces are never sampled here; every span below follows its parent.
    with capture_spans(sampler=ParentBased(ALWAYS_OFF)) as capture:
        tracer = capture.provider.get_tracer("test")
        for _ in range(3):
            with tracer.start_as_current_span("POST /api/v1/webhooks/ghl"):
                await analyze_intent({"contact_id": "c1", "temperature": "cold"})
                async with async_workflow_span("seller_bot", "calculate_frs", contact_id="c1"):
                    pass
                with create_handoff_span("lead", "buyer", "c1", 0.9, "buyer_intent_detected"):
                    pass
        assert capture.spans() == []
        assert built == []  # no attributes built for spans nobody records
        metrics = capture.metrics()
    (node,) = metrics["jorge.workflow.node.duration"]
    assert node[1].count == 3  # type: ignore[union-attr]
    handoffs = metrics["jorge.handoff.count"]
    assert sum(value for _, value in handoffs) == 3  # type: ignore[misc]


async def test_a_sampled_parent_still_gets_every_span() -> None:
    with capture_spans(sampler=ParentBased(TraceIdRatioBased(1.0))) as capture:
        with capture.provider.get_tracer("test").start_as_current_span("webhook"):
            await analyze_intent({"contact_id": "c1"})
        assert [s.name for s in capture.spans()] == ["lead_bot.analyze_intent", "webhook"]


async def test_a_webhook_whose_trace_is_not_sampled_costs_tracing_nothing_but_its_metrics(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Through the real app at 0 % sampling: no span recorded, started for a processor,
    redacted or exported; no node attributes built; no store or cache span started;
    the webhook and node metrics still count every call."""
    import httpx
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import Span
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.observability import redaction
    from ghl_real_estate_ai.observability.otel_config import setup_observability, shutdown_observability
    from ghl_real_estate_ai.settings import Settings

    work: list[str] = []
    real_attributes = _instrument._state_attributes
    real_redact = redaction._redact_span_if_needed
    real_span_init = Span.__init__

    def attributes(spec: _instrument.NodeSpec, state: Any) -> Any:
        work.append(f"attributes {spec.span_name}")
        return real_attributes(spec, state)

    def redact(span: Any, capture_content: bool) -> Any:
        work.append(f"redaction {span.name}")
        return real_redact(span, capture_content)

    def sdk_span(self: Span, name: str, *args: Any, **kwargs: Any) -> None:
        work.append(f"span {name}")
        real_span_init(self, name, *args, **kwargs)

    monkeypatch.setattr(_instrument, "_state_attributes", attributes)
    monkeypatch.setattr(redaction, "_redact_span_if_needed", redact)
    monkeypatch.setattr(Span, "__init__", sdk_span)
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'jorge.db'}",
        otel_exporter_type="none",
        otel_traces_sampler="parentbased_traceidratio",
        otel_traces_sampler_arg=0.0,
        followup_poll_seconds=3600.0,
    )
    exported = InMemorySpanExporter()
    metrics = InMemoryMetricReader()
    setup_observability(settings, span_exporters=[exported], metric_readers=[metrics])
    try:
        app = create_app(settings, manage_observability=False)
        async with app.running():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for n, text in enumerate(WEBHOOK_TEXTS):
                    response = await client.post(
                        "/api/v1/webhooks/ghl", json=_webhook(f"unsampled-{n}", text)
                    )
                    assert response.status_code == 200 and response.json()["status"] == "processed", (
                        response.text
                    )
        data = metrics.get_metrics_data()
    finally:
        shutdown_observability()
    assert work == []
    assert exported.get_finished_spans() == ()
    points = {
        metric.name: metric.data.data_points
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert sum(p.value for p in points["jorge.webhook.requests"]) == len(WEBHOOK_TEXTS)
    lead_nodes = [
        p for p in points["jorge.workflow.node.duration"] if p.attributes.get("node_name") == "analyze_intent"
    ]
    assert sum(p.count for p in lead_nodes) >= len(WEBHOOK_TEXTS)


async def test_the_state_is_not_even_looked_for_under_an_unsampled_parent(monkeypatch: Any) -> None:
    looked: list[int] = []
    real = _instrument.find_state

    def counting(args: Any, kwargs: Any) -> Any:
        looked.append(1)
        return real(args, kwargs)

    monkeypatch.setattr(_instrument, "find_state", counting)
    with capture_spans(sampler=ParentBased(TraceIdRatioBased(0.0))) as capture:
        with capture.provider.get_tracer("test").start_as_current_span("webhook"):
            assert await analyze_intent({"contact_id": "c1"}) == {"temperature": "warm"}
        assert looked == []
    with capture_spans() as capture:
        with capture.provider.get_tracer("test").start_as_current_span("webhook"):
            await analyze_intent({"contact_id": "c1"})
        assert looked == [1]
        (node,) = capture.by_name("lead_bot.analyze_intent")
        assert (node.attributes or {})["workflow.contact_id"] == "c1"
