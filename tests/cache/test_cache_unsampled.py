"""Cache operations under an unsampled parent start no span (issue 14: unsampled means nearly free).

The ``cache.get``/``cache.set`` spans are never made current, so a non-recording one
would be seen by nobody; with Redis command spans asked for, the operation's span stays
(the commands' spans hang under it and must follow the same unsampled trace).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from ghl_real_estate_ai.cache import open_cache


@pytest.fixture(params=["unsampled", "sampled"])
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[TracerProvider, InMemorySpanExporter, bool]]:
    sampled = request.param == "sampled"
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter, sampled
    provider.shutdown()


def _count_starts(cache: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    started: list[str] = []
    real = cache._tracer.start_span

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(cache._tracer, "start_span", counting)
    return started


async def test_memory_cache_starts_no_span_under_an_unsampled_parent(
    provider: tuple[TracerProvider, InMemorySpanExporter, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer_provider, exporter, sampled = provider
    cache = open_cache(None, namespace="unsampled:", tracer_provider=tracer_provider)
    await cache.open()
    started = _count_starts(cache, monkeypatch)
    try:
        with tracer_provider.get_tracer("test").start_as_current_span("webhook"):
            await cache.set("k", {"v": 1})
            assert await cache.get("k") == {"v": 1}
    finally:
        await cache.close()
    names = [s.name for s in exporter.get_finished_spans()]
    if sampled:
        assert started == ["cache.set", "cache.get"]
        assert names == ["cache.set", "cache.get", "webhook"]
    else:
        assert started == []
        assert names == []


async def test_memory_cache_outside_any_trace_still_starts_its_own(
    provider: tuple[TracerProvider, InMemorySpanExporter, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer_provider, _, _ = provider
    cache = open_cache(None, namespace="root:", tracer_provider=tracer_provider)
    await cache.open()
    started = _count_starts(cache, monkeypatch)
    try:
        await cache.get("k")
    finally:
        await cache.close()
    assert started == ["cache.get"]  # a root: the sampler decides, as before


@pytest.mark.redis
@pytest.mark.parametrize("trace_commands", [False, True])
async def test_redis_cache_under_an_unsampled_parent(
    provider: tuple[TracerProvider, InMemorySpanExporter, bool],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_namespace: str,
    trace_commands: bool,
) -> None:
    tracer_provider, exporter, sampled = provider
    cache = open_cache(
        redis_url, namespace=redis_namespace, tracer_provider=tracer_provider, trace_commands=trace_commands
    )
    await cache.open()
    started = _count_starts(cache, monkeypatch)
    try:
        with tracer_provider.get_tracer("test").start_as_current_span("webhook"):
            await cache.set("k", {"v": 1}, ttl=5)
            assert await cache.get("k") == {"v": 1}
    finally:
        await cache.close()
    if sampled or trace_commands:
        assert started == ["cache.set", "cache.get"]
    else:
        assert started == []
    if not sampled:
        assert [s for s in exporter.get_finished_spans() if s.name.startswith("cache.")] == []
