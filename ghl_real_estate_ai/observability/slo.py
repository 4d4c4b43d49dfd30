"""Service level figures from spans: what ``jorge slo`` reports and alerts on.

Pure functions over :class:`~.query.SpanRecord` lists, whichever backend they
came from (local store or Jaeger)::

    report = compute_slo(reader.spans(since=an_hour_ago), SloThresholds(p95_latency_ms=2000))
    if not report.ok:
        print(report.breaches)

The figures and their rules:

* **P95 latency per node**: over spans carrying ``workflow.node_name``,
  grouped by ``workflow.bot_type`` and node. Breached when above
  ``p95_latency_ms`` (the guide: "P95 latency > 2000ms for any bot").
* **Handoff latency per route** (average and P95): over handoff spans, grouped
  by ``source->target``. A handoff span is one named ``handoff.*``, or one
  carrying both ``handoff.source_bot`` and ``handoff.target_bot`` whose parent
  is not itself a handoff span (so the evaluate/execute children of a handoff
  are not counted twice). A route's P95 is held to ``p95_latency_ms`` too.
* **Handoff failure rate**: failed handoff spans / handoff spans. A handoff
  failed when its status is ERROR, or its ``handoff.outcome`` is set and is
  neither ``executed`` nor ``blocked:<reason>``. Blocked handoffs are the
  safeguards (rate limits, cooldowns, one-at-a-time) doing their job, not
  failures. Breached above ``handoff_failure_rate`` (guide: 5 %).
* **Error rate per bot type**: node spans with ERROR status or
  ``workflow.success=false`` / node spans, per ``workflow.bot_type``; held to
  ``trace_error_rate`` (the same error budget, applied per bot).
* **Trace error rate**: traces with at least one ERROR span / traces.
  Breached above ``trace_error_rate`` (guide: 2 %).

:func:`slo_window` is the one query both ``jorge slo`` and the ``/dashboard``
page run: the report over a window (``1h``, ``24h``, ``7d``) and, for each
figure, the traces behind it (:class:`SloTraces`: the slowest traces of each
node at or above its P95, the failed handoffs, the traces with errors).

Percentiles use the nearest-rank method: the P-th percentile of n sorted
values is the value at rank ``ceil(P / 100 * n)`` (1-based), always one of
the measured values, never an interpolation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from ghl_real_estate_ai.observability.query import SpanRecord, TraceSummary

__all__ = [
    "WINDOWS",
    "BotErrorRate",
    "HandoffRoute",
    "NodeLatency",
    "SloReport",
    "SloThresholds",
    "SloTraces",
    "SloWindow",
    "compute_slo",
    "handoff_failed",
    "node_failed",
    "percentile",
    "slo_window",
    "window_start",
]

WINDOWS: Final = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
"""The windows the dashboard offers and ``jorge slo --window`` accepts."""


@dataclass(frozen=True)
class SloThresholds:
    """Limits the figures are held to (defaults from the guide's alert rules)."""

    p95_latency_ms: float = 2000.0
    handoff_failure_rate: float = 0.05
    trace_error_rate: float = 0.02


@dataclass(frozen=True)
class NodeLatency:
    """P95 latency of one workflow node."""

    bot_type: str
    node_name: str
    count: int
    p95_ms: float
    breached: bool


@dataclass(frozen=True)
class HandoffRoute:
    """Latency and failures of one handoff route such as ``lead->buyer``."""

    route: str
    count: int
    failures: int
    avg_ms: float
    p95_ms: float
    breached: bool


@dataclass(frozen=True)
class BotErrorRate:
    """Share of failed node executions of one bot type."""

    bot_type: str
    total: int
    errors: int
    rate: float
    breached: bool


@dataclass(frozen=True)
class SloReport:
    """Every figure, and a line for each breached threshold."""

    thresholds: SloThresholds
    span_count: int
    nodes: list[NodeLatency] = field(default_factory=list)
    routes: list[HandoffRoute] = field(default_factory=list)
    bots: list[BotErrorRate] = field(default_factory=list)
    handoff_total: int = 0
    handoff_failures: int = 0
    handoff_failure_rate: float = 0.0
    trace_total: int = 0
    trace_errors: int = 0
    trace_error_rate: float = 0.0
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no threshold is breached."""
        return not self.breaches

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report (with ``ok``)."""
        data = asdict(self)
        data["ok"] = self.ok
        return data


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of ``values`` by nearest rank.

    Args:
        values: the measurements (any order, at least one).
        pct: 0 < pct <= 100.

    Returns:
        The value at rank ``ceil(pct / 100 * n)`` of the sorted values.

    Raises:
        ValueError: no values, or ``pct`` out of range.
    """
    if not values:
        raise ValueError("percentile of no values: give at least one measurement")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile {pct!r} is out of range: use 0 < pct <= 100")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _is_false(value: object) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def node_failed(span: SpanRecord) -> bool:
    """A node execution failed: ERROR status or ``workflow.success`` false."""
    return span.is_error or _is_false(span.attributes.get("workflow.success"))


def handoff_failed(span: SpanRecord) -> bool:
    """A handoff failed: ERROR, or an outcome other than ``executed`` / ``blocked:*``."""
    if span.is_error:
        return True
    outcome = span.attributes.get("handoff.outcome")
    if outcome is None:
        return False
    text = str(outcome)
    return text != "executed" and not (text == "blocked" or text.startswith("blocked:"))


def _route(span: SpanRecord) -> str:
    source = span.attributes.get("handoff.source_bot")
    target = span.attributes.get("handoff.target_bot")
    if source is not None and target is not None:
        return f"{source}->{target}"
    suffix = span.name.removeprefix("handoff.")
    left, sep, right = suffix.partition("_to_")
    return f"{left}->{right}" if sep else span.name


def _handoff_candidate(span: SpanRecord) -> bool:
    if span.name.startswith("handoff."):
        return True
    return "handoff.source_bot" in span.attributes and "handoff.target_bot" in span.attributes


def compute_slo(spans: Iterable[SpanRecord], thresholds: SloThresholds | None = None) -> SloReport:
    """Compute every figure of the module docstring from ``spans``.

    Args:
        spans: finished spans of any number of traces.
        thresholds: the limits; the guide's defaults when ``None``.

    Returns:
        The report; ``report.ok`` is false when any limit is breached.
    """
    limits = thresholds or SloThresholds()
    node_ms: dict[tuple[str, str], list[float]] = defaultdict(list)
    bot_counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    candidates: list[SpanRecord] = []
    traces: dict[str, bool] = {}
    count = 0
    for span in spans:
        count += 1
        traces[span.trace_id] = traces.get(span.trace_id, False) or span.is_error
        node = span.attributes.get("workflow.node_name")
        if node is not None:
            bot = str(span.attributes.get("workflow.bot_type", "unknown"))
            node_ms[(bot, str(node))].append(span.duration_ms)
            bot_counts[bot][0] += 1
            bot_counts[bot][1] += int(node_failed(span))
        if _handoff_candidate(span):
            candidates.append(span)

    candidate_ids = {(span.trace_id, span.span_id) for span in candidates}
    handoffs = [
        span
        for span in candidates
        if span.name.startswith("handoff.") or (span.trace_id, span.parent_span_id) not in candidate_ids
    ]

    breaches: list[str] = []
    nodes = []
    for (bot, name), values in sorted(node_ms.items()):
        p95 = percentile(values, 95)
        breached = p95 > limits.p95_latency_ms
        if breached:
            breaches.append(f"P95 latency of {bot}.{name} is {p95:.1f} ms > {limits.p95_latency_ms:g} ms")
        nodes.append(NodeLatency(bot, name, len(values), p95, breached))

    by_route: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in handoffs:
        by_route[_route(span)].append(span)
    routes = []
    for route, members in sorted(by_route.items()):
        durations = [span.duration_ms for span in members]
        p95 = percentile(durations, 95)
        breached = p95 > limits.p95_latency_ms
        if breached:
            breaches.append(f"P95 handoff latency of {route} is {p95:.1f} ms > {limits.p95_latency_ms:g} ms")
        routes.append(
            HandoffRoute(
                route=route,
                count=len(members),
                failures=sum(1 for span in members if handoff_failed(span)),
                avg_ms=sum(durations) / len(durations),
                p95_ms=p95,
                breached=breached,
            )
        )

    bots = []
    for bot, (total, errors) in sorted(bot_counts.items()):
        rate = errors / total
        breached = rate > limits.trace_error_rate
        if breached:
            breaches.append(f"error rate of {bot} is {rate:.2%} > {limits.trace_error_rate:.2%}")
        bots.append(BotErrorRate(bot, total, errors, rate, breached))

    handoff_failures = sum(1 for span in handoffs if handoff_failed(span))
    handoff_rate = handoff_failures / len(handoffs) if handoffs else 0.0
    if handoff_rate > limits.handoff_failure_rate:
        breaches.append(
            f"handoff failure rate is {handoff_rate:.2%} ({handoff_failures}/{len(handoffs)}) "
            f"> {limits.handoff_failure_rate:.2%}"
        )
    trace_errors = sum(1 for failed in traces.values() if failed)
    trace_rate = trace_errors / len(traces) if traces else 0.0
    if trace_rate > limits.trace_error_rate:
        breaches.append(
            f"trace error rate is {trace_rate:.2%} ({trace_errors}/{len(traces)}) "
            f"> {limits.trace_error_rate:.2%}"
        )
    return SloReport(
        thresholds=limits,
        span_count=count,
        nodes=nodes,
        routes=routes,
        bots=bots,
        handoff_total=len(handoffs),
        handoff_failures=handoff_failures,
        handoff_failure_rate=handoff_rate,
        trace_total=len(traces),
        trace_errors=trace_errors,
        trace_error_rate=trace_rate,
        breaches=breaches,
    )


def window_start(window: str, *, now: datetime | None = None) -> datetime:
    """The start of ``window`` (``1h``, ``24h`` or ``7d``) before ``now``.

    Raises:
        ValueError: an unknown window; the message lists the known ones.
    """
    if window not in WINDOWS:
        raise ValueError(f"window {window!r} is not one of {', '.join(WINDOWS)}")
    return (now or datetime.now(UTC)) - WINDOWS[window]


class SpanSource(Protocol):
    """Anything that streams spans since a time (the local store reader, the Jaeger reader)."""

    def spans(self, since: datetime | None = None) -> Iterable[SpanRecord]:
        """Every span started at or after ``since``."""
        ...


@dataclass(frozen=True)
class SloTraces:
    """The traces behind each figure, as trace summaries (slowest or newest first).

    ``slow`` maps ``<bot_type>.<node_name>`` to the traces whose span of that node
    took at least the node's P95; ``handoff_failures`` maps a route to the traces
    of its failed handoffs; ``bot_errors`` maps a bot type to traces where one of
    its nodes failed; ``errors`` lists every trace with an ERROR span.
    """

    slow: dict[str, list[TraceSummary]] = field(default_factory=dict)
    handoff_failures: dict[str, list[TraceSummary]] = field(default_factory=dict)
    bot_errors: dict[str, list[TraceSummary]] = field(default_factory=dict)
    errors: list[TraceSummary] = field(default_factory=list)

    def failed_handoffs(self) -> list[TraceSummary]:
        """Every trace with a failed handoff, newest first, once each."""
        seen: dict[str, TraceSummary] = {}
        for traces in self.handoff_failures.values():
            for trace in traces:
                seen.setdefault(trace.trace_id, trace)
        return sorted(seen.values(), key=lambda t: t.start_ns, reverse=True)


@dataclass(frozen=True)
class SloWindow:
    """:func:`slo_window`'s answer: the window, its report and the traces behind the figures."""

    window: str
    since: datetime
    report: SloReport
    traces: SloTraces


def _summaries(spans: Sequence[SpanRecord]) -> dict[str, TraceSummary]:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    result = {}
    for trace_id, members in by_trace.items():
        ids = {m.span_id for m in members}
        roots = [m for m in members if not m.parent_span_id or m.parent_span_id not in ids]
        root = min(roots or members, key=lambda m: m.start_ns)
        start = min(m.start_ns for m in members)
        result[trace_id] = TraceSummary(
            trace_id=trace_id,
            root_name=root.name,
            root_service=root.service_name,
            start_ns=start,
            duration_ns=max(m.end_ns for m in members) - start,
            span_count=len(members),
            error_count=sum(1 for m in members if m.is_error),
            services=tuple(sorted({m.service_name for m in members})),
        )
    return result


def slo_window(
    reader: SpanSource,
    window: str,
    thresholds: SloThresholds | None = None,
    *,
    now: datetime | None = None,
    limit: int = 20,
) -> SloWindow:
    """The SLO report over ``window`` and the traces behind each figure, from one read of the spans.

    Args:
        reader: the local store reader or the Jaeger reader.
        window: ``1h``, ``24h``, ``7d``, or any ``parse_since`` text such as ``30m``.
        thresholds: the limits; the guide's defaults when ``None``.
        now: the end of the window (default: now).
        limit: at most this many traces per figure.

    Raises:
        ValueError: an unreadable window.
        TraceQueryError: the reader failed.
    """
    if window in WINDOWS:
        since = window_start(window, now=now)
    else:
        from ghl_real_estate_ai.observability.query import parse_since

        since = parse_since(window, now=now)
    spans = list(reader.spans(since=since))
    report = compute_slo(spans, thresholds)
    summaries = _summaries(spans)

    p95 = {f"{n.bot_type}.{n.node_name}": n.p95_ms for n in report.nodes}
    slow: dict[str, list[tuple[float, str]]] = defaultdict(list)
    bot_errors: dict[str, set[str]] = defaultdict(set)
    candidates = [s for s in spans if _handoff_candidate(s)]
    candidate_ids = {(s.trace_id, s.span_id) for s in candidates}
    route_failures: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        node = span.attributes.get("workflow.node_name")
        if node is not None:
            bot = str(span.attributes.get("workflow.bot_type", "unknown"))
            key = f"{bot}.{node}"
            if span.duration_ms >= p95[key]:
                slow[key].append((span.duration_ms, span.trace_id))
            if node_failed(span):
                bot_errors[bot].add(span.trace_id)
    for span in candidates:
        nested = (span.trace_id, span.parent_span_id) in candidate_ids
        if (span.name.startswith("handoff.") or not nested) and handoff_failed(span):
            route_failures[_route(span)].add(span.trace_id)

    def newest(ids: Iterable[str]) -> list[TraceSummary]:
        return sorted((summaries[i] for i in ids), key=lambda t: t.start_ns, reverse=True)[:limit]

    def slowest(pairs: list[tuple[float, str]]) -> list[TraceSummary]:
        ordered: dict[str, None] = {}
        for _, trace_id in sorted(pairs, reverse=True):
            ordered.setdefault(trace_id)
        return [summaries[i] for i in list(ordered)[:limit]]

    traces = SloTraces(
        slow={key: slowest(pairs) for key, pairs in sorted(slow.items())},
        handoff_failures={route: newest(ids) for route, ids in sorted(route_failures.items())},
        bot_errors={bot: newest(ids) for bot, ids in sorted(bot_errors.items())},
        errors=newest(t for t, s in summaries.items() if s.error_count),
    )
    return SloWindow(window=window, since=since, report=report, traces=traces)
