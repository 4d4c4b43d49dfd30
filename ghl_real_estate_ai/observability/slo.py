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

Percentiles use the nearest-rank method: the P-th percentile of n sorted
values is the value at rank ``ceil(P / 100 * n)`` (1-based), always one of
the measured values, never an interpolation.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ghl_real_estate_ai.observability.query import SpanRecord

__all__ = [
    "BotErrorRate",
    "HandoffRoute",
    "NodeLatency",
    "SloReport",
    "SloThresholds",
    "compute_slo",
    "handoff_failed",
    "node_failed",
    "percentile",
]


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
