"""Export-thread cost per span: redaction, OTLP encoding and the local trace store, on real webhook spans.

The end-to-end bench (``webhook_overhead.py``) shows what tracing costs a
webhook; this one isolates the work the batch processor's thread does for each
finished span, which competes with the event loop for the GIL. It drives the
real app for a few webhooks (tracing on, every span kept in memory by an extra
processor), then times on that same set of spans, best of several passes:

* ``RedactingSpanExporter.export`` in front of an exporter that does nothing;
* the SDK's OTLP protobuf encoding (``encode_spans`` + serialisation), which is
  what the SDK's ``OTLPSpanExporter`` does before sending, next to the same
  bytes written directly (``observability._otlpwire``), which is what the
  service's gRPC exporter does; the run fails if the two differ;
* ``LocalSpanExporter.export`` in batches of 512 (the default batch size);
* the pipe encoding the app does when the local store has its writer process
  (``TRACE_STORE_PROCESS``, the default): redaction and the store's inserts
  then run in the writer, and this is all the app's export thread does;
* the local store again once it holds ``--fill`` spans (copies of the same
  spans under new trace and contact ids, as new traffic would be), next to the
  empty store: what an export costs a store that has been running for a while.

Run: ``.venv/bin/python bench/export_path.py [--webhooks 60] [--passes 5] [--fill 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext
from webhook_overhead import WEBHOOK_PATH, payload

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.observability._otlpwire import encode_request
from ghl_real_estate_ai.observability._writer import encode_batch
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader
from ghl_real_estate_ai.observability.otel_config import (
    flush_observability,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter
from ghl_real_estate_ai.settings import Settings


class _Discard(SpanExporter):
    """Accepts every batch and keeps nothing: what is left is the redaction itself."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def collect(webhooks: int) -> list[ReadableSpan]:
    """Finished spans of ``webhooks`` real webhooks (tracing on at 100 %, kept in memory)."""
    kept = InMemorySpanExporter()
    folder = Path(tempfile.mkdtemp(prefix="jorge-export-path-app-"))
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'jorge.db'}",
        otel_exporter_type="none",
        ghl_rate_limit_per_10s=1_000_000_000,
        followup_poll_seconds=3600.0,
        log_level="WARNING",
    )
    setup_observability(settings, span_exporters=[kept])
    try:
        app = create_app(settings, manage_observability=False)
        async with (
            app.running(),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client,
        ):
            get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
            run = uuid.uuid4().hex[:8]
            for n in range(webhooks):
                response = await client.post(WEBHOOK_PATH, json=payload(run, n))
                if response.status_code != 200:
                    raise SystemExit(f"webhook answered {response.status_code}: {response.text[:200]}")
        flush_observability()
    finally:
        shutdown_observability()
        shutil.rmtree(folder, ignore_errors=True)
    spans = list(kept.get_finished_spans())
    if not spans:
        raise SystemExit("bench/export_path.py measured nothing: no span was recorded")
    return spans


def _in_batches(exporter: SpanExporter, spans: list[ReadableSpan], size: int = 512) -> None:
    for start in range(0, len(spans), size):
        if exporter.export(spans[start : start + size]) is not SpanExportResult.SUCCESS:
            raise SystemExit(f"bench/export_path.py measured nothing valid: {type(exporter).__name__} failed")


_CONTACT_KEYS = (
    "session.id",
    "user.id",
    "gen_ai.conversation.id",
    "workflow.contact_id",
    "handoff.contact_id",
)


def fresh_copies(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    """The same spans as new traffic: new trace ids, and new contact ids wherever one appears."""
    traces: dict[int, int] = {}
    contacts: dict[object, str] = {}
    copies = []
    for span in spans:
        context = span.context
        assert context is not None
        trace_id = traces.setdefault(context.trace_id, random.getrandbits(128))
        attributes = dict(span.attributes or {})
        for key in _CONTACT_KEYS:
            if key in attributes:
                attributes[key] = contacts.setdefault(attributes[key], f"c-{random.getrandbits(48):012x}")
        parent = span.parent
        copies.append(
            ReadableSpan(
                name=span.name,
                context=SpanContext(trace_id, context.span_id, False, context.trace_flags),
                parent=None if parent is None else SpanContext(trace_id, parent.span_id, False),
                resource=span.resource,
                attributes=attributes,
                events=span.events,
                links=span.links,
                kind=span.kind,
                status=span.status,
                start_time=span.start_time,
                end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
        )
    return copies


def filled_store_cost(spans: list[ReadableSpan], fill: int, passes: int) -> tuple[float, float]:
    """µs per span of new traffic into an empty store, then into one holding ``fill`` spans."""
    folder = Path(tempfile.mkdtemp(prefix="jorge-export-fill-"))
    local = LocalSpanExporter(folder / "traces.db", max_spans=max(fill, 1))
    try:

        def one_pass() -> float:
            copies = fresh_copies(spans)
            started = time.perf_counter()
            _in_batches(local, copies)
            return (time.perf_counter() - started) / len(copies) * 1e6

        empty = min(one_pass() for _ in range(passes))
        while local_count(local) < fill:
            _in_batches(local, fresh_copies(spans))
        full = min(one_pass() for _ in range(passes))
        if local_count(local) == 0:
            raise SystemExit("bench/export_path.py measured nothing: the filled store holds no span")
    finally:
        local.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    return empty, full


def local_count(local: LocalSpanExporter) -> int:
    return LocalTraceReader(local.path).count()


def best(passes: int, count: int, run: Callable[[], object]) -> float:
    """Best time of ``passes`` runs, in µs per span."""
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=60, help="webhooks whose spans are measured")
    parser.add_argument("--passes", type=int, default=5, help="passes per measurement (the best is kept)")
    parser.add_argument(
        "--fill",
        type=int,
        default=100_000,
        help="spans in the store for the filled-store measurement (0: skip)",
    )
    args = parser.parse_args()
    if args.webhooks < 1 or args.passes < 1 or args.fill < 0:
        parser.error(
            f"--webhooks and --passes must be at least 1 and --fill at least 0, "
            f"got {args.webhooks!r}, {args.passes!r}, {args.fill!r}"
        )
    spans = asyncio.run(collect(args.webhooks))
    per_webhook = len(spans) / args.webhooks
    print(f"{len(spans):,} spans from {args.webhooks} webhooks ({per_webhook:.1f} per webhook)")
    if encode_request(spans) != encode_spans(spans).SerializeToString():
        print("FAIL: the OTLP request written directly differs from the SDK's encoding", file=sys.stderr)
        return 1
    redacting = RedactingSpanExporter(_Discard(), capture_content=False)
    folder = Path(tempfile.mkdtemp(prefix="jorge-export-path-"))
    local = LocalSpanExporter(folder / "traces.db")
    try:
        rows = {
            "redaction": best(args.passes, len(spans), lambda: redacting.export(spans)),
            "OTLP, SDK": best(args.passes, len(spans), lambda: encode_spans(spans).SerializeToString()),
            "OTLP, direct": best(args.passes, len(spans), lambda: encode_request(spans)),
            "local store": best(
                args.passes,
                len(spans),
                lambda: _in_batches(local, spans),
            ),
            "writer pipe": best(
                args.passes,
                len(spans),
                lambda: [encode_batch(spans[i : i + 512], {}) for i in range(0, len(spans), 512)],
            ),
        }
    finally:
        local.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    for label, micros in rows.items():
        print(f"  {label:14s} {micros:7.1f} us/span  {micros * per_webhook / 1000:5.2f} ms/webhook")
    if args.fill:
        empty, full = filled_store_cost(spans, args.fill, args.passes)
        print(
            f"  new traffic into the local store: {empty:.1f} us/span empty, {full:.1f} us/span holding "
            f"{args.fill:,} spans ({full / empty:.2f}x; wall time, best of {args.passes})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
