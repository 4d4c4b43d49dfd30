"""What one span costs on the app's thread, piece by piece (issue 14: where the tracing budget goes).

A webhook makes about 18 spans; the issue's budget (traced >= 0.90x untraced) leaves
tracing about a tenth of a webhook's CPU. This script shows how much of that one span
takes before anything is exported, by adding our provider's pieces one at a time to a
bare SDK ``TracerProvider``, all in one process, interleaved round by round (order
rotated) and compared on the median of per-round figures:

* ``sdk``: ``start_as_current_span`` with three start attributes and one set later, the
  SDK alone, no processor;
* ``+batch``: our bounded batch processor in front of an exporter that keeps nothing
  (its ``on_end`` is on the app's thread; the export runs on its own);
* ``+session``: the conversation processor too (session keys on every span, the journey
  on the root), for a span that says nothing about the journey (a store or cache span);
* ``+url``: the URL-template processor too (the production set: conversation, URL
  template, batch);
* ``+journey``: the production set for a node span that carries a bot type and a
  temperature (its root's journey is updated when it ends);
* ``fast sdk``, ``fast+url``, ``fast+jrny``: ``sdk``, ``+url`` and ``+journey`` on the
  provider the set-up builds (``FastTracerProvider``: the SDK's, with a shorter start
  and attribute path).

Each span is a child of an open root span that carries the contact, as in a webhook.
It prints microseconds per span and, from ``--webhook-ms`` (the untraced CPU of one
webhook on the event loop's thread, measured with ``bench/webhook_profile.py timed``) and
``--spans`` per webhook, the share of a webhook those spans cost.

Run: ``.venv/bin/python bench/span_path.py [--spans-per-round 20000] [--rounds 9]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from bench.decorator_overhead import NullExporter
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability._batch import BoundedBatchSpanProcessor
from ghl_real_estate_ai.observability._fastspan import FastTracerProvider
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.url_templates import UrlTemplateSpanProcessor

CONTACT = "ocQHyuzHvysMo5N5VsXc"
STORE_ATTRIBUTES = {"db.system": "sqlite", "db.operation.name": "INSERT", "db.collection.name": "outbox"}
NODE_ATTRIBUTES = {
    attr.WORKFLOW_BOT_TYPE: "lead_bot",
    attr.WORKFLOW_NODE_NAME: "determine_path",
    attr.WORKFLOW_CONTACT_ID: CONTACT,
}


class Variant:
    """One provider set-up and the span it makes."""

    def __init__(
        self, name: str, processors: list[SpanProcessor], attributes: dict[str, str], *, fast: bool = False
    ) -> None:
        self.name = name
        self.provider = FastTracerProvider() if fast else TracerProvider()
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("bench.span_path")
        self.attributes = attributes
        self.batch = next((p for p in processors if isinstance(p, BoundedBatchSpanProcessor)), None)

    def run(self, spans: int) -> float:
        """Seconds of this thread's CPU per span for ``spans`` spans under one root."""
        tracer, attributes = self.tracer, self.attributes
        root = tracer.start_span("POST /api/v1/webhooks/ghl", attributes={attr.WORKFLOW_CONTACT_ID: CONTACT})
        token = context_api.attach(trace_api.set_span_in_context(root))
        gc.collect()
        started = time.thread_time()
        for _ in range(spans):
            with tracer.start_as_current_span("span", attributes=attributes) as span:
                span.set_attribute(attr.WORKFLOW_SUCCESS, True)
        used = time.thread_time() - started
        context_api.detach(token)
        root.end()
        return used / spans

    def exported(self) -> int:
        if self.batch is None:
            return -1
        self.batch.force_flush(10_000)
        exporter = self.batch.exporter
        return exporter.count if isinstance(exporter, NullExporter) else -1

    def close(self) -> None:
        self.provider.shutdown()


def _batch() -> BoundedBatchSpanProcessor:
    return BoundedBatchSpanProcessor(NullExporter(), max_queue_size=1_000_000, max_export_batch_size=512)


def variants() -> list[Variant]:
    def production() -> list[SpanProcessor]:
        return [ConversationSpanProcessor(), UrlTemplateSpanProcessor(), _batch()]

    return [
        Variant("sdk", [], STORE_ATTRIBUTES),
        Variant("+batch", [_batch()], STORE_ATTRIBUTES),
        Variant("+session", [ConversationSpanProcessor(), _batch()], STORE_ATTRIBUTES),
        Variant("+url", production(), STORE_ATTRIBUTES),
        Variant("+journey", production(), NODE_ATTRIBUTES),
        Variant("fast sdk", [], STORE_ATTRIBUTES, fast=True),
        Variant("fast+url", production(), STORE_ATTRIBUTES, fast=True),
        Variant("fast+jrny", production(), NODE_ATTRIBUTES, fast=True),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans-per-round", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--spans", type=float, default=18.0, help="spans per webhook (webhook_overhead.py)")
    parser.add_argument(
        "--webhook-ms", type=float, default=8.5, help="untraced CPU ms of one webhook on the loop's thread"
    )
    args = parser.parse_args(argv)
    if args.spans_per_round < 100 or args.rounds < 1:
        parser.error("--spans-per-round must be at least 100 and --rounds at least 1")
    every = variants()
    figures: dict[str, list[float]] = {v.name: [] for v in every}
    for v in every:
        v.run(1_000)  # warm-up
    for round_ in range(args.rounds):
        shift = round_ % len(every)
        for v in every[shift:] + every[:shift]:
            figures[v.name].append(v.run(args.spans_per_round))
    print(f"python {sys.version.split()[0]}, {args.spans_per_round} spans x {args.rounds} rounds")
    print("median CPU per span on the calling thread; share of one webhook for its spans:")
    base = statistics.median(figures["sdk"])
    failed = False
    for v in every:
        us = statistics.median(figures[v.name]) * 1e6
        share = us * args.spans / 1000 / args.webhook_ms
        extra = "" if v.name == "sdk" else f"  (+{us - base * 1e6:5.2f} us over the bare SDK)"
        spans = f"x {args.spans:g} spans = {share * 100:4.1f} % of a webhook"
        print(f"  {v.name:10s} {us:6.2f} us  {spans}{extra}")
        exported = v.exported()
        expected = args.spans_per_round * args.rounds + 1_000 + (args.rounds + 1)
        if exported not in (-1, expected):
            print(f"FAIL  {v.name}: exported {exported} spans, expected {expected}")
            failed = True
        v.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
