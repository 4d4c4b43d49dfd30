"""Where a webhook's time, statements and memory go, measured in-process (issue 14, part A).

Runs the real app through ``httpx.ASGITransport`` (no network, no uvicorn), tracing off,
with the bench's webhook mix (``bench/webhook_overhead.py``: new contacts, two thirds
handing off to the buyer or seller bot). Modes:

- ``statements``: every SQL statement the store sends for each of a few webhooks,
  and the average per webhook (the budget is 8);
- ``profile``: cProfile over ``--webhooks`` webhooks, the top functions by own
  and cumulative time;
- ``memory``: tracemalloc snapshots after ``--webhooks`` and after five times as
  many, the allocation sites that grew most.

Run: ``.venv/bin/python bench/webhook_profile.py statements --database sqlite``
(``--database postgresql`` uses ``BENCH_POSTGRES_URL`` and ``BENCH_REDIS_URL``).
Heavy modes belong under ``flock /work/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.webhook_overhead import POSTGRES_URL, REDIS_URL, WEBHOOK_PATH, payload  # noqa: E402


def _fail(message: str) -> None:
    raise SystemExit(f"bench/webhook_profile.py measured nothing valid: {message}")


async def _create_pg_database() -> str:
    import asyncpg

    name = f"jorge_profile_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


async def _drop_pg_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def _app(database: str, tracing: str = "off") -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    from ghl_real_estate_ai.app import create_app
    from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
    from ghl_real_estate_ai.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="jorge-profile-"))
    url = await _create_pg_database() if database == "postgresql" else f"sqlite:///{folder / 'jorge.db'}"
    settings = Settings(
        data_dir=folder,
        database_url=url,
        redis_url=REDIS_URL if database == "postgresql" else None,
        otel_enabled=tracing != "off",
        otel_exporter_type="local" if tracing.startswith("local") else "none",
        otel_traces_sampler="parentbased_traceidratio" if tracing.endswith("10") else None,
        otel_traces_sampler_arg=0.1 if tracing.endswith("10") else None,
        ghl_rate_limit_per_10s=1_000_000_000,
        followup_poll_seconds=3600.0,
        log_level="WARNING",
    )
    try:
        app = create_app(settings, manage_observability=tracing != "off")
        async with app.running():
            get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://profile") as client:
                yield app, client
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if database == "postgresql":
            await _drop_pg_database(url)


async def _send(client: httpx.AsyncClient, run: str, n: int) -> None:
    # Written a minute ago (as GHL's dateAdded says): older than the order window, so
    # processed at once; the window's wait is not CPU and would only stretch the run.
    body = {**payload(run, n), "dateAdded": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    response = await client.post(WEBHOOK_PATH, json=body)
    if response.status_code != 200 or response.json().get("status") != "processed":
        _fail(f"webhook {n} answered {response.status_code} {response.text[:200]}")


def _record_statements(store: Any, log: list[str]) -> None:
    """Wrap the store's driver calls so every statement sent is logged (by its first words)."""

    def short(sql: str) -> str:
        return " ".join(sql.split())[:110]

    if store.backend == "sqlite":
        execute, batch = store._execute, store._batch

        async def logged_execute(conn: Any, sql: str, params: list[Any]) -> Any:
            log.append(short(sql))
            return await execute(conn, sql, params)

        async def logged_batch(conn: Any, steps: Any, *, begin: bool) -> Any:
            log.extend(f"[batch] {short(s.sql)}" for s in steps)
            return await batch(conn, steps, begin=begin)

        store._execute, store._batch = logged_execute, logged_batch
        durable = store._durable_one

        async def logged_durable(sql: str, args: Any = ()) -> Any:
            log.append(f"[durable] {short(sql)}")
            before = store.stats.statements
            result = await durable(sql, args)
            assert store.stats.statements == before + 1
            return result

        store._durable_one = logged_durable
    else:
        fetch, lock_call, steps_on = store._fetch, store._lock_call, store._steps_on

        async def logged_fetch(conn: Any, sql: str, args: Any) -> Any:
            log.append(short(sql))
            return await fetch(conn, sql, args)

        async def logged_lock(sql: str, key: str) -> Any:
            log.append(f"[lock] {short(sql)}")
            return await lock_call(sql, key)

        async def logged_steps(conn: Any, steps: Any) -> Any:
            log.extend(f"[many] {short(s.sql)}" for s in steps if s.many)
            return await steps_on(conn, steps)

        run_plan = store._run_plan

        async def logged_plan(conn: Any, plan: Any, final: int) -> Any:
            log.extend(f"[one statement] {' + '.join(short(u.sql)[:24] for u in group)}" for group in plan)
            return await run_plan(conn, plan, final)

        store._fetch, store._lock_call, store._steps_on = logged_fetch, logged_lock, logged_steps
        store._run_plan = logged_plan


async def statements(database: str, webhooks: int, args_show: int = 6) -> None:
    async with _app(database) as (app, client):
        store = app.state.store
        run = uuid.uuid4().hex[:8]
        await _send(client, run, 10_000)  # warm-up
        log: list[str] = []
        _record_statements(store, log)
        before = store.stats.snapshot()
        for n in range(webhooks):
            log.clear()
            start = store.stats.snapshot()
            await _send(client, run, n)
            now = store.stats.snapshot()
            if n < args_show:
                print(
                    f"webhook {n} ({payload(run, n)['body'][:40]!r}): {now.statements - start.statements}"
                    f" statements, {now.round_trips - start.round_trips} round trips"
                )
                for line in log:
                    print(f"    {line}")
        after = store.stats.snapshot()
    if after.statements == before.statements:
        _fail("no statement counted")
    print(
        f"{database}: {(after.statements - before.statements) / webhooks:.2f} statements, "
        f"{(after.round_trips - before.round_trips) / webhooks:.2f} round trips per webhook "
        f"over {webhooks} webhooks"
    )


async def profile(database: str, webhooks: int, top: int, tracing: str, dump: str | None) -> None:
    async with _app(database, tracing) as (_, client):
        run = uuid.uuid4().hex[:8]
        for n in range(20):  # warm-up
            await _send(client, run, 100_000 + n)
        profiler = cProfile.Profile()
        loop = asyncio.get_running_loop()
        started = loop.time()
        profiler.enable()
        for n in range(webhooks):
            await _send(client, run, n)
        profiler.disable()
        elapsed = loop.time() - started
    if dump:
        profiler.dump_stats(dump)
    print(f"{webhooks} webhooks in {elapsed:.2f} s under cProfile ({elapsed / webhooks * 1000:.2f} ms each)")
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = {}
    total = 0.0
    for (path, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        area = "idle (epoll)" if "epoll" in name else _area(path)
        by_area[area] = by_area.get(area, 0.0) + tottime
        total += tottime
    idle = by_area.pop("idle (epoll)", 0.0)
    busy = total - idle
    per_webhook = busy / webhooks * 1000
    print(f"own time by area (of {busy:.2f} s busy, {per_webhook:.2f} ms per webhook under cProfile):")
    for area, seconds in sorted(by_area.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {seconds / busy * 100:5.1f} %  {area}")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(top)
        print(out.getvalue())


def _area(path: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if path == "~":
        return "builtins (C)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "ghl_real_estate_ai/" in path:
        rest = path.split("ghl_real_estate_ai/", 1)[1]
        return "app: " + (rest.split("/", 1)[0] if "/" in rest else rest)
    if "asyncio" in path or "selectors" in path:
        return "asyncio"
    return "stdlib: " + Path(path).name


async def timed(database: str, webhooks: int, tracing: str) -> None:
    async with _app(database, tracing) as (_, client):
        run = uuid.uuid4().hex[:8]
        for n in range(20):
            await _send(client, run, 100_000 + n)
        cpu = os.times()
        thread_cpu = time.thread_time()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for n in range(webhooks):
            await _send(client, run, n)
        elapsed = loop.time() - started
        loop_cpu = time.thread_time() - thread_cpu
        used = os.times()
    cpu_s = (used.user - cpu.user) + (used.system - cpu.system)
    print(
        f"{database}, tracing {tracing}: {webhooks} webhooks one at a time: {webhooks / elapsed:.1f}/s, "
        f"{cpu_s / webhooks * 1000:.2f} ms CPU each ({loop_cpu / webhooks * 1000:.2f} on the event loop's "
        f"thread, {(used.system - cpu.system) / webhooks * 1000:.2f} in the kernel)"
    )


async def memory(database: str, webhooks: int, top: int) -> None:
    async with _app(database) as (_, client):
        run = uuid.uuid4().hex[:8]
        for n in range(webhooks):
            await _send(client, run, n)
        gc.collect()
        tracemalloc.start(12)
        first = tracemalloc.take_snapshot()
        for n in range(webhooks, webhooks * 5):
            await _send(client, run, n)
        gc.collect()
        second = tracemalloc.take_snapshot()
        tracemalloc.stop()
    grown = second.compare_to(first, "traceback")
    total = sum(stat.size_diff for stat in grown)
    print(
        f"grown by {total / 1024:.1f} KiB over {webhooks * 4} webhooks ({total / webhooks / 4:.0f} B/webhook)"
    )
    for stat in grown[:top]:
        print(f"{stat.size_diff / 1024:9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-8:]:
            print(f"      {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("statements", "profile", "timed", "memory"))
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--webhooks", type=int, default=60)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--tracing",
        choices=("off", "none", "none10", "local", "local10"),
        default="off",
        help="off: no tracing; none: spans made, none exported; local: the local store; *10: 10%% sampled",
    )
    parser.add_argument("--dump", help="profile: also write the raw cProfile stats to this file")
    args = parser.parse_args()
    modes: dict[str, Callable[[], Any]] = {
        "statements": lambda: statements(args.database, args.webhooks),
        "profile": lambda: profile(args.database, args.webhooks, args.top, args.tracing, args.dump),
        "timed": lambda: timed(args.database, args.webhooks, args.tracing),
        "memory": lambda: memory(args.database, args.webhooks, args.top),
    }
    asyncio.run(modes[args.mode]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
