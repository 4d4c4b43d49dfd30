"""The table logic both stores share, written once against one query primitive.

:class:`SQLStore` implements every row method of the Store protocol with
portable SQL (``?`` placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``);
a backend supplies :meth:`SQLStore._query` (run one statement, return its rows
as dicts of Python values), the claim hint (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and the connection life cycle. Keeping one copy of the SQL is what
makes the two backends behave the same.
"""

from __future__ import annotations

import asyncio
import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ghl_real_estate_ai.errors import LockTimeoutError
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
    "TxState",
    "describe_statement",
    "lock_timeout_error",
    "redact_url",
    "utc",
]

WEBHOOK_STATUSES = frozenset({"received", "processing", "processed", "ignored", "failed"})
OUTBOX_STATUSES = frozenset({"pending", "sending", "sent", "failed"})
FOLLOWUP_STATUSES = frozenset({"pending", "running", "done", "cancelled", "failed", "dead"})


_VERB = re.compile(r"^\s*(\w+)")
_TABLE_PATTERNS = {
    "SELECT": re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE),
    "DELETE": re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE),
    "INSERT": re.compile(r"\bINTO\s+(\w+)", re.IGNORECASE),
    "UPDATE": re.compile(r"^\s*UPDATE\s+(\w+)", re.IGNORECASE),
    "CREATE": re.compile(r"\b(?:TABLE(?:\s+IF\s+NOT\s+EXISTS)?|ON)\s+(\w+)", re.IGNORECASE),
}


@lru_cache(maxsize=512)
def describe_statement(sql: str) -> tuple[str, str | None]:
    """The SQL verb and main table of a statement (``("UPDATE", "outbox")``); table None when unknown."""
    match = _VERB.match(sql)
    verb = match.group(1).upper() if match else ""
    pattern = _TABLE_PATTERNS.get(verb)
    table = pattern.search(sql) if pattern else None
    return verb, table.group(1) if table else None


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


@dataclass(slots=True, eq=False)
class TxState:
    """The connection of an open ``transaction()`` block, shared by the calls inside it."""

    conn: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: bool = True


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
    )


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


def _check_status(kind: str, status: str, allowed: frozenset[str]) -> None:
    if status not in allowed:
        raise ValueError(f"unknown {kind} status {status!r}: use one of {sorted(allowed)}")


class SQLStore(ABC):
    """Every row method of the Store protocol, over :meth:`_query`."""

    backend: str
    dialect: Dialect
    _skip_locked: str = ""
    """Appended to the inner SELECT of a claim (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    def __init__(self, database_url: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.database_url = database_url
        self.safe_url = redact_url(database_url)
        self._migrations = tuple(sorted(migrations, key=lambda m: m.version))
        self._local_locks = KeyedLocks()

    @abstractmethod
    async def _query(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> list[dict[str, Any]]:
        """Run one statement and return its rows (``[]`` when it returns none).

        ``exclusive`` asks for the write lock before the statement reads anything
        (SQLite ``BEGIN IMMEDIATE``), which claims need to be exactly-once.
        """

    async def _one(
        self, sql: str, args: Sequence[Any] = (), *, exclusive: bool = False
    ) -> dict[str, Any] | None:
        rows = await self._query(sql, args, exclusive=exclusive)
        return rows[0] if rows else None

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
        return await self._query(
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
        """Serialise holders of one contact across tasks and processes.

        Tasks of this process queue on an in-process lock first; the backend's
        :meth:`_hold_across_processes` then excludes other processes.

        Args:
            contact_id: the contact.
            timeout: seconds to wait for the lock.

        Raises:
            LockTimeoutError: another holder kept it for ``timeout`` seconds.
        """
        return self._hold_contact(contact_id, timeout)

    @asynccontextmanager
    async def _hold_contact(self, contact_id: str, wait: float) -> AsyncIterator[None]:
        deadline = asyncio.get_running_loop().time() + wait
        key = f"contact:{contact_id}"
        error = lock_timeout_error(contact_id, wait)
        async with (
            self._local_locks.hold(key, deadline, error),
            self._hold_across_processes(contact_id, key, deadline, error),
        ):
            yield

    @abstractmethod
    def _hold_across_processes(
        self, contact_id: str, key: str, deadline: float, error: Exception
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``key`` against other processes until the block ends.

        Waits until the event loop's clock reaches ``deadline``, then raises ``error``.
        """

    async def schema_version(self) -> int:
        """The highest applied schema version (0 before the first migration)."""
        row = await self._one("SELECT MAX(version) AS version FROM schema_version")
        return int(row["version"]) if row and row["version"] is not None else 0

    # --- contacts -----------------------------------------------------------
    async def get_contact(self, contact_id: str) -> Contact | None:
        """The contact, or None when it was never stored."""
        row = await self._one("SELECT * FROM contacts WHERE contact_id = ?", (contact_id,))
        return None if row is None else _contact(row)

    async def upsert_contact(self, contact: Contact) -> Contact:
        """Insert or replace the contact's fields; ``created_at`` is kept from the first insert."""
        now = _now()
        created = utc("contact.created_at", contact.created_at) if contact.created_at else now
        row = await self._one(
            """INSERT INTO contacts (contact_id, location_id, current_bot, temperature, tags,
                   opted_out, escalated, state, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (contact_id) DO UPDATE SET
                   location_id = excluded.location_id, current_bot = excluded.current_bot,
                   temperature = excluded.temperature, tags = excluded.tags,
                   opted_out = excluded.opted_out, escalated = excluded.escalated,
                   state = excluded.state, updated_at = excluded.updated_at
               RETURNING *""",
            (
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
            ),
        )
        assert row is not None  # an upsert always returns its row
        return _contact(row)

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
    ) -> Message:
        """Store one message (``direction`` is ``inbound`` or ``outbound``)."""
        if direction not in ("inbound", "outbound"):
            raise ValueError(f"unknown message direction {direction!r}: use 'inbound' or 'outbound'")
        at = utc("created_at", created_at) if created_at else _now()
        row = await self._one(
            """INSERT INTO messages (contact_id, direction, body, channel, message_id, created_at)
               VALUES (?, ?, ?, ?, ?, ?) RETURNING *""",
            (contact_id, direction, body, channel, message_id, at),
        )
        assert row is not None
        return _message(row)

    async def list_messages(self, contact_id: str, limit: int = 50) -> list[Message]:
        """The last ``limit`` messages of a contact, oldest first."""
        rows = await self._query(
            """SELECT * FROM messages WHERE contact_id = ?
               ORDER BY created_at DESC, id DESC LIMIT ?""",
            (contact_id, limit),
        )
        return [_message(r) for r in reversed(rows)]

    # --- webhook events -----------------------------------------------------
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
    ) -> WebhookInsert:
        """Store a delivery once; a known webhookId or messageId is reported as a duplicate."""
        _check_status("webhook event", status, WEBHOOK_STATUSES)
        # A conflicting row can vanish between the insert and the lookup only if
        # someone deletes events; retrying covers that without ever raising a
        # unique violation at the caller.
        for _ in range(3):
            now = _now()
            row = await self._one(
                """INSERT INTO webhook_events (webhook_id, message_id, event_type, contact_id, payload,
                       status, attempts, received_at, updated_at, trace_context)
                   VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
                   ON CONFLICT DO NOTHING RETURNING id""",
                (
                    webhook_id,
                    message_id,
                    event_type,
                    contact_id,
                    dict(payload),
                    status,
                    now,
                    now,
                    dict(trace_context or {}),
                ),
            )
            if row is not None:
                return WebhookInsert(event_id=int(row["id"]), duplicate=False)
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
        """Set the final status (``processed``, ``ignored``, ``failed``) and error text."""
        _check_status("webhook event", status, WEBHOOK_STATUSES)
        await self._query(
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
        rows = await self._query(
            """SELECT * FROM webhook_events
               WHERE status IN ('received', 'processing') AND updated_at < ?
               ORDER BY received_at, id LIMIT ?""",
            (utc("older_than", older_than), limit),
        )
        return [_webhook_event(r) for r in rows]

    # --- outbox ---------------------------------------------------------------
    async def enqueue_outbox(
        self, idempotency_key: str, kind: str, payload: dict[str, Any], *, contact_id: str | None = None
    ) -> tuple[OutboxItem, bool]:
        """Write an item once; returns (item, created). A known key returns the stored item."""
        now = _now()
        row = await self._one(
            """INSERT INTO outbox (idempotency_key, kind, contact_id, payload, status, attempts,
                   next_attempt_at, created_at, updated_at)
               VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?)
               ON CONFLICT (idempotency_key) DO NOTHING RETURNING *""",
            (idempotency_key, kind, contact_id, dict(payload), now, now, now),
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
        """The item was delivered; keep GHL's answer."""
        await self._query(
            "UPDATE outbox SET status = 'sent', response = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            (None if response is None else dict(response), _now(), item_id),
        )

    async def mark_outbox_failed(self, item_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """Back to ``pending`` at ``next_attempt_at``; ``failed`` for good when it is None."""
        if next_attempt_at is None:
            await self._query(
                "UPDATE outbox SET status = 'failed', last_error = ?, updated_at = ? WHERE id = ?",
                (error, _now(), item_id),
            )
            return
        await self._query(
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
            rows = await self._query("SELECT * FROM outbox ORDER BY id LIMIT ?", (limit,))
        else:
            _check_status("outbox", status, OUTBOX_STATUSES)
            rows = await self._query(
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
        """Store one evaluated or executed handoff."""
        at = utc("created_at", created_at) if created_at else _now()
        row = await self._one(
            """INSERT INTO handoffs (contact_id, source_bot, target_bot, confidence, reason, outcome,
                   created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *""",
            (contact_id, source_bot, target_bot, float(confidence), reason, outcome, at),
        )
        assert row is not None
        return _handoff(row)

    async def list_handoffs(self, contact_id: str, since: datetime | None = None) -> list[Handoff]:
        """A contact's handoffs, oldest first, at or after ``since`` when given."""
        if since is None:
            rows = await self._query(
                "SELECT * FROM handoffs WHERE contact_id = ? ORDER BY created_at, id", (contact_id,)
            )
        else:
            rows = await self._query(
                """SELECT * FROM handoffs WHERE contact_id = ? AND created_at >= ?
                   ORDER BY created_at, id""",
                (contact_id, utc("since", since)),
            )
        return [_handoff(r) for r in rows]

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

    async def cancel_followups(self, contact_id: str) -> int:
        """Cancel every step of a contact still waiting to run (``pending`` or ``failed``)."""
        rows = await self._query(
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
        """The step ran: ``done``."""
        await self._query(
            "UPDATE followups SET status = 'done', last_error = NULL, updated_at = ? WHERE id = ?",
            (_now(), followup_id),
        )

    async def fail_followup(self, followup_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """``failed`` to retry at ``next_attempt_at``; ``dead`` when it is None."""
        if next_attempt_at is None:
            await self._query(
                "UPDATE followups SET status = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
                (error, _now(), followup_id),
            )
            return
        await self._query(
            """UPDATE followups SET status = 'failed', last_error = ?, due_at = ?, updated_at = ?
               WHERE id = ?""",
            (error, utc("next_attempt_at", next_attempt_at), _now(), followup_id),
        )

    async def list_followups(self, contact_id: str | None = None) -> list[FollowUp]:
        """Steps in due order, of one contact or of all."""
        if contact_id is None:
            rows = await self._query("SELECT * FROM followups ORDER BY due_at, id")
        else:
            rows = await self._query(
                "SELECT * FROM followups WHERE contact_id = ? ORDER BY due_at, id", (contact_id,)
            )
        return [_followup(r) for r in rows]

    # --- operational gauges (issue 11) ---------------------------------------------
    async def backlog_counts(self, now: datetime) -> dict[str, int]:
        """Outbox and follow-up counts for ``/metrics``, in one statement."""
        row = await self._one(
            """SELECT
                 (SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')) AS outbox_pending,
                 (SELECT COUNT(*) FROM outbox WHERE status = 'failed') AS outbox_failed,
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
        rows = await self._query(
            """SELECT side, name, value, updated_at FROM dialogue_slots
               WHERE contact_id = ? ORDER BY side, name""",
            (contact_id,),
        )
        return [Slot(r["side"], r["name"], r["value"]["v"], r["updated_at"]) for r in rows]

    async def save_slots(self, contact_id: str, slots: list[Slot]) -> None:
        """Insert or replace the given slots of a contact, all in one statement; others are kept.

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
        await self._query(
            f"""INSERT INTO dialogue_slots (contact_id, side, name, value, updated_at) VALUES {values}
                ON CONFLICT (contact_id, side, name) DO UPDATE SET
                    value = excluded.value, updated_at = excluded.updated_at""",
            args,
        )
