"""The in-process Cache: TTL entries, counters and leased locks in one process's memory.

Built by :func:`ghl_real_estate_ai.cache.open_cache` when ``REDIS_URL`` is
unset. Instances with the same ``namespace`` in one process share their
entries, counters and locks (as Redis clients of one server do); that shared
state lives while one of them is open. Values are stored as JSON text, so a
caller gets a fresh copy and the same types back as from Redis (tuples come
back as lists) and a value Redis could not hold is refused here too.

``get`` and ``set`` emit ``cache.get`` / ``cache.set`` INTERNAL spans with
``cache.backend="memory"`` and, on ``get``, ``cache.hit``.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, TracerProvider

from ghl_real_estate_ai import jsontext
from ghl_real_estate_ai.errors import CacheError, LockTimeoutError
from ghl_real_estate_ai.observability._instrument import unsampled_parent

__all__ = ["MemoryCache"]

TRACER_NAME = "ghl_real_estate_ai.cache"
_SWEEP_EVERY = 1024
"""Writes between two sweeps of expired entries, so unread keys cannot pile up."""


class _Shared:
    """The state every open instance of one namespace sees."""

    __slots__ = ("__weakref__", "entries", "locks", "writes")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, float | None]] = {}
        self.locks: dict[str, tuple[str, float]] = {}
        self.writes = 0


_namespaces: weakref.WeakValueDictionary[str, _Shared] = weakref.WeakValueDictionary()


def _dumps(key: str, value: Any) -> str:
    try:
        return jsontext.dumps_finite(value)
    except (TypeError, ValueError) as exc:
        raise CacheError(f"cannot cache {key!r}: its value is not JSON-serialisable ({exc})") from None


def _expiry(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")
    return time.monotonic() + ttl


class MemoryCache:
    """The Cache protocol in process memory (see the module docstring)."""

    backend = "memory"

    def __init__(self, *, namespace: str = "jorge:", tracer_provider: TracerProvider | None = None) -> None:
        """Describe the cache; :meth:`open` attaches it to its namespace's state.

        Args:
            namespace: instances with the same namespace share state.
            tracer_provider: where spans go (default: the global provider).
        """
        self.namespace = namespace
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._shared: _Shared | None = None

    async def open(self) -> None:
        """Attach to the namespace's shared state (created when none is open)."""
        if self._shared is None:
            shared = _namespaces.get(self.namespace)
            if shared is None:
                shared = _Shared()
                _namespaces[self.namespace] = shared
            self._shared = shared

    async def close(self) -> None:
        """Detach; the shared state goes away with the last open instance."""
        self._shared = None

    async def ping(self) -> None:
        """CacheError when the cache is not open."""
        self._state()

    def _state(self) -> _Shared:
        if self._shared is None:
            raise CacheError(
                f"the memory cache {self.namespace!r} is not open: call `await cache.open()` first"
            )
        return self._shared

    def _live(self, state: _Shared, key: str) -> str | None:
        entry = state.entries.get(key)
        if entry is None:
            return None
        text, expires = entry
        if expires is not None and expires <= time.monotonic():
            del state.entries[key]
            return None
        return text

    def _wrote(self, state: _Shared) -> None:
        state.writes += 1
        if state.writes % _SWEEP_EVERY == 0:
            now = time.monotonic()
            stale = [k for k, (_, exp) in state.entries.items() if exp is not None and exp <= now]
            for k in stale:
                del state.entries[k]

    def _operation_span(self, name: str) -> Span:
        """The operation's span; none under an unsampled parent (it would record nothing, never current)."""
        if unsampled_parent():
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, kind=SpanKind.INTERNAL)

    async def get(self, key: str) -> Any | None:
        """The value, or None when missing or expired."""
        state = self._state()
        span = self._operation_span("cache.get")
        try:
            text = self._live(state, key)
            if span.is_recording():
                span.set_attributes({"cache.backend": "memory", "cache.hit": text is not None})
            return None if text is None else json.loads(text)
        finally:
            span.end()

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON-serialisable) for ``ttl`` seconds, or until deleted."""
        state = self._state()
        span = self._operation_span("cache.set")
        try:
            if span.is_recording():
                span.set_attribute("cache.backend", "memory")
            state.entries[key] = (_dumps(key, value), _expiry(ttl))
            self._wrote(state)
        finally:
            span.end()

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when missing)."""
        self._state().entries.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` to an integer counter; ``ttl`` applies when the counter has no expiry yet."""
        state = self._state()
        text = self._live(state, key)
        expires = state.entries[key][1] if text is not None else None
        current = 0
        if text is not None:
            current = json.loads(text)
            if not isinstance(current, int) or isinstance(current, bool):
                raise CacheError(f"cannot increment {key!r}: it holds {current!r}, not an integer")
        value = current + amount
        if expires is None:
            expires = _expiry(ttl)
        state.entries[key] = (str(value), expires)
        self._wrote(state)
        return value

    async def incr_and_get(
        self, key: str, other: str, amount: int = 1, ttl: float | None = None
    ) -> tuple[int, Any | None]:
        """``incr(key, amount, ttl)`` and ``get(other)``; traced as the ``cache.get`` of ``other``."""
        value = await self.incr(key, amount, ttl)
        return value, await self.get(other)

    def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion for ``name`` among the namespace's instances.

        Args:
            name: what is locked.
            timeout: lease seconds; a holder that keeps it longer loses it.
            wait: seconds to wait for it.

        Raises:
            LockTimeoutError: still taken after ``wait`` seconds.
        """
        return self._hold(name, timeout, wait)

    @asynccontextmanager
    async def _hold(self, name: str, lease: float, wait: float) -> AsyncIterator[None]:
        state = self._state()
        token = secrets.token_hex(8)
        deadline = time.monotonic() + wait
        delay = 0.001
        while True:
            now = time.monotonic()
            holder = state.locks.get(name)
            if holder is None or holder[1] <= now:
                state.locks[name] = (token, now + lease)
                break
            if now >= deadline:
                raise LockTimeoutError(
                    f"lock {name!r} is still held after waiting {wait}s: retry later or raise `wait`"
                )
            await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), deadline - now))
            delay = min(delay * 1.6, 0.05)
        try:
            yield
        finally:
            # Only our own lease: after it expired someone else may hold the lock.
            if state.locks.get(name, ("", 0.0))[0] == token:
                del state.locks[name]
