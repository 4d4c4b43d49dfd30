"""End-to-end cost of tracing on the real app: webhook latency, throughput, memory, dead exporter.

DESIGN 8 sets the budgets this script checks. It drives the REAL application
in-process (``create_app`` + ``app.running()``, requests through
``httpx.ASGITransport``): every webhook is a new contact and message with a
buyer, seller or plain lead text, so the Lead bot, the handoffs, the Buyer and
Seller bots, the outbox and the GHL sandbox calls all run. Each round gets a
fresh data folder (SQLite under a temporary directory) and a fresh app; tracing
is process-global, so it is set up before the round and shut down after it,
and the apps are built with ``manage_observability=False``.

Configurations are measured side by side in one run, interleaved round by
round (A, B, A, B..., order rotated), and compared on the median of the
per-round ratios, so drift of the shared machine hits every side alike.

* latency: sequential webhooks, p50 per round; tracing at 100 % (OTLP/gRPC to a
  real receiver, and the local SQLite trace store) vs tracing off
  (``OTEL_ENABLED=false``: the switch delegate is a no-op), with the GHL sandbox
  answering in 50 ms (budget <= 1.02x) and with no I/O delay (<= 1.10x);
* throughput: 16 webhooks in flight, sandbox at 50 ms; 100 % vs off (>= 0.90x),
  10 % vs off (>= 0.97x), exporter down (closed port) vs up (>= ~1.0x);
* memory: RSS and tracemalloc after N webhooks vs after N/10 (traced, OTLP).

The OTLP/gRPC receiver (``tests/observability/receivers.py``) runs in a child
process, as a collector would: in this process its protobuf decoding would be
charged to the app under test. It counts what it gets and forgets it.

Run: ``.venv/bin/python bench/webhook_overhead.py [--rounds 5] [--webhooks 1000] [--strict]``.
``--webhooks 100000`` is the DESIGN figure for the memory check (hours on a
2-core machine). Exit status is 0 (a report, not a test) unless ``--strict``
is given and a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.observability.receivers

import httpx

from ghl_real_estate_ai.app import JorgeApp, create_app
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.observability.otel_config import (
    export_stats,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.settings import Settings

WEBHOOK_PATH = "/api/v1/webhooks/ghl"

# Realistic first messages: each opens a new conversation with the Lead bot, and
# the buyer and seller ones carry the signals that hand the contact over.
TEXTS = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days.",
    "We're relocating for work, so I want to sell my house in Rancho Cucamonga and list it "
    "within 30 days. What could it sell for?",
    "Hello, saw your sign on Foothill Blvd. Just looking around for now.",
    "We're looking to buy. Pre-approved for $550k and we need 3 bedrooms in Ontario",
    "Thinking about selling our condo in Upland, it's in good condition, hoping to get $480k",
    "hi who is this?",
)


# --- the receiver, in a child process ------------------------------------------------


def _serve_receiver() -> None:
    """Child-process mode: run an OTLP/gRPC receiver, print its endpoint, answer ``count`` on stdin."""
    from tests.observability.receivers import OTLPGrpcReceiver

    total = 0
    lock = threading.Lock()
    with OTLPGrpcReceiver() as receiver:

        def drain() -> None:
            nonlocal total
            while True:
                time.sleep(0.2)
                requests = receiver.trace_requests()
                receiver.clear()  # forget what arrived, so the receiver's memory stays flat
                spans = sum(
                    len(scope.spans)
                    for request in requests
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                with lock:
                    total += spans

        threading.Thread(target=drain, daemon=True).start()
        print(receiver.endpoint, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                time.sleep(0.5)  # let the drain thread take the last requests
                with lock:
                    print(total, flush=True)


class ReceiverProcess:
    """The child process running the OTLP/gRPC receiver."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            self.close()
            raise SystemExit(f"the OTLP receiver did not start (printed {self.endpoint!r})")

    def spans_received(self) -> int:
        """Spans the receiver got so far."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        """Stop the child process."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        self.process.wait(10)


def _closed_port() -> str:
    from tests.observability.receivers import closed_port

    return closed_port()


# --- configurations and rounds ---------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """How tracing is set up for a round: exporter (None = tracing off) and sample rate."""

    label: str
    exporter: str | None  # "otlp", "local" or None
    endpoint: str | None = None
    sample_rate: float = 1.0


@dataclass
class Round:
    """What one round measured."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


_ids = itertools.count()
_scratch = Path(tempfile.mkdtemp(prefix="jorge-bench-"))


def _payload() -> dict[str, Any]:
    n = next(_ids)
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": f"bench-contact-{n}",
        "body": TEXTS[n % len(TEXTS)],
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"bench-msg-{n}",
        "conversationId": f"bench-conv-{n}",
        "webhookId": f"bench-wh-{n}",
    }


def _settings(config: Config, folder: Path, latency_ms: float) -> Settings:
    return Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'jorge.db'}",
        otel_enabled=config.exporter is not None,
        otel_exporter_type=config.exporter or "none",
        sandbox_latency_ms=latency_ms,
        # Our client-side GHL limiter (100 calls per 10 s) would make the throughput
        # rounds time its sleeps, not the app.
        ghl_rate_limit_per_10s=1_000_000,
        # The worker would wake at a random point of some rounds only; the bench
        # measures the webhook path, so it sleeps through the run.
        followup_poll_seconds=3600.0,
        # One log line per webhook on the terminal would measure the terminal.
        log_level="WARNING",
    )


async def _post(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    response = await client.post(WEBHOOK_PATH, json=_payload())
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.json().get("status") != "processed":
        raise SystemExit(f"webhook not processed: {response.status_code} {response.text}")
    return elapsed


async def _drive(client: httpx.AsyncClient, count: int, concurrency: int) -> Round:
    result = Round()
    if concurrency <= 1:
        started = time.perf_counter()
        for _ in range(count):
            result.latencies.append(await _post(client))
        result.seconds = time.perf_counter() - started
        return result
    remaining = iter(range(count))

    async def lane() -> None:
        for _ in remaining:
            result.latencies.append(await _post(client))

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def _with_app(
    config: Config, latency_ms: float, body: Callable[[JorgeApp, httpx.AsyncClient], Awaitable[Round]]
) -> Round:
    """Set tracing up as ``config`` says, run ``body`` on a fresh app, take it all down again."""
    folder = Path(tempfile.mkdtemp(dir=_scratch))
    settings = _settings(config, folder, latency_ms)
    setup_observability(
        settings, exporter_type=config.exporter, endpoint=config.endpoint, sample_rate=config.sample_rate
    )
    try:
        app = create_app(settings, manage_observability=False)
        async with (
            app.running(),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client,
        ):
            # GHL (and so the sandbox) allows 100 calls per 10 s per location; the
            # throughput rounds go far past it, and would time 429s and retries.
            get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
            await _drive(client, 5, 1)  # warm-up: first-call costs, caches, the exporter channel
            gc.collect()
            return await body(app, client)
    finally:
        shutdown_observability(5.0)
        shutil.rmtree(folder, ignore_errors=True)


async def interleave(
    configs: list[Config], rounds: int, latency_ms: float, count: int, concurrency: int
) -> dict[str, list[Round]]:
    """Run every config once per round, order rotated each round."""
    results: dict[str, list[Round]] = {c.label: [] for c in configs}
    for index in range(rounds):
        shift = index % len(configs)
        for config in configs[shift:] + configs[:shift]:

            async def body(app: JorgeApp, client: httpx.AsyncClient) -> Round:
                return await _drive(client, count, concurrency)

            results[config.label].append(await _with_app(config, latency_ms, body))
    return results


def paired(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


# --- memory --------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # peak RSS where /proc is missing (macOS: bytes, Linux: KiB)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class MemoryResult:
    """Readings after the first tenth of the webhooks and after all of them."""

    webhooks: int
    readings: dict[str, tuple[int, int]]
    seconds: float


async def memory(config: Config, webhooks: int, concurrency: int, with_tracemalloc: bool) -> MemoryResult:
    """RSS, live objects (and tracemalloc) after ``webhooks // 10`` and after ``webhooks`` webhooks."""
    checkpoint = max(webhooks // 10, 1)
    results: list[MemoryResult] = []

    async def body(app: JorgeApp, client: httpx.AsyncClient) -> Round:
        sandbox = get_sandbox_state(app.state.ghl_sandbox)
        if with_tracemalloc:
            tracemalloc.start(1)  # one frame: several times cheaper than deep stacks
        started = time.perf_counter()
        marks: list[dict[str, int]] = []
        done = 0
        for target in (checkpoint, webhooks):
            while done < target:
                batch = min(200, target - done)
                await _drive(client, batch, concurrency)
                done += batch
                # The sandbox stands in for GHL and keeps every call and contact it
                # saw; that memory is GHL's, not the app's, so it is dropped as we go.
                sandbox.clear()
            gc.collect()
            mark = {"RSS": _rss_bytes(), "live objects": len(gc.get_objects())}
            if with_tracemalloc:
                mark["tracemalloc"] = tracemalloc.get_traced_memory()[0]
            marks.append(mark)
        if with_tracemalloc:
            tracemalloc.stop()
        readings = {key: (marks[0][key], marks[1][key]) for key in marks[0]}
        results.append(MemoryResult(webhooks, readings, time.perf_counter() - started))
        return Round()

    await _with_app(config, 0.0, body)
    return results[0]


# --- report --------------------------------------------------------------------------


@dataclass
class Row:
    measurement: str
    a: str
    b: str
    ratio: float
    budget: str
    ok: bool


def _size(value: int, unit: str) -> str:
    return f"{value / 2**20:.1f} MiB" if unit == "B" else f"{value:,}"


def _table(rows: list[Row]) -> str:
    header = ("measurement", "A", "B", "ratio", "budget", "")
    cells = [header] + [
        (r.measurement, r.a, r.b, f"{r.ratio:.3f}", r.budget, "PASS" if r.ok else "FAIL") for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[Row]:
    receiver = ReceiverProcess()
    try:
        off = Config("off", None)
        otlp = Config("otlp 100%", "otlp", receiver.endpoint)
        local = Config("local 100%", "local")
        otlp10 = Config("otlp 10%", "otlp", receiver.endpoint, sample_rate=0.1)
        down = Config("otlp down 100%", "otlp", _closed_port())
        print(
            f"python {sys.version.split()[0]}, {args.rounds} interleaved rounds; "
            f"exporters: OTLP/gRPC to a real receiver in a child process ({receiver.endpoint}) "
            f"and the local SQLite trace store"
        )
        rows: list[Row] = []

        for latency_ms, budget in ((50.0, 1.02), (0.0, 1.10)):
            clock = time.perf_counter()
            res = await interleave([off, otlp, local], args.rounds, latency_ms, args.latency_webhooks, 1)
            p50 = {k: [r.p50_ms for r in v] for k, v in res.items()}
            for traced in (otlp, local):
                ratio = paired(p50[traced.label], p50[off.label])
                rows.append(
                    Row(
                        f"p50 latency, sandbox {latency_ms:.0f} ms ({traced.label} / off)",
                        f"{statistics.median(p50[traced.label]):.1f} ms",
                        f"{statistics.median(p50[off.label]):.1f} ms",
                        ratio,
                        f"<= {budget:.2f}",
                        ratio <= budget,
                    )
                )
            print(f"  latency at {latency_ms:.0f} ms done in {time.perf_counter() - clock:.0f} s", flush=True)

        clock = time.perf_counter()
        res = await interleave(
            [off, otlp, otlp10, down], args.rounds, 50.0, args.throughput_webhooks, args.concurrency
        )
        rate = {k: [r.per_second for r in v] for k, v in res.items()}
        for a, b, budget in ((otlp, off, 0.90), (otlp10, off, 0.97), (down, otlp, 0.97)):
            ratio = paired(rate[a.label], rate[b.label])
            rows.append(
                Row(
                    f"throughput x{args.concurrency}, sandbox 50 ms ({a.label} / {b.label})",
                    f"{statistics.median(rate[a.label]):.1f}/s",
                    f"{statistics.median(rate[b.label]):.1f}/s",
                    ratio,
                    f">= {budget:.2f}",
                    ratio >= budget,
                )
            )
        print(f"  throughput done in {time.perf_counter() - clock:.0f} s", flush=True)

        mem = await memory(otlp, args.webhooks, args.concurrency, args.tracemalloc)
        first = max(mem.webhooks // 10, 1)
        for label, (low, high) in mem.readings.items():
            ratio = high / low
            growth = (high - low) / max(mem.webhooks - first, 1)
            unit = "B" if label != "live objects" else "objects"
            rows.append(
                Row(
                    f"memory {label}, otlp 100% (after {mem.webhooks} / after {first}; "
                    f"{growth:+.1f} {unit}/webhook)",
                    _size(high, unit),
                    _size(low, unit),
                    ratio,
                    "<= 1.10",
                    ratio <= 1.10,
                )
            )
        print(f"  memory: {mem.webhooks} webhooks in {mem.seconds:.0f} s", flush=True)
        print(f"spans received by the OTLP receiver: {receiver.spans_received():,}")
        stats = export_stats()
        print(
            f"spans dropped by the exporters: {stats.dropped:,} (queue full {stats.queue_full:,}, "
            f"failed exports {stats.failed:,}, abandoned {stats.abandoned:,}; "
            "the closed-port rounds drop all theirs)"
        )
        return rows
    finally:
        receiver.close()
        shutil.rmtree(_scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    parser.add_argument("--latency-webhooks", type=int, default=20, help="sequential webhooks per round")
    parser.add_argument("--throughput-webhooks", type=int, default=120, help="webhooks per throughput round")
    parser.add_argument("--concurrency", type=int, default=16, help="webhooks in flight for throughput")
    parser.add_argument(
        "--webhooks", type=int, default=1000, help="webhooks for the memory check (DESIGN: 100000)"
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace allocations in the memory check (slow)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        _serve_receiver()
        return 0
    for name, value in vars(args).items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value!r}")
    rows = asyncio.run(run(args))
    print(_table(rows))
    missed = [r for r in rows if not r.ok]
    if missed:
        print(f"{len(missed)} budget(s) missed; see docs/benchmarks.md for the reasons")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
