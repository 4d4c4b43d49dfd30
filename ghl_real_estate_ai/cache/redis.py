"""The shared Cache: Redis through ``redis.asyncio``, for several replicas.

Built by :func:`ghl_real_estate_ai.cache.open_cache` when ``REDIS_URL`` is
set; ``await cache.open()`` connects and pings, so an unreachable server stops
start-up with one line naming REDIS_URL. Every key is prefixed with the
namespace. Values are JSON text.

The lock is the single-instance Redis pattern: ``SET key token NX PX lease``
to take it, a Lua compare-and-delete to release only our own token, polling
with a growing delay until ``wait`` runs out (then LockTimeoutError).

Spans follow the store's rule, one per cache operation: ``get`` and ``set``
emit ``cache.get`` / ``cache.set`` INTERNAL spans (``cache.backend="redis"``
and, on ``get``, ``cache.hit``), as the in-process cache does, and the Redis
auto-instrumentation is kept quiet for this cache's own commands. One span per
Redis command is an opt-in for debugging (``REDIS_TRACE_COMMANDS=true``,
``trace_commands=True``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, TracerProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ghl_real_estate_ai import jsontext
from ghl_real_estate_ai.errors import CacheError, LockTimeoutError
from ghl_real_estate_ai.observability._instrument import unsampled_parent
from ghl_real_estate_ai.observability._suppress import suppressed

__all__ = ["RedisCache"]

TRACER_NAME = "ghl_real_estate_ai.cache"

logger = logging.getLogger(__name__)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# INCRBY, then an expiry only when the counter has none: the ttl counts from
# the counter's creation, not from every increment.
_INCR_STEP = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""
_INCR = _INCR_STEP + "return value\n"
# The same, and the value at KEYS[2] (false, a nil reply, when missing): one round trip.
_INCR_AND_GET = _INCR_STEP + "return {value, redis.call('GET', KEYS[2])}\n"


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.hostname or ""
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url.split("://", 1)[0] + "://..."


def _millis(ttl: float) -> int:
    if ttl <= 0:
        raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")
    return max(1, round(ttl * 1000))


def _decoded(key: str, text: str | bytes | None) -> Any | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CacheError(f"cached {key!r} is not JSON: was it written by another program?") from None


def _cause(exc: BaseException) -> str:
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


class RedisCache:
    """The Cache protocol on Redis (see the module docstring)."""

    backend = "redis"

    def __init__(
        self,
        redis_url: str,
        *,
        namespace: str = "jorge:",
        connect_timeout: float = 2.0,
        command_timeout: float = 5.0,
        tracer_provider: TracerProvider | None = None,
        trace_commands: bool = False,
    ) -> None:
        """Describe the cache; nothing connects until :meth:`open`.

        Args:
            redis_url: the REDIS_URL, e.g. ``redis://host:6379/0``.
            namespace: prefix of every key this cache touches.
            connect_timeout: seconds to wait for a connection.
            command_timeout: seconds to wait for an answer.
            tracer_provider: where the ``cache.get``/``cache.set`` spans go (default: the global provider).
            trace_commands: let the Redis instrumentation add one span per command (debugging).
        """
        self.redis_url = redis_url
        self.safe_url = redact_url(redis_url)
        self.namespace = namespace
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._client: aioredis.Redis | None = None
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self.trace_commands = trace_commands

    def _commands(self, span: Span | None = None) -> AbstractContextManager[object]:
        """The Redis instrumentation speaks for our commands only when command spans are asked for
        (then under ``span``, the operation's span, when there is one)."""
        if not self.trace_commands:
            return suppressed()
        return nullcontext() if span is None else trace.use_span(span, end_on_exit=False)

    def _operation_span(self, name: str) -> Span:
        """The operation's span; none under an unsampled parent unless command spans hang under it."""
        if not self.trace_commands and unsampled_parent():
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, kind=SpanKind.INTERNAL)

    def _error(self, exc: BaseException, what: str) -> CacheError:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
            return CacheError(f"cannot reach Redis at REDIS_URL={self.safe_url!r}: {_cause(exc)}")
        return CacheError(f"Redis {what} failed on REDIS_URL={self.safe_url!r}: {exc}")

    async def open(self) -> None:
        """Connect and ping.

        Raises:
            CacheError: the URL is malformed or the server cannot be reached; the message names REDIS_URL.
        """
        if self._client is not None:
            return
        try:
            client = aioredis.Redis.from_url(
                self.redis_url,
                decode_responses=True,
                socket_connect_timeout=self._connect_timeout,
                socket_timeout=self._command_timeout,
            )
        except ValueError as exc:
            raise CacheError(
                f"REDIS_URL={self.safe_url!r} is not a Redis URL ({exc}): use redis://host:6379/0"
            ) from None
        try:
            with suppressed():  # connecting is housekeeping, never traced
                await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise self._error(exc, "PING") from None
        self._client = client

    async def close(self) -> None:
        """Close the connections; safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _require(self) -> aioredis.Redis:
        if self._client is None:
            raise CacheError(
                f"the Redis cache for REDIS_URL={self.safe_url!r} is not open: "
                "call `await cache.open()` first"
            )
        return self._client

    async def ping(self) -> None:
        """CacheError when Redis does not answer."""
        try:
            with self._commands():
                await self._require().ping()
        except (RedisError, OSError) as exc:
            raise self._error(exc, "PING") from None

    async def get(self, key: str) -> Any | None:
        """The value, or None when missing or expired."""
        client = self._require()
        span = self._operation_span("cache.get")
        try:
            with self._commands(span):
                text = await client.get(self.namespace + key)
            if span.is_recording():
                span.set_attributes({"cache.backend": "redis", "cache.hit": text is not None})
        except (RedisError, OSError) as exc:
            raise self._error(exc, "GET") from None
        finally:
            span.end()
        return _decoded(key, text)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON-serialisable) for ``ttl`` seconds, or until deleted."""
        try:
            text = jsontext.dumps_finite(value)
        except (TypeError, ValueError) as exc:
            raise CacheError(f"cannot cache {key!r}: its value is not JSON-serialisable ({exc})") from None
        px = None if ttl is None else _millis(ttl)
        client = self._require()
        span = self._operation_span("cache.set")
        try:
            if span.is_recording():
                span.set_attribute("cache.backend", "redis")
            with self._commands(span):
                await client.set(self.namespace + key, text, px=px)
        except (RedisError, OSError) as exc:
            raise self._error(exc, "SET") from None
        finally:
            span.end()

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when missing)."""
        try:
            with self._commands():
                await self._require().delete(self.namespace + key)
        except (RedisError, OSError) as exc:
            raise self._error(exc, "DEL") from None

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to an integer counter; ``ttl`` applies when the counter has no expiry yet."""
        px = "" if ttl is None else str(_millis(ttl))
        client = self._require()
        try:
            with self._commands():
                value = await client.eval(_INCR, 1, self.namespace + key, amount, px)
        except (RedisError, OSError) as exc:
            raise self._incr_error(exc, key) from None
        return int(value)

    async def incr_and_get(
        self, key: str, other: str, amount: int = 1, ttl: float | None = None
    ) -> tuple[int, Any | None]:
        """``incr(key, amount, ttl)`` and ``get(other)`` in one round trip (one Lua script).

        Traced as the ``cache.get`` of ``other``.
        """
        px = "" if ttl is None else str(_millis(ttl))
        client = self._require()
        span = self._operation_span("cache.get")
        try:
            with self._commands(span):
                value, text = await client.eval(
                    _INCR_AND_GET, 2, self.namespace + key, self.namespace + other, amount, px
                )
            if span.is_recording():
                span.set_attributes({"cache.backend": "redis", "cache.hit": text is not None})
        except (RedisError, OSError) as exc:
            raise self._incr_error(exc, key) from None
        finally:
            span.end()
        return int(value), _decoded(other, text)

    def _incr_error(self, exc: BaseException, key: str) -> CacheError:
        if isinstance(exc, RedisError) and "not an integer" in str(exc):
            return CacheError(f"cannot increment {key!r}: it does not hold an integer")
        return self._error(exc, "INCRBY")

    def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion for ``name`` across every client of this Redis and namespace.

        Args:
            name: what is locked.
            timeout: lease seconds; a holder that keeps it longer loses it.
            wait: seconds to wait for it.

        Raises:
            LockTimeoutError: still taken after ``wait`` seconds.
            CacheError: Redis failed.
        """
        return self._hold(name, timeout, wait)

    @asynccontextmanager
    async def _hold(self, name: str, lease: float, wait: float) -> AsyncIterator[None]:
        client = self._require()
        key = f"{self.namespace}lock:{name}"
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay = 0.002
        while True:
            try:
                with self._commands():
                    taken = await client.set(key, token, nx=True, px=_millis(lease))
            except (RedisError, OSError) as exc:
                raise self._error(exc, "SET NX") from None
            if taken:
                break
            now = loop.time()
            if now >= deadline:
                raise LockTimeoutError(
                    f"lock {name!r} is still held after waiting {wait}s: retry later or raise `wait`"
                )
            await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), deadline - now))
            delay = min(delay * 1.6, 0.1)
        try:
            yield
        finally:
            try:
                with self._commands():
                    await client.eval(_RELEASE, 1, key, token)
            except (RedisError, OSError) as exc:
                # Raising here would hide the block's own outcome; the lease runs out by itself.
                logger.warning("could not release lock %r: %s", name, self._error(exc, "lock release"))
