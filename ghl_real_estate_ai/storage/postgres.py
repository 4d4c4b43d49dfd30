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

Spans: one per store operation (see :mod:`._spans`). The asyncpg
auto-instrumentation stays installed for other code, but it is silenced for
this store's own queries unless ``trace_statements`` asks for one span per
statement; the pool's housekeeping (connection set-up, release) is never traced.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from ghl_real_estate_ai import jsontext
from ghl_real_estate_ai.errors import StorageError, StorageUnavailableError
from ghl_real_estate_ai.observability._suppress import suppressed
from ghl_real_estate_ai.storage._sql import (
    CLAIM_ALONE,
    Backoff,
    SQLStore,
    Step,
    TxState,
    Unit,
    describe_statement,
    plan_statements,
    prefetch_sql,
)
from ghl_real_estate_ai.storage.schema import MIGRATIONS, SCHEMA_LOCK_KEY, Migration, bootstrap_sql

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection left mid-operation when its server session was killed ("cannot switch to
    # state ..; another operation is in progress"): unusable, so replaced like a dead one.
    asyncpg.exceptions.InternalClientError,
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


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release hook: nothing to reset.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` at every release, a round trip per checkout (issue 14). Our pooled
    connections never change session state: no SET, LISTEN, cursors or session
    advisory locks (contact locks live on their own connection). asyncpg still
    rolls back a transaction left open before this hook runs.
    """


async def _init_connection(conn: asyncpg.Connection) -> None:
    # Plumbing of a new pooled connection (type introspection), never worth a span.
    with suppressed():
        for name in ("json", "jsonb"):
            await conn.set_type_codec(name, encoder=jsontext.dumps, decoder=json.loads, schema="pg_catalog")


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
        tracer_provider: TracerProvider | None = None,
        trace_statements: bool = False,
    ) -> None:
        """Describe the store; nothing connects until :meth:`open`.

        Args:
            database_url: the DATABASE_URL (``postgresql://user:pass@host:5432/db``).
            pool_size: maximum pooled connections.
            migrations: the schema steps (tests pass a prefix to simulate an old database).
            connect_timeout: seconds to wait for a new connection.
            tracer_provider: where the store's spans go; the global provider when None.
            trace_statements: let the asyncpg instrumentation add one span per statement.
        """
        super().__init__(
            database_url,
            migrations=migrations,
            tracer_provider=tracer_provider,
            trace_statements=trace_statements,
        )
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
                reset=_keep_session,
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
        self.stats.round_trips += 1
        self.stats.statements += 1
        self.stats.executions += 1
        with self._driver_spans():
            records = await conn.fetch(_numbered(sql), *args)
        return [dict(r) for r in records]

    def _driver_spans(self) -> AbstractContextManager[None]:
        """The asyncpg instrumentation speaks for our statements only when statement spans are asked for."""
        if self._spans.statements:
            return _untraced_outside_a_trace()
        return suppressed()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection; checking it out and back in is never traced (pool housekeeping)."""
        pool = self._require_pool()
        with suppressed():
            conn = await pool.acquire()
        try:
            yield conn
        finally:
            with suppressed():
                await pool.release(conn)

    def _in_transaction(self) -> bool:
        tx = self._tx.get()
        return tx is not None and tx.active

    async def _steps_on(self, conn: Any, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
        results: list[list[dict[str, Any]]] = []
        for step in steps:
            if step.many:
                self.stats.round_trips += 1
                self.stats.statements += 1
                self.stats.executions += len(step.rows)
                with self._driver_spans():
                    await conn.executemany(_numbered(step.sql), step.rows)
                results.append([])
            else:
                results.append(await self._fetch(conn, step.sql, step.rows[0]))
        return results

    async def _run_plan(self, conn: Any, plan: list[list[Unit]], final: int) -> list[dict[str, Any]]:
        """Run each group of ``plan`` as ONE statement (data-modifying CTEs); the rows of step ``final``."""
        rows: list[dict[str, Any]] = []
        for group in plan:
            *members, main = group
            sql = main.sql
            if members:
                sql = "WITH " + ", ".join(f"w{i} AS ({u.sql})" for i, u in enumerate(members)) + " " + sql
            self.stats.round_trips += 1
            self.stats.statements += 1
            self.stats.executions += len(group)
            with self._driver_spans():
                records = await conn.fetch(_numbered(sql), *(a for u in group for a in u.args))
            if main.step == final:
                rows = [dict(r) for r in records]
        return rows

    async def _run_steps(self, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
        # A batch of writes of several tables goes as one statement where it keeps its meaning.
        plan = plan_statements(steps)
        if plan is not None and len(plan) >= len(steps):
            plan = None
        try:
            tx = self._tx.get()
            if tx is not None and tx.active:
                async with tx.lock:
                    if plan is not None:
                        return self._plan_results(steps, await self._run_plan(tx.conn, plan, len(steps) - 1))
                    return await self._steps_on(tx.conn, steps)
            async with self._connection() as conn:
                if plan is not None and len(plan) == 1:  # one statement: atomic on its own
                    return self._plan_results(steps, await self._run_plan(conn, plan, len(steps) - 1))
                if len(steps) == 1 or all(describe_statement(step.sql)[0] == "SELECT" for step in steps):
                    return await self._steps_on(conn, steps)
                self.stats.round_trips += 2  # BEGIN and COMMIT
                # Transaction control is never a span, not even a statement span.
                tr = conn.transaction()
                with suppressed():
                    await tr.start()
                try:
                    if plan is not None:
                        results = self._plan_results(steps, await self._run_plan(conn, plan, len(steps) - 1))
                    else:
                        results = await self._steps_on(conn, steps)
                except BaseException:
                    with suppressed(), suppress(Exception):
                        await tr.rollback()
                    raise
                with suppressed():
                    await tr.commit()
                return results
        except StorageError:
            raise
        except Exception as exc:
            verb, table = describe_statement(steps[0].sql)
            error = self._translate(exc, f"{verb} {table or ''}".strip())
            if isinstance(error, StorageUnavailableError):
                await self._forget_connections()
            raise error from None

    @staticmethod
    def _plan_results(steps: Sequence[Step], last: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Every step's rows: only the last one can return any (see ``plan_statements``)."""
        return [[] for _ in steps[:-1]] + [last]

    async def _query(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        try:
            tx = self._tx.get()
            if tx is not None and tx.active:
                async with tx.lock:
                    return await self._fetch(tx.conn, sql, args)
            async with self._connection() as conn:
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

        A nested block joins the outer one. Deferred writes of a unit of work are written first.
        """
        outer = self._tx.get()
        if outer is not None and outer.active:
            yield
            return
        await self.flush()
        pool = self._require_pool()
        try:
            with suppressed():
                conn = await pool.acquire()
        except Exception as exc:
            await self._forget_connections()
            raise self._translate(exc, "BEGIN") from None
        try:
            tr = conn.transaction()
            try:
                with suppressed():
                    await tr.start()
            except Exception as exc:
                raise self._translate(exc, "BEGIN") from None
            self.stats.round_trips += 1  # BEGIN
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
                            with suppressed():
                                await tr.rollback()
                raise
            else:
                state.active = False
                async with state.lock:
                    try:
                        self.stats.round_trips += 1
                        with suppressed():
                            await tr.commit()
                    except Exception as exc:
                        error = self._translate(exc, "COMMIT")
                        if isinstance(error, StorageUnavailableError):
                            await self._forget_connections()
                        raise error from None
            finally:
                self._tx.reset(token)
        finally:
            with suppressed():
                await pool.release(conn)

    # --- contact lock -------------------------------------------------------------
    async def _lock_call(self, sql: str, key: str) -> bool:
        async with self._lock_mutex:
            try:
                if self._lock_conn is None or self._lock_conn.is_closed():
                    self._lock_conn = await asyncpg.connect(self.database_url, timeout=self._connect_timeout)
                self.stats.round_trips += 1
                self.stats.statements += 1
                self.stats.executions += 1
                with self._driver_spans():
                    return bool(await self._lock_conn.fetchval(sql, key))
            except Exception as exc:
                if self._lock_conn is not None and self._lock_conn.is_closed():
                    self._lock_conn = None
                raise self._translate(exc, "advisory lock") from None

    @asynccontextmanager
    async def _hold_across_processes(
        self, contact_id: str, key: str, deadline: float, error: Exception
    ) -> AsyncIterator[asyncio.Event]:
        """A session advisory lock on ``key``; the block's deferred writes are written before it is freed.

        The lock and the reads of the contact's rows are one store operation (one
        span); writing the deferred writes and freeing the lock another. While
        held, the lock's connection is watched: the lock dies with it, and the
        yielded event is then set.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        claim = self._lock_claim(contact_id)
        prefetch = self._prefetch_step(contact_id, claim)
        # The span names what is done (the claim and the reads), not the one statement they ride in.
        done = [_TRY_LOCK, *([CLAIM_ALONE] if claim else []), prefetch_sql(self.dialect)]
        with self._spans.operation(done):
            # Polling pg_try_advisory_lock keeps the one lock connection free for
            # other contacts and honours the timeout exactly.
            while not await self._lock_call(_TRY_LOCK, key):
                if loop.time() >= deadline:
                    raise error
                await backoff.sleep(deadline)
            try:
                [rows] = await self._run_steps([prefetch])
            except BaseException:
                await self._unlock(contact_id, key)
                raise
        self._enter_contact(contact_id, (prefetch, rows))
        held_on = self._lock_conn
        lost = asyncio.Event()
        watcher = asyncio.create_task(self._watch_lock(held_on, lost), name=f"lock watch {key}")

        async def unlock() -> None:
            watcher.cancel()
            await asyncio.wait({watcher})
            # When lost, the session that held it is gone, and the lock with it.
            if not lost.is_set():
                await self._unlock(contact_id, key)

        try:
            yield lost
        except BaseException:
            await self._flush_and_release(contact_id, True, after=unlock, after_sql=_UNLOCK)
            raise
        await self._flush_and_release(contact_id, False, after=unlock, after_sql=_UNLOCK)

    async def _unlock(self, contact_id: str, key: str) -> None:
        try:
            await self._lock_call(_UNLOCK, key)
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
            with suppressed():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self.lock_check_seconds * 2)
        except Exception:
            conn.terminate()
            self._lock_conn = None
            return False
        return True


_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


@contextmanager
def _statements_traced(wanted: bool) -> Iterator[None]:
    """Transaction control is a statement span only when statement spans are wanted."""
    if wanted:
        yield
        return
    with suppressed():
        yield


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
    with suppressed():
        yield
