"""What the store's spans cost: one locked bot turn, untraced, traced (one span per operation), and
traced with the opt-in statement spans, on SQLite, measured side by side in one run.

Each turn runs inside a parent span, as in a webhook: statements outside a trace
record nothing, and a bench outside a trace would time nothing (issue 14). The
script checks it recorded spans and exits non-zero otherwise.

Run: ``.venv/bin/python bench/storage_spans.py [--rounds 7] [--turns 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as ApiTracerProvider

from ghl_real_estate_ai.storage import Contact, Store, open_store


async def turn(store: Store, contact_id: str) -> None:
    """The store calls of one webhook's bot turn (a lead handed to the buyer bot)."""
    async with store.contact_lock(contact_id):
        contact = await store.get_contact(contact_id) or Contact(contact_id)
        await store.list_messages(contact_id, 50)
        await store.add_message(
            contact_id, "inbound", "hello", "SMS", message_id=f"{contact_id}-in", defer=True
        )
        await store.list_handoffs(contact_id, since=datetime.now(UTC) - timedelta(days=1))
        await store.record_handoff(contact_id, "lead", "buyer", 0.9, "buyer_intent_detected", "in_progress")
        item, _ = await store.enqueue_outbox(
            f"{contact_id}-tags", "add_tags", {"contact_id": contact_id, "tags": ["Buyer"]}, claim=True
        )
        await store.mark_outbox_sent(item.id, {"ok": True})
        await store.record_handoff(contact_id, "lead", "buyer", 0.9, "buyer_intent_detected", "executed")
        await store.add_message(
            contact_id, "outbound", "hi!", "SMS", message_id=f"{contact_id}-out", defer=True
        )
        contact.current_bot = "buyer"
        await store.upsert_contact(contact)
        await store.replace_followups(contact_id, [], {})


async def measure(store: Store, provider: ApiTracerProvider, label: str, turns: int) -> float:
    tracer = provider.get_tracer("bench")
    started = time.perf_counter()
    for n in range(turns):
        with tracer.start_as_current_span("webhook"):
            await turn(store, f"{label}-{time.monotonic_ns()}-{n}")
    return (time.perf_counter() - started) / turns


async def main(rounds: int, turns: int) -> int:
    folder = Path(tempfile.mkdtemp())
    exporter = InMemorySpanExporter()
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    sides: dict[str, tuple[ApiTracerProvider, bool]] = {
        "untraced": (NoOpTracerProvider(), False),
        "operation spans": (recording, False),
        "+ statement spans": (recording, True),
    }
    stores: dict[str, Store] = {}
    for label, (provider, statements) in sides.items():
        store = open_store(
            f"sqlite:///{folder / label.replace(' ', '_')}.db",
            tracer_provider=provider,
            trace_statements=statements,
        )
        await store.open()
        stores[label] = store
    samples: dict[str, list[float]] = {label: [] for label in sides}
    spans: dict[str, float] = {}
    for index in range(rounds):
        order = list(sides)[index % len(sides) :] + list(sides)[: index % len(sides)]
        for label in order:  # interleaved, the order rotated: drift hits every side alike
            exporter.clear()
            samples[label].append(await measure(stores[label], sides[label][0], label, turns))
            db = [s for s in exporter.get_finished_spans() if "db.system" in (s.attributes or {})]
            spans[label] = len(db) / turns
    for store in stores.values():
        await store.close()
    recording.shutdown()
    if spans["operation spans"] == 0 or spans["+ statement spans"] <= spans["operation spans"]:
        print("measured nothing: the traced sides recorded no (or no extra) database span")
        return 1
    base = statistics.median(samples["untraced"])
    for label, values in samples.items():
        ratios = [v / u for v, u in zip(values, samples["untraced"], strict=True)]
        print(
            f"{label:18s} {statistics.median(values) * 1e6:8.1f} us per turn, "
            f"{spans.get(label, 0.0):4.1f} database spans per turn, "
            f"x{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) of untraced "
            f"(+{(statistics.median(values) - base) * 1e6:.1f} us)"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--turns", type=int, default=200)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.rounds, arguments.turns)))
