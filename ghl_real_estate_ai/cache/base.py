"""The Cache protocol: a TTL key-value cache, a counter and a lock.

Two implementations: :mod:`.memory` (in-process, embedded) and :mod:`.redis`
(``redis.asyncio``, shared across replicas). :func:`ghl_real_estate_ai.cache.open_cache`
picks one from ``REDIS_URL``. Values are JSON-serialisable.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

__all__ = ["Cache"]


class Cache(Protocol):
    """A TTL cache with counters and locks."""

    backend: str
    """``"memory"`` or ``"redis"``."""

    async def open(self) -> None:
        """Connect; raise CacheError naming the cause when the server is unreachable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise CacheError when the backend is down."""

    async def get(self, key: str) -> Any | None:
        """The value, or None when missing or expired."""

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter; ``ttl`` is set when the counter is created."""

    async def incr_and_get(
        self, key: str, other: str, amount: int = 1, ttl: float | None = None
    ) -> tuple[int, Any | None]:
        """``incr(key, amount, ttl)`` and ``get(other)`` together: one round trip on Redis.

        Traced as the ``cache.get`` of ``other``.
        """

    def lock(self, name: str, timeout: float = 30.0, wait: float = 10.0) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion across tasks (and replicas on Redis).

        ``timeout`` bounds how long a holder keeps it (lease); ``wait`` how long to
        wait for it (LockTimeoutError after).
        """
