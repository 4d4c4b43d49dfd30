"""The embedded Store: one SQLite file through aiosqlite.

Built by :func:`ghl_real_estate_ai.storage.open_store` for ``sqlite:///path``
URLs; call ``await store.open()`` before use and ``await store.close()`` after.

How it stays correct with several processes on one file:

- WAL journal (readers never block the writer), ``foreign_keys=ON`` and a busy
  timeout, so a writer waits for another process's write instead of failing.
- Claims run as ``BEGIN IMMEDIATE`` + ``UPDATE ... RETURNING``: the write lock
  is taken before the due rows are read, so two claimers never get one row.
- :meth:`SQLiteStore.contact_lock` is a lease row in the ``locks`` table (owner
  token + expiry, renewed while held, stolen once expired after a crash).

A statement runs on the event loop's thread when the file is free, else in
aiosqlite's worker thread (see ``_call``); a batch of statements (a unit of
work's writes, a lock with its reads) runs in ONE call. The webhook intake,
synced to disk before its 2xx, is group-committed (see ``_durable_one``). Spans:
one per store operation (see :mod:`._spans`), opened in the calling coroutine
so it nests under the caller's span; with ``trace_statements`` also one per
statement (``db.statement`` with placeholders only, never the values, which
can hold personal data). Transaction control and pragmas are never traced.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
from opentelemetry.trace import TracerProvider

from ghl_real_estate_ai import jsontext
from ghl_real_estate_ai.errors import StorageError, StorageUnavailableError
from ghl_real_estate_ai.storage._spans import Timed, now_ns
from ghl_real_estate_ai.storage._sql import (
    CLAIM_ALONE,
    Backoff,
    SQLStore,
    Step,
    TxState,
    describe_statement,
    returns_rows,
)
from ghl_real_estate_ai.storage.schema import MIGRATIONS, Migration, bootstrap_sql

__all__ = ["SQLiteStore"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_JSON_COLUMNS = frozenset({"tags", "state", "payload", "response", "trace_context", "value"})
_TRACED_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE"})
_WRITES_INSERT = "INSERT INTO jorge_writes (kind, args) VALUES "
_CLAIM_WITH_LEASE = (
    f"{CLAIM_ALONE} AND EXISTS (SELECT 1 FROM locks WHERE name = ? AND owner = ?) RETURNING id"
)
"""The claim that rides with the lease (see ``UnitOfWork.claim``): made only by the lease's owner."""
_ARG = re.compile(r"\?")
_QUOTED = re.compile(r"'(?:[^']|'')*'")


_CHECKPOINT_EVERY = 128
"""Calls on the connection between two checkpoints of its write-ahead log. A webhook makes
about 10 of them and writes about 40 pages: about every 500 pages, where SQLite's own
checkpoint (turned off, see ``_checkpoint``) comes every 1,000."""

_WAL_RESTART_FRAMES = 65_536
"""Pages in the write-ahead log (256 MiB of 4 KiB pages) past which a checkpoint is made with the
connection held, so that it copies every page and the next write starts the log over (see
``_checkpoint_round``). Every start-over has a cost: at 16,384 pages the throughput bench lost
3-6 % (``bench/compare_revisions.py``), at 65,536 about 2 %, within its noise."""

_WAL_SIZE_LIMIT = 320 * 1024 * 1024
"""Bytes the write-ahead log file is cut back to when the log starts over (``journal_size_limit``):
above what it reaches between two start-overs, so that it is not cut and grown again each
time, but a log that grew further while another process kept it from starting over shrinks."""


def _sync_file(path: str) -> None:
    """``fsync`` the file at ``path``: what was written to it is on disk when this returns.

    Opened for writing though nothing is written: Windows' ``fsync`` refuses a read-only descriptor.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_arg() -> Callable[[re.Match[str]], str]:
    """Replace the n-th ``?`` of a statement by the n-th element of the view row's ``args``."""
    counter = itertools.count()
    return lambda _: f"json_extract(NEW.args, '$[{next(counter)}]')"


def _flat(rows: Sequence[tuple[int, list[Any]]]) -> list[Any]:
    out: list[Any] = []
    for kind, args in rows:
        out.extend((kind, jsontext.dumps_finite(args)))
    return out


def _plan(
    encoded: Sequence[tuple[str, list[list[Any]], bool]], triggers: dict[str, int]
) -> list[tuple[Any, ...]]:
    """``("writes", i, j, ...)`` for each run of two or more steps that return nothing, have a
    trigger and plain JSON values as arguments; ``("each", i)`` for every other step."""
    plan: list[tuple[Any, ...]] = []
    run: list[int] = []

    def close() -> None:
        if sum(len(encoded[i][1]) for i in run) >= 2:
            plan.append(("writes", *run))
        else:
            plan.extend(("each", i) for i in run)
        run.clear()

    for index, (sql, rows, _) in enumerate(encoded):
        if triggers.get(sql) and all(_jsonable(row) for row in rows):
            run.append(index)
            continue
        close()
        plan.append(("each", index))
    close()
    return plan


# Exact through JSON: text, integers, NULL (and booleans, stored as 0/1 either way); floats if finite.
_JSON_EXACT = frozenset((str, int, bool, type(None)))


def _jsonable(row: Sequence[Any]) -> bool:
    if _JSON_EXACT.issuperset(map(type, row)):  # the common row, checked in C
        return True
    return all(
        value is None or isinstance(value, str | int) or (isinstance(value, float) and math.isfinite(value))
        for value in row
    )


@lru_cache(maxsize=512)
def _describe(sql: str) -> str | None:
    """``{verb} {table}`` of a statement; None for transaction control and pragmas."""
    verb, table = describe_statement(sql)
    if verb not in _TRACED_VERBS:
        return None
    return f"{verb} {table}" if table else verb


# Values SQLite takes as they are: most parameters, passed without a call to _encode.
_AS_IS = frozenset((str, int, float, bool, bytes, type(None)))


def _encoded(values: Sequence[Any]) -> list[Any]:
    return [value if type(value) in _AS_IS else _encode(value) for value in values]


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        # Fixed-width ISO text in UTC sorts and compares like the instant it names.
        return jsontext.iso_utc(value)
    if isinstance(value, dict | list):
        return jsontext.dumps(value)
    return value


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.keys():  # noqa: SIM118 - sqlite3.Row is not iterable by key
        value = row[key]
        if value is not None:
            if key in _JSON_COLUMNS:
                value = json.loads(value)
            elif key.endswith("_at"):
                value = datetime.fromisoformat(value)
        out[key] = value
    return out


class SQLiteStore(SQLStore):
    """The Store protocol on one SQLite file (see the module docstring)."""

    backend = "sqlite"
    dialect = "sqlite"

    def __init__(
        self,
        database_url: str,
        path: Path | str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        tracer_provider: TracerProvider | None = None,
        trace_statements: bool = False,
        busy_timeout: float = 10.0,
        lock_lease: float = 30.0,
    ) -> None:
        """Describe the store; nothing is opened until :meth:`open`.

        Args:
            database_url: the DATABASE_URL it came from (named in errors).
            path: the database file, or ``":memory:"``.
            migrations: the schema steps (tests pass a prefix to simulate an old database).
            tracer_provider: where the store's spans go; the global provider when None.
            trace_statements: one span per statement besides the operation spans (debugging).
            busy_timeout: seconds a statement waits for another process's write lock.
            lock_lease: seconds a contact lease lasts without renewal (a crashed
                holder's lease is stolen after this).
        """
        super().__init__(
            database_url,
            migrations=migrations,
            tracer_provider=tracer_provider,
            trace_statements=trace_statements,
        )
        self.path = path
        self._busy_timeout = busy_timeout
        self._lock_lease = lock_lease
        self._conn: aiosqlite.Connection | None = None
        self._conn_lock = asyncio.Lock()
        self._tx: ContextVar[TxState | None] = ContextVar(f"sqlite_tx_{id(self)}", default=None)
        self._triggers: dict[str, int] = {}
        """The writes the connection's ``jorge_writes`` view knows, by statement (see _write_triggers)."""
        self._durable_queue: list[tuple[str, list[Any], asyncio.Future[list[sqlite3.Row]]]] = []
        """Durable writes waiting for the next group commit (see _durable_one)."""
        self._durable_syncer: asyncio.Task[None] | None = None
        self._wal_file: str | None = None
        """The write-ahead log's path when the file is in WAL mode: durable writes sync it (_sync_group)."""
        self.wal_syncs = 0
        """How many times the write-ahead log was synced for durable writes."""
        self.checkpoints = 0
        """How many times the write-ahead log was checkpointed (see _checkpoint)."""
        self.full_checkpoints = 0
        """How many of those copied the whole log, the connection held (see _checkpoint_round)."""
        self._calls_since_checkpoint = 0
        self._closing = False
        self._checkpointer: asyncio.Task[None] | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._disk: ThreadPoolExecutor | None = None
        """Threads of its own for the disk's waits (log syncs, checkpoints): the loop's default
        executor is the app's, and these must never queue behind its work (or it behind them)."""

    # --- life cycle -----------------------------------------------------------
    async def open(self) -> None:
        """Open the file (creating its folder), set the pragmas and migrate the schema."""
        if self._conn is not None:
            return
        self._closing = False  # opened again after close(): checkpoints run again
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._unavailable(exc) from None
        try:
            # Statements run on the event loop's thread when the file is free (see _call),
            # so the connection must accept more than aiosqlite's own thread.
            conn = await aiosqlite.connect(
                str(self.path), timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        conn.row_factory = sqlite3.Row
        self._triggers = {}  # a new connection: its TEMP view and triggers are made again
        try:
            await self._set_pragmas(conn)
        except sqlite3.Error as exc:
            await conn.close()
            raise self._unavailable(exc) from None
        self._conn = conn
        try:
            await self._migrate()
        except BaseException:
            self._conn = None
            await conn.close()
            raise

    async def _set_pragmas(self, conn: aiosqlite.Connection) -> None:
        # Switching a fresh file to WAL needs a moment alone with it, and SQLite does not
        # always wait for that through the busy handler: when several processes open the
        # same new file at once, retry until busy_timeout is spent.
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        while True:
            try:
                [mode] = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        self._wal_file = None
        if str(mode[0]).lower() == "wal":
            [main] = await conn.execute_fetchall("SELECT file FROM pragma_database_list WHERE name = 'main'")
            self._wal_file = f"{main[0]}-wal"  # where SQLite keeps it: next to the file it opened
            # Copying the log into the file (and syncing both) is done by _checkpoint in a
            # thread; SQLite's own would run inside a commit, on the event loop.
            await conn.execute_fetchall("PRAGMA wal_autocheckpoint = 0")
            # When the log starts over (after a checkpoint that copied all of it), a file larger
            # than this is cut back to it instead of keeping the largest size it ever reached.
            await conn.execute_fetchall(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        await conn.execute_fetchall("PRAGMA foreign_keys = ON")
        # WAL with synchronous=NORMAL: every commit survives a crash of the app; only a
        # power loss or OS crash can undo the last ones, and the commit that must survive
        # even that (a webhook's intake, before its 2xx) is synced, in groups (_durable_one).
        await conn.execute_fetchall("PRAGMA synchronous = NORMAL")
        # Statement journals (kept while a statement inside a transaction runs, to undo it
        # alone), sorts and the TEMP view of the unit of work's writes live in memory: in a
        # temporary file each meant opening, writing and unlinking a file under /var/tmp,
        # about one every two webhooks, on the event loop.
        await conn.execute_fetchall("PRAGMA temp_store = MEMORY")
        # Statements try the file at once and never wait on the event loop: a busy file
        # sends the call to aiosqlite's thread, which waits (see _call).
        await conn.execute_fetchall("PRAGMA busy_timeout = 0")

    async def _migrate(self) -> None:
        async with self._conn_lock:
            conn = self._require_conn()
            # The write lock first: a second process opening the same file at the
            # same moment waits here, then finds every version applied.
            await self._control(conn, "BEGIN IMMEDIATE")
            try:
                await self._run(conn, bootstrap_sql("sqlite"), ())
                rows = await self._run(conn, "SELECT MAX(version) AS version FROM schema_version", ())
                current = rows[0]["version"] or 0
                for migration in self._migrations:
                    if migration.version <= current:
                        continue
                    for statement in migration.statements("sqlite"):
                        await self._run(conn, statement, ())
                    await self._run(
                        conn,
                        "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                        (migration.version, migration.description, datetime.now(UTC)),
                    )
                await self._control(conn, "COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise

    async def close(self) -> None:
        """Close the connection (waits for a running transaction and checkpoint); safe to call twice."""
        self._closing = True  # no checkpoint starts now, nor takes the connection
        if self._checkpointer is not None:
            # Before the connection's lock: a checkpoint round may be waiting for it.
            await asyncio.wait({self._checkpointer})  # a thread: it cannot be cancelled
            self._checkpointer = None
        async with self._conn_lock:
            checkpoint_conn, self._checkpoint_conn = self._checkpoint_conn, None
            if checkpoint_conn is not None:
                checkpoint_conn.close()
            disk, self._disk = self._disk, None
            if disk is not None:
                disk.shutdown(wait=False)  # a sync still running ends on its own
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    def _count_call(self) -> None:
        """Every ``_CHECKPOINT_EVERY`` calls on the connection, checkpoint the log in a thread."""
        self._calls_since_checkpoint += 1
        if self._calls_since_checkpoint < _CHECKPOINT_EVERY or self._wal_file is None or self._closing:
            return
        if self._checkpointer is not None and not self._checkpointer.done():
            return
        self._calls_since_checkpoint = 0
        # A context of its own: the caller's span and unit of work are not the checkpoint's.
        self._checkpointer = asyncio.get_running_loop().create_task(
            self._checkpoint_round(), name="sqlite checkpoint", context=contextvars.Context()
        )

    async def _checkpoint_round(self) -> None:
        """Checkpoint the log in a thread; past ``_WAL_RESTART_FRAMES`` pages, again with the connection held.

        SQLite starts its log over (writing from its first page again) only at a write
        that finds every page of the log copied into the file. A checkpoint running in a
        thread while the app keeps writing never gets there: each write appends pages it
        has not copied, and under steady load the log grew without end (1 GB after 24 s of
        the throughput bench, against a 26 MB file). So when the log is long, a second
        checkpoint runs while this store's connection is held (its statements wait on the
        loop, which goes on with everything else): it copies the few pages written since
        the first, and the next write starts the log over (a file grown past
        ``_WAL_SIZE_LIMIT`` is cut back to it). Another process reading an old snapshot
        can still keep the log from starting over; the next round tries again. Durable
        writes stay durable: a checkpoint syncs the file before the log can start over.
        """
        frames = await self._on_disk_thread(self._checkpoint)
        if frames is None or frames[0] < _WAL_RESTART_FRAMES or self._closing:
            return
        async with self._conn_lock:
            if self._conn is None or self._closing:
                return
            frames = await self._on_disk_thread(self._checkpoint)
            if frames is not None and frames[0] == frames[1]:
                self.full_checkpoints += 1

    async def _on_disk_thread(self, work: Callable[..., _T], *args: Any) -> _T:
        """Run ``work(*args)`` on one of the store's own threads (see ``_disk``)."""
        if self._disk is None:
            self._disk = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-disk")
        return await asyncio.get_running_loop().run_in_executor(self._disk, work, *args)

    def _checkpoint(self) -> tuple[int, int] | None:
        """Copy the write-ahead log into the file, in a thread, on a connection of its own.

        ``PASSIVE``: it waits for no reader or writer, and the app's writers keep appending
        to the log meanwhile. With ``synchronous = NORMAL`` SQLite syncs the log before it
        copies it and the file after. Failing is harmless (the log is copied next time).

        Returns:
            The pages in the log and how many of them are now copied; None when it failed.
        """
        try:
            conn = self._checkpoint_conn
            if conn is None:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpoint_conn = conn
            [(_busy, log, copied)] = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
            return int(log), int(copied)
        except sqlite3.Error as exc:
            logger.warning("the write-ahead log of %s could not be checkpointed: %s", self.safe_url, exc)
            return None

    async def ping(self) -> None:
        """Run ``SELECT 1``; StorageUnavailableError when the store is closed or the file is gone."""
        await self._query("SELECT 1")

    # --- statements -------------------------------------------------------------
    def _unavailable(self, exc: BaseException | str) -> StorageUnavailableError:
        return StorageUnavailableError(f"cannot open the database at DATABASE_URL={self.safe_url!r}: {exc}")

    def _require_conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageUnavailableError(
                f"the store for DATABASE_URL={self.safe_url!r} is not open: call `await store.open()` first"
            )
        return self._conn

    async def _run(self, conn: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        params = _encoded(args)
        if not self._spans.statements or _describe(sql) is None:
            return await self._execute(conn, sql, params)
        started = now_ns()
        try:
            return await self._execute(conn, sql, params)
        finally:
            self._spans.statement_spans([Timed(sql, started, now_ns())])

    async def _execute(self, conn: aiosqlite.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        self.stats.round_trips += 1
        if _describe(sql) is not None:
            self.stats.statements += 1
            self.stats.executions += 1
        try:
            rows = await self._call(conn, lambda raw: raw.execute(sql, params).fetchall())
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc) or "disk I/O" in str(exc):
                raise self._unavailable(exc) from None
            raise self._failed(sql, exc) from None
        except sqlite3.Error as exc:
            raise self._failed(sql, exc) from None
        except ValueError as exc:  # aiosqlite: "Connection closed" after close()
            raise self._unavailable(exc) from None
        return [_decode(r) for r in rows]

    def _failed(self, sql: str, exc: sqlite3.Error) -> StorageError:
        what = _describe(sql) or sql.split(None, 1)[0]
        return StorageError(f"{what} failed on DATABASE_URL={self.safe_url!r}: {exc}")

    async def _control(self, conn: aiosqlite.Connection, sql: str) -> None:
        await self._execute(conn, sql, [])

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        # Nothing to undo when the failed statement already ended the transaction.
        if conn.in_transaction:
            with suppress(StorageError):
                await self._control(conn, "ROLLBACK")

    async def _query(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        tx = self._tx.get()
        if tx is not None and tx.active:
            async with tx.lock:
                return await self._run(tx.conn, sql, args)
        async with self._conn_lock:
            conn = self._require_conn()
            if not exclusive:
                return await self._run(conn, sql, args)
            await self._control(conn, "BEGIN IMMEDIATE")
            try:
                rows = await self._run(conn, sql, args)
                await self._control(conn, "COMMIT")
            except BaseException:
                await self._rollback(conn)
                raise
            return rows

    def _in_transaction(self) -> bool:
        tx = self._tx.get()
        return tx is not None and tx.active

    async def _run_steps(self, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
        tx = self._tx.get()
        if tx is not None and tx.active:
            async with tx.lock:
                return await self._batch(tx.conn, steps, begin=False)
        async with self._conn_lock:
            return await self._batch(self._require_conn(), steps, begin=True)

    async def _durable_one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Run one write that is on disk before the call returns (it survives a power loss).

        Group commit: writes that arrive while a group is being synced wait for the next
        sync, which commits them all in one transaction, each in its own savepoint: one
        disk wait per group, and a write that fails fails alone. The disk wait (0.7 to 7 ms
        on this machine, day by day) happens in a thread, with the connection free for
        the other statements meanwhile (see :meth:`_sync_group`).
        """
        params = _encoded(args)
        self._require_conn()
        waiter: asyncio.Future[list[sqlite3.Row]] = asyncio.get_running_loop().create_future()
        self._durable_queue.append((sql, params, waiter))
        if self._durable_syncer is None or self._durable_syncer.done():
            # A context of its own: the first writer's span and transaction are not the group's.
            self._durable_syncer = asyncio.create_task(
                self._sync_durable(), name="sqlite durable writes", context=contextvars.Context()
            )
            self._durable_syncer.add_done_callback(self._syncer_done)
        self.stats.statements += 1
        self.stats.executions += 1
        with self._spans.operation((sql,)):
            rows = await waiter
        return _decode(rows[0]) if rows else None

    async def _sync_durable(self) -> None:
        """Commit the queued durable writes, group after group, until none is waiting."""
        while self._durable_queue:
            group, self._durable_queue = self._durable_queue, []
            try:
                results = await self._sync_group([(sql, params) for sql, params, _ in group])
            except BaseException as exc:
                for sql, _, waiter in group:
                    if not waiter.done():
                        waiter.set_exception(self._durable_error(sql, exc))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (sql, _, waiter), result in zip(group, results, strict=True):
                if waiter.done():  # its caller was cancelled; the write stands
                    continue
                if isinstance(result, sqlite3.Error):
                    waiter.set_exception(self._failed(sql, result))
                else:
                    waiter.set_result(result)

    def _syncer_done(self, task: asyncio.Task[None]) -> None:
        """The syncer ended: writes still queued (it was cancelled, maybe before it started) fail.

        Unless a newer syncer already took over: the queue is then its own.
        """
        if self._durable_syncer is not task:
            return
        self._durable_syncer = None
        left, self._durable_queue = self._durable_queue, []
        for _, _, waiter in left:
            if not waiter.done():
                waiter.set_exception(self._unavailable("the store stopped before the write was synced"))

    def _durable_error(self, sql: str, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.Error):
            return self._failed(sql, exc)
        if isinstance(exc, ValueError):  # aiosqlite: "Connection closed" after close()
            return self._unavailable(exc)
        if not isinstance(exc, Exception):  # the syncer itself was cancelled: not its writers
            return self._unavailable("the store stopped before the write was synced")
        return exc

    async def _sync_group(
        self, group: Sequence[tuple[str, list[Any]]]
    ) -> list[list[sqlite3.Row] | sqlite3.Error]:
        """Commit ``group`` in one transaction (each write in its own savepoint), then sync it to disk.

        In WAL mode the commit itself does not wait for the disk (``synchronous = NORMAL``):
        its frames are written to the log, and the log is then synced (``fsync``) in a
        thread, with the connection free for everyone else meanwhile. That is what
        ``synchronous = FULL`` does at a WAL commit, without holding the connection for
        the disk's wait (0.7 to 7 ms on this machine). Frames are appended in order and a
        checkpoint syncs the log before it copies it, so the sync covers this commit.
        Without WAL (a file system that refuses it) the commit is made with ``FULL``.
        """
        full = self._wal_file is None

        def committed(raw: sqlite3.Connection) -> list[list[sqlite3.Row] | sqlite3.Error]:
            results: list[list[sqlite3.Row] | sqlite3.Error] = []
            if full:
                raw.execute("PRAGMA synchronous = FULL")
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in group:
                        raw.execute("SAVEPOINT durable_write")
                        try:
                            results.append(raw.execute(sql, params).fetchall())
                        except sqlite3.Error as exc:
                            raw.execute("ROLLBACK TO durable_write")
                            results.append(exc)
                        raw.execute("RELEASE durable_write")
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            finally:
                if full:
                    raw.execute("PRAGMA synchronous = NORMAL")
            return results

        async with self._conn_lock:
            conn = self._require_conn()
            self.stats.round_trips += 1
            results = await self._call(conn, committed, inline=not full)
        if self._wal_file is not None:
            try:
                await self._on_disk_thread(_sync_file, self._wal_file)
            except OSError as exc:
                raise self._unavailable(f"the write-ahead log could not be synced: {exc}") from None
            self.wal_syncs += 1
        return results

    async def _call(
        self, conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], _T], *, inline: bool = True
    ) -> _T:
        """Run ``work`` on the connection: inline when the file is free, else in aiosqlite's thread.

        A hop to aiosqlite's thread and back costs far more than a statement of ours
        (the GIL changes hands twice; about 0.5 ms on a busy machine, issue 14), so
        ``work`` first runs right here with a zero busy timeout. Only when another
        process holds the write lock (SQLITE_BUSY) is it sent to the thread, which
        waits up to the busy timeout without blocking the event loop. ``work`` must
        leave nothing behind when it fails (a failed statement or a rolled-back batch).
        """
        raw = conn._conn
        self._count_call()
        if inline:
            try:
                return work(raw)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        wait_ms = int(self._busy_timeout * 1000)

        def patiently(raw: sqlite3.Connection) -> _T:
            raw.execute(f"PRAGMA busy_timeout = {wait_ms}")
            try:
                return work(raw)
            finally:
                raw.execute("PRAGMA busy_timeout = 0")

        result: _T = await conn._execute(patiently, raw)  # type: ignore[no-untyped-call]
        return result

    async def _batch(
        self, conn: aiosqlite.Connection, steps: Sequence[Step], *, begin: bool
    ) -> list[list[dict[str, Any]]]:
        """Run ``steps`` in ONE hop (and one transaction when ``begin``).

        In its own transaction, a run of two or more writes that return nothing goes as
        ONE statement: a multi-row insert into the ``jorge_writes`` view, whose triggers
        run each write in order (see :meth:`_write_triggers`).
        """
        encoded = [(step.sql, [_encoded(row) for row in step.rows], step.many) for step in steps]
        timed: list[Timed] | None = [] if self._spans.statements and self._spans.active() else None
        sent = [0]

        def work(raw: sqlite3.Connection) -> list[list[sqlite3.Row]]:
            plan = [("each", i) for i in range(len(encoded))]
            if begin:
                # New kinds of write are taught to the view outside the transaction: they outlive it.
                missing = {sql for sql, _, _ in encoded if not returns_rows(sql)} - self._triggers.keys()
                sent[0] += self._write_triggers(raw, sorted(missing)) if missing else 0
                plan = _plan(encoded, self._triggers)
            results: list[list[sqlite3.Row]] = [[] for _ in encoded]
            if begin:
                raw.execute("BEGIN IMMEDIATE")
            try:
                for kind, *indexes in plan:
                    started = now_ns()
                    if kind == "writes":
                        rows = [
                            (self._triggers[encoded[i][0]], args) for i in indexes for args in encoded[i][1]
                        ]
                        raw.execute(_WRITES_INSERT + ", ".join(["(?, ?)"] * len(rows)), _flat(rows))
                        if timed is not None:
                            timed.append(Timed(_WRITES_INSERT + "(?, ?)", started, now_ns()))
                        continue
                    [index] = indexes
                    sql, rows_, many = encoded[index]
                    if many:
                        raw.executemany(sql, rows_)
                    else:
                        results[index] = raw.execute(sql, rows_[0]).fetchall()
                    if timed is not None:
                        timed.append(Timed(sql, started, now_ns()))
                if begin:
                    raw.execute("COMMIT")
            except BaseException:
                if begin and raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            sent[0] += len(plan)  # once it ran: a busy file sends the whole work again
            return results

        self.stats.round_trips += 1
        self.stats.executions += sum(len(step.rows) for step in steps)
        try:
            # aiosqlite runs ``work`` on its own thread, where the sqlite3 connection lives.
            results = await self._call(conn, work)
        except sqlite3.OperationalError as exc:
            if "unable to open" in str(exc) or "disk I/O" in str(exc):
                raise self._unavailable(exc) from None
            raise self._failed(steps[0].sql, exc) from None
        except sqlite3.Error as exc:
            raise self._failed(steps[0].sql, exc) from None
        except ValueError as exc:  # aiosqlite: "Connection closed" after close()
            raise self._unavailable(exc) from None
        finally:
            self.stats.statements += sent[0]
            if timed:
                self._spans.statement_spans(timed)
        return [[_decode(r) for r in rows] for rows in results]

    def _write_triggers(self, raw: sqlite3.Connection, statements: Sequence[str]) -> int:
        """Teach the ``jorge_writes`` view each of ``statements`` (once per connection).

        A row ``(kind, args)`` inserted into the view runs the write numbered ``kind``
        with the JSON array ``args`` as its arguments. The view and its triggers are
        TEMP: they live with this connection only and never touch the file's schema. A
        statement that cannot run in a trigger is noted (kind 0) and sent as it is.

        Returns:
            How many statements this sent.
        """
        sent = 1
        raw.execute("CREATE TEMP VIEW IF NOT EXISTS jorge_writes (kind, args) AS SELECT 0, '[]'")
        for sql in statements:
            if _QUOTED.sub("", sql).count("?") != sql.count("?"):  # a "?" in a literal is no argument
                self._triggers[sql] = 0
                continue
            number = max(self._triggers.values(), default=0) + 1
            body = _ARG.sub(_json_arg(), sql)
            sent += 1
            try:
                raw.execute(
                    f"CREATE TEMP TRIGGER jorge_write_{number} INSTEAD OF INSERT ON jorge_writes "
                    f"WHEN NEW.kind = {number} BEGIN {body}; END"
                )
            except sqlite3.Error as exc:
                logger.debug("write sent on its own, not through the jorge_writes view: %s", exc)
                number = 0
            self._triggers[sql] = number
        return sent

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the calls of the block (and of tasks it starts) in one ``BEGIN IMMEDIATE`` transaction.

        A nested block joins the outer one. The write lock is held for the whole
        block, so keep it short and never wait inside it for another process.
        Deferred writes of a unit of work are written first.
        """
        outer = self._tx.get()
        if outer is not None and outer.active:
            yield
            return
        await self.flush()
        async with self._conn_lock:
            conn = self._require_conn()
            await self._control(conn, "BEGIN IMMEDIATE")
            state = TxState(conn)
            token = self._tx.set(state)
            try:
                yield
            except BaseException:
                state.active = False
                async with state.lock:
                    await self._rollback(conn)
                raise
            else:
                state.active = False
                async with state.lock:
                    try:
                        await self._control(conn, "COMMIT")
                    except BaseException:
                        await self._rollback(conn)
                        raise
            finally:
                self._tx.reset(token)

    # --- contact lock -------------------------------------------------------------
    @asynccontextmanager
    async def _hold_across_processes(
        self, contact_id: str, name: str, deadline: float, error: Exception
    ) -> AsyncIterator[asyncio.Event]:
        """A lease row on ``name`` in the ``locks`` table, renewed while held.

        Taking the lease and reading the contact's row and newest messages is one
        round trip; writing the block's deferred writes and deleting the lease is another.
        The yielded event is set when the lease is found lost (taken over, or not
        renewable before it ran out).
        """
        token = secrets.token_hex(16)
        read, rows, claimed = await self._take_lease(contact_id, name, token, deadline, error)
        self._enter_contact(contact_id, (read, rows), claimed)
        lost = asyncio.Event()
        renewer = asyncio.create_task(self._renew_lease(name, token, lost), name=f"lease {name}")
        release = Step("DELETE FROM locks WHERE name = ? AND owner = ?", ((name, token),))
        try:
            yield lost
        except BaseException:
            await self._stop(renewer)
            await self._flush_and_release(contact_id, True, release)
            raise
        await self._stop(renewer)
        await self._flush_and_release(contact_id, False, release)

    @staticmethod
    async def _stop(renewer: asyncio.Task[None]) -> None:
        renewer.cancel()
        # wait() neither raises the renewer's CancelledError nor swallows ours.
        await asyncio.wait({renewer})

    async def _take_lease(
        self, contact_id: str, name: str, token: str, deadline: float, error: Exception
    ) -> tuple[Step, list[dict[str, Any]], int | None]:
        """Take the lease, read the contact's rows and claim the unit of work's ``claim``: one round trip.

        Returns:
            The prefetch step, its rows, and the event claimed (or None).
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        claim = self._lock_claim(contact_id)
        while True:
            now = datetime.now(UTC)
            lease = Step(
                """INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                   WHERE locks.expires_at < ?
                   RETURNING owner""",
                ((name, token, now + timedelta(seconds=self._lock_lease), now),),
            )
            # The reads ride along: a taken lease costs them nothing more than the wait.
            read = self._prefetch_step(contact_id)
            # The claim after the read (which sees the event still received), only for the lease's owner.
            claiming = () if claim is None else (Step(_CLAIM_WITH_LEASE, ((*claim, name, token),)),)
            taken, rows, *claimed = await self.flush(lease, read, *claiming)
            if taken:
                return read, rows, int(claimed[0][0]["id"]) if claimed and claimed[0] else None
            if loop.time() >= deadline:
                raise error
            await backoff.sleep(deadline)

    async def _renew_lease(self, name: str, token: str, lost: asyncio.Event) -> None:
        self._uow.set(None)  # this task's own context: the holder's unit of work is not ours to flush
        loop = asyncio.get_running_loop()
        expires = loop.time() + self._lock_lease
        while True:
            await asyncio.sleep(self._lock_lease / 3)
            try:
                row = await self._one(
                    "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ? RETURNING name",
                    (datetime.now(UTC) + timedelta(seconds=self._lock_lease), name, token),
                )
            except StorageError as exc:
                if loop.time() >= expires:
                    logger.error("lock %s was lost: its lease ran out while it could not be renewed", name)
                    lost.set()
                    return
                logger.warning("could not renew lock %s: %s", name, exc)
                continue
            if row is None:
                logger.error("lock %s was lost: its lease expired and another holder took it", name)
                lost.set()
                return
            expires = loop.time() + self._lock_lease
