"""Throughput of a traced workload: OTLP collector up vs down (closed port, black hole) vs tracing off.

DESIGN 8 asks that a run whose exporter is down goes as fast as one whose
exporter is up: spans must be dropped at a bounded queue, never waited for.
All configurations run side by side in one process, interleaved over several
rounds, against a real OTLP/gRPC receiver (``tests/observability/receivers.py``).

Run: ``.venv/bin/python bench/export_overhead.py [--roots 4000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.observability.receivers

from opentelemetry import trace

from ghl_real_estate_ai.observability.otel_config import (
    export_stats,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.settings import Settings
from tests.observability.receivers import BlackHole, OTLPGrpcReceiver, closed_port

tracer = trace.get_tracer("bench.export_overhead")


def workload(roots: int) -> None:
    """A webhook-shaped unit of work: one root span, three node spans with attributes and an event."""
    for index in range(roots):
        with tracer.start_as_current_span("lead_bot.process_lead_conversation") as root:
            root.set_attribute("workflow.contact_id", f"contact-{index % 97}")
            for node in ("analyze_intent", "determine_path", "generate_response"):
                with tracer.start_as_current_span(f"lead_bot.{node}") as span:
                    span.set_attribute("workflow.bot_type", "lead")
                    span.set_attribute("workflow.node_name", node)
                    span.set_attribute("workflow.success", True)
                    span.add_event("node.done", {"n": index})


def measure(configure: Callable[[], bool], roots: int) -> float:
    """Spans per second of the workload under one configuration (set up and shut down around it)."""
    configure()
    try:
        workload(roots // 10)  # warm up tracer caches and the exporter channel
        started = time.perf_counter()
        workload(roots)
        elapsed = time.perf_counter() - started
    finally:
        shutdown_observability(5.0)
    return roots * 4 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=4000, help="root traces per measurement (4 spans each)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per configuration")
    args = parser.parse_args()

    settings = Settings(otel_capture_content=True)  # redaction is measured elsewhere; this is about export
    with ExitStack() as stack:
        receiver = stack.enter_context(OTLPGrpcReceiver())
        hole = stack.enter_context(BlackHole())
        dead = closed_port()
        configs: dict[str, Callable[[], bool]] = {
            "tracing off": lambda: setup_observability(Settings(otel_enabled=False)),
            "otlp up (grpc receiver)": lambda: setup_observability(
                settings, exporter_type="otlp", endpoint=receiver.endpoint
            ),
            "otlp down (closed port)": lambda: setup_observability(
                settings, exporter_type="otlp", endpoint=dead
            ),
            "otlp down (black hole)": lambda: setup_observability(
                settings, exporter_type="otlp", endpoint=hole.endpoint
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in configs}
        names = list(configs)
        for index in range(args.rounds):
            for name in names[index % len(names) :] + names[: index % len(names)]:  # order rotated
                results[name].append(measure(configs[name], args.roots))
        received = sum(
            len(scope.spans)
            for request in receiver.trace_requests()
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )

    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"{args.rounds} rounds x {args.roots} root traces (4 spans each), median spans/s:")
    for name, value in median.items():
        spread = f"{min(results[name]):,.0f}-{max(results[name]):,.0f}"
        print(f"  {name:<26} {value:>10,.0f}   (range {spread})")
    up = median["otlp up (grpc receiver)"]
    print("ratios (throughput):")
    print(f"  closed port / up    {median['otlp down (closed port)'] / up:.3f}   (DESIGN 8: >= ~1.0)")
    print(f"  black hole  / up    {median['otlp down (black hole)'] / up:.3f}   (DESIGN 8: >= ~1.0)")
    print(f"  up / tracing off    {up / median['tracing off']:.3f}")
    stats = export_stats()
    print(
        f"spans exported {stats.exported:,}, dropped {stats.dropped:,} "
        f"(queue full {stats.queue_full:,}, failed exports {stats.failed:,}, abandoned {stats.abandoned:,})"
    )
    print(f"spans the receiver got: {received:,}")
    # A bench that measured nothing must not print a verdict: the collector must have
    # received spans, and every span the exporters handled is counted once.
    checks = [
        ("the receiver got spans", received > 0),
        ("the exporter reported spans exported", stats.exported > 0),
        ("the dead collectors cost spans (counted as dropped)", stats.dropped > 0),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
