"""Unsampled means nearly free (issue 14): under an unsampled parent the node decorator, custom
and handoff spans start nothing and build no attributes, while the metrics stay exact."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from ghl_real_estate_ai.observability import _instrument
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    async_workflow_span,
    create_handoff_span,
    trace_workflow_node,
)


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
