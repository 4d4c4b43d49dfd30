"""Our instruments' shorter path through the metrics SDK collects exactly what the SDK's path collects."""

from __future__ import annotations

import enum
import itertools
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Final

import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpCounter, NoOpHistogram
from opentelemetry.sdk.metrics import (
    AlwaysOnExemplarFilter,
    Counter,
    ExemplarFilter,
    Histogram,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics._internal import (
    _default_meter_configurator,
    _disable_meter_configurator,
    _view_instrument_match,
    measurement,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ghl_real_estate_ai.observability import _fastmetrics, metrics
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.metrics import LATENCY_BUCKETS_MS, HistogramTotals
from ghl_real_estate_ai.observability.testing import capture_spans


class Route(enum.StrEnum):
    LEAD_TO_BUYER = "lead_to_buyer"


# (instrument, value, attributes, span flags: None outside a span, else sampled or not)
Step = tuple[str, float, Any, bool | None]
COLLECT: Final = ("collect", 0.0, None, None)


def _span(sampled: bool | None, index: int) -> Any:
    if sampled is None:
        return nullcontext()
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(trace_id=0x1000 + index, span_id=0x2000 + index, is_remote=False, trace_flags=flags)
    return trace.use_span(NonRecordingSpan(context))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A clock that ticks 1 us per reading, restarted by calling the fixture's value: both runs read the
    same times if, and only if, they read the clock as often and in the same order."""
    ticks: list[Iterator[int]] = []

    def restart() -> None:
        ticks[:] = [itertools.count(1_700_000_000_000_000_000, 1000)]

    restart()
    for name, module in list(sys.modules.items()):
        if (name.startswith("opentelemetry.sdk.metrics") or module is _fastmetrics) and getattr(
            module, "time_ns", None
        ) is time.time_ns:
            monkeypatch.setattr(module, "time_ns", lambda: next(ticks[0]))
    return restart


def _run(
    steps: Sequence[Step],
    *,
    fast: bool,
    exemplar_filter: ExemplarFilter,
    views: Sequence[View] = (),
    restart_clock: Callable[[], None],
) -> list[MetricsData | None]:
    """Drive ``steps`` through a fresh provider with a cumulative and a delta reader (and a third reader
    added half way), raw SDK instruments or wrapped; what every reader collected at each ``collect``."""
    restart_clock()
    random.seed(14)  # the exemplar reservoirs draw from the global random module
    readers = [
        InMemoryMetricReader(),
        InMemoryMetricReader(
            preferred_temporality={
                Counter: AggregationTemporality.DELTA,
                Histogram: AggregationTemporality.DELTA,
            }
        ),
    ]
    provider = MeterProvider(
        metric_readers=list(readers),
        resource=Resource({"service.name": "parity"}),
        exemplar_filter=exemplar_filter,
        views=list(views),
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("parity")
    counter = meter.create_counter("jorge.test.count", unit="1")
    histogram = meter.create_histogram(
        "jorge.test.duration", unit="ms", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS
    )
    add = _fastmetrics.fast_counter(counter).add if fast else counter.add
    record = _fastmetrics.fast_histogram(histogram).record if fast else histogram.record
    collected: list[MetricsData | None] = []
    for index, (kind, value, attributes, sampled) in enumerate(steps):
        if kind == "collect":
            collected.extend(reader.get_metrics_data() for reader in readers)
        elif kind == "reader":
            readers.append(InMemoryMetricReader())
            provider.add_metric_reader(readers[-1])
        else:
            with _span(sampled, index):
                (add if kind == "add" else record)(value, attributes)
    provider.shutdown()
    return collected


def _common_steps() -> list[Step]:
    handoff = {"route": "lead_to_buyer", "outcome": "executed"}
    node_ok = {"bot_type": "lead_bot", "node_name": "analyze_intent", "success": "true"}
    node_failed = {"bot_type": "lead_bot", "node_name": "analyze_intent", "success": "false"}
    steps: list[Step] = []
    for round_ in range(3):
        for n, bound in enumerate((*LATENCY_BUCKETS_MS, 0.0, 0.5, 2000.0001, 12000.0)):
            sampled = (None, True, False)[(n + round_) % 3]
            steps.append(("record", bound, node_ok, sampled))
            steps.append(("record", bound / 2, dict(node_ok), sampled))  # equal dict, another object
            steps.append(("add", 1, handoff, sampled))
            steps.append(("add", 0, {"bot_type": "lead_bot"}, sampled))
        steps.append(COLLECT)
        if round_ == 1:
            steps.append(("record", 7.5, node_failed, True))  # a new attribute set, late
            steps.append(("add", 2.5, {"outcome": "executed", "route": "lead_to_buyer"}, True))  # other order
            steps.append(("reader", 0.0, None, None))
            steps.append(("add", 1, handoff, True))
            steps.append(("record", 30.0, node_ok, None))
    steps.extend(("add", 1, {"contact": f"c{n}"}, n % 2 == 0) for n in range(40))  # many series
    steps.extend(("add", 1, {"contact": f"c{n}"}, None) for n in range(40))
    steps.append(COLLECT)
    return steps


def _unusual_steps() -> list[Step]:
    handoff = {"route": "lead_to_buyer", "outcome": "executed"}
    steps: list[Step] = []
    for sampled in (None, True, True, False):
        steps += [
            ("add", 1, handoff, sampled),
            ("add", 1, {"route": Route.LEAD_TO_BUYER, "outcome": "executed"}, sampled),  # equal, not a str
            ("add", float("nan"), handoff, sampled),
            ("add", float("inf"), handoff, sampled),
            ("add", -1, handoff, sampled),
            ("record", float("nan"), handoff, sampled),
            ("record", -0.5, handoff, sampled),
            ("record", 12.0, {"retries": 3, "ok": True}, sampled),
            ("record", 12.0, {"retries": "3"}, sampled),
            ("record", 5.0, None, sampled),
            ("record", 5.0, {}, sampled),
            ("record", 5.0, {"": "empty key"}, sampled),
            COLLECT,
        ]
    return steps


@pytest.mark.parametrize("exemplar_filter", [TraceBasedExemplarFilter(), AlwaysOnExemplarFilter()])
def test_the_shorter_path_collects_what_the_sdk_collects(
    clock: Callable[[], None], exemplar_filter: ExemplarFilter
) -> None:
    """Same points, sums, buckets, min/max, exemplars and start times, cumulative and delta, with a
    reader added half way; the clock is the same in both runs, so times must match too."""
    assert _fastmetrics.available()
    steps = _common_steps()
    sdk = _run(steps, fast=False, exemplar_filter=exemplar_filter, restart_clock=clock)
    ours = _run(steps, fast=True, exemplar_filter=exemplar_filter, restart_clock=clock)
    assert len(sdk) == 2 + 2 + 3 + 3
    assert any(
        point.exemplars
        for data in sdk
        if data is not None
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    )
    assert ours == sdk


@pytest.mark.parametrize(
    "views",
    [
        [View(instrument_name="jorge.test.count", attribute_keys={"route"})],
        [View(instrument_name="jorge.test.count", aggregation=DropAggregation())],
        [
            View(instrument_name="jorge.test.duration", attribute_keys={"route"}),
            View(instrument_name="jorge.test.duration", name="jorge.test.duration.all"),
        ],
        [],
    ],
    ids=["attribute_keys", "drop", "two_views", "no_view"],
)
def test_unusual_measurements_and_views_give_the_sdks_result(
    clock: Callable[[], None], views: list[View]
) -> None:
    """Views that filter or drop, non-finite and negative values, non-str values, a str subclass equal
    to a known value, no attributes and an empty key all collect what the SDK collects."""
    steps = _unusual_steps() + _common_steps()
    sdk = _run(
        steps, fast=False, exemplar_filter=TraceBasedExemplarFilter(), views=views, restart_clock=clock
    )
    ours = _run(
        steps, fast=True, exemplar_filter=TraceBasedExemplarFilter(), views=views, restart_clock=clock
    )
    assert ours == sdk


def test_past_the_remembered_attribute_sets_the_sdk_records(
    clock: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fastmetrics, "MAX_ATTRIBUTE_SETS", 3)
    steps: list[Step] = [("add", 1, {"contact": f"c{n % 7}"}, n % 2 == 0) for n in range(50)]
    steps.append(COLLECT)
    sdk = _run(steps, fast=False, exemplar_filter=TraceBasedExemplarFilter(), restart_clock=clock)
    ours = _run(steps, fast=True, exemplar_filter=TraceBasedExemplarFilter(), restart_clock=clock)
    assert ours == sdk


class _Calls:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
        self.count = 0
        original = getattr(module, name)

        def spy(*args: Any) -> Any:
            self.count += 1
            return original(*args)

        monkeypatch.setattr(module, name, spy)


def test_a_known_attribute_set_is_neither_cleaned_nor_hashed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first measurement of an attribute set, our records skip the SDK's cleaning and hashing."""
    ok, failed = metrics.node_metric_attributes("lead_bot", "analyze_intent")
    with capture_spans() as capture:
        with metrics.trace_scope():
            metrics.record_node(12.0, ok)
            metrics.record_node(3.0, failed, error_attributes={"bot_type": "lead_bot"})
            metrics.record_handoff("lead_to_buyer", "executed", 40.0)
            metrics.record_webhook("processed", 200)
            metrics.record_outbox("sent")
        cleaned = _Calls(monkeypatch, measurement, "_clean_attribute_value")
        hashed = _Calls(monkeypatch, _view_instrument_match, "_hash_attributes")
        with metrics.trace_scope():
            metrics.record_node(2000.0, ok)
            metrics.record_node(3.0, failed, error_attributes={"bot_type": "lead_bot"})
            metrics.record_handoff("lead_to_buyer", "executed", 60.0)
            metrics.record_webhook("processed", 200)
            metrics.record_outbox("sent")
        assert (cleaned.count, hashed.count) == (0, 0)
        points = capture.metrics()
    node = {"bot_type": "lead_bot", "node_name": "analyze_intent"}
    assert (dict(node, success="true"), HistogramTotals(2, 2012.0, 12.0, 2000.0)) in points[
        attr.METRIC_NODE_DURATION
    ]
    assert ({"bot_type": "lead_bot"}, 2) in points[attr.METRIC_WORKFLOW_ERRORS]
    assert ({"route": "lead_to_buyer", "outcome": "executed"}, 2) in points[attr.METRIC_HANDOFF_COUNT]
    assert ({"outcome": "processed", "status_code": "200"}, 2) in points[attr.METRIC_WEBHOOKS]
    assert ({"bot_type": "lead_bot", "error": "true"}, 2) in points[attr.METRIC_TRACES]
    assert ({"outcome": "sent"}, 2) in points["jorge.outbox.outcomes"]


def test_instruments_not_of_the_sdk_are_left_as_they_are() -> None:
    counter, histogram = NoOpCounter("c"), NoOpHistogram("h")
    assert _fastmetrics.fast_counter(counter) is counter
    assert _fastmetrics.fast_histogram(histogram) is histogram


def test_a_disabled_instrument_records_nothing_either_way(clock: Callable[[], None]) -> None:
    """A meter turned off after its instruments learned their attribute sets: the SDK's no-op path."""
    provider = MeterProvider(metric_readers=[reader := InMemoryMetricReader()], shutdown_on_exit=False)
    counter = provider.get_meter("parity").create_counter("jorge.test.count")
    fast = _fastmetrics.fast_counter(counter)
    attributes: Mapping[str, str] = {"route": "lead_to_buyer"}
    fast.add(1, attributes)
    fast.add(1, attributes)
    provider._set_meter_configurator(meter_configurator=_disable_meter_configurator)
    fast.add(5, attributes)
    provider._set_meter_configurator(meter_configurator=_default_meter_configurator)
    fast.add(1, attributes)
    assert metrics.metric_points(reader.get_metrics_data())["jorge.test.count"] == [(attributes, 3)]
    provider.shutdown()
