"""What the SQLite statement spans cost: the same queries traced (100 % sampled) and untraced.

Run: ``.venv/bin/python bench/storage_spans.py``. Prints the median time per
``get_contact`` and ``add_message`` with a recording provider (in-memory
exporter) and with a no-op provider, measured side by side in one run.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider
from opentelemetry.trace import TracerProvider as ApiTracerProvider

from ghl_real_estate_ai.storage import Contact, Store, open_store

ROUNDS = 7
CALLS = 400


async def _round(store: Store) -> tuple[float, float]:
    start = time.perf_counter()
    for _ in range(CALLS):
        await store.get_contact("c1")
    reads = (time.perf_counter() - start) / CALLS
    start = time.perf_counter()
    for i in range(CALLS):
        await store.add_message("c1", "inbound", f"m{i}", "SMS")
    writes = (time.perf_counter() - start) / CALLS
    return reads, writes


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    exporter = InMemorySpanExporter()
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    providers: dict[str, ApiTracerProvider] = {"untraced": NoOpTracerProvider(), "traced": recording}
    stores: dict[str, Store] = {}
    for name, provider in providers.items():
        store = open_store(f"sqlite:///{folder / name}.db", tracer_provider=provider)
        await store.open()
        await store.upsert_contact(Contact("c1"))
        stores[name] = store
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
    for _ in range(ROUNDS):
        for name, store in stores.items():  # interleaved, so drift hits both alike
            samples[name].append(await _round(store))
            exporter.clear()
    for store in stores.values():
        await store.close()
    recording.shutdown()

    medians = {
        name: (statistics.median(r for r, _ in rows), statistics.median(w for _, w in rows))
        for name, rows in samples.items()
    }
    for name, (reads, writes) in medians.items():
        print(f"{name:9s} get_contact {reads * 1e6:8.1f} us   add_message {writes * 1e6:8.1f} us")
    (r0, w0), (r1, w1) = medians["untraced"], medians["traced"]
    print(
        f"traced/untraced: reads {r1 / r0:.3f}x (+{(r1 - r0) * 1e6:.1f} us), "
        f"writes {w1 / w0:.3f}x (+{(w1 - w0) * 1e6:.1f} us)"
    )


if __name__ == "__main__":
    asyncio.run(main())
