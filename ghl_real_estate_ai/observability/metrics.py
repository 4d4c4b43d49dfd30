"""Workflow metrics that count every call, whatever the trace sampler keeps.

Traces may be sampled at 10 %; dashboards and alerts (P95 per node, handoff
failure rate, error rate per bot) must stay exact, so the node decorator and
the handoff span record these instruments on every call:

* ``jorge.workflow.node.duration`` histogram, ms (``bot_type``, ``node_name``, ``success``)
* ``jorge.workflow.errors`` counter (``bot_type``)
* ``jorge.handoff.count`` counter (``route`` such as ``lead_to_buyer``, ``outcome``)
* ``jorge.handoff.duration`` histogram, ms (``route``)
* ``jorge.traces`` counter (``bot_type``, ``error``): webhook traces that ran a
  bot, counted when a :func:`trace_scope` ends (the web layer opens one per
  webhook); ``error`` is ``true`` when a node raised, a handoff failed or the
  request answered 5xx in it
* ``jorge.webhook.requests`` counter (``outcome``, ``status_code``)

For Prometheus, :class:`PrometheusBridge` reads these instruments on each
scrape (a pull reader handed to ``setup_observability(metric_readers=...)``)
and writes them in the Prometheus text format with :class:`PrometheusText`:
dots become underscores, ``ms`` histograms gain ``_milliseconds``, counters
``_total`` (``jorge_handoff_count_total``).

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

import contextvars
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.sdk.metrics.export import (
    Gauge,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability._fastmetrics import Adder, Recorder, fast_counter, fast_histogram

__all__ = [
    "LATENCY_BUCKETS_MS",
    "HistogramTotals",
    "MetricPoints",
    "PrometheusBridge",
    "PrometheusText",
    "TraceOutcome",
    "format_value",
    "instruments",
    "metric_points",
    "node_metric_attributes",
    "prometheus_name",
    "record_handoff",
    "record_node",
    "record_outbox",
    "record_webhook",
    "trace_scope",
]

LATENCY_BUCKETS_MS: Final = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
"""Histogram bucket bounds (ms); 2000 is a bound so the P95 > 2 s alert is exact at the threshold."""

_METER_NAME = "ghl_real_estate_ai.observability"


@dataclass(frozen=True, slots=True)
class _Instruments:
    node_duration: Recorder
    errors: Adder
    handoff_count: Adder
    handoff_duration: Recorder
    traces: Adder
    webhooks: Adder
    seen_bots: set[str]
    error_series: set[str]
    webhooks_started: list[bool]


_lock = threading.Lock()
# (generation, instruments or None): rebuilt when the meter delegate changes.
_cache: tuple[int, _Instruments | None] = (-1, None)


def _build() -> _Instruments | None:
    provider = _provider.current_meter_delegate()
    if provider is None:
        return None
    meter = provider.get_meter(_METER_NAME)

    # Wrapped for the shorter path of _fastmetrics (issue 14): they record on every call.
    def latency(name: str, description: str) -> Recorder:
        return fast_histogram(
            meter.create_histogram(
                name,
                unit="ms",
                description=description,
                explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
            )
        )

    def count(name: str, description: str) -> Adder:
        return fast_counter(meter.create_counter(name, unit="1", description=description))

    return _Instruments(
        node_duration=latency(attr.METRIC_NODE_DURATION, "Duration of every workflow node call"),
        errors=count(attr.METRIC_WORKFLOW_ERRORS, "Workflow node calls that raised"),
        handoff_count=count(attr.METRIC_HANDOFF_COUNT, "Cross-bot handoffs by route and outcome"),
        handoff_duration=latency(attr.METRIC_HANDOFF_DURATION, "Duration of handoff blocks by route"),
        traces=count(attr.METRIC_TRACES, "Webhook traces that ran a bot, by first bot and error"),
        webhooks=count(attr.METRIC_WEBHOOKS, "Webhook requests by outcome and status code"),
        seen_bots=set(),
        error_series=set(),
        webhooks_started=[],
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
    outcome = _trace_outcome.get()
    if outcome is not None:
        if outcome.bot_type is None:
            outcome.bot_type = metric_attributes.get("bot_type")
        if error_attributes is not None:
            outcome.error = True
    inst = instruments()
    if inst is None:
        return
    inst.node_duration.record(duration_ms, metric_attributes)
    if error_attributes is not None:
        inst.errors.add(1, error_attributes)
    elif metric_attributes.get("bot_type") not in inst.error_series:
        # A bot's error counter exists (at 0) from its first call, so its first error is an
        # increase Prometheus' rate() can see rather than a new series.
        bot = metric_attributes.get("bot_type", "")
        inst.error_series.add(bot)
        inst.errors.add(0, {"bot_type": bot})


def record_handoff(route: str, outcome: str, duration_ms: float) -> None:
    """Record one handoff block.

    Args:
        route: ``<source>_to_<target>``, e.g. ``lead_to_buyer``.
        outcome: ``executed``, ``blocked:<reason>`` or ``failed:<ExceptionType>``.
        duration_ms: wall time of the block in ms.
    """
    if outcome.startswith("failed"):
        scope = _trace_outcome.get()
        if scope is not None:
            scope.error = True
    inst = instruments()
    if inst is None:
        return
    inst.handoff_count.add(1, {"route": route, "outcome": outcome})
    inst.handoff_duration.record(duration_ms, {"route": route})


def record_webhook(outcome: str, status_code: int) -> None:
    """Count one webhook request.

    Args:
        outcome: one of a fixed set (``processed``, ``queued``, ``duplicate``,
            ``ignored``, ``rejected``, ``retry_later``, ``error``).
        status_code: the HTTP status answered.
    """
    inst = instruments()
    if inst is not None:
        if not inst.webhooks_started:
            # The alerting outcomes exist from the first webhook on (see trace_scope).
            inst.webhooks_started.append(True)
            inst.webhooks.add(0, {"outcome": "retry_later", "status_code": "429"})
            inst.webhooks.add(0, {"outcome": "error", "status_code": "500"})
        inst.webhooks.add(1, {"outcome": outcome, "status_code": str(status_code)})


@dataclass(slots=True)
class TraceOutcome:
    """What one trace did so far: the first bot that ran in it, and whether anything failed."""

    bot_type: str | None = None
    error: bool = False


_trace_outcome: contextvars.ContextVar[TraceOutcome | None] = contextvars.ContextVar(
    "jorge_trace_outcome", default=None
)


@contextmanager
def trace_scope() -> Iterator[TraceOutcome]:
    """Follow one trace (a webhook request) and count it in ``jorge.traces`` when it ends.

    Node and handoff records inside the block mark the outcome (the first
    ``bot_type``; ``error`` when a node raised or a handoff failed); the caller
    may set ``error`` too (a 5xx answer). Counted only when a bot ran. This
    does not depend on sampling: it follows the calls, not the spans.
    """
    outcome = TraceOutcome()
    token = _trace_outcome.set(outcome)
    try:
        yield outcome
    finally:
        _trace_outcome.reset(token)
        if outcome.bot_type is not None:
            inst = instruments()
            if inst is not None:
                if outcome.bot_type not in inst.seen_bots:
                    # Both series of a bot exist from its first trace on, so the first error
                    # shows as an increase to Prometheus' rate() rather than as a new series.
                    inst.seen_bots.add(outcome.bot_type)
                    inst.traces.add(0, {"bot_type": outcome.bot_type, "error": "true"})
                    inst.traces.add(0, {"bot_type": outcome.bot_type, "error": "false"})
                inst.traces.add(1, {"bot_type": outcome.bot_type, "error": str(outcome.error).lower()})


@dataclass(frozen=True, slots=True)
class HistogramTotals:
    """What a histogram holds for one attribute set: how many values, their sum, min and max."""

    count: int
    sum: float
    min: float
    max: float


MetricPoints = dict[str, list[tuple[dict[str, Any], float | HistogramTotals]]]
"""``{metric name: [(attributes, value), ...]}`` as :func:`metric_points` returns it."""


_outbox_counter: tuple[int, Adder | None] = (-1, None)


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
            else fast_counter(
                provider.get_meter(_METER_NAME).create_counter(
                    "jorge.outbox.outcomes", unit="1", description="Outbound GHL actions by final outcome"
                )
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


# --- Prometheus -------------------------------------------------------------------

_UNIT_SUFFIXES: Final = {"ms": "milliseconds", "s": "seconds", "By": "bytes"}
_MAX_CACHED_SERIES: Final = 10_000
"""Label strings kept between scrapes; past this many (labels are bounded, so never in practice)
the cache starts again rather than grow."""


def prometheus_name(name: str, unit: str | None) -> str:
    """The Prometheus family name of an instrument: ``jorge.handoff.duration``, ms ->
    ``jorge_handoff_duration_milliseconds`` (counters get ``_total`` on exposition)."""
    base = _sanitize(name)
    suffix = _UNIT_SUFFIXES.get(unit or "")
    return f"{base}_{suffix}" if suffix and not base.endswith(suffix) else base


def _sanitize(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name)


def _label_value(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """A sample value as the text format writes it (``+Inf``, ``-Inf``, ``NaN`` for the special ones)."""
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class PrometheusText:
    """Writes the Prometheus text format (version 0.0.4) line by line.

    A scrape costs what formatting the numbers costs: the ``# HELP``/``# TYPE``
    header of each family and the label part of each series (``{bot_type="lead_bot",...}``,
    with a histogram's ``le`` bounds) are built and escaped once, the first time
    they are written, and kept for the next scrapes. Labels are bounded by design
    (no contact ids), so the cache stays as small as the exposition.
    """

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], tuple[str, str]] = {}
        self._series: dict[tuple[str, tuple[tuple[str, Any], ...]], str] = {}
        self._buckets: dict[tuple[str, tuple[tuple[str, Any], ...], tuple[float, ...]], tuple[str, ...]] = {}

    def family(self, out: list[str], name: str, help_text: str, kind: str) -> None:
        """Append the ``# HELP`` and ``# TYPE`` lines of family ``name`` (``kind``: counter, gauge...)."""
        key = (name, help_text, kind)
        header = self._headers.get(key)
        if header is None:
            escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
            header = (f"# HELP {name} {escaped}", f"# TYPE {name} {kind}")
            self._headers[key] = header
        out.extend(header)

    def _labels(self, name: str, labels: tuple[tuple[str, Any], ...]) -> str:
        key = (name, labels)
        text = self._series.get(key)
        if text is None:
            if len(self._series) > _MAX_CACHED_SERIES:
                self._series.clear()
            inner = ",".join(f'{_sanitize(k)}="{_label_value(v)}"' for k, v in labels)
            text = f"{name}{{{inner}}} " if inner else f"{name} "
            self._series[key] = text
        return text

    def sample(
        self, out: list[str], name: str, value: float, labels: Mapping[str, Any] | None = None
    ) -> None:
        """Append one sample line: ``name{labels} value``."""
        out.append(self._labels(name, tuple(labels.items()) if labels else ()) + format_value(value))

    def histogram(
        self,
        out: list[str],
        name: str,
        labels: Mapping[str, Any] | None,
        bounds: Iterable[float],
        bucket_counts: Iterable[int],
        count: int,
        total: float,
    ) -> None:
        """Append a histogram series: cumulative ``_bucket`` lines up to ``+Inf``, ``_count`` and ``_sum``.

        ``bucket_counts`` are per bucket (OpenTelemetry's form, one more than ``bounds``).
        """
        items = tuple(labels.items()) if labels else ()
        bounds = tuple(bounds)
        key = (name, items, bounds)
        prefixes = self._buckets.get(key)
        if prefixes is None:
            if len(self._buckets) > _MAX_CACHED_SERIES:
                self._buckets.clear()
            les = [repr(float(bound)) for bound in bounds] + ["+Inf"]
            prefixes = tuple(self._labels(f"{name}_bucket", (*items, ("le", le))) for le in les)
            self._buckets[key] = prefixes
        cumulative = 0
        for prefix, bucket in zip(prefixes, bucket_counts, strict=True):
            cumulative += bucket
            out.append(prefix + str(cumulative))
        out.append(self._labels(f"{name}_count", items) + str(count))
        out.append(self._labels(f"{name}_sum", items) + format_value(total))

    def metrics_data(self, out: list[str], data: MetricsData | None) -> None:
        """Append every OpenTelemetry metric of ``data`` that has points, one family each.

        Histograms stay histograms (``_milliseconds`` for ``ms``), monotonic sums
        become counters (``_total``), other sums and gauges become gauges.
        """
        if data is None:
            return
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = metric.data.data_points
                    if not points:
                        continue
                    name = prometheus_name(metric.name, metric.unit)
                    help_text = metric.description or name
                    if isinstance(metric.data, HistogramData):
                        self.family(out, name, help_text, "histogram")
                        for point in points:
                            assert isinstance(point, HistogramDataPoint)
                            self.histogram(
                                out,
                                name,
                                point.attributes,
                                point.explicit_bounds,
                                point.bucket_counts,
                                point.count,
                                point.sum,
                            )
                    elif isinstance(metric.data, Sum | Gauge):
                        monotonic = isinstance(metric.data, Sum) and metric.data.is_monotonic
                        if monotonic:
                            name = f"{name}_total"
                        self.family(out, name, help_text, "counter" if monotonic else "gauge")
                        for point in points:
                            assert isinstance(point, NumberDataPoint)
                            self.sample(out, name, point.value, point.attributes)
                    # Exponential histograms: none of ours.


class PrometheusBridge:
    """The OpenTelemetry instruments in the Prometheus text format, read on each scrape.

    ``bridge.reader`` is a pull ``MetricReader`` (cumulative): hand it to
    ``setup_observability(metric_readers=[bridge.new_reader()])`` and call
    :meth:`write` on each scrape. Nothing is read between scrapes, so the
    cost is paid by the scraper, not by the requests.
    """

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.text = PrometheusText()

    def new_reader(self) -> InMemoryMetricReader:
        """Read from a fresh reader from now on, and return it (a reader serves one meter provider,
        so an app that starts again after a shutdown needs a new one)."""
        self.reader = InMemoryMetricReader()
        return self.reader

    def write(self, out: list[str]) -> None:
        """Append one family per instrument that recorded anything to ``out`` (lines, no newlines)."""
        try:
            data = self.reader.get_metrics_data()
        except Exception:  # a reader not attached to a meter provider (or shut down) has nothing
            return
        self.text.metrics_data(out, data)
