"""A TTL cache with counters and locks: in-process, or Redis shared by every replica.

Pick a backend from ``REDIS_URL`` and open it::

    cache = open_cache(settings.redis_url)   # None: the in-process cache
    await cache.open()                       # Redis: connects and pings
    try:
        await cache.set("slots:cal-1", slots, ttl=60)
        async with cache.lock("sync:contacts", timeout=30, wait=5):
            ...
    finally:
        await cache.close()

Both implement :class:`~ghl_real_estate_ai.cache.base.Cache`.
"""

from __future__ import annotations

from opentelemetry.trace import TracerProvider

from ghl_real_estate_ai.cache.base import Cache
from ghl_real_estate_ai.errors import ConfigurationError

__all__ = ["Cache", "open_cache"]


def open_cache(
    redis_url: str | None,
    *,
    namespace: str = "jorge:",
    tracer_provider: TracerProvider | None = None,
    trace_commands: bool = False,
) -> Cache:
    """Build the cache ``redis_url`` names; it connects on ``await cache.open()``.

    Args:
        redis_url: ``redis://host:6379/0`` (``rediss://`` for TLS), or None for the in-process cache.
        namespace: prefix of every key, so several services or tests can share one Redis.
        tracer_provider: where the cache's ``cache.get``/``cache.set`` spans go
            (default: the global provider).
        trace_commands: Redis only: also one span per Redis command, from the Redis
            instrumentation (REDIS_TRACE_COMMANDS, for debugging).

    Returns:
        A cache that is not connected yet.

    Raises:
        ConfigurationError: ``redis_url`` is not a redis URL; the message names REDIS_URL.
    """
    if not redis_url:
        from ghl_real_estate_ai.cache.memory import MemoryCache

        return MemoryCache(namespace=namespace, tracer_provider=tracer_provider)
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        from ghl_real_estate_ai.cache.redis import redact_url

        raise ConfigurationError(
            f"unsupported REDIS_URL={redact_url(redis_url)!r}: use redis://host:6379/0, "
            "or unset it for the in-process cache"
        )
    from ghl_real_estate_ai.cache.redis import RedisCache

    return RedisCache(
        redis_url, namespace=namespace, tracer_provider=tracer_provider, trace_commands=trace_commands
    )
