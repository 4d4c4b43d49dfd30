"""Export-thread cost per span: redaction, OTLP encoding and the local trace store, on real webhook spans.

The end-to-end bench (``webhook_overhead.py``) shows what tracing costs a
webhook; this one isolates the work the batch processor's thread does for each
finished span, which competes with the event loop for the GIL. It drives the
real app for a few webhooks (tracing on, every span kept in memory by an extra
processor), then times on that same set of spans, best of several passes:

* ``RedactingSpanExporter.export`` in front of an exporter that does nothing;
* the SDK's OTLP protobuf encoding (``encode_spans`` + serialisation), which is
  what ``OTLPSpanExporter`` does before sending;
* ``LocalSpanExporter.export`` in batches of 512 (the default batch size).

Run: ``.venv/bin/python bench/export_path.py [--webhooks 60] [--passes 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from webhook_overhead import Config, Round, _drive, _with_app

from ghl_real_estate_ai.app import JorgeApp
from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter
from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter


class _Discard(SpanExporter):
    """Accepts every batch and keeps nothing: what is left is the redaction itself."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def collect(webhooks: int) -> list[ReadableSpan]:
    """Finished spans of ``webhooks`` real webhooks (tracing on, no exporter of ours)."""
    kept = InMemorySpanExporter()

    async def body(app: JorgeApp, client: httpx.AsyncClient) -> Round:
        provider = _provider.current_delegate()
        assert isinstance(provider, TracerProvider), "tracing did not start"
        provider.add_span_processor(SimpleSpanProcessor(kept))
        await _drive(client, webhooks, 4)
        return Round()

    await _with_app(Config("collect", "none"), 0.0, body)
    return list(kept.get_finished_spans())


def _in_batches(exporter: SpanExporter, spans: list[ReadableSpan], size: int = 512) -> None:
    for start in range(0, len(spans), size):
        exporter.export(spans[start : start + size])


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
    args = parser.parse_args()
    if args.webhooks < 1 or args.passes < 1:
        parser.error(f"--webhooks and --passes must be at least 1, got {args.webhooks!r}, {args.passes!r}")
    spans = asyncio.run(collect(args.webhooks))
    per_webhook = len(spans) / args.webhooks
    print(f"{len(spans):,} spans from {args.webhooks} webhooks ({per_webhook:.1f} per webhook)")
    redacting = RedactingSpanExporter(_Discard(), capture_content=False)
    folder = Path(tempfile.mkdtemp(prefix="jorge-export-path-"))
    local = LocalSpanExporter(folder / "traces.db")
    try:
        rows = {
            "redaction": best(args.passes, len(spans), lambda: redacting.export(spans)),
            "OTLP encoding": best(args.passes, len(spans), lambda: encode_spans(spans).SerializeToString()),
            "local store": best(
                args.passes,
                len(spans),
                lambda: [local.export(spans[i : i + 512]) for i in range(0, len(spans), 512)],
            ),
        }
    finally:
        local.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    for label, micros in rows.items():
        print(f"  {label:14s} {micros:7.1f} us/span  {micros * per_webhook / 1000:5.2f} ms/webhook")
    return 0


if __name__ == "__main__":
    sys.exit(main())
