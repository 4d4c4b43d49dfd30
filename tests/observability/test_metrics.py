"""Metrics count every call, whatever the trace sampler keeps, and cost nothing when off."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from ghl_real_estate_ai.observability import _provider, metrics
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.metrics import HistogramTotals, metric_points
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    create_handoff_span,
    set_handoff_outcome,
    trace_workflow_node,
)


@trace_workflow_node("lead_bot", "analyze_intent")
async def analyze_intent(state: dict[str, Any]) -> dict[str, Any]:
    return state


@trace_workflow_node("lead_bot", "process_lead_conversation")
async def process(state: dict[str, Any]) -> dict[str, Any]:
    return await analyze_intent(state)


def histogram(capture: SpanCapture, name: str, **attributes: str) -> HistogramTotals:
    rows = [value for attrs, value in capture.metrics().get(name, []) if attrs == attributes]
    assert len(rows) == 1, capture.metrics().get(name)
    assert isinstance(rows[0], HistogramTotals)
    return rows[0]


def counter(capture: SpanCapture, name: str, **attributes: str) -> float:
    rows = [value for attrs, value in capture.metrics().get(name, []) if attrs == attributes]
    assert len(rows) == 1, capture.metrics().get(name)
    assert isinstance(rows[0], int | float)
    return rows[0]


async def test_node_metric_counts_every_call_at_ten_percent_sampling() -> None:
    with capture_spans(sampler=ParentBased(TraceIdRatioBased(0.1))) as capture:
        for index in range(1000):
            await process({"contact_id": f"c{index}"})

        roots = capture.by_name("lead_bot.process_lead_conversation")
        children = capture.by_name("lead_bot.analyze_intent")
        for name in ("process_lead_conversation", "analyze_intent"):
            totals = histogram(
                capture, attr.METRIC_NODE_DURATION, bot_type="lead_bot", node_name=name, success="true"
            )
            assert totals.count == 1000
            assert totals.sum > 0
    # Binomial(1000, 0.1): mean 100, sd 9.5; 50..160 is beyond 5 sd either way.
    assert 50 <= len(roots) <= 160
    # Children follow their parent's decision: exactly one child per kept root, inside its trace.
    assert len(children) == len(roots)
    root_ids = {root.context.span_id for root in roots}
    assert all(child.parent is not None and child.parent.span_id in root_ids for child in children)


async def test_failures_are_counted_by_bot_and_as_unsuccessful_durations(span_capture: SpanCapture) -> None:
    @trace_workflow_node("seller_bot", "qualify_seller")
    async def qualify(state: dict[str, Any]) -> None:
        if state["fail"]:
            raise ValueError("bad answer")

    for fail in (True, False, True):
        with contextlib.suppress(ValueError):
            await qualify({"fail": fail})

    base = {"bot_type": "seller_bot", "node_name": "qualify_seller"}
    assert histogram(span_capture, attr.METRIC_NODE_DURATION, **base, success="false").count == 2
    assert histogram(span_capture, attr.METRIC_NODE_DURATION, **base, success="true").count == 1
    assert counter(span_capture, attr.METRIC_WORKFLOW_ERRORS, bot_type="seller_bot") == 2


def test_handoffs_are_counted_by_route_and_outcome(span_capture: SpanCapture) -> None:
    with create_handoff_span("lead", "buyer", "c1", 0.9, "buyer_intent"):
        pass
    with create_handoff_span("lead", "buyer", "c2", 0.9, "buyer_intent"):
        set_handoff_outcome("blocked:cooldown")
    with pytest.raises(TimeoutError), create_handoff_span("lead", "seller", "c3", 0.8, "seller_intent"):
        raise TimeoutError

    assert counter(span_capture, attr.METRIC_HANDOFF_COUNT, route="lead_to_buyer", outcome="executed") == 1
    assert (
        counter(span_capture, attr.METRIC_HANDOFF_COUNT, route="lead_to_buyer", outcome="blocked:cooldown")
        == 1
    )
    assert (
        counter(
            span_capture, attr.METRIC_HANDOFF_COUNT, route="lead_to_seller", outcome="failed:TimeoutError"
        )
        == 1
    )
    assert histogram(span_capture, attr.METRIC_HANDOFF_DURATION, route="lead_to_buyer").count == 2
    assert histogram(span_capture, attr.METRIC_HANDOFF_DURATION, route="lead_to_seller").count == 1


async def test_metrics_are_recorded_with_tracing_off_but_a_meter_on() -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    previous = _provider.current_meter_delegate()
    _provider.set_meter_delegate(meter_provider)
    try:
        await analyze_intent({"contact_id": "c1"})
        with create_handoff_span("buyer", "seller", "c1", 0.85, "seller_intent"):
            pass
        points = metric_points(reader.get_metrics_data())
    finally:
        _provider.set_meter_delegate(previous)
        meter_provider.shutdown()
    assert [value.count for _, value in points[attr.METRIC_NODE_DURATION]] == [1]  # type: ignore[union-attr]
    assert points[attr.METRIC_HANDOFF_COUNT] == [({"route": "buyer_to_seller", "outcome": "executed"}, 1)]


async def test_no_meter_provider_means_no_instruments_and_no_error() -> None:
    assert _provider.current_meter_delegate() is None
    assert metrics.instruments() is None
    metrics.record_node(1.0, {"bot_type": "x"}, error_attributes={"bot_type": "x"})
    metrics.record_handoff("lead_to_buyer", "executed", 1.0)
    assert await analyze_intent({}) == {}


def test_instruments_follow_the_meter_provider_swap() -> None:
    with capture_spans() as first:
        metrics.record_node(5.0, {"bot_type": "a", "node_name": "n", "success": "true"})
    with capture_spans() as second:
        metrics.record_node(7.0, {"bot_type": "a", "node_name": "n", "success": "true"})
        assert histogram(second, attr.METRIC_NODE_DURATION, bot_type="a", node_name="n", success="true") == (
            HistogramTotals(count=1, sum=7.0, min=7.0, max=7.0)
        )
    assert metrics.instruments() is None
    del first


def test_metric_points_of_nothing_is_empty() -> None:
    assert metric_points(None) == {}


def test_latency_buckets_include_the_slo_threshold() -> None:
    assert 2000.0 in metrics.LATENCY_BUCKETS_MS
    assert list(metrics.LATENCY_BUCKETS_MS) == sorted(metrics.LATENCY_BUCKETS_MS)
