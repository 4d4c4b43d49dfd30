"""SLO figures from spans, checked against values worked out by hand (acceptance 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tracegen import Node, emit, make_provider, slo_traces

from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader
from ghl_real_estate_ai.observability.slo import (
    BotErrorRate,
    HandoffRoute,
    NodeLatency,
    SloThresholds,
    compute_slo,
    handoff_failed,
    percentile,
)


def _spans(tmp_path: Path, traces: list[Node]) -> LocalTraceReader:
    store = tmp_path / "traces.db"
    provider = make_provider(LocalSpanExporter(store))
    for root in traces:
        emit(provider, root)
    provider.shutdown()
    return LocalTraceReader(store)


def test_percentile_is_nearest_rank() -> None:
    """Nearest rank: the value at rank ceil(P/100 * n), never an interpolation."""
    values = [35.0, 20.0, 15.0, 50.0, 40.0]
    assert percentile(values, 5) == 15
    assert percentile(values, 30) == 20
    assert percentile(values, 40) == 20
    assert percentile(values, 50) == 35
    assert percentile(values, 100) == 50
    assert percentile([float(v) for v in range(1, 21)], 95) == 19
    with pytest.raises(ValueError, match="no values"):
        percentile([], 95)
    with pytest.raises(ValueError, match="out of range"):
        percentile([1.0], 0)


def test_figures_match_the_hand_computed_values(tmp_path: Path) -> None:
    """Every figure of the fixed span set equals the value worked out in slo_traces' docstring."""
    report = compute_slo(_spans(tmp_path, slo_traces()).spans(), SloThresholds())
    # analyze_intent: 100..2000 ms, rank ceil(0.95*20)=19 -> 1900 ms (not over 2000).
    # qualify_buyer: [500, 2500], rank ceil(1.9)=2 -> 2500 ms (over).
    assert report.nodes == [
        NodeLatency("buyer_bot", "qualify_buyer", 2, 2500.0, True),
        NodeLatency("lead_bot", "analyze_intent", 20, 1900.0, False),
    ]
    # lead->buyer: 100/200/300/400 ms, avg 250, P95 rank 4 -> 400; one failed (failed:ghl_error),
    # blocked:cooldown is a safeguard; execute children are not counted again.
    assert report.routes == [
        HandoffRoute("buyer->seller", 1, 1, 50.0, 50.0, False),
        HandoffRoute("lead->buyer", 4, 1, 250.0, 400.0, False),
        HandoffRoute("lead->seller", 1, 0, 80.0, 80.0, False),
    ]
    # lead_bot: ERROR in trace 20 + success=false in trace 19 -> 2/20.
    assert report.bots == [
        BotErrorRate("buyer_bot", 2, 0, 0.0, False),
        BotErrorRate("lead_bot", 20, 2, 0.1, True),
    ]
    assert (report.handoff_total, report.handoff_failures) == (6, 2)
    assert report.handoff_failure_rate == pytest.approx(2 / 6)
    # ERROR spans in traces 5 and 20 -> 2/20; success=false alone does not make a trace an error.
    assert (report.trace_total, report.trace_errors, report.trace_error_rate) == (20, 2, 0.1)
    assert report.span_count == 20 * 2 + 4 * 2 + 1 + 2 + 1
    assert not report.ok
    assert len(report.breaches) == 4
    assert any("buyer_bot.qualify_buyer" in line for line in report.breaches)
    assert any(line.startswith("handoff failure rate is 33.33% (2/6)") for line in report.breaches)


def test_lenient_thresholds_pass(tmp_path: Path) -> None:
    """With limits above every figure nothing is breached."""
    limits = SloThresholds(p95_latency_ms=3000, handoff_failure_rate=0.5, trace_error_rate=0.2)
    report = compute_slo(_spans(tmp_path, slo_traces()).spans(), limits)
    assert report.ok and report.breaches == []
    assert report.to_dict()["ok"] is True


def test_blocked_handoffs_are_not_failures() -> None:
    """executed and blocked:* are fine; any other outcome or ERROR is a failure; no outcome is fine."""
    from ghl_real_estate_ai.observability.query import SpanRecord

    def span(outcome: str | None, status: str = "UNSET") -> SpanRecord:
        attrs: dict[str, object] = {} if outcome is None else {"handoff.outcome": outcome}
        return SpanRecord(
            "a" * 32, "b" * 16, None, "handoff.lead_to_buyer", "INTERNAL", 0, 1, status, None, "s", attrs
        )  # type: ignore[arg-type]

    assert not handoff_failed(span("executed"))
    assert not handoff_failed(span("blocked:rate_limit"))
    assert not handoff_failed(span(None))
    assert handoff_failed(span("failed:timeout"))
    assert handoff_failed(span("executed", "ERROR"))


def test_no_spans_is_an_empty_passing_report() -> None:
    """An empty window breaches nothing."""
    report = compute_slo([])
    assert report.ok and report.trace_total == 0 and report.nodes == []
