"""Workflow metrics that count every call, whatever the trace sampler keeps.

Traces may be sampled at 10 %; dashboards and alerts (P95 per node, handoff
failure rate, error rate per bot) must stay exact, so the node decorator and
the handoff span record these instruments on every call:

* ``jorge.workflow.node.duration`` histogram, ms (``bot_type``, ``node_name``, ``success``)
* ``jorge.workflow.errors`` counter (``bot_type``)
* ``jorge.handoff.count`` counter (``route`` such as ``lead_to_buyer``, ``outcome``)
* ``jorge.handoff.duration`` histogram, ms (``route``)

Instruments live on the SDK ``MeterProvider`` that
``_provider.set_meter_delegate`` installed (OTLP export or an in-memory reader)
and are rebuilt lazily when that changes; with no meter provider every
``record_*`` call is one cached lookup and returns. Read totals with
:func:`metric_points` on what a reader collected::

    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    points = metric_points(reader.get_metrics_data())
    points["jorge.workflow.node.duration"]  # [({"bot_type": ..., ...}, HistogramTotals(...)), ...]
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability import attributes as attr

__all__ = [
    "LATENCY_BUCKETS_MS",
    "HistogramTotals",
    "MetricPoints",
    "instruments",
    "metric_points",
    "node_metric_attributes",
    "record_handoff",
    "record_node",
    "record_outbox",
]

LATENCY_BUCKETS_MS: Final = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
"""Histogram bucket bounds (ms); 2000 is a bound so the P95 > 2 s alert is exact at the threshold."""

_METER_NAME = "ghl_real_estate_ai.observability"


@dataclass(frozen=True, slots=True)
class _Instruments:
    node_duration: Histogram
    errors: Counter
    handoff_count: Counter
    handoff_duration: Histogram


_lock = threading.Lock()
# (generation, instruments or None): rebuilt when the meter delegate changes.
_cache: tuple[int, _Instruments | None] = (-1, None)


def _build() -> _Instruments | None:
    provider = _provider.current_meter_delegate()
    if provider is None:
        return None
    meter = provider.get_meter(_METER_NAME)
    return _Instruments(
        node_duration=meter.create_histogram(
            attr.METRIC_NODE_DURATION,
            unit="ms",
            description="Duration of every workflow node call",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
        ),
        errors=meter.create_counter(
            attr.METRIC_WORKFLOW_ERRORS, unit="1", description="Workflow node calls that raised"
        ),
        handoff_count=meter.create_counter(
            attr.METRIC_HANDOFF_COUNT, unit="1", description="Cross-bot handoffs by route and outcome"
        ),
        handoff_duration=meter.create_histogram(
            attr.METRIC_HANDOFF_DURATION,
            unit="ms",
            description="Duration of handoff blocks by route",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
        ),
    )


def instruments() -> _Instruments | None:
    """The instruments of the current meter provider (``None`` when metrics are off)."""
    global _cache
    generation, cached = _cache
    if generation == _provider.generation():
        return cached
    with _lock:
        current = _provider.generation()
        built = _build()
        _cache = (current, built)
        return built


def node_metric_attributes(bot_type: str, node_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The metric attributes of a node for success and for failure, built once per node.

    Args:
        bot_type: e.g. ``lead_bot``.
        node_name: e.g. ``analyze_intent``.

    Returns:
        ``(attributes when it succeeded, attributes when it failed)``.
    """
    base = {"bot_type": bot_type, "node_name": node_name}
    return {**base, "success": "true"}, {**base, "success": "false"}


def record_node(
    duration_ms: float,
    metric_attributes: Mapping[str, str],
    *,
    error_attributes: Mapping[str, str] | None = None,
) -> None:
    """Record one node call.

    Args:
        duration_ms: wall time of the call in ms.
        metric_attributes: from :func:`node_metric_attributes` (success or failure form).
        error_attributes: ``{"bot_type": ...}`` when the call raised; increments the error counter.
    """
    inst = instruments()
    if inst is None:
        return
    inst.node_duration.record(duration_ms, metric_attributes)
    if error_attributes is not None:
        inst.errors.add(1, error_attributes)


def record_handoff(route: str, outcome: str, duration_ms: float) -> None:
    """Record one handoff block.

    Args:
        route: ``<source>_to_<target>``, e.g. ``lead_to_buyer``.
        outcome: ``executed``, ``blocked:<reason>`` or ``failed:<ExceptionType>``.
        duration_ms: wall time of the block in ms.
    """
    inst = instruments()
    if inst is None:
        return
    inst.handoff_count.add(1, {"route": route, "outcome": outcome})
    inst.handoff_duration.record(duration_ms, {"route": route})


@dataclass(frozen=True, slots=True)
class HistogramTotals:
    """What a histogram holds for one attribute set: how many values, their sum, min and max."""

    count: int
    sum: float
    min: float
    max: float


MetricPoints = dict[str, list[tuple[dict[str, Any], float | HistogramTotals]]]
"""``{metric name: [(attributes, value), ...]}`` as :func:`metric_points` returns it."""


_outbox_counter: tuple[int, Counter | None] = (-1, None)


def record_outbox(outcome: str) -> None:
    """Count one final outbox outcome: ``jorge.outbox.outcomes`` (``outcome``: sent, reconciled,
    failed, dead, dropped), so dead items show on dashboards and alerts."""
    global _outbox_counter
    generation, counter = _outbox_counter
    if generation != _provider.generation():
        provider = _provider.current_meter_delegate()
        counter = (
            None
            if provider is None
            else provider.get_meter(_METER_NAME).create_counter(
                "jorge.outbox.outcomes", unit="1", description="Outbound GHL actions by final outcome"
            )
        )
        _outbox_counter = (_provider.generation(), counter)
    if counter is not None:
        counter.add(1, {"outcome": outcome})


def metric_points(data: MetricsData | None) -> MetricPoints:
    """Flatten collected metrics into ``{metric name: [(attributes, value), ...]}``.

    Args:
        data: what a metric reader collected (``None`` gives an empty dict).

    Returns:
        Counters and gauges give their number; histograms give :class:`HistogramTotals`.
    """
    result: MetricPoints = {}
    if data is None:
        return result
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                rows = result.setdefault(metric.name, [])
                for point in metric.data.data_points:
                    attributes = dict(point.attributes or {})
                    if isinstance(point, HistogramDataPoint):
                        rows.append(
                            (attributes, HistogramTotals(point.count, point.sum, point.min, point.max))
                        )
                    elif isinstance(point, NumberDataPoint):
                        rows.append((attributes, point.value))
    return result
