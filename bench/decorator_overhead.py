"""Cost of ``@trace_workflow_node`` next to a hand-written SDK span, and with tracing off.

DESIGN 8: a decorated async node may cost at most 1.3x a bare SDK span with the
same attributes, and with tracing off the decorator should cost next to nothing.
Everything runs side by side in one process and one event loop; the variants
are interleaved round by round (order rotated) and compared on the median of
their per-round ratios, so drift of the machine hits every variant alike.

* ``bare``: ``tracer.start_as_current_span`` on the SDK tracer with the same five
  start attributes, then ``workflow.success`` and ``workflow.duration_ms`` set
  from ``perf_counter``, the way one would write it by hand;
* ``decorated``: the same node body under ``@trace_workflow_node``, spans sent
  through the global switch to the SAME SDK provider (same processor, same
  exporter), no meter provider;
* ``bare+histogram`` / ``decorated+metrics``: both again with a MeterProvider, the
  bare one recording one SDK histogram value by hand, the decorated one through
  its own metrics (what production does: every call is counted);
* ``off`` / ``plain``: tracing and metrics off (no-op delegate) vs the undecorated body.

The node body does nothing, so the ratios are the pure overhead. The exporter
drops what it gets (a null exporter behind a ``SimpleSpanProcessor`` by
default, ``--processor batch`` for the SDK's batch processor).

Run: ``.venv/bin/python bench/decorator_overhead.py [--calls 2000] [--rounds 25]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.metrics import LATENCY_BUCKETS_MS
from ghl_real_estate_ai.observability.workflow_tracing import trace_workflow_node

BUDGET_RATIO = 1.3
OFF_BUDGET_US = 1.0
STATE = {"contact_id": "ocQHyuzHvysMo5N5VsXc", "current_step": "day_3", "temperature": "hot"}

Node = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NullExporter(SpanExporter):
    """Takes spans and drops them: the cost under test is the span's, not the network's."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


async def body(state: dict[str, Any]) -> dict[str, Any]:
    return state


def make_bare(provider: TracerProvider, meter_provider: MeterProvider | None = None) -> Node:
    sdk_tracer = provider.get_tracer("bench.bare")
    histogram = (
        meter_provider.get_meter("bench.bare").create_histogram(
            "bench.node.duration", unit="ms", explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS
        )
        if meter_provider is not None
        else None
    )
    metric_attributes = {"bot_type": "lead_bot", "node_name": "analyze_intent", "success": "true"}

    async def bare(state: dict[str, Any]) -> dict[str, Any]:
        with sdk_tracer.start_as_current_span(
            "lead_bot.analyze_intent",
            attributes={
                attr.WORKFLOW_BOT_TYPE: "lead_bot",
                attr.WORKFLOW_NODE_NAME: "analyze_intent",
                attr.WORKFLOW_CONTACT_ID: state["contact_id"],
                attr.WORKFLOW_CURRENT_STEP: state["current_step"],
                attr.WORKFLOW_TEMPERATURE: state["temperature"],
            },
        ) as span:
            started = time.perf_counter()
            result = await body(state)
            duration_ms = (time.perf_counter() - started) * 1000.0
            span.set_attributes({attr.WORKFLOW_SUCCESS: True, attr.WORKFLOW_DURATION_MS: duration_ms})
        if histogram is not None:
            histogram.record(duration_ms, metric_attributes)
        return result

    return bare


decorated = trace_workflow_node("lead_bot", "analyze_intent")(body)


async def per_call_us(node: Node, calls: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for _ in range(calls):
        await node(STATE)
    return (time.perf_counter() - started) / calls * 1e6


async def compare(
    variants: dict[str, tuple[Node, Callable[[], None]]], calls: int, rounds: int
) -> dict[str, list[float]]:
    """µs per call of each variant, one sample per round; ``prepare`` switches providers first."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for name in names:  # warm-up: caches, first-call costs
        node, prepare = variants[name]
        prepare()
        await per_call_us(node, calls // 4 or 1)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            node, prepare = variants[name]
            prepare()
            samples[name].append(await per_call_us(node, calls))
    return samples


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios: each pair ran seconds apart, so machine drift cancels."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


async def main(calls: int, rounds: int, processor: str) -> int:
    exporter = NullExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=1 << 16)
        if processor == "batch"
        else SimpleSpanProcessor(exporter)
    )
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    _provider.install()

    def tracing_only() -> None:
        _provider.set_delegate(provider)
        _provider.set_meter_delegate(None)

    def tracing_and_metrics() -> None:
        _provider.set_delegate(provider)
        _provider.set_meter_delegate(meter_provider)

    def all_off() -> None:
        _provider.set_delegate(None)
        _provider.set_meter_delegate(None)

    on = await compare(
        {
            "bare": (make_bare(provider), tracing_only),
            "decorated": (decorated, tracing_only),
            "bare+histogram": (make_bare(provider, meter_provider), tracing_only),
            "decorated+metrics": (decorated, tracing_and_metrics),
        },
        calls,
        rounds,
    )
    provider.force_flush()  # a batch worker still exporting would steal the off rounds' CPU
    exported_before_off = exporter.count
    off = await compare({"plain": (body, all_off), "off": (decorated, all_off)}, calls * 5, rounds)
    provider.force_flush()
    exported_while_off = exporter.count - exported_before_off
    all_off()
    provider.shutdown()
    meter_provider.shutdown()

    ratio = paired_ratio(on["decorated"], on["bare"])
    ratio_metrics = paired_ratio(on["decorated+metrics"], on["bare+histogram"])
    off_extra = statistics.median(a - b for a, b in zip(off["off"], off["plain"], strict=True))
    med = {name: statistics.median(values) for name, values in (on | off).items()}
    print(f"python {sys.version.split()[0]}, {processor} processor, {calls} calls x {rounds} rounds")
    print("median us/call, and the median of per-round ratios:")
    print(f"  bare SDK span            {med['bare']:8.2f}")
    print(f"  decorated node           {med['decorated']:8.2f}   ratio {ratio:.3f}x")
    print(f"  bare span + histogram    {med['bare+histogram']:8.2f}")
    print(f"  decorated node + metrics {med['decorated+metrics']:8.2f}   ratio {ratio_metrics:.3f}x")
    print(f"  undecorated, tracing off {med['plain']:8.3f}")
    print(f"  decorated, tracing off   {med['off']:8.3f}   +{off_extra:.3f} us/call")
    print(f"  spans exported: {exporter.count} ({exported_while_off} while tracing was off)")
    verdicts = [
        (f"decorated vs bare SDK span <= {BUDGET_RATIO}x", ratio <= BUDGET_RATIO),
        (f"decorated + metrics vs bare span + histogram <= {BUDGET_RATIO}x", ratio_metrics <= BUDGET_RATIO),
        (f"tracing off adds <= {OFF_BUDGET_US} us per call", off_extra <= OFF_BUDGET_US),
        ("tracing off exports nothing", exported_while_off == 0),
        # The sides that claim to trace must have made spans (a batch processor may drop some).
        ("tracing on exported spans", exported_before_off >= calls * rounds),
    ]
    for label, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and variant")
    parser.add_argument("--rounds", type=int, default=25, help="interleaved rounds")
    parser.add_argument("--processor", choices=("simple", "batch"), default="simple")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.calls, arguments.rounds, arguments.processor)))
