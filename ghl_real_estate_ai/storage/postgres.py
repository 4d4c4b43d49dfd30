"""The production Store: PostgreSQL through an asyncpg connection pool.

Built by :func:`ghl_real_estate_ai.storage.open_store` for ``postgresql://``
and ``postgres://`` URLs; call ``await store.open()`` before use and
``await store.close()`` after. Uses ``DATABASE_POOL_SIZE`` pooled connections
plus one for contact locks.

- JSONB columns are read and written as Python values (a codec is set on
  every pooled connection); TIMESTAMPTZ columns as aware UTC datetimes.
- Migrations run under a transaction-scoped advisory lock, so replicas
  starting together migrate once.
- Claims use ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``:
  concurrent claimers split the due rows and never share one.
- :meth:`PostgresStore.contact_lock` holds a session advisory lock keyed by
  ``hashtextextended('contact:' || id, 0)``: other processes wait on it, and
  tasks of this process queue in memory first (a session's advisory locks are
  re-entrant, so they would not exclude each other).
- A lost connection becomes :class:`StorageUnavailableError` naming
  DATABASE_URL, and every pooled connection is then replaced, so the first
  call after the server comes back works.

Query spans come from the asyncpg auto-instrumentation, not from here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation

from ghl_real_estate_ai.errors import StorageError, StorageUnavailableError
from ghl_real_estate_ai.storage._sql import (
    Backoff,
    SQLStore,
    TxState,
    describe_statement,
)
from ghl_real_estate_ai.storage.schema import MIGRATIONS, SCHEMA_LOCK_KEY, Migration, bootstrap_sql

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # server shutting down, not accepting yet
    asyncpg.InvalidCatalogNameError,  # the database does not exist
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong user or password
    asyncpg.TooManyConnectionsError,
)


@lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """Turn the shared SQL's ``?`` placeholders into asyncpg's ``$1, $2, ...``."""
    parts = sql.split("?")
    out = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        out.append(f"${index}{part}")
    return "".join(out)


def _cause(exc: BaseException) -> str:
    """A short, readable reason for a connection failure."""
    text = str(exc)
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in text:
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return text or type(exc).__name__


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Plumbing of a new pooled connection (type introspection), never worth a span.
    with suppress_instrumentation():
        for name in ("json", "jsonb"):
            await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PostgresStore(SQLStore):
    """The Store protocol on PostgreSQL (see the module docstring)."""

    backend = "postgresql"
    dialect = "postgresql"
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 10,
        migrations: Sequence[Migration] = MIGRATIONS,
        connect_timeout: float = 5.0,
    ) -> None:
        """Describe the store; nothing connects until :meth:`open`.

        Args:
            database_url: the DATABASE_URL (``postgresql://user:pass@host:5432/db``).
            pool_size: maximum pooled connections.
            migrations: the schema steps (tests pass a prefix to simulate an old database).
            connect_timeout: seconds to wait for a new connection.
        """
        super().__init__(database_url, migrations=migrations)
        self.pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._tx: ContextVar[TxState | None] = ContextVar(f"postgres_tx_{id(self)}", default=None)
        self._lock_conn: asyncpg.Connection | None = None
        self._lock_mutex = asyncio.Lock()
        self.lock_check_seconds = 1.0
        """How often a held contact lock checks that its connection is alive."""

    # --- life cycle -----------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and migrate the schema.

        Raises:
            StorageUnavailableError: the server cannot be reached or refuses us.
        """
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.database_url,
                min_size=1,
                max_size=self.pool_size,
                init=_init_connection,
                timeout=self._connect_timeout,
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def _migrate(self) -> None:
        pool = self._require_pool()
        try:
            with _untraced_outside_a_trace():
                await self._apply_migrations(pool)
        except StorageError:
            raise
        except Exception as exc:
            raise self._translate(exc, "migrating the schema") from None

    async def _apply_migrations(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # Taken before even the version table is created: concurrent
            # CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", SCHEMA_LOCK_KEY)
            await conn.execute(bootstrap_sql("postgresql"))
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for migration in self._migrations:
                if migration.version <= current:
                    continue
                for statement in migration.statements("postgresql"):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    datetime.now(UTC),
                )

    async def close(self) -> None:
        """Close the pool and the lock connection; safe to call twice."""
        pool, self._pool = self._pool, None
        async with self._lock_mutex:
            lock_conn, self._lock_conn = self._lock_conn, None
        if lock_conn is not None and not lock_conn.is_closed():
            await lock_conn.close()
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        """Run ``SELECT 1``; StorageUnavailableError when the server is down.

        A connection that died while the server was away is replaced and the
        ping retried once, so a ping right after the server returns succeeds.
        """
        try:
            await self._query("SELECT 1")
        except StorageUnavailableError:
            if self._pool is None:
                raise
            await self._query("SELECT 1")

    # --- statements -------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"cannot reach the database at DATABASE_URL={self.safe_url!r}: {_cause(exc)}"
        )

    def _translate(self, exc: Exception, what: str) -> StorageError:
        if isinstance(exc, _CONNECTION_ERRORS):
            return self._unavailable(exc)
        return StorageError(f"{what} failed on DATABASE_URL={self.safe_url!r}: {exc}")

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailableError(
                f"the store for DATABASE_URL={self.safe_url!r} is not open: call `await store.open()` first"
            )
        return self._pool

    async def _forget_connections(self) -> None:
        # After one connection died, the others idle in the pool most likely did
        # too; expiring them makes the next acquire open fresh ones.
        if self._pool is not None:
            await self._pool.expire_connections()

    async def _fetch(self, conn: Any, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        records = await conn.fetch(_numbered(sql), *args)
        return [dict(r) for r in records]

    async def _query(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        try:
            tx = self._tx.get()
            if tx is not None and tx.active:
                async with tx.lock:
                    with _untraced_outside_a_trace():
                        return await self._fetch(tx.conn, sql, args)
            # The release runs asyncpg's reset query: it belongs inside the same rule.
            with _untraced_outside_a_trace():
                async with self._require_pool().acquire() as conn:
                    return await self._fetch(conn, sql, args)
        except StorageError:
            raise
        except Exception as exc:
            verb, table = describe_statement(sql)
            error = self._translate(exc, f"{verb} {table or ''}".strip())
            if isinstance(error, StorageUnavailableError):
                await self._forget_connections()
            raise error from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the calls of the block (and of tasks it starts) on one connection, in one transaction.

        A nested block joins the outer one.
        """
        outer = self._tx.get()
        if outer is not None and outer.active:
            yield
            return
        pool = self._require_pool()
        try:
            conn = await pool.acquire()
        except Exception as exc:
            await self._forget_connections()
            raise self._translate(exc, "BEGIN") from None
        try:
            tr = conn.transaction()
            try:
                with _untraced_outside_a_trace():
                    await tr.start()
            except Exception as exc:
                raise self._translate(exc, "BEGIN") from None
            state = TxState(conn)
            token = self._tx.set(state)
            try:
                yield
            except BaseException:
                state.active = False
                async with state.lock:
                    # A failed rollback (dead connection) must not hide the error of the block.
                    with suppress(Exception):
                        if not conn.is_closed():
                            with _untraced_outside_a_trace():
                                await tr.rollback()
                raise
            else:
                state.active = False
                async with state.lock:
                    try:
                        with _untraced_outside_a_trace():
                            await tr.commit()
                    except Exception as exc:
                        error = self._translate(exc, "COMMIT")
                        if isinstance(error, StorageUnavailableError):
                            await self._forget_connections()
                        raise error from None
            finally:
                self._tx.reset(token)
        finally:
            with _untraced_outside_a_trace():
                await pool.release(conn)

    # --- contact lock -------------------------------------------------------------
    async def _lock_call(self, sql: str, key: str) -> bool:
        async with self._lock_mutex:
            try:
                if self._lock_conn is None or self._lock_conn.is_closed():
                    self._lock_conn = await asyncpg.connect(self.database_url, timeout=self._connect_timeout)
                return bool(await self._lock_conn.fetchval(sql, key))
            except Exception as exc:
                if self._lock_conn is not None and self._lock_conn.is_closed():
                    self._lock_conn = None
                raise self._translate(exc, "advisory lock") from None

    @asynccontextmanager
    async def _hold_across_processes(
        self, contact_id: str, key: str, deadline: float, error: Exception
    ) -> AsyncIterator[asyncio.Event]:
        """A session advisory lock on ``key``, watched while held: it dies with its connection."""
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        # Polling pg_try_advisory_lock keeps the one lock connection free for
        # other contacts and honours the timeout exactly.
        while not await self._lock_call("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
            if loop.time() >= deadline:
                raise error
            await backoff.sleep(deadline)
        held_on = self._lock_conn
        lost = asyncio.Event()
        watcher = asyncio.create_task(self._watch_lock(held_on, lost), name=f"lock watch {key}")
        try:
            yield lost
        finally:
            watcher.cancel()
            await asyncio.wait({watcher})
            # When lost, the session that held it is gone, and the lock with it.
            if not lost.is_set():
                try:
                    await self._lock_call("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
                except StorageError as exc:
                    # The server frees a dead session's locks; nothing more to do.
                    logger.warning("could not release the advisory lock of contact %r: %s", contact_id, exc)

    async def _watch_lock(self, held_on: asyncpg.Connection | None, lost: asyncio.Event) -> None:
        """Set ``lost`` once the connection holding the advisory lock is closed or replaced."""
        while True:
            await asyncio.sleep(self.lock_check_seconds)
            async with self._lock_mutex:
                alive = await self._lock_connection_alive(held_on)
            if not alive:
                logger.error("the advisory lock connection was lost: the locks it held are gone")
                lost.set()
                return

    async def _lock_connection_alive(self, conn: asyncpg.Connection | None) -> bool:
        if conn is None or conn is not self._lock_conn or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), self.lock_check_seconds * 2)
        except Exception:
            conn.terminate()
            self._lock_conn = None
            return False
        return True


@contextmanager
def _untraced_outside_a_trace() -> Iterator[None]:
    """Silence the asyncpg instrumentation for queries run outside any trace.

    The worker asks every few seconds whether anything is due; as root spans those
    polls would flood the trace backend with one-span traces. Inside a trace every
    query is still a span under its caller (the same rule as the SQLite store).
    """
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with suppress_instrumentation():
        yield
