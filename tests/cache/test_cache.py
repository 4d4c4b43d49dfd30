"""The Cache behaviour suite: every test runs unchanged against the in-process cache and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.cache import Cache, open_cache
from ghl_real_estate_ai.errors import CacheError, ConfigurationError, LockTimeoutError

OpenCache = Callable[..., Awaitable[Cache]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """None for the in-process cache, the test server's URL for Redis."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def open_another(backend_url: str | None, redis_namespace: str) -> AsyncIterator[OpenCache]:
    """Open caches on the test's namespace (or another one); Redis keys are removed afterwards."""
    caches: list[Cache] = []
    namespaces = {redis_namespace}

    async def make(namespace: str = redis_namespace) -> Cache:
        cache = open_cache(backend_url, namespace=namespace)
        await cache.open()
        caches.append(cache)
        namespaces.add(namespace)
        return cache

    yield make
    for cache in caches:
        await cache.close()
    if backend_url is not None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(backend_url)
        try:
            keys = [k for ns in namespaces async for k in client.scan_iter(match=f"{ns}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def cache(open_another: OpenCache) -> Cache:
    return await open_another()


async def test_get_returns_what_set_stored(cache: Cache) -> None:
    assert await cache.get("missing") is None
    value = {"slots": ["2030-01-01T10:00:00Z"], "n": 3, "ok": True, "nested": {"x": None}}
    await cache.set("slots:cal-1", value)
    assert await cache.get("slots:cal-1") == value


async def test_values_come_back_as_json_copies(cache: Cache) -> None:
    original = {"tags": ["a"], "pair": (1, 2)}
    await cache.set("k", original)
    original["tags"].append("mutated after set")
    assert await cache.get("k") == {"tags": ["a"], "pair": [1, 2]}


async def test_a_value_that_is_not_json_is_refused(cache: Cache) -> None:
    with pytest.raises(CacheError, match="'k'"):
        await cache.set("k", object())


async def test_entries_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set("short", "v", ttl=0.2)
    await cache.set("long", "v", ttl=30)
    assert await cache.get("short") == "v"
    await asyncio.sleep(0.3)
    assert await cache.get("short") is None
    assert await cache.get("long") == "v"


async def test_delete_removes_and_tolerates_missing_keys(cache: Cache) -> None:
    await cache.set("k", 1)
    await cache.delete("k")
    await cache.delete("never-set")
    assert await cache.get("k") is None


async def test_incr_counts_and_its_ttl_starts_at_creation(cache: Cache) -> None:
    assert await cache.incr("rate:loc-1", ttl=0.3) == 1
    assert await cache.incr("rate:loc-1", 4, ttl=0.3) == 5
    assert await cache.get("rate:loc-1") == 5
    await asyncio.sleep(0.15)
    assert await cache.incr("rate:loc-1", ttl=0.3) == 6  # must not push the expiry back
    await asyncio.sleep(0.25)
    assert await cache.incr("rate:loc-1", ttl=0.3) == 1  # the first window ended


async def test_incr_without_ttl_keeps_the_counter(cache: Cache) -> None:
    assert await cache.incr("total") == 1
    assert await cache.incr("total", -3) == -2


async def test_incr_on_a_non_integer_is_a_cache_error(cache: Cache) -> None:
    await cache.set("name", "jorge")
    with pytest.raises(CacheError, match="'name'"):
        await cache.incr("name")


async def test_incr_and_get_counts_one_key_and_reads_another(cache: Cache) -> None:
    assert await cache.incr_and_get("rate:2", "rate:1", ttl=30) == (1, None)
    for _ in range(3):
        await cache.incr("rate:1", ttl=30)
    assert await cache.incr_and_get("rate:2", "rate:1", 2, ttl=30) == (3, 3)
    await cache.set("profile", {"name": "Ana"})
    assert await cache.incr_and_get("rate:2", "profile", ttl=30) == (4, {"name": "Ana"})
    with pytest.raises(CacheError, match="'profile'"):
        await cache.incr_and_get("profile", "rate:1")


async def test_incr_and_get_gives_a_new_counter_its_ttl(cache: Cache) -> None:
    assert await cache.incr_and_get("short", "rate:1", ttl=0.2) == (1, None)
    # Polled until the counter has gone (adding 0 then reads 0): a busy machine only makes it later.
    deadline = time.monotonic() + 30
    while (await cache.incr_and_get("short", "rate:1", 0, ttl=0.2))[0] != 0:
        assert time.monotonic() < deadline, "the counter never expired: its ttl was not set"
        await asyncio.sleep(0.05)


async def test_namespaces_isolate_caches_and_one_namespace_is_shared(open_another: OpenCache) -> None:
    mine, twin = await open_another(), await open_another()
    other = await open_another(f"other-{uuid.uuid4().hex[:8]}:")
    await mine.set("k", "mine")
    assert await twin.get("k") == "mine"
    assert await other.get("k") is None
    await other.set("k", "other")
    assert await mine.get("k") == "mine"


async def test_lock_excludes_holders_across_cache_instances(open_another: OpenCache) -> None:
    a, b = await open_another(), await open_another()
    log: list[tuple[str, int]] = []

    async def hold(cache: Cache, n: int) -> None:
        async with cache.lock("contact:c1", timeout=5, wait=5):
            log.append(("enter", n))
            await asyncio.sleep(0.02)
            log.append(("exit", n))

    await asyncio.gather(*(hold(c, n) for n, c in enumerate([a, b, a, b])))
    assert len(log) == 8
    for i in range(0, 8, 2):
        assert log[i][0] == "enter" and log[i + 1] == ("exit", log[i][1]), log


async def test_lock_wait_runs_out_with_lock_timeout_error(open_another: OpenCache) -> None:
    a, b = await open_another(), await open_another()
    async with a.lock("job", timeout=5):
        with pytest.raises(LockTimeoutError, match="'job'"):
            async with b.lock("job", wait=0.2):
                pytest.fail("the lock was taken twice")
        async with b.lock("another-job", wait=0.2):
            pass
    async with b.lock("job", wait=0.5):  # released on exit
        pass


async def test_an_expired_lease_frees_the_lock_and_the_late_holder_cannot_release_it(
    open_another: OpenCache,
) -> None:
    a, b = await open_another(), await open_another()
    b_lock = b.lock("job", timeout=5, wait=0.5)
    async with a.lock("job", timeout=0.2):
        await asyncio.sleep(0.3)  # a's lease runs out while it still works
        await b_lock.__aenter__()
    # a left late: its release must not have freed b's lock.
    try:
        with pytest.raises(LockTimeoutError):
            async with a.lock("job", wait=0.2):
                pass
    finally:
        await b_lock.__aexit__(None, None, None)
    async with a.lock("job", wait=0.5):
        pass


async def test_ping_works_when_open_and_fails_when_closed(open_another: OpenCache) -> None:
    cache = await open_another()
    await cache.ping()
    await cache.close()
    with pytest.raises(CacheError):
        await cache.ping()


# --- backend-specific -------------------------------------------------------------


async def test_unreachable_redis_stops_open_with_a_line_naming_redis_url() -> None:
    cache = open_cache("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(CacheError) as caught:
        await cache.open()
    message = str(caught.value)
    assert "REDIS_URL='redis://127.0.0.1:1/0'" in message
    assert "s3cret" not in message


def test_a_url_that_is_not_redis_is_refused_naming_redis_url() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        open_cache("http://127.0.0.1:6379")


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_memory_cache_spans_record_hits_under_the_caller(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    cache = open_cache(None, namespace="spans:", tracer_provider=provider)
    await cache.open()
    try:
        with provider.get_tracer("test").start_as_current_span("buyer_bot.schedule_showing") as outer:
            await cache.get("slots")
            await cache.set("slots", [1])
            await cache.get("slots")
    finally:
        await cache.close()
    finished = [s for s in exporter.get_finished_spans() if s.name.startswith("cache.")]
    assert [(s.name, s.kind, dict(s.attributes or {})) for s in finished] == [
        ("cache.get", SpanKind.INTERNAL, {"cache.backend": "memory", "cache.hit": False}),
        ("cache.set", SpanKind.INTERNAL, {"cache.backend": "memory"}),
        ("cache.get", SpanKind.INTERNAL, {"cache.backend": "memory", "cache.hit": True}),
    ]
    assert all(
        s.parent is not None and s.parent.span_id == outer.get_span_context().span_id for s in finished
    )


@pytest.fixture
def redis_instrumented(spans: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[None]:
    """The Redis auto-instrumentation on, reporting to the test's provider (as tracing sets it up)."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=spans[0])
    yield
    instrumentor.uninstrument()


@pytest.mark.redis
@pytest.mark.parametrize("trace_commands", [False, True])
async def test_redis_cache_makes_one_span_per_operation_and_command_spans_only_on_request(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    redis_instrumented: None,
    redis_url: str,
    redis_namespace: str,
    trace_commands: bool,
) -> None:
    provider, exporter = spans
    cache = open_cache(
        redis_url, namespace=redis_namespace, tracer_provider=provider, trace_commands=trace_commands
    )
    await cache.open()
    try:
        with provider.get_tracer("test").start_as_current_span("ghl.get_contact") as outer:
            await cache.get("contact")
            await cache.set("contact", {"id": 1}, ttl=5)
            await cache.get("contact")
            await cache.incr("rate", ttl=5)
            await cache.delete("contact")
            async with cache.lock("sync", timeout=5, wait=1):
                pass
    finally:
        await cache.close()
    finished = exporter.get_finished_spans()
    ours = [s for s in finished if s.name.startswith("cache.")]
    assert [(s.name, s.kind, dict(s.attributes or {})) for s in ours] == [
        ("cache.get", SpanKind.INTERNAL, {"cache.backend": "redis", "cache.hit": False}),
        ("cache.set", SpanKind.INTERNAL, {"cache.backend": "redis"}),
        ("cache.get", SpanKind.INTERNAL, {"cache.backend": "redis", "cache.hit": True}),
    ]
    outer_id = outer.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == outer_id for s in ours)
    commands = [s for s in finished if s.attributes and s.attributes.get("db.system") == "redis"]
    if not trace_commands:
        # One span per cache operation: the raw commands under it add nothing a user reads.
        assert commands == []
        assert len(finished) == len(ours) + 1
    else:
        names = [s.name for s in commands]
        assert names[:3] == ["GET", "SET", "GET"], names
        assert len(commands) == 7, names  # + EVAL (incr), DEL, SET NX and EVAL (lock); no PING at open
        get_ids = {s.context.span_id for s in ours if s.name == "cache.get"}
        assert commands[0].parent is not None and commands[0].parent.span_id in get_ids


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_incr_and_get_is_one_cache_get_span_and_one_redis_command(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    redis_instrumented: None,
    request: pytest.FixtureRequest,
    redis_namespace: str,
    backend: str,
) -> None:
    """The GHL rate limiter's step: the read shows as the cache.get it is, in one round trip on Redis."""
    provider, exporter = spans
    url = None if backend == "memory" else request.getfixturevalue("redis_url")
    cache = open_cache(url, namespace=redis_namespace, tracer_provider=provider, trace_commands=True)
    await cache.open()
    try:
        with provider.get_tracer("test").start_as_current_span("lead_bot.send_day_3_sms"):
            await cache.incr("window:1", ttl=5)
            exporter.clear()
            assert await cache.incr_and_get("window:2", "window:1", ttl=5) == (1, 1)
    finally:
        await cache.close()
    finished = exporter.get_finished_spans()
    ours = [s for s in finished if s.name.startswith("cache.")]
    assert [(s.name, dict(s.attributes or {})) for s in ours] == [
        ("cache.get", {"cache.backend": backend, "cache.hit": True})
    ]
    commands = [s for s in finished if s.attributes and s.attributes.get("db.system") == "redis"]
    if backend == "redis":
        (command,) = commands
        assert command.name == "EVALSHA" or command.name == "EVAL"
        assert command.parent is not None and command.parent.span_id == ours[0].context.span_id
    else:
        assert commands == []


async def test_memory_state_goes_away_with_the_last_open_instance() -> None:
    first = open_cache(None, namespace="lifetime:")
    await first.open()
    await first.set("k", 1)
    await first.close()
    again = open_cache(None, namespace="lifetime:")
    await again.open()
    try:
        assert await again.get("k") is None
    finally:
        await again.close()


def test_redis_answers_are_read_by_the_c_parser() -> None:
    """The install brings hiredis, so redis-py reads Redis's answers in C, not with its Python parser."""
    from redis.asyncio.connection import DefaultParser

    assert DefaultParser.__name__ == "_AsyncHiredisParser"
