"""What tracing costs a webhook, measured on the real service under uvicorn (issue 14).

Every measurement names what it compares and runs the sides interleaved in one
run (round by round, the order rotated), so the drift of a shared machine hits
every side alike; ratios are medians of the per-round ratios, with min-max.

1. **Statements and spans per webhook** (in-process, tracing at 100 %, an
   in-memory exporter; the store counts its statements and round trips):
   on SQLite and on PostgreSQL. Budget: <= 8 statements, <= 20 spans.
2. **Throughput**: the app under uvicorn with one worker, in a child process,
   driven by ``wrk`` (a closed-loop C client, so the client is never what is
   measured; ``--concurrency`` webhooks in flight for ``--seconds``, each a new
   contact and message; the GHL sandbox answers at once, so the service is
   CPU-bound): tracing off, the
   local store at 100 %, OTLP/gRPC at 100 % and at 10 % (to a real receiver in
   another process). A bare FastAPI JSON route served the same way is measured
   in the same rounds. Budgets: 100 % >= 0.90x off, 10 % >= 0.97x, untraced
   >= 0.045x the bare route. Every answer must be a 200 ``processed``.
3. **The local store keeps up**: after each local-store round, the trace file
   must hold one complete trace per webhook (a root, no orphaned span); the
   spans the exporter dropped are printed.
4. **Latency**: sequential webhooks with the sandbox answering in 50 ms, p50
   traced (local, OTLP) / off. Budget: <= 1.02x.
5. **Memory**: RSS of the server process after ``--memory-webhooks`` webhooks
   against after a tenth of them, embedded defaults (local store, sandbox state
   kept as configured). Budget: <= 1.10x.

Needs ``wrk`` (``scripts/system-deps`` installs it). Run:
``.venv/bin/python bench/webhook_overhead.py`` (``--quick`` for a short
smoke run, ``--databases sqlite`` to skip PostgreSQL). PostgreSQL rounds use
``BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
a database is created per round) and Redis ``BENCH_REDIS_URL``. The script
exits non-zero when it measured nothing (no span recorded, an answer not 200),
and with ``--strict`` when a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.observability.receivers

import httpx  # noqa: E402

WEBHOOK_PATH = "/api/v1/webhooks/ghl"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

# Realistic first messages: each opens a new conversation with the Lead bot; the
# buyer and seller ones hand the contact over (two thirds of the webhooks).
TEXTS = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days.",
    "We're relocating for work, so I want to sell my house in Rancho Cucamonga and list it "
    "within 30 days. What could it sell for?",
    "Hello, saw your sign on Foothill Blvd. Just looking around for now.",
    "We're looking to buy. Pre-approved for $550k and we need 3 bedrooms in Ontario",
    "Thinking about selling our condo in Upland, it's in good condition, hoping to get $480k",
    "hi who is this?",
)


def signature(n: int) -> str:
    """A made-up first name for the ``n``-th webhook, different for every ``n``.

    Each message ends with "<name> here.", so no two webhooks of a run send the
    same text: the service remembers what a message said (the understanding's
    caches), and six texts sent over and over would be read once and then
    answered from memory, which real leads never allow. The wrk script builds
    the same names.
    """
    letters = ""
    n += _SYLLABLES  # two syllables at least
    while n:  # n written in base 100, one consonant-vowel syllable per digit
        n, digit = divmod(n, _SYLLABLES)
        letters += _CONSONANTS[digit // len(_VOWELS)] + _VOWELS[digit % len(_VOWELS)]
    return letters.capitalize()


_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiou"
_SYLLABLES = len(_CONSONANTS) * len(_VOWELS)


def payload(run: str, n: int) -> dict[str, Any]:
    """The ``n``-th webhook of a run: a new contact and a message no other webhook sends."""
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": f"bench-{run}-{n}",
        "body": f"{TEXTS[n % len(TEXTS)]} {signature(n)} here.",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"bench-msg-{run}-{n}",
        "conversationId": f"bench-conv-{run}-{n}",
        "webhookId": f"bench-wh-{run}-{n}",
    }


def fail(message: str) -> None:
    """Stop: the bench did not measure what it names."""
    raise SystemExit(f"bench/webhook_overhead.py measured nothing valid: {message}")


# --- child processes: the app, the bare route, the OTLP receiver ----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve_app(port: int) -> None:
    """Child mode: the real app under uvicorn, configured by the environment (as in production)."""
    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
    from ghl_real_estate_ai.observability.otel_config import export_stats

    app = create_app()
    # GHL allows a location 100 calls per 10 s; the rounds go far past it and would
    # time the sandbox's 429s. Everything else is the embedded default.
    get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
    app_shutdown = app.shutdown

    async def shutdown_then_stats() -> None:
        await app_shutdown()
        # After the app's own shutdown (which flushes and stops tracing), and before uvicorn
        # re-raises the SIGTERM it caught: code after uvicorn.run() would never run.
        stats = export_stats()
        print(json.dumps({"exported": stats.exported, "dropped": stats.dropped}), flush=True)

    app.shutdown = shutdown_then_stats  # type: ignore[method-assign]
    _run_uvicorn(app, port)


def _serve_bare(port: int) -> None:
    """Child mode: a bare FastAPI JSON route, the yardstick of acceptance 2."""
    from fastapi import FastAPI

    bare = FastAPI()

    @bare.post(WEBHOOK_PATH)
    async def route(body: dict[str, Any]) -> dict[str, Any]:
        return {"status": "processed", "event_id": len(body)}

    _run_uvicorn(bare, port)  # the same loop and parser as the app's server: a fair yardstick


def _run_uvicorn(app: Any, port: int) -> None:
    """Serve ``app`` as `jorge serve` does (uvloop and httptools, one worker), quietly."""
    import uvicorn

    from ghl_real_estate_ai.api.serving import server_options

    options: dict[str, Any] = {"workers": 1, "log_level": "warning", "access_log": False}
    uvicorn.run(app, host="127.0.0.1", port=port, **options, **server_options())


def _serve_receiver() -> None:
    """Child mode: an OTLP/gRPC receiver that counts spans; prints its endpoint, answers ``count``."""
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
                    len(scope.spans) for r in requests for rs in r.resource_spans for scope in rs.scope_spans
                )
                with lock:
                    total += spans

        threading.Thread(target=drain, daemon=True).start()
        print(receiver.endpoint, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                time.sleep(0.5)
                with lock:
                    print(total, flush=True)


class Receiver:
    """The OTLP receiver child process."""

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
            fail(f"the OTLP receiver did not start (printed {self.endpoint!r})")

    def count(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        self.process.wait(10)


@dataclass(frozen=True)
class Config:
    """One side of a comparison: the server and its tracing."""

    label: str
    exporter: str | None = None  # None: tracing off; "bare": the bare route
    sample_rate: float = 1.0
    env: tuple[tuple[str, str], ...] = ()  # more variables for the server
    # The bench script whose --serve-app mode starts the app: this one, or another checkout's
    # (bench/compare_revisions.py), whose folder then comes first on the server's sys.path.
    script: str = __file__


@dataclass
class Server:
    process: subprocess.Popen[str]
    base_url: str
    folder: Path
    database_url: str

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        fail("no VmRSS for the server process (Linux /proc needed)")
        return 0


def _create_database() -> str:
    import asyncpg

    name = f"jorge_bench_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(create())
    return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"


def _drop_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


@contextmanager
def serve(config: Config, database: str, receiver: Receiver, latency_ms: float) -> Iterator[Server]:
    """Start the server ``config`` names in a child process; stop it (and check its answer) after."""
    folder = Path(tempfile.mkdtemp(prefix="jorge-bench-"))
    port = _free_port()
    database_url = ""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_", "REDIS_"))}
    if config.exporter == "bare":
        argv = [sys.executable, __file__, "--serve-bare", str(port)]
    else:
        database_url = _create_database() if database == "postgresql" else f"sqlite:///{folder / 'jorge.db'}"
        env.update(
            DATA_DIR=str(folder),
            DATABASE_URL=database_url,
            SANDBOX_LATENCY_MS=str(latency_ms),
            GHL_RATE_LIMIT_PER_10S="1000000000",
            # A message waits out the contact order window (300 ms by default) before the bots
            # take it: with it, 16 webhooks in flight measure the wait, not the CPU tracing costs.
            CONTACT_ORDER_WINDOW_MS=os.environ.get("BENCH_CONTACT_ORDER_WINDOW_MS", "0"),
            FOLLOWUP_POLL_SECONDS="3600",  # the worker would wake in some rounds only
            LOG_LEVEL="WARNING",
            OTEL_ENABLED="false" if config.exporter is None else "true",
            OTEL_EXPORTER_TYPE=config.exporter or "none",
            OTEL_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG=str(config.sample_rate),
        )
        if database == "postgresql":
            env["REDIS_URL"] = REDIS_URL
        env.update(config.env)
        argv = [sys.executable, config.script, "--serve-app", str(port)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True, cwd=folder)
    server = Server(process, f"http://127.0.0.1:{port}", folder, database_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                fail(f"the {config.label} server exited during start-up ({process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    fail(f"the {config.label} server did not start in 60 s")
                time.sleep(0.05)
        yield server
    finally:
        process.terminate()  # SIGTERM: uvicorn runs the lifespan shutdown (flushes tracing)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
        if database_url.startswith("postgresql"):
            _drop_database(database_url)


# --- the client ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One closed-loop run against one server."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    count: int = 0
    p50: float = 0.0

    @property
    def per_second(self) -> float:
        return (self.count or len(self.latencies)) / self.seconds

    @property
    def p50_ms(self) -> float:
        return self.p50 or statistics.median(self.latencies) * 1000


async def drive(base_url: str, count: int, concurrency: int, run_id: str, start: int = 0) -> Run:
    """Send ``count`` webhooks, ``concurrency`` in flight; every answer must be 200 ``processed``."""
    result = Run()
    numbers = iter(range(start, start + count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:

        async def lane() -> None:
            for n in numbers:
                began = time.perf_counter()
                response = await client.post(WEBHOOK_PATH, json=payload(run_id, n))
                result.latencies.append(time.perf_counter() - began)
                if response.status_code != 200 or response.json().get("status") != "processed":
                    fail(f"webhook {n} answered {response.status_code} {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result


_WRK_SCRIPT = """
-- wrk runs setup() and done() in its main Lua state and request()/response() in one
-- state per thread: what the threads count is read back with thread:get() in done().
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
failures = 0
first_failure = ""
sample = ""
local counter = 0
local texts = { {TEXTS} }
local function signature(n)
  local letters = ""
  n = n + {NS}
  while n > 0 do
    local digit = n % {NS}
    n = math.floor(n / {NS})
    local c, v = math.floor(digit / {NV}) + 1, digit % {NV} + 1
    letters = letters .. string.sub("{CONSONANTS}", c, c) .. string.sub("{VOWELS}", v, v)
  end
  return string.upper(string.sub(letters, 1, 1)) .. string.sub(letters, 2)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local n = counter
  local body = string.format(
    '{"type":"InboundMessage","locationId":"sandbox-location","contactId":"wrk-%s-%d",' ..
    '"body":"%s","messageType":"SMS","direction":"inbound","messageId":"wrk-msg-%s-%d",' ..
    '"conversationId":"wrk-conv-%s-%d","webhookId":"wrk-wh-%s-%d"}',
    "{RUN}", n, texts[(n % #texts) + 1] .. " " .. signature(n) .. " here.", "{RUN}", n, "{RUN}", n,
    "{RUN}", n)
  if sample == "" then sample = body end
  return wrk.format(nil, "{PATH}", nil, body)
end
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"processed"', 1, true) then
    failures = failures + 1
    if first_failure == "" then
      first_failure = status .. " " .. string.gsub(string.sub(body, 1, 200), "%s+", " ")
    end
  end
end
done = function(summary, latency, requests)
  local failed, first, sampled = 0, "", ""
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
    if first == "" then first = thread:get("first_failure") end
    if sampled == "" then sampled = thread:get("sample") end
  end
  io.write(string.format("WRK-RESULT %d %d %d %.3f %s\\n", summary.requests, failed,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
    summary.errors.timeout, latency:percentile(50) / 1000.0, first))
  io.write("WRK-SAMPLE " .. sampled .. "\\n")
end
"""


def wrk(base_url: str, seconds: float, concurrency: int, folder: Path, *, warm_up: bool = False) -> Run:
    """Drive ``base_url`` with wrk; every answer must be 200 ``processed`` (the bare route says so too).

    A warm-up may end before its first answer (a cold server's first webhook is slow);
    a measured run may not.
    """
    if shutil.which("wrk") is None:
        fail("wrk is not installed: run scripts/system-deps (or apt-get install wrk)")
    texts = ", ".join(json.dumps(t) for t in TEXTS)
    script = folder / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    run_id = uuid.uuid4().hex[:10]
    script.write_text(
        _WRK_SCRIPT.replace("{TEXTS}", texts)
        .replace("{RUN}", run_id)
        .replace("{PATH}", WEBHOOK_PATH)
        .replace("{CONSONANTS}", _CONSONANTS)
        .replace("{VOWELS}", _VOWELS)
        .replace("{NS}", str(_SYLLABLES))
        .replace("{NV}", str(len(_VOWELS)))
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), base_url],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK-RESULT")), None)
    if out.returncode != 0 or line is None:
        fail(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")
    assert line is not None
    parts = line.split(" ", 5)
    requests, failures, errors, p50_ms = int(parts[1]), int(parts[2]), int(parts[3]), float(parts[4])
    if requests == 0 and not warm_up:
        fail(f"wrk got no answer from {base_url} in {seconds} s")
    if failures or errors:
        fail(f"{failures} answers were not 200 processed and {errors} socket errors: {parts[5]}")
    _check_sample(out.stdout, requests)
    result = Run(seconds=seconds)
    result.count = requests
    result.p50 = p50_ms
    return result


def _check_sample(stdout: str, requests: int) -> None:
    """Fail unless wrk sent the bench's own messages (one of TEXTS, signed with a unique name).

    Until 2026-12-02 the script's texts were not a Lua table, and every webhook wrk
    sent said "nil"; its failure count was also read from the wrong Lua state.
    """
    line = next((x for x in stdout.splitlines() if x.startswith("WRK-SAMPLE ")), None)
    if requests == 0:
        return
    try:
        body = json.loads(line.removeprefix("WRK-SAMPLE ")) if line else {}
    except json.JSONDecodeError:
        body = {}
    text = body.get("body", "") if isinstance(body, dict) else ""
    if not (text.startswith(TEXTS) and text.endswith(f" {signature(1)} here.")):
        fail(f"wrk did not send the bench's messages: its first webhook was {line!r}")


# --- 1. statements and spans per webhook ------------------------------------------------------------


@dataclass
class Counts:
    database: str
    webhooks: int
    statements: float
    round_trips: float
    spans: float
    db_spans: float
    untraced_statements: float


async def _count_once(database: str, database_url: str, folder: Path, traced: bool, webhooks: int) -> Counts:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
    from ghl_real_estate_ai.observability.otel_config import (
        flush_observability,
        setup_observability,
        shutdown_observability,
    )
    from ghl_real_estate_ai.settings import Settings

    settings = Settings(
        data_dir=folder,
        database_url=database_url,
        redis_url=REDIS_URL if database == "postgresql" else None,
        otel_enabled=traced,
        otel_exporter_type="none",
        ghl_rate_limit_per_10s=1_000_000_000,
        contact_order_window_ms=float(os.environ.get("BENCH_CONTACT_ORDER_WINDOW_MS", "0")),
        followup_poll_seconds=3600.0,
        log_level="WARNING",
    )
    memory = InMemorySpanExporter()
    setup_observability(settings, span_exporters=[memory] if traced else ())
    try:
        app = create_app(settings, manage_observability=False)
        async with app.running():
            get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
            store = app.state.store
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                run = uuid.uuid4().hex[:8]
                await client.post(WEBHOOK_PATH, json=payload(run, 10_000))  # warm-up
                flush_observability()
                memory.clear()
                before = store.stats.snapshot()
                for n in range(webhooks):
                    response = await client.post(WEBHOOK_PATH, json=payload(run, n))
                    if response.status_code != 200 or response.json().get("status") != "processed":
                        fail(f"count run: webhook answered {response.status_code} {response.text[:200]}")
                after = store.stats.snapshot()
            flush_observability()
            spans = memory.get_finished_spans()
    finally:
        shutdown_observability()
    if traced and not spans:
        fail(f"no span recorded on {database}")
    if after.statements == before.statements:
        fail(f"no statement counted on {database}")
    db = sum(1 for s in spans if "db.system" in (s.attributes or {}))
    return Counts(
        database,
        webhooks,
        (after.statements - before.statements) / webhooks,
        (after.round_trips - before.round_trips) / webhooks,
        len(spans) / webhooks,
        db / webhooks,
        0.0,
    )


def count(database: str, webhooks: int) -> Counts:
    results = []
    for traced in (True, False):
        folder = Path(tempfile.mkdtemp(prefix="jorge-bench-count-"))
        url = _create_database() if database == "postgresql" else f"sqlite:///{folder / 'jorge.db'}"
        try:
            results.append(asyncio.run(_count_once(database, url, folder, traced, webhooks)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if database == "postgresql":
                _drop_database(url)
    traced_counts, untraced = results
    traced_counts.untraced_statements = untraced.statements
    return traced_counts


# --- trace completeness of the local store ------------------------------------------------------------


@dataclass
class Completeness:
    webhooks: int
    traces: int
    complete: int
    orphans: int
    dropped: int


def local_store_completeness(server: Server, webhooks: int, dropped: int) -> Completeness:
    """Read the server's trace file after it stopped: one complete trace per webhook?"""
    path = server.folder / "traces.db"
    if not path.exists():
        fail("the local store wrote no trace file")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT trace_id, span_id, parent_span_id, name FROM spans").fetchall()
    by_trace: dict[str, list[tuple[str, str | None, str]]] = {}
    for trace_id, span_id, parent, name in rows:
        by_trace.setdefault(trace_id, []).append((span_id, parent, name))
    complete = orphans = 0
    for spans in by_trace.values():
        ids = {s for s, _, _ in spans}
        roots = [s for s, p, _ in spans if p is None]
        lost = [s for s, p, _ in spans if p is not None and p not in ids]
        orphans += len(lost)
        if len(roots) == 1 and not lost:
            complete += 1
    return Completeness(webhooks, len(by_trace), complete, orphans, dropped)


# --- report ---------------------------------------------------------------------------------------


@dataclass
class Row:
    measurement: str
    value: str
    budget: str
    ok: bool

    def __post_init__(self) -> None:
        # Printed as soon as measured: a long run stopped early keeps what it found.
        print(
            f"  => {self.measurement}: {self.value} (budget {self.budget}, {'PASS' if self.ok else 'MISS'})",
            flush=True,
        )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def per_round_ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True)]


def stop_server_stats(server: Server) -> dict[str, int]:
    """The export counts the app child printed when it stopped (after ``serve`` exits)."""
    assert server.process.stdout is not None
    text = server.process.stdout.read().strip().splitlines()
    for line in reversed(text):
        if line.startswith("{"):
            stats: dict[str, int] = json.loads(line)
            return stats
    fail(f"the server at {server.base_url} stopped without printing its export counts")
    raise AssertionError  # fail() exits


def throughput(args: argparse.Namespace, database: str, receiver: Receiver, rows: list[Row]) -> None:
    configs = [
        Config("bare FastAPI route", "bare"),
        Config("off"),
        Config("local 100%", "local"),
        Config("otlp 100%", "otlp"),
        Config("otlp 10%", "otlp", 0.1),
        Config("otlp 100% writer process", "otlp", env=(("OTLP_EXPORT_PROCESS", "true"),)),
    ]
    rates: dict[str, list[float]] = {c.label: [] for c in configs}
    dropped: dict[str, int] = {c.label: 0 for c in configs}
    exported: dict[str, int] = {c.label: 0 for c in configs}
    for index in range(args.rounds):
        shift = index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            with serve(config, database, receiver, 0.0) as server:
                # Warm-up: first-call costs, caches, channels.
                wrk(server.base_url, 2, 4, server.folder, warm_up=True)
                run = wrk(server.base_url, args.seconds, args.concurrency, server.folder)
                rates[config.label].append(run.per_second)
            if config.exporter not in (None, "bare"):
                stats = stop_server_stats(server)  # printed by the server once it stopped
                dropped[config.label] += stats.get("dropped", 0)
                exported[config.label] += stats.get("exported", 0)
        print(f"  {database} throughput round {index + 1}/{args.rounds} done", flush=True)
    off = rates["off"]
    line = ", ".join(f"{label} {statistics.median(v):.1f}/s" for label, v in rates.items())
    print(f"  {database}: {line}")
    traced = [c.label for c in configs if c.exporter not in (None, "bare")]
    for label in traced:
        if exported[label] == 0:
            fail(f"{database} {label}: the server exported no span")
    print(
        f"  {database} spans exported / dropped at full load, all rounds: "
        + ", ".join(f"{label} {exported[label]:,} / {dropped[label]:,}" for label in traced)
    )
    for label, budget in (
        ("local 100%", 0.90),
        ("otlp 100%", 0.90),
        ("otlp 10%", 0.97),
        ("otlp 100% writer process", 0.90),
    ):
        ratios = per_round_ratios(rates[label], off)
        rows.append(
            Row(
                f"{database} throughput x{args.concurrency}: {label} / off",
                spread(ratios),
                f">= {budget:.2f}",
                statistics.median(ratios) >= budget,
            )
        )
    bare = per_round_ratios(off, rates["bare FastAPI route"])
    rows.append(
        Row(
            f"{database} untraced webhooks / bare FastAPI route "
            f"({statistics.median(off):.1f}/s vs {statistics.median(rates['bare FastAPI route']):.0f}/s)",
            spread(bare),
            ">= 0.045",
            statistics.median(bare) >= 0.045,
        )
    )


def completeness(args: argparse.Namespace, database: str, receiver: Receiver, rows: list[Row]) -> None:
    """The local store at the service's own maximum throughput keeps every trace complete."""
    config = Config("local 100%", "local")
    results: list[Completeness] = []
    for _ in range(max(1, args.rounds // 2)):
        with serve(config, database, receiver, 0.0) as server:
            run = wrk(server.base_url, args.seconds, args.concurrency, server.folder)
            server.process.terminate()
            server.process.wait(180)  # its shutdown flushes the trace store; slow on a loaded machine
            stats = stop_server_stats(server)
            results.append(local_store_completeness(server, run.count, stats.get("dropped", 0)))
    for r in results:
        if r.traces == 0:
            fail(f"the local store on {database} recorded no trace")
    # wrk counts the answers it got within the run; the server also finishes the ones in
    # flight at the end, so there are at least as many traces as counted webhooks.
    ok = all(
        r.traces >= r.webhooks and r.complete == r.traces and r.orphans == 0 and r.dropped == 0
        for r in results
    )
    text = "; ".join(
        f"{r.complete}/{r.traces} traces complete ({r.webhooks} answers counted), "
        f"{r.orphans} orphans, {r.dropped} dropped"
        for r in results
    )
    rows.append(
        Row(f"{database} local store at max throughput x{args.concurrency}", text, "all complete", ok)
    )


def latency(args: argparse.Namespace, database: str, receiver: Receiver, rows: list[Row]) -> None:
    configs = [Config("off"), Config("local 100%", "local"), Config("otlp 100%", "otlp")]
    p50: dict[str, list[float]] = {c.label: [] for c in configs}
    for index in range(args.rounds):
        shift = index % len(configs)
        for config in configs[shift:] + configs[:shift]:
            with serve(config, database, receiver, 50.0) as server:
                wrk(server.base_url, 2, 1, server.folder, warm_up=True)
                p50[config.label].append(wrk(server.base_url, args.latency_seconds, 1, server.folder).p50_ms)
    for label in ("local 100%", "otlp 100%"):
        ratios = per_round_ratios(p50[label], p50["off"])
        rows.append(
            Row(
                f"{database} p50 latency, GHL at 50 ms: {label} / off "
                f"({statistics.median(p50[label]):.1f} vs {statistics.median(p50['off']):.1f} ms)",
                spread(ratios),
                "<= 1.02",
                statistics.median(ratios) <= 1.02,
            )
        )


def memory(args: argparse.Namespace, receiver: Receiver, rows: list[Row]) -> None:
    """RSS of the server with the embedded defaults after N/10 and after N webhooks."""
    total = args.memory_webhooks
    first = max(total // 10, 1)
    with serve(Config("embedded default", "local"), "sqlite", receiver, 0.0) as server:
        run_id = uuid.uuid4().hex[:8]
        asyncio.run(drive(server.base_url, first, args.concurrency, run_id))
        low = server.rss_bytes()
        asyncio.run(drive(server.base_url, total - first, args.concurrency, run_id, start=first))
        high = server.rss_bytes()
    growth = (high - low) / max(total - first, 1)
    rows.append(
        Row(
            f"RSS after {total} / after {first} webhooks (embedded defaults; "
            f"{low / 2**20:.1f} -> {high / 2**20:.1f} MiB, {growth:+.0f} B/webhook)",
            f"{high / low:.3f}",
            "<= 1.10",
            high / low <= 1.10,
        )
    )


def table(rows: list[Row]) -> str:
    header = ("measurement", "value: median (min-max)", "budget", "")
    cells = [header] + [(r.measurement, r.value, r.budget, "PASS" if r.ok else "MISS") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row], started: str, load_start: str, args: argparse.Namespace) -> str:
    """The results as a markdown block for docs/benchmarks.md (run date, machine and load included)."""
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Run on {started} (`bench/webhook_overhead.py`, {args.rounds} interleaved rounds, "
        f"{args.concurrency} in flight, {args.seconds} s per run), Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load_start} at the start and {load_end} at the end.",
        "",
        "| measurement | median (min-max) | budget | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.measurement} | {r.value} | {r.budget} | {'PASS' if r.ok else 'MISS'} |".replace(
            ">=", "≥"
        ).replace("<=", "≤")
        for r in rows
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison")
    parser.add_argument("--seconds", type=int, default=10, help="seconds per throughput run")
    parser.add_argument("--concurrency", type=int, default=16, help="webhooks in flight")
    parser.add_argument("--latency-seconds", type=int, default=5, help="seconds per sequential latency run")
    parser.add_argument("--count-webhooks", type=int, default=60, help="webhooks for the per-webhook counts")
    parser.add_argument("--memory-webhooks", type=int, default=10_000, help="webhooks for the memory check")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list: sqlite, postgresql")
    parser.add_argument(
        "--phases",
        default="counts,throughput,completeness,latency,memory",
        help="comma list of the measurements to run (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, small runs: a smoke test")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is missed")
    parser.add_argument("--serve-app", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_app:
        _serve_app(args.serve_app)
        return 0
    if args.serve_bare:
        _serve_bare(args.serve_bare)
        return 0
    if args.serve_receiver:
        _serve_receiver()
        return 0
    if args.quick:
        args.rounds, args.seconds, args.latency_seconds, args.count_webhooks = 2, 3, 2, 12
        args.memory_webhooks = min(args.memory_webhooks, 1000)
    databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    for database in databases:
        if database not in ("sqlite", "postgresql"):
            parser.error(f"--databases: unknown {database!r}; use sqlite and/or postgresql")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{started}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average {load_start}; "
        f"{args.rounds} interleaved rounds",
        flush=True,
    )
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    unknown = phases - {"counts", "throughput", "completeness", "latency", "memory"}
    if unknown:
        parser.error(f"--phases: unknown {sorted(unknown)}")
    rows: list[Row] = []
    receiver = Receiver()
    try:
        for database in databases if "counts" in phases else []:
            counts = count(database, args.count_webhooks)
            print(
                f"  {database}: {counts.statements:.1f} statements ({counts.round_trips:.1f} round trips) "
                f"and {counts.spans:.1f} spans ({counts.db_spans:.1f} database) per webhook traced; "
                f"{counts.untraced_statements:.1f} statements untraced",
                flush=True,
            )
            rows.append(
                Row(
                    f"{database} statements per webhook",
                    f"{counts.statements:.1f}",
                    "<= 8",
                    counts.statements <= 8,
                )
            )
            rows.append(
                Row(f"{database} spans per webhook", f"{counts.spans:.1f}", "<= 20", counts.spans <= 20)
            )
        for database in databases:
            if "throughput" in phases:
                throughput(args, database, receiver, rows)
            if "completeness" in phases:
                completeness(args, database, receiver, rows)
            if "latency" in phases:
                latency(args, database, receiver, rows)
        if "memory" in phases and args.memory_webhooks > 0:
            memory(args, receiver, rows)
    finally:
        receiver.close()
    if not rows:
        fail("no phase ran")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(rows))
    print("\nmarkdown for docs/benchmarks.md:\n")
    print(markdown(rows, started, load_start, args))
    print()
    missed = [r for r in rows if not r.ok]
    if missed:
        print(f"{len(missed)} budget(s) missed")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
