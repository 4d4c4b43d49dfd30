"""The table logic both stores share, written once against one query primitive.

:class:`SQLStore` implements every row method of the Store protocol with
portable SQL (``?`` placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``);
a backend supplies :meth:`SQLStore._query` (run one statement, return its rows
as dicts of Python values), the claim hint (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and the connection life cycle. Keeping one copy of the SQL is what
makes the two backends behave the same.

Round trips are what a webhook pays for, so the store batches (issue 14):

- a *unit of work* (:meth:`SQLStore.unit_of_work`, opened by every
  :meth:`SQLStore.contact_lock`) defers the writes whose result the caller does
  not need (contact upserts, handoff records, outbox and webhook-event status
  updates, follow-up outcomes, the lock's release) and writes them in ONE
  transaction, one round trip, when it ends; a statement touching a table with
  deferred writes first flushes them, so reads always see the writes before them;
- inside the unit of work of a contact lock, the contact, its recent messages
  and handoffs are read once and then served from memory (the lock guarantees
  nobody else changes them meanwhile);
- several statements that belong together run in one round trip
  (:meth:`SQLStore._run_steps`), and rows of one statement in one
  ``executemany``.

:attr:`SQLStore.stats` counts round trips, statements and executions, so the
benchmarks print what a webhook really costs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.trace import TracerProvider

from ghl_real_estate_ai.errors import LockLostError, LockTimeoutError
from ghl_real_estate_ai.storage._reliability import Circuit, ReliabilityQueries
from ghl_real_estate_ai.storage._spans import StoreSpans, describe_statement
from ghl_real_estate_ai.storage.base import (
    Contact,
    FollowUp,
    Handoff,
    Message,
    OutboxItem,
    Slot,
    WebhookEvent,
    WebhookInsert,
)
from ghl_real_estate_ai.storage.schema import MIGRATIONS, Dialect, Migration

__all__ = [
    "FOLLOWUP_STATUSES",
    "OUTBOX_STATUSES",
    "WEBHOOK_STATUSES",
    "Backoff",
    "KeyedLocks",
    "SQLStore",
    "Step",
    "StoreStats",
    "TxState",
    "Unit",
    "UnitOfWork",
    "describe_statement",
    "lock_timeout_error",
    "plan_statements",
    "redact_url",
    "returns_rows",
    "utc",
]

WEBHOOK_STATUSES = frozenset({"received", "processing", "processed", "ignored", "failed"})
OUTBOX_STATUSES = frozenset({"pending", "sending", "sent", "failed", "dead", "dropped"})
FOLLOWUP_STATUSES = frozenset({"pending", "running", "done", "cancelled", "failed", "dead"})

logger = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal needs its brackets back
            host = f"[{host}]"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        # A URL too broken to parse may still hold a password: show only the scheme.
        return url.split("://", 1)[0] + "://..."


def utc(name: str, value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are refused because their zone is a guess.

    Raises:
        ValueError: ``value`` has no time zone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be timezone-aware, got {value!r}: use datetime.now(UTC) or attach tzinfo"
        )
    return value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Backoff:
    """Growing sleeps for polling loops, with jitter so pollers do not march in step."""

    def __init__(self, first: float = 0.005, cap: float = 0.1) -> None:
        self._delay = first
        self._cap = cap

    async def sleep(self, deadline: float) -> None:
        """Sleep the next delay, but never past ``deadline`` (event-loop time)."""
        loop = asyncio.get_running_loop()
        delay = min(self._delay * random.uniform(0.5, 1.0), max(deadline - loop.time(), 0.0))
        self._delay = min(self._delay * 1.6, self._cap)
        await asyncio.sleep(delay)


def lock_timeout_error(contact_id: str, timeout: float) -> LockTimeoutError:
    """The error raised when a contact lock stays taken for ``timeout`` seconds."""
    return LockTimeoutError(
        f"could not lock contact {contact_id!r} within {timeout}s: another holder still has it; "
        "wait and retry, or raise the timeout"
    )


class KeyedLocks:
    """In-process mutual exclusion per key, so tasks queue here instead of polling the database."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str, deadline: float, error: Exception) -> AsyncIterator[None]:
        """Hold ``key`` until the block exits; raise ``error`` when ``deadline`` (loop time) passes first."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await lock.acquire()
            except TimeoutError:
                raise error from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def _cancel_when(lost: asyncio.Event, holder: asyncio.Task[Any]) -> None:
    await lost.wait()
    holder.cancel("contact lock lost")


@asynccontextmanager
async def _abort_when_lost(contact_id: str, key: str, lost: asyncio.Event) -> AsyncIterator[None]:
    """Cancel the block once ``lost`` is set, and raise LockLostError in its place."""
    holder = asyncio.current_task()
    assert holder is not None
    watcher = asyncio.create_task(_cancel_when(lost, holder), name=f"lock watch {key}")
    try:
        yield
    except asyncio.CancelledError:
        if not lost.is_set() or holder.uncancel() > 0:
            raise
        raise LockLostError(
            f"lost the lock of contact {contact_id!r} while holding it (lease taken over or "
            "lock connection gone): the guarded work was stopped and is retried"
        ) from None
    finally:
        watcher.cancel()
        await asyncio.wait({watcher})


@dataclass(slots=True, eq=False)
class TxState:
    """The connection of an open ``transaction()`` block, shared by the calls inside it."""

    conn: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = True


@dataclass(slots=True)
class StoreStats:
    """What a store sent to its database since it was opened (for benchmarks and tests).

    Attributes:
        round_trips: calls into the driver that wait for the database: one
            statement, one ``executemany``, one batch of statements run
            together, a ``BEGIN``/``COMMIT`` sent on its own.
        statements: SQL statements sent (an ``executemany`` is one statement).
        executions: statement executions (an ``executemany`` of n rows counts n).
    """

    round_trips: int = 0
    statements: int = 0
    executions: int = 0

    def snapshot(self) -> StoreStats:
        """A copy of the counts now."""
        return StoreStats(self.round_trips, self.statements, self.executions)


@dataclass(slots=True, frozen=True)
class Step:
    """One statement of a batch: ``rows`` holds one argument tuple, or several for an ``executemany``."""

    sql: str
    rows: tuple[tuple[Any, ...], ...]
    many: bool = False
    snapshot: bool = False
    """A read that may see the batch as it was before the batch's writes (a backend may then
    run it in the same statement as them)."""


@dataclass(slots=True)
class _Write:
    """A deferred write of a unit of work."""

    table: str
    sql: str
    args: tuple[Any, ...]
    key: tuple[str, ...] | None = None
    """Writes with the same key replace each other (the last one wins)."""


@dataclass(slots=True, eq=False)
class UnitOfWork:
    """Deferred writes and the rows already known, shared by the calls inside one ``unit_of_work()``."""

    pending: list[_Write] = field(default_factory=list)
    contact_id: str | None = None
    """The contact whose lock opened this unit of work: its rows can be served from memory."""
    contact: Contact | None = None
    contact_known: bool = False
    messages: list[Message] | None = None
    """The newest messages of the contact, oldest first (all of them when ``messages_complete``)."""
    messages_complete: bool = False
    handoffs: list[Handoff] | None = None
    handoffs_since: datetime | None = None
    slots: list[Slot] | None = None
    """The contact's dialogue slots, ordered by side and name."""
    events: list[WebhookEvent] | None = None
    """The contact's ``received`` events read with the lock, in ``dateAdded`` order (served once)."""
    circuits: dict[str, Circuit] | None = None
    """Every location's outbox circuit, read with the lock (None: unknown, or written since)."""
    claim: int | None = None
    """An event to claim in the round trip that takes the next contact lock, when it is then
    the contact's only ``received`` event (see ``claimed``); taken by that lock, used once."""
    claimed: int | None = None
    """The ``claim`` event, when the lock claimed it: ``claim_webhook_event`` answers for it from
    memory, once."""
    recheck: str | None = None
    """A contact whose ``received`` events are read again as its lock is released (see ``rechecked``)."""
    rechecked: list[WebhookEvent] | None = None
    """Those events, read in the release's own batch: what was stored while the lock was held."""
    held: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    """Contact locks taken inside this unit of work, released (in reverse) when it is written."""
    failed: bool = False
    """Set while a failed block's writes are written: a failing write is then logged, not raised."""


def _copy_contact(contact: Contact) -> Contact:
    return replace(contact, tags=list(contact.tags), state=dict(contact.state))


def _contact(row: Mapping[str, Any]) -> Contact:
    return Contact(
        contact_id=row["contact_id"],
        location_id=row["location_id"],
        current_bot=row["current_bot"],
        temperature=row["temperature"],
        tags=list(row["tags"]),
        opted_out=bool(row["opted_out"]),
        escalated=bool(row["escalated"]),
        state=dict(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: Mapping[str, Any]) -> Message:
    return Message(
        id=row["id"],
        contact_id=row["contact_id"],
        direction=row["direction"],
        body=row["body"],
        channel=row["channel"],
        created_at=row["created_at"],
        message_id=row["message_id"],
    )


def _webhook_event(row: Mapping[str, Any]) -> WebhookEvent:
    return WebhookEvent(
        id=row["id"],
        webhook_id=row["webhook_id"],
        message_id=row["message_id"],
        event_type=row["event_type"],
        contact_id=row["contact_id"],
        payload=dict(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        received_at=row["received_at"],
        error=row["error"],
        trace_context={str(k): str(v) for k, v in dict(row["trace_context"]).items()},
        date_added=_date_added(row.get("date_added")),
    )


def _date_added(value: Any) -> datetime | None:
    # SQLite hands the column back as its ISO text (only ``*_at`` columns are decoded there).
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value if isinstance(value, datetime) else None


def _outbox_item(row: Mapping[str, Any]) -> OutboxItem:
    response = row["response"]
    return OutboxItem(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        kind=row["kind"],
        contact_id=row["contact_id"],
        payload=dict(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        last_error=row["last_error"],
        response=None if response is None else dict(response),
        owner=row.get("owner"),
        first_attempt_at=row.get("first_attempt_at"),
        deadline_at=row.get("deadline_at"),
        check_first=bool(row.get("check_first", False)),
    )


def _handoff(row: Mapping[str, Any]) -> Handoff:
    return Handoff(
        id=row["id"],
        contact_id=row["contact_id"],
        source_bot=row["source_bot"],
        target_bot=row["target_bot"],
        confidence=float(row["confidence"]),
        reason=row["reason"],
        outcome=row["outcome"],
        created_at=row["created_at"],
    )


def _followup(row: Mapping[str, Any]) -> FollowUp:
    return FollowUp(
        id=row["id"],
        contact_id=row["contact_id"],
        step=row["step"],
        due_at=row["due_at"],
        status=row["status"],
        attempts=row["attempts"],
        trace_context={str(k): str(v) for k, v in dict(row["trace_context"]).items()},
        created_at=row["created_at"],
        last_error=row["last_error"],
    )


PREFETCH_MESSAGES = 50
"""Messages of the locked contact read with the lock (what a bot turn reads)."""
PREFETCH_HANDOFFS = timedelta(days=1)
"""How far back the locked contact's handoffs are read with the lock (the handoff limits' window)."""
PREFETCH_EVENTS = 20
"""``received`` events of the locked contact read with the lock (what one drain takes)."""

_SINCE_ARG = -3
"""Where the handoffs' ``since`` sits in the arguments of :func:`prefetch_sql` (from the end: a
claim's arguments may come before them, see :func:`prefetch_claim_sql`)."""
_EVENTS_IN_ORDER = "ORDER BY CASE WHEN date_added IS NULL THEN 1 ELSE 0 END, date_added, id"

# The columns of each table read with a contact's lock; JSON ones are nested as JSON.
_PREFETCH_TABLES: dict[str, tuple[str, tuple[str, ...], frozenset[str]]] = {
    "contacts": (
        "SELECT * FROM contacts WHERE contact_id = ?",
        (
            "contact_id",
            "location_id",
            "current_bot",
            "temperature",
            "tags",
            "opted_out",
            "escalated",
            "state",
            "created_at",
            "updated_at",
        ),
        frozenset({"tags", "state"}),
    ),
    "messages": (
        "SELECT * FROM messages WHERE contact_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        ("id", "contact_id", "direction", "body", "channel", "message_id", "created_at"),
        frozenset(),
    ),
    "slots": (
        "SELECT * FROM dialogue_slots WHERE contact_id = ?",
        ("side", "name", "value", "updated_at"),
        frozenset({"value"}),
    ),
    "handoffs": (
        "SELECT * FROM handoffs WHERE contact_id = ? AND created_at >= ?",
        ("id", "contact_id", "source_bot", "target_bot", "confidence", "reason", "outcome", "created_at"),
        frozenset(),
    ),
    "circuits": (
        "SELECT * FROM outbox_circuits",
        ("location_id", "failures", "next_probe_at"),
        frozenset(),
    ),
    "events": (
        f"""SELECT * FROM webhook_events WHERE contact_id = ? AND status = 'received'
            {_EVENTS_IN_ORDER} LIMIT ?""",
        (
            "id",
            "webhook_id",
            "message_id",
            "event_type",
            "contact_id",
            "payload",
            "status",
            "attempts",
            "error",
            "received_at",
            "updated_at",
            "trace_context",
            "date_added",
        ),
        frozenset({"payload", "trace_context"}),
    ),
}


_PENDING_EVENTS = _PREFETCH_TABLES["events"][0]

CLAIM_ALONE = """UPDATE webhook_events SET status = 'processing', attempts = attempts + 1, updated_at = ?
    WHERE id = ? AND contact_id = ? AND status = 'received'
      AND NOT EXISTS (SELECT 1 FROM webhook_events AS other
                      WHERE other.contact_id = ? AND other.status = 'received' AND other.id <> ?)"""
"""Claim an event with its contact's lock (``UnitOfWork.claim``): only when no other
``received`` event of the contact could come first. Arguments: :meth:`SQLStore._lock_claim`."""


@lru_cache(maxsize=2)
def prefetch_claim_sql(dialect: Dialect) -> str:
    """:func:`prefetch_sql` that also claims an event (:data:`CLAIM_ALONE`), in ONE statement.

    A data-modifying CTE (PostgreSQL): the reads see the rows as they were before the
    claim, and a ``claimed`` row says that it was made. Its arguments are the claim's,
    then the prefetch's.
    """
    return (
        f"WITH claimed AS ({CLAIM_ALONE} RETURNING id) {prefetch_sql(dialect)}"
        " UNION ALL SELECT 'claimed' AS kind, row_to_json(t) AS body FROM claimed AS t"
    )


@lru_cache(maxsize=2)
def prefetch_sql(dialect: Dialect) -> str:
    """One statement reading every row a locked turn needs, as ``(kind, body)`` rows.

    ``body`` is the row as a JSON object (SQLite ``json_object``, PostgreSQL
    ``row_to_json``). One statement instead of five: on PostgreSQL each
    is a network round trip. The rows come in no particular order; the reader sorts them.
    """
    parts = []
    for kind, (select, columns, json_columns) in _PREFETCH_TABLES.items():
        if dialect == "postgresql":
            body = "row_to_json(t)"
        else:
            fields = ", ".join(
                f"'{c}', " + (f"json(t.{c})" if c in json_columns else f"t.{c}") for c in columns
            )
            body = f"json_object({fields})"
        parts.append(f"SELECT '{kind}' AS kind, {body} AS body FROM ({select}) AS t")
    return " UNION ALL ".join(parts)


def _json_time(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _read_prefetch(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rows of :func:`prefetch_sql` by kind, as the row dicts the table readers take."""
    read: dict[str, Any] = {}
    for row in rows:
        body = row["body"]
        record: dict[str, Any] = json.loads(body) if isinstance(body, str) else dict(body)
        for key, value in record.items():
            if key.endswith("_at") or key == "date_added":
                record[key] = _json_time(value)
        read.setdefault(row["kind"], []).append(record)
    return read


def _event_order(events: list[WebhookEvent]) -> list[WebhookEvent]:
    """A contact's events in processing order: ``dateAdded`` (undated last), then arrival."""
    return sorted(events, key=lambda e: (e.date_added is None, e.date_added or e.received_at, e.id))


_LIST_MESSAGES = """SELECT * FROM messages WHERE contact_id = ?
               ORDER BY created_at DESC, id DESC LIMIT ?"""
_LIST_SLOTS = """SELECT side, name, value, updated_at FROM dialogue_slots
               WHERE contact_id = ? ORDER BY side, name"""
_UPSERT_CONTACT = """INSERT INTO contacts (contact_id, location_id, current_bot, temperature, tags,
                   opted_out, escalated, state, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (contact_id) DO UPDATE SET
                   location_id = excluded.location_id, current_bot = excluded.current_bot,
                   temperature = excluded.temperature, tags = excluded.tags,
                   opted_out = excluded.opted_out, escalated = excluded.escalated,
                   state = excluded.state, updated_at = excluded.updated_at"""


def _slot(row: Mapping[str, Any]) -> Slot:
    return Slot(row["side"], row["name"], row["value"]["v"], row["updated_at"])


def _group(writes: Sequence[_Write]) -> list[Step]:
    """The writes table by table (in order within a table); a run of one statement is one ``executemany``.

    Writes of different tables do not depend on each other (no foreign keys, one
    transaction), so reordering them only merges runs.
    """
    by_table: dict[str, list[_Write]] = {}
    for write in writes:
        by_table.setdefault(write.table, []).append(write)
    steps: list[Step] = []
    run: list[_Write] = []
    ordered: list[_Write | None] = [w for table in by_table.values() for w in table]
    for item in [*ordered, None]:
        if run and (item is None or item.sql != run[0].sql):
            rows = tuple(w.args for w in run)
            steps.append(Step(run[0].sql, rows, many=len(rows) > 1))
            run = []
        if item is not None:
            run.append(item)
    return steps


@dataclass(slots=True, frozen=True)
class Unit:
    """One execution of a batch: a statement with one row of arguments."""

    sql: str
    args: tuple[Any, ...]
    step: int
    """The index of the step it comes from."""


MAX_UNITS = 64
"""Executions past which a batch is sent as it is rather than as one statement."""

_BY_ID = re.compile(r"\bWHERE\s+id\s*=\s*\?\s*$", re.IGNORECASE)


@lru_cache(maxsize=512)
def _write_kind(sql: str) -> tuple[str, str | None]:
    """``(kind, table)``: ``read`` (SELECT), ``insert`` (no ON CONFLICT), ``upsert``,
    ``update_by_id`` (ends with ``WHERE id = ?``), ``update`` or ``other`` (DELETE...)."""
    verb, table = describe_statement(sql)
    upper = sql.upper()
    if verb == "SELECT":
        return "read", table
    if verb == "INSERT":
        return ("upsert" if "ON CONFLICT" in upper else "insert"), table
    if verb == "UPDATE":
        return ("update_by_id" if _BY_ID.search(sql.split(" RETURNING ")[0]) else "update"), table
    return "other", table


@lru_cache(maxsize=512)
def returns_rows(sql: str) -> bool:
    """Whether a statement gives rows back (a SELECT, or a write with RETURNING)."""
    return describe_statement(sql)[0] == "SELECT" or "RETURNING" in sql.upper()


_VALUES = re.compile(r"\bVALUES\s*(\([^()]*\))\s*$", re.IGNORECASE)


def _fits(unit: Unit, others: Sequence[Unit]) -> bool:
    """Whether ``unit`` can run in one statement with ``others``, earlier writes of its table.

    The parts of one statement run in no set order and all see the tables as they were
    before it, so only writes whose order cannot matter go together: an insert after
    updates (an update never sees rows inserted after it), and updates of distinct rows
    by primary key. Inserts into one table keep their order by joining one ``VALUES``
    list (see :func:`plan_statements`).
    """
    kind, _ = _write_kind(unit.sql)
    kinds = [_write_kind(o.sql)[0] for o in others]
    if kind == "insert":
        return all(k in ("update", "update_by_id") for k in kinds)
    if kind == "update_by_id":
        return all(
            k == "update_by_id" and o.args[-1] != unit.args[-1] for k, o in zip(kinds, others, strict=True)
        )
    return not others


def _joined(unit: Unit, group: list[Unit]) -> bool:
    """Add a plain single-row insert to the group's insert of the same statement, as one more
    ``VALUES`` row (the rows of one insert get their ids in order); False when there is none."""
    values = _VALUES.search(unit.sql)
    if values is None or _write_kind(unit.sql)[0] != "insert":
        return False
    for index, other in enumerate(group):
        if other.sql.startswith(unit.sql):
            group[index] = Unit(other.sql + ", " + values.group(1), other.args + unit.args, other.step)
            return True
    return False


def plan_statements(steps: Sequence[Step]) -> list[list[Unit]] | None:
    """Group a batch's executions into as few statements as keep its meaning, or None.

    Each group becomes ONE statement (PostgreSQL: data-modifying CTEs; SQLite runs its
    writes in order through triggers instead, see ``SQLiteStore._batch``): writes of different
    tables never depend on each other (no foreign keys), and writes of one table go in
    its order, together only when :func:`_fits` says so. Only the last step may return
    rows (None otherwise: the batch is run as it is); it closes the last statement, and
    a read goes with the writes before it only when it asked for that snapshot
    (``Step.snapshot``) or reads a table they do not write.
    """
    if len(steps) < 2 or any(returns_rows(step.sql) for step in steps[:-1]):
        return None
    if sum(len(step.rows) for step in steps) > MAX_UNITS:
        return None
    if returns_rows(steps[-1].sql) and len(steps[-1].rows) != 1:
        return None
    groups: list[list[Unit]] = []
    last_group: dict[str, int] = {}
    final = len(steps) - 1
    for index, step in enumerate(steps):
        kind, table = _write_kind(step.sql)
        if table is None:
            return None
        for row in step.rows:
            unit = Unit(step.sql, row, index)
            at = last_group.get(table, 0)
            if index == final:
                at = max(at, len(groups) - 1, 0)
            if kind == "read":  # the last step: with the writes before it, when they cannot change it
                if groups and not step.snapshot:
                    at += table in {_write_kind(u.sql)[1] for u in groups[at]}
            else:
                if at < len(groups) and _joined(unit, groups[at]):
                    continue
                while at < len(groups) and not _fits(
                    unit, [u for u in groups[at] if _write_kind(u.sql)[1] == table]
                ):
                    at += 1
            if at == len(groups):
                groups.append([])
            groups[at].append(unit)
            last_group[table] = at
    return groups


def _depends(sql: str, pending: Sequence[_Write]) -> bool:
    """Whether ``sql`` could see a different result once ``pending`` is written.

    Reads and updates of a table with deferred writes could; an INSERT only when
    inserts into its table are pending (a new row conflicts with nothing updated).
    """
    verb, table = describe_statement(sql)
    if table is None:
        return True
    if verb == "INSERT":
        return any(w.table == table and w.sql.lstrip().upper().startswith("INSERT") for w in pending)
    return any(w.table == table for w in pending)


def _check_status(kind: str, status: str, allowed: frozenset[str]) -> None:
    if status not in allowed:
        raise ValueError(f"unknown {kind} status {status!r}: use one of {sorted(allowed)}")


class SQLStore(ReliabilityQueries, ABC):
    """Every row method of the Store protocol, over :meth:`_query` and :meth:`_run_steps`."""

    backend: str
    dialect: Dialect
    _skip_locked: str = ""
    """Appended to the inner SELECT of a claim (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    def __init__(
        self,
        database_url: str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        tracer_provider: TracerProvider | None = None,
        trace_statements: bool = False,
    ) -> None:
        self._spans = StoreSpans(self.backend, tracer_provider, statements=trace_statements)
        self.database_url = database_url
        self.safe_url = redact_url(database_url)
        self._migrations = tuple(sorted(migrations, key=lambda m: m.version))
        self._local_locks = KeyedLocks()
        self.stats = StoreStats()
        """Round trips, statements and executions sent so far."""
        self._uow: ContextVar[UnitOfWork | None] = ContextVar(f"store_uow_{id(self)}", default=None)

    @abstractmethod
    async def _query(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        """Run one statement and return its rows (``[]`` when it returns none).

        ``exclusive`` asks for the write lock before the statement reads anything
        (SQLite ``BEGIN IMMEDIATE``), which claims need to be exactly-once.
        """

    @abstractmethod
    async def _run_steps(self, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
        """Run ``steps`` in order in one transaction, in as few round trips as the backend allows.

        Returns:
            The rows of each step (``[]`` for an ``executemany`` step).
        """

    @abstractmethod
    def _in_transaction(self) -> bool:
        """True inside an open ``transaction()`` block of this task."""

    # --- unit of work ---------------------------------------------------------------
    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """Defer the writes of the block whose result nobody waits for, and write them in one go at the end.

        Deferred: contact upserts, handoff records, outbox and webhook-event status
        updates, follow-up outcomes. They are written in ONE transaction when the
        block ends (also when it raises: what was done is kept), or earlier when a
        statement touches a table with deferred writes, so a read always sees the
        writes made before it. A nested block joins the outer one.

        Yields:
            The unit of work (its deferred writes and the rows it knows).
        """
        outer = self._uow.get()
        if outer is not None:
            yield outer
            return
        uow = UnitOfWork()
        token = self._uow.set(uow)
        try:
            yield uow
        except BaseException:
            uow.failed = True
            try:
                await self._finish(uow)
            except Exception:  # the block's own error is the one to report
                logger.exception("could not write the deferred writes of a failed unit of work")
            raise
        else:
            await self._finish(uow)
        finally:
            self._uow.reset(token)

    async def _finish(self, uow: UnitOfWork) -> None:
        """Write what is pending, releasing the contact locks the unit of work still holds."""
        held, uow.held = uow.held, []
        error: BaseException | None = None
        for _, release in reversed(held):
            try:
                await release()  # the first release writes the pending writes with it
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        await self.flush()

    async def flush(self, *extra: Step, name: str | None = None) -> list[list[dict[str, Any]]]:
        """Write the deferred writes now, with ``extra`` statements after them, in one transaction.

        One store-operation span covers the batch (named ``name`` when given).

        Returns:
            The rows of each ``extra`` step.
        """
        uow = self._uow.get()
        writes: list[_Write] = []
        if uow is not None:
            writes, uow.pending = uow.pending, []
        steps = _group(writes)
        if not steps and not extra:
            return []
        batch = [*steps, *extra]
        with self._spans.operation([step.sql for step in batch], name):
            results = await self._run_steps(batch)
        return results[len(steps) :]

    def _deferring(self) -> UnitOfWork | None:
        uow = self._uow.get()
        if uow is None or self._in_transaction():
            return None
        return uow

    async def _write(self, sql: str, args: tuple[Any, ...], *, key: tuple[str, ...] | None = None) -> None:
        """Run a write whose result is not needed: deferred inside a unit of work, at once otherwise."""
        uow = self._deferring()
        if uow is None:
            await self._sql(sql, args)
            return
        _, table = describe_statement(sql)
        if key is not None:
            uow.pending = [w for w in uow.pending if w.key != key]
        uow.pending.append(_Write(table or "", sql, args, key))

    async def _sql(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        """Run one statement now, after the deferred writes it could depend on."""
        uow = self._uow.get()
        if uow is not None and uow.pending and _depends(sql, uow.pending):
            await self.flush()
        if uow is not None and uow.circuits is not None:
            verb, table = describe_statement(sql)
            if table == "outbox_circuits" and verb != "SELECT":
                uow.circuits = None  # changed: read it again
        with self._spans.operation((sql,)):
            return await self._query(sql, args, exclusive=exclusive)

    def _known(self, contact_id: str) -> UnitOfWork | None:
        """The unit of work that may serve ``contact_id``'s rows from memory."""
        uow = self._uow.get()
        if uow is not None and uow.contact_id == contact_id:
            return uow
        return None

    async def _one(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> dict[str, Any] | None:
        rows = await self._sql(sql, args, exclusive=exclusive)
        return rows[0] if rows else None

    async def _durable_one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        """Like :meth:`_one`, for the write that must survive a power loss (the webhook intake).

        A backend that relaxes durability for its other commits makes this one wait for the disk.
        """
        return await self._one(sql, args)

    async def _claim_due(
        self,
        table: str,
        ready: str,
        due_column: str,
        taken: str,
        now: datetime,
        limit: int,
        stale_before: datetime | None,
    ) -> list[dict[str, Any]]:
        """Move up to ``limit`` due rows of ``table`` to status ``taken``, each for exactly one caller.

        A row is due when ``ready`` holds and ``due_column`` is at or before ``now``,
        or (with ``stale_before``) when it was left in ``taken`` since before that
        time. Every argument but the times and the limit is a fixed SQL fragment.
        """
        due = f"({ready} AND {due_column} <= ?)"
        conditions: list[Any] = [utc("now", now)]
        if stale_before is not None:
            due = f"({due} OR (status = '{taken}' AND updated_at < ?))"
            conditions.append(utc("stale_before", stale_before))
        # The outer repeat of the condition makes a row another claimer took
        # between our read and our write drop out (PostgreSQL re-checks it on the
        # row's newest version).
        return await self._sql(
            f"""UPDATE {table} SET status = '{taken}', attempts = attempts + 1, updated_at = ?
                WHERE id IN (SELECT id FROM {table} WHERE {due}
                             ORDER BY {due_column}, id LIMIT ?{self._skip_locked})
                  AND {due}
                RETURNING *""",
            (_now(), *conditions, limit, *conditions),
            exclusive=True,
        )

    # --- contact lock -------------------------------------------------------------
    def contact_lock(self, contact_id: str, timeout: float = 30.0) -> AbstractAsyncContextManager[None]:
        """Serialise holders of one contact across tasks and processes; one unit of work inside.

        Tasks of this process queue on an in-process lock first; the backend's
        :meth:`_hold_across_processes` then excludes other processes. The block
        runs as a unit of work (see :meth:`unit_of_work`) whose deferred writes are
        written before the lock is released, and the contact's row, recent
        messages and handoffs are read once and served from memory meanwhile.

        Args:
            contact_id: the contact.
            timeout: seconds to wait for the lock.

        Raises:
            LockTimeoutError: another holder kept it for ``timeout`` seconds.
            LockLostError: the lock was lost while held (another process took the
                lease over, or the lock connection died): the block is cancelled at
                its next ``await`` rather than left running unguarded.
        """
        return self._hold_contact(contact_id, timeout)

    @asynccontextmanager
    async def _hold_contact(self, contact_id: str, wait: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + wait
        key = f"contact:{contact_id}"
        error = lock_timeout_error(contact_id, wait)
        outer = self._uow.get()
        if outer is None:
            async with (
                self._local_locks.hold(key, deadline, error),
                self.unit_of_work(),
                self._hold_across_processes(contact_id, key, deadline, error) as lost,
                _abort_when_lost(contact_id, key, lost),
            ):
                yield
            return
        if any(name == key for name, _ in outer.held):
            yield  # this unit of work holds it already
            return
        # Inside a longer unit of work (the webhook route's), the lock is kept until
        # that one is written: its writes and the lock's release go in one round trip.
        async with self._scoped(outer):
            local = self._local_locks.hold(key, deadline, error)
            await local.__aenter__()
            across = self._hold_across_processes(contact_id, key, deadline, error)
            try:
                lost = await across.__aenter__()  # also reads the contact's rows into the unit of work
            except BaseException:
                await local.__aexit__(None, None, None)
                raise

            async def release() -> None:
                try:
                    await across.__aexit__(None, None, None)
                finally:
                    await local.__aexit__(None, None, None)

            outer.held.append((key, release))
            async with _abort_when_lost(contact_id, key, lost):
                yield

    @asynccontextmanager
    async def _scoped(self, uow: UnitOfWork) -> AsyncIterator[None]:
        """Restore the unit of work's known rows after a lock of (perhaps) another contact."""
        saved = (
            uow.contact_id,
            uow.contact,
            uow.contact_known,
            uow.messages,
            uow.messages_complete,
            uow.handoffs,
            uow.handoffs_since,
            uow.slots,
            uow.events,
        )
        try:
            yield
        finally:
            (
                uow.contact_id,
                uow.contact,
                uow.contact_known,
                uow.messages,
                uow.messages_complete,
                uow.handoffs,
                uow.handoffs_since,
                uow.slots,
                uow.events,
            ) = saved

    def _enter_contact(
        self,
        contact_id: str,
        prefetched: tuple[Step, Sequence[dict[str, Any]]] | None = None,
        claimed: int | None = None,
    ) -> None:
        """Serve ``contact_id``'s rows from memory from now on (the caller holds its lock).

        Args:
            contact_id: the locked contact.
            prefetched: the step of :meth:`_prefetch_step` and its rows, when the backend read them.
            claimed: the event the lock's round trip claimed (see ``UnitOfWork.claim``), when
                the backend claimed it in a statement of its own; one claimed in the prefetch
                statement (:func:`prefetch_claim_sql`) is read from its rows.
        """
        uow = self._uow.get()
        if uow is None:
            return
        uow.claimed = claimed
        uow.contact_id = contact_id
        uow.contact, uow.contact_known = None, False
        uow.messages, uow.messages_complete = None, False
        uow.handoffs, uow.handoffs_since = None, None
        uow.slots = None
        uow.events = None
        if prefetched is None:
            return
        step, rows = prefetched
        read = _read_prefetch(rows)
        contacts = read.get("contacts", [])
        uow.contact = _contact(contacts[0]) if contacts else None
        uow.contact_known = True
        messages = [_message(r) for r in read.get("messages", [])]
        uow.messages = sorted(messages, key=lambda m: (m.created_at, m.id))
        uow.messages_complete = len(messages) < PREFETCH_MESSAGES
        uow.slots = sorted((_slot(r) for r in read.get("slots", [])), key=lambda s: (s.side, s.name))
        handoffs = [_handoff(r) for r in read.get("handoffs", [])]
        uow.handoffs = sorted(handoffs, key=lambda h: (h.created_at, h.id))
        uow.handoffs_since = step.rows[0][_SINCE_ARG]
        uow.events = _event_order([_webhook_event(r) for r in read.get("events", [])])
        for row in read.get("claimed", ()):
            uow.claimed = int(row["id"])
        uow.circuits = {
            r["location_id"]: Circuit(int(r["failures"]), r["next_probe_at"])
            for r in read.get("circuits", [])
        }

    def _lock_claim(self, contact_id: str) -> tuple[Any, ...] | None:
        """The arguments of :data:`CLAIM_ALONE` for the unit of work's ``claim``, or None; taken once."""
        uow = self._uow.get()
        if uow is None or uow.claim is None:
            return None
        event_id, uow.claim = uow.claim, None
        return (_now(), event_id, contact_id, contact_id, event_id)

    def _prefetch_step(self, contact_id: str, claim: tuple[Any, ...] | None = None) -> Step:
        """What every locked turn reads first, in ONE statement: the contact, its newest messages,
        its slots, its handoffs of the last day and its ``received`` events (see :func:`prefetch_sql`).

        With ``claim`` (:meth:`_lock_claim`'s arguments) the statement also claims that
        event (:func:`prefetch_claim_sql`, PostgreSQL only).
        """
        since = _now() - PREFETCH_HANDOFFS
        args = (
            contact_id,
            contact_id,
            PREFETCH_MESSAGES,
            contact_id,
            contact_id,
            since,
            contact_id,
            PREFETCH_EVENTS,
        )
        assert args[_SINCE_ARG] is since
        if claim is not None:
            return Step(prefetch_claim_sql(self.dialect), ((*claim, *args),))
        return Step(prefetch_sql(self.dialect), (args,))

    async def _flush_and_release(
        self,
        contact_id: str,
        failed: bool,
        *release: Step,
        after: Callable[[], Awaitable[None]] | None = None,
        after_sql: str | None = None,
    ) -> None:
        """Write the deferred writes with the lock's ``release`` statements, then run ``after``.

        One store operation (one span). When the block ``failed``, a failing write
        is logged (the block's error is the one raised); ``after`` always runs. When
        the unit of work asked to recheck ``contact_id``, its ``received`` events are
        read in the same batch (``UnitOfWork.rechecked``).
        """
        uow = self._uow.get()
        writes: list[_Write] = []
        recheck: Step | None = None
        if uow is not None:
            writes, uow.pending = uow.pending, []
            failed = failed or uow.failed
            if uow.recheck == contact_id:
                recheck = Step(_PENDING_EVENTS, ((contact_id, PREFETCH_EVENTS),), snapshot=True)
        steps = [*_group(writes), *release, *([recheck] if recheck else [])]
        statements = [step.sql for step in steps] + ([after_sql] if after_sql else [])
        if not statements:
            return
        with self._spans.operation(statements):
            try:
                if steps:
                    results = await self._run_steps(steps)
                    if recheck is not None and uow is not None:
                        uow.rechecked = _event_order([_webhook_event(r) for r in results[-1]])
            except Exception:
                if not failed:
                    raise
                logger.exception("could not write what a failed locked block had done")
            finally:
                if after is not None:
                    await after()

    @abstractmethod
    def _hold_across_processes(
        self, contact_id: str, key: str, deadline: float, error: Exception
    ) -> AbstractAsyncContextManager[asyncio.Event]:
        """Hold ``key`` against other processes until the block ends.

        Waits until the event loop's clock reaches ``deadline``, then raises ``error``.
        Calls :meth:`_enter_contact` once held, and :meth:`_flush_and_release`
        before letting go. Yields an event the backend sets when it finds the lock
        lost while held.
        """

    async def schema_version(self) -> int:
        """The highest applied schema version (0 before the first migration)."""
        row = await self._one("SELECT MAX(version) AS version FROM schema_version")
        return int(row["version"]) if row and row["version"] is not None else 0

    # --- contacts -----------------------------------------------------------
    async def get_contact(self, contact_id: str) -> Contact | None:
        """The contact, or None when it was never stored."""
        uow = self._known(contact_id)
        if uow is not None and uow.contact_known:
            return None if uow.contact is None else _copy_contact(uow.contact)
        row = await self._one("SELECT * FROM contacts WHERE contact_id = ?", (contact_id,))
        contact = None if row is None else _contact(row)
        if uow is not None:
            uow.contact, uow.contact_known = contact, True
            return None if contact is None else _copy_contact(contact)
        return contact

    async def upsert_contact(self, contact: Contact) -> Contact:
        """Insert or replace the contact's fields; ``created_at`` is kept from the first insert.

        Deferred inside a unit of work (the returned contact is what will be written).
        """
        now = _now()
        uow = self._known(contact.contact_id)
        if contact.created_at is None and uow is not None and uow.contact is not None:
            contact = replace(contact, created_at=uow.contact.created_at)
        created = utc("contact.created_at", contact.created_at) if contact.created_at else now
        args = (
            contact.contact_id,
            contact.location_id,
            contact.current_bot,
            contact.temperature,
            list(contact.tags),
            contact.opted_out,
            contact.escalated,
            dict(contact.state),
            created,
            now,
        )
        if self._deferring() is not None:
            await self._write(_UPSERT_CONTACT, args, key=("contact", contact.contact_id))
            saved = replace(
                contact,
                tags=list(contact.tags),
                state=dict(contact.state),
                created_at=created,
                updated_at=now,
            )
            if uow is not None:
                uow.contact, uow.contact_known = saved, True
            return _copy_contact(saved)
        row = await self._one(_UPSERT_CONTACT + " RETURNING *", args)
        assert row is not None  # an upsert always returns its row
        saved = _contact(row)
        if uow is not None:
            uow.contact, uow.contact_known = saved, True
        return _copy_contact(saved)

    # --- messages -----------------------------------------------------------
    async def add_message(
        self,
        contact_id: str,
        direction: str,
        body: str,
        channel: str,
        *,
        message_id: str | None = None,
        created_at: datetime | None = None,
        defer: bool = False,
    ) -> Message:
        """Store one message (``direction`` is ``inbound`` or ``outbound``).

        With ``defer`` inside a unit of work, the row is written with the unit's
        other writes and the returned message has ``id`` 0 (the caller does not
        need the id); the unit's later reads of the contact's messages see it.
        """
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"unknown message direction {direction!r}: use 'inbound' or 'outbound'")
        at = utc("created_at", created_at) if created_at else _now()
        sql = """INSERT INTO messages (contact_id, direction, body, channel, message_id, created_at)
               VALUES (?, ?, ?, ?, ?, ?)"""
        args = (contact_id, direction, body, channel, message_id, at)
        if defer and self._deferring() is not None:
            await self._write(sql, args)
            message = Message(0, contact_id, direction, body, channel, at, message_id)
        else:
            row = await self._one(sql + " RETURNING *", args)
            assert row is not None
            message = _message(row)
        uow = self._known(contact_id)
        if uow is not None and uow.messages is not None:
            known = sorted([*uow.messages, message], key=lambda m: (m.created_at, m.id))
            if not uow.messages_complete and known[0] is message:
                uow.messages = None  # older than what we hold: the window is no longer contiguous
            else:
                uow.messages = known
        return message

    async def list_messages(self, contact_id: str, limit: int = 50) -> list[Message]:
        """The last ``limit`` messages of a contact, oldest first."""
        uow = self._known(contact_id)
        if (
            uow is not None
            and uow.messages is not None
            and (uow.messages_complete or len(uow.messages) >= limit)
        ):
            return list(uow.messages[-limit:]) if limit > 0 else []
        rows = await self._sql(_LIST_MESSAGES, (contact_id, limit))
        messages = [_message(r) for r in reversed(rows)]
        if uow is not None and (uow.messages is None or len(messages) > len(uow.messages)):
            uow.messages, uow.messages_complete = list(messages), len(rows) < limit
        return messages

    async def outbox_circuit(self, location_id: str) -> Circuit | None:
        """The location's outage state; None while GHL answers. Served from a contact lock's read."""
        uow = self._uow.get()
        if uow is not None and uow.circuits is not None:
            return uow.circuits.get(location_id)
        return await super().outbox_circuit(location_id)

    # --- webhook events -----------------------------------------------------
    async def pending_contact_events(self, contact_id: str, limit: int = 100) -> list[WebhookEvent]:
        """The contact's ``received`` events in ``dateAdded`` order, then arrival (NULL dates last).

        The first call under the contact's lock is served from what the lock read.
        """
        uow = self._known(contact_id)
        if uow is not None and uow.events is not None:
            events, uow.events = uow.events, None  # served once: claims change them
            if len(events) < PREFETCH_EVENTS or limit <= len(events):
                return events[:limit]
        return await super().pending_contact_events(contact_id, limit)

    async def record_webhook_event(
        self,
        *,
        webhook_id: str | None,
        message_id: str | None,
        event_type: str,
        contact_id: str | None,
        payload: dict[str, Any],
        status: str = "received",
        trace_context: dict[str, str] | None = None,
        date_added: datetime | None = None,
    ) -> WebhookInsert:
        """Store a delivery once; a known webhookId or messageId is reported as a duplicate.

        ``date_added`` (GHL's time of the message) orders a contact's events.

        ``status="processing"`` stores and claims it in the same statement (one
        attempt counted): the caller processes it now. The new row comes back as
        :attr:`WebhookInsert.event`.
        """
        _check_status("webhook event", status, WEBHOOK_STATUSES)
        attempts = 1 if status == "processing" else 0
        # A conflicting row can vanish between the insert and the lookup only if
        # someone deletes events; retrying covers that without ever raising a
        # unique violation at the caller.
        for _ in range(3):
            now = _now()
            row = await self._durable_one(
                """INSERT INTO webhook_events (webhook_id, message_id, event_type, contact_id, payload,
                       status, attempts, received_at, updated_at, trace_context, date_added)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT DO NOTHING RETURNING *""",
                (
                    webhook_id,
                    message_id,
                    event_type,
                    contact_id,
                    dict(payload),
                    status,
                    attempts,
                    now,
                    now,
                    dict(trace_context or {}),
                    None if date_added is None else utc("date_added", date_added),
                ),
            )
            if row is not None:
                return WebhookInsert(event_id=int(row["id"]), duplicate=False, event=_webhook_event(row))
            existing = await self._one(
                """SELECT id FROM webhook_events WHERE webhook_id = ? OR message_id = ?
                   ORDER BY id LIMIT 1""",
                (webhook_id, message_id),
            )
            if existing is not None:
                return WebhookInsert(event_id=int(existing["id"]), duplicate=True)
        raise RuntimeError(  # pragma: no cover - needs a concurrent delete three times in a row
            f"webhook event webhook_id={webhook_id!r} message_id={message_id!r} conflicted but "
            "its twin kept disappearing"
        )

    async def claim_webhook_event(self, event_id: int, *, stale_before: datetime | None = None) -> bool:
        """Move ``received``/``failed`` to ``processing``; False when someone else has it.

        Args:
            event_id: the event.
            stale_before: also take over an event stuck in ``processing`` since
                before this time (its worker died).
        """
        uow = self._uow.get()
        if stale_before is None and uow is not None and uow.claimed == event_id:
            uow.claimed = None  # claimed with the contact's lock (see UnitOfWork.claim)
            return True
        sql = """UPDATE webhook_events SET status = 'processing', attempts = attempts + 1, updated_at = ?
                 WHERE id = ? AND status IN ('received', 'failed') RETURNING id"""
        args: tuple[Any, ...] = (_now(), event_id)
        if stale_before is not None:
            sql = """UPDATE webhook_events SET status = 'processing', attempts = attempts + 1, updated_at = ?
                     WHERE id = ? AND (status IN ('received', 'failed')
                           OR (status = 'processing' AND updated_at < ?)) RETURNING id"""
            args = (*args, utc("stale_before", stale_before))
        return await self._one(sql, args) is not None

    async def finish_webhook_event(self, event_id: int, status: str, error: str | None = None) -> None:
        """Set the final status (``processed``, ``ignored``, ``failed``) and error text.

        Deferred inside a unit of work.
        """
        _check_status("webhook event", status, WEBHOOK_STATUSES)
        await self._write(
            "UPDATE webhook_events SET status = ?, error = ?, updated_at = ? WHERE id = ?",
            (status, error, _now(), event_id),
        )

    async def get_webhook_event(self, event_id: int) -> WebhookEvent | None:
        """The event, or None."""
        row = await self._one("SELECT * FROM webhook_events WHERE id = ?", (event_id,))
        return None if row is None else _webhook_event(row)

    async def list_unprocessed_webhook_events(
        self, older_than: datetime, limit: int = 100
    ) -> list[WebhookEvent]:
        """Events still ``received`` or stuck ``processing`` since before ``older_than``, oldest first."""
        rows = await self._sql(
            """SELECT * FROM webhook_events
               WHERE status IN ('received', 'processing') AND updated_at < ?
               ORDER BY received_at, id LIMIT ?""",
            (utc("older_than", older_than), limit),
        )
        return [_webhook_event(r) for r in rows]

    # --- outbox ---------------------------------------------------------------
    async def enqueue_outbox(
        self,
        idempotency_key: str,
        kind: str,
        payload: dict[str, Any],
        *,
        contact_id: str | None = None,
        claim: bool = False,
        owner: str | None = None,
        due_at: datetime | None = None,
        deadline_at: datetime | None = None,
    ) -> tuple[OutboxItem, bool]:
        """Write an item once; returns (item, created). A known key returns the stored item.

        With ``claim`` a new item is stored already claimed (``sending``, one
        attempt, by ``owner``): the caller sends it now, and nobody else can.
        ``due_at`` (default now) and ``deadline_at`` come from the caller's clock.
        """
        now = _now()
        due = utc("due_at", due_at) if due_at is not None else now
        deadline = utc("deadline_at", deadline_at) if deadline_at is not None else None
        status, attempts = ("sending", 1) if claim else ("pending", 0)
        row = await self._one(
            """INSERT INTO outbox (idempotency_key, kind, contact_id, payload, status, attempts,
                   next_attempt_at, created_at, updated_at, owner, first_attempt_at, deadline_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (idempotency_key) DO NOTHING RETURNING *""",
            (
                idempotency_key,
                kind,
                contact_id,
                dict(payload),
                status,
                attempts,
                due,
                now,
                now,
                owner if claim else None,
                now if claim else None,
                deadline,
            ),
        )
        if row is not None:
            return _outbox_item(row), True
        existing = await self._one("SELECT * FROM outbox WHERE idempotency_key = ?", (idempotency_key,))
        assert existing is not None  # the conflict proves it exists; outbox rows are never deleted
        return _outbox_item(existing), False

    async def claim_outbox_item(self, item_id: int) -> OutboxItem | None:
        """``pending`` -> ``sending`` for one item; None when it is not pending."""
        row = await self._one(
            """UPDATE outbox SET status = 'sending', attempts = attempts + 1, updated_at = ?
               WHERE id = ? AND status = 'pending' RETURNING *""",
            (_now(), item_id),
        )
        return None if row is None else _outbox_item(row)

    async def claim_due_outbox(
        self, now: datetime, limit: int = 50, *, stale_before: datetime | None = None
    ) -> list[OutboxItem]:
        """Claim due ``pending`` items (now ``sending``), each by exactly one caller.

        Args:
            now: items whose ``next_attempt_at`` is at or before it are due.
            limit: at most this many.
            stale_before: also take over items stuck in ``sending`` since before
                this time (their sender died before recording the result).
        """
        rows = await self._claim_due(
            "outbox", "status = 'pending'", "next_attempt_at", "sending", now, limit, stale_before
        )
        items = [_outbox_item(r) for r in rows]
        return sorted(items, key=lambda i: (i.next_attempt_at, i.id))

    async def mark_outbox_sent(self, item_id: int, response: dict[str, Any] | None = None) -> None:
        """The item was delivered; keep GHL's answer (deferred in a unit of work)."""
        await self._write(
            "UPDATE outbox SET status = 'sent', response = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            (None if response is None else dict(response), _now(), item_id),
        )

    async def mark_outbox_failed(self, item_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """Back to ``pending`` at ``next_attempt_at``; ``failed`` for good when it is None.

        Deferred inside a unit of work.
        """
        if next_attempt_at is None:
            await self._write(
                "UPDATE outbox SET status = 'failed', last_error = ?, updated_at = ? WHERE id = ?",
                (error, _now(), item_id),
            )
            return
        await self._write(
            """UPDATE outbox SET status = 'pending', last_error = ?, next_attempt_at = ?, updated_at = ?
               WHERE id = ?""",
            (error, utc("next_attempt_at", next_attempt_at), _now(), item_id),
        )

    async def get_outbox_item(self, item_id: int) -> OutboxItem | None:
        """The item, or None."""
        row = await self._one("SELECT * FROM outbox WHERE id = ?", (item_id,))
        return None if row is None else _outbox_item(row)

    async def list_outbox(self, status: str | None = None, limit: int = 1000) -> list[OutboxItem]:
        """Items in creation order, optionally of one status."""
        if status is None:
            rows = await self._sql("SELECT * FROM outbox ORDER BY id LIMIT ?", (limit,))
        else:
            _check_status("outbox", status, OUTBOX_STATUSES)
            rows = await self._sql(
                "SELECT * FROM outbox WHERE status = ? ORDER BY id LIMIT ?", (status, limit)
            )
        return [_outbox_item(r) for r in rows]

    # --- handoffs -------------------------------------------------------------
    async def record_handoff(
        self,
        contact_id: str,
        source_bot: str,
        target_bot: str,
        confidence: float,
        reason: str,
        outcome: str,
        created_at: datetime | None = None,
    ) -> Handoff:
        """Store one evaluated or executed handoff.

        Deferred inside a unit of work: the returned row then has ``id`` 0 (the
        database assigns it when the unit of work is written).
        """
        at = utc("created_at", created_at) if created_at else _now()
        args = (contact_id, source_bot, target_bot, float(confidence), reason, outcome, at)
        sql = """INSERT INTO handoffs (contact_id, source_bot, target_bot, confidence, reason, outcome,
                   created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)"""
        if self._deferring() is not None:
            await self._write(sql, args)
            handoff = Handoff(0, contact_id, source_bot, target_bot, float(confidence), reason, outcome, at)
        else:
            row = await self._one(sql + " RETURNING *", args)
            assert row is not None
            handoff = _handoff(row)
        uow = self._known(contact_id)
        if uow is not None and uow.handoffs is not None:
            uow.handoffs.append(handoff)
        return handoff

    async def list_handoffs(self, contact_id: str, since: datetime | None = None) -> list[Handoff]:
        """A contact's handoffs, oldest first, at or after ``since`` when given."""
        since = None if since is None else utc("since", since)
        uow = self._known(contact_id)
        if (
            uow is not None
            and uow.handoffs is not None
            and (uow.handoffs_since is None or (since is not None and since >= uow.handoffs_since))
        ):
            return [h for h in uow.handoffs if since is None or h.created_at >= since]
        if since is None:
            rows = await self._sql(
                "SELECT * FROM handoffs WHERE contact_id = ? ORDER BY created_at, id", (contact_id,)
            )
        else:
            rows = await self._sql(
                """SELECT * FROM handoffs WHERE contact_id = ? AND created_at >= ?
                   ORDER BY created_at, id""",
                (contact_id, since),
            )
        handoffs = [_handoff(r) for r in rows]
        if uow is not None:
            uow.handoffs, uow.handoffs_since = list(handoffs), since
        return handoffs

    # --- follow-ups -----------------------------------------------------------
    async def schedule_followup(
        self, contact_id: str, step: str, due_at: datetime, trace_context: dict[str, str]
    ) -> FollowUp:
        """Store a pending step due at ``due_at`` with the scheduler's trace context."""
        now = _now()
        row = await self._one(
            """INSERT INTO followups (contact_id, step, due_at, status, attempts, trace_context,
                   created_at, updated_at)
               VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) RETURNING *""",
            (contact_id, step, utc("due_at", due_at), dict(trace_context), now, now),
        )
        assert row is not None
        return _followup(row)

    async def replace_followups(
        self,
        contact_id: str,
        steps: Sequence[tuple[str, datetime]],
        trace_context: dict[str, str],
        *,
        defer: bool = False,
    ) -> list[FollowUp]:
        """Cancel the contact's waiting steps and store ``steps`` instead, in one transaction.

        One round trip, together with the unit of work's deferred writes.

        Args:
            contact_id: the contact.
            steps: ``(step, due_at)`` pairs to store as ``pending``.
            trace_context: the scheduling trace's W3C carrier, kept on every step.
            defer: inside a unit of work, write them with its other writes (the caller does
                not need their ids: the returned steps then have ``id`` 0).

        Returns:
            The stored steps, in the order given.
        """
        now = _now()
        cancel = Step(
            """UPDATE followups SET status = 'cancelled', updated_at = ?
               WHERE contact_id = ? AND status IN ('pending', 'failed')""",
            ((now, contact_id),),
        )
        if not steps:
            # Nothing to return, so nothing to wait for: deferred inside a unit of work.
            await self._write(cancel.sql, cancel.rows[0])
            return []
        values = ", ".join(["(?, ?, ?, 'pending', 0, ?, ?, ?)"] * len(steps))
        args: list[Any] = []
        for step, due_at in steps:
            args.extend((contact_id, step, utc("due_at", due_at), dict(trace_context), now, now))
        insert = Step(
            f"""INSERT INTO followups (contact_id, step, due_at, status, attempts, trace_context,
                   created_at, updated_at)
               VALUES {values}""",
            (tuple(args),),
        )
        if defer and self._deferring() is not None:
            await self._write(cancel.sql, cancel.rows[0])
            await self._write(insert.sql, insert.rows[0])
            carrier = dict(trace_context)
            return [
                FollowUp(0, contact_id, step, utc("due_at", due_at), "pending", 0, carrier, now)
                for step, due_at in steps
            ]
        insert = replace(insert, sql=insert.sql + " RETURNING *")
        if self._in_transaction():
            await self._sql(cancel.sql, cancel.rows[0])
            rows = await self._sql(insert.sql, insert.rows[0])
        else:
            _, rows = await self.flush(cancel, insert)
        by_step = {r["step"]: _followup(r) for r in rows}
        return [by_step[step] for step, _ in steps]

    async def cancel_followups(self, contact_id: str) -> int:
        """Cancel every step of a contact still waiting to run (``pending`` or ``failed``)."""
        rows = await self._sql(
            """UPDATE followups SET status = 'cancelled', updated_at = ?
               WHERE contact_id = ? AND status IN ('pending', 'failed') RETURNING id""",
            (_now(), contact_id),
        )
        return len(rows)

    async def claim_due_followups(
        self, now: datetime, limit: int = 20, *, stale_before: datetime | None = None
    ) -> list[FollowUp]:
        """Claim due ``pending``/``failed`` steps (now ``running``), each by exactly one caller.

        Args:
            now: steps due at or before it are claimed.
            limit: at most this many.
            stale_before: also take over steps stuck in ``running`` since before
                this time (their worker died).
        """
        rows = await self._claim_due(
            "followups", "status IN ('pending', 'failed')", "due_at", "running", now, limit, stale_before
        )
        steps = [_followup(r) for r in rows]
        return sorted(steps, key=lambda f: (f.due_at, f.id))

    async def complete_followup(self, followup_id: int) -> None:
        """The step ran: ``done`` (deferred in a unit of work)."""
        await self._write(
            "UPDATE followups SET status = 'done', last_error = NULL, updated_at = ? WHERE id = ?",
            (_now(), followup_id),
        )

    async def fail_followup(self, followup_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """``failed`` to retry at ``next_attempt_at``; ``dead`` when it is None.

        Deferred inside a unit of work.
        """
        if next_attempt_at is None:
            await self._write(
                "UPDATE followups SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
                (error, _now(), followup_id),
            )
            return
        await self._write(
            """UPDATE followups SET status = 'failed', last_error = ?, due_at = ?, updated_at = ?
               WHERE id = ?""",
            (error, utc("next_attempt_at", next_attempt_at), _now(), followup_id),
        )

    async def list_followups(self, contact_id: str | None = None) -> list[FollowUp]:
        """Steps in due order, of one contact or of all."""
        if contact_id is None:
            rows = await self._sql("SELECT * FROM followups ORDER BY due_at, id")
        else:
            rows = await self._sql(
                "SELECT * FROM followups WHERE contact_id = ? ORDER BY due_at, id", (contact_id,)
            )
        return [_followup(r) for r in rows]

    # --- operational gauges (issue 11) ---------------------------------------------
    async def backlog_counts(self, now: datetime) -> dict[str, int]:
        """Outbox and follow-up counts for ``/metrics``, in one statement."""
        row = await self._one(
            """SELECT
                 (SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')) AS outbox_pending,
                 (SELECT COUNT(*) FROM outbox WHERE status IN ('failed', 'dead')) AS outbox_failed,
                 (SELECT COUNT(*) FROM followups
                   WHERE status IN ('pending', 'failed') AND due_at <= ?) AS followups_due,
                 (SELECT COUNT(*) FROM followups WHERE status = 'dead') AS followups_dead""",
            (utc("now", now),),
        )
        assert row is not None  # an aggregate always returns one row
        return {key: int(value) for key, value in row.items()}

    # --- dialogue slots (issue 10) ------------------------------------------------
    async def list_slots(self, contact_id: str) -> list[Slot]:
        """Every stored slot of a contact, ordered by side and name."""
        uow = self._known(contact_id)
        if uow is not None and uow.slots is not None:
            return list(uow.slots)
        rows = await self._sql(_LIST_SLOTS, (contact_id,))
        slots = [_slot(r) for r in rows]
        if uow is not None:
            uow.slots = list(slots)
        return slots

    async def save_slots(self, contact_id: str, slots: list[Slot]) -> None:
        """Insert or replace the given slots of a contact, all in one statement; others are kept.

        Deferred inside a unit of work.

        Raises:
            ValueError: the same (side, name) is given twice.
        """
        if not slots:
            return
        seen = {(s.side, s.name) for s in slots}
        if len(seen) != len(slots):
            raise ValueError(f"save_slots got one (side, name) twice: {sorted(seen)!r}")
        now = _now()
        values = ", ".join("(?, ?, ?, ?, ?)" for _ in slots)
        args: list[Any] = []
        for slot in slots:
            # Wrapped so any JSON value (a number, a list, null) fits the JSON column alike.
            args.extend((contact_id, slot.side, slot.name, {"v": slot.value}, now))
        uow = self._known(contact_id)
        if uow is not None and uow.slots is not None:
            given = {(slot.side, slot.name): replace(slot, updated_at=now) for slot in slots}
            kept = {(slot.side, slot.name): slot for slot in uow.slots}
            uow.slots = [item for _, item in sorted({**kept, **given}.items())]
        # Nothing to return: deferred inside a unit of work, written with its other writes.
        await self._write(
            f"""INSERT INTO dialogue_slots (contact_id, side, name, value, updated_at) VALUES {values}
                ON CONFLICT (contact_id, side, name) DO UPDATE SET
                    value = excluded.value, updated_at = excluded.updated_at""",
            tuple(args),
        )
