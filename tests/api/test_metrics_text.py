"""The app's own Prometheus text writer says what prometheus_client's would say.

``/metrics`` writes the text format itself (label strings built once, issue 11);
these tests record real OpenTelemetry instruments, render them both ways and
compare what prometheus_client's parser reads back, hostile label values included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.export import Sum as SumData
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from ghl_real_estate_ai.observability.metrics import (
    LATENCY_BUCKETS_MS,
    PrometheusText,
    format_value,
    prometheus_name,
)

HOSTILE = 'a "quoted" \\ back\nslash <script>'


def recorded() -> MetricsData:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    histogram = meter.create_histogram(
        "jorge.test.duration", unit="ms", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS
    )
    counter = meter.create_counter("jorge.test.calls", description="Calls, with a \\ and\na newline")
    updown = meter.create_up_down_counter("jorge.test.level")
    for ms in (3.0, 7.5, 2000.0, 2000.1, 12_000.0):
        histogram.record(ms, {"bot_type": "lead_bot", "node_name": HOSTILE})
    histogram.record(40.0, {"bot_type": "buyer_bot", "node_name": "qualify", "success": True})
    counter.add(3, {"route": "lead_to_buyer", "outcome": "executed"})
    counter.add(1, {"route": HOSTILE, "outcome": "failed:Timeout"})
    updown.add(5)
    updown.add(-7)
    data = reader.get_metrics_data()
    assert data is not None
    provider.shutdown()
    return data


def reference_families(data: MetricsData) -> Iterable[Metric]:
    """The same data through prometheus_client's metric families (what /metrics used before)."""

    def labels(attributes: object) -> dict[str, str]:
        items = dict(attributes or {})  # type: ignore[call-overload]
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in items.items()}

    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                name = prometheus_name(metric.name, metric.unit)
                help_text = metric.description or name
                for point in metric.data.data_points:
                    point_labels = labels(point.attributes)
                    keys = sorted(point_labels)
                    family: Metric
                    if isinstance(metric.data, HistogramData):
                        assert isinstance(point, HistogramDataPoint)
                        family = HistogramMetricFamily(name, help_text, labels=keys)
                        cumulative, buckets = 0, []
                        for bound, count in zip(
                            [*point.explicit_bounds, math.inf], point.bucket_counts, strict=True
                        ):
                            cumulative += count
                            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
                        family.add_metric(
                            [point_labels[k] for k in keys], buckets=buckets, sum_value=point.sum
                        )
                    elif isinstance(metric.data, SumData) and metric.data.is_monotonic:
                        family = CounterMetricFamily(name, help_text, labels=keys)
                        family.add_metric([point_labels[k] for k in keys], point.value)  # type: ignore[union-attr]
                    else:
                        family = GaugeMetricFamily(name, help_text, labels=keys)
                        family.add_metric([point_labels[k] for k in keys], point.value)  # type: ignore[union-attr]
                    yield family


Parsed = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Parsed, dict[str, tuple[str, str]]]:
    samples: Parsed = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, families


def test_the_writer_matches_prometheus_client_on_real_instruments() -> None:
    data = recorded()
    out: list[str] = []
    writer = PrometheusText()
    writer.metrics_data(out, data)
    ours = "\n".join([*out, ""])

    class Reference:
        def collect(self) -> Iterable[Metric]:
            return reference_families(data)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference())  # type: ignore[arg-type]
    theirs = generate_latest(registry).decode()

    our_samples, our_families = parse(ours)
    their_samples, their_families = parse(theirs)
    assert our_samples == their_samples
    assert our_families == their_families
    series = frozenset({("bot_type", "lead_bot"), ("node_name", HOSTILE)})
    assert our_samples[("jorge_test_duration_milliseconds_count", series)] == 5
    assert our_samples[("jorge_test_duration_milliseconds_bucket", series | {("le", "2000.0")})] == 3
    failed = frozenset({("route", HOSTILE), ("outcome", "failed:Timeout")})
    assert our_samples[("jorge_test_calls_total", failed)] == 1
    assert our_samples[("jorge_test_level", frozenset())] == -2
    assert our_families["jorge_test_calls"] == ("counter", "Calls, with a \\ and\na newline")

    # The second scrape, served from the cached label strings, says the same.
    again: list[str] = []
    writer.metrics_data(again, data)
    assert again == out


def test_values_are_written_as_prometheus_reads_them() -> None:
    assert format_value(3) == "3"
    assert format_value(2.5) == "2.5"
    assert format_value(1e-7) == "1e-07"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(math.nan) == "NaN"
    out: list[str] = []
    text = PrometheusText()
    text.family(out, "x", "help", "gauge")
    for number in (3, 2.5, 1e-7, math.inf, -math.inf):
        text.sample(out, "x", number, {"n": str(number)})
    parsed, _ = parse("\n".join([*out, ""]))
    assert [parsed[("x", frozenset({("n", str(n))}))] for n in (3, 2.5, 1e-7)] == [3, 2.5, 1e-7]
    assert parsed[("x", frozenset({("n", "inf")}))] == math.inf
    assert parsed[("x", frozenset({("n", "-inf")}))] == -math.inf
