"""The database schema, as ordered migrations for SQLite and PostgreSQL.

Each :class:`Migration` carries the statements for both dialects. A store's
``open()`` creates the ``schema_version`` table, reads the highest applied
version and applies every newer migration in ONE transaction, recording each
version it applies. Two processes opening the same database at once are
serialised (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped
advisory lock), so the second one finds the work done and applies nothing.

To change the schema, append a migration with the next version; never edit
one that has shipped.

Storage conventions: times are UTC, ISO-8601 ``TEXT`` on SQLite (fixed width,
so they sort) and ``TIMESTAMPTZ`` on PostgreSQL; JSON is ``TEXT`` on SQLite and
``JSONB`` on PostgreSQL. Rows refer to contacts by id without a foreign key on
purpose: a webhook event, message or follow-up may be stored before the
contact row exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "SCHEMA_LOCK_KEY",
    "Dialect",
    "Migration",
    "bootstrap_sql",
]

Dialect = Literal["sqlite", "postgresql"]

SCHEMA_LOCK_KEY = "ghl_real_estate_ai:schema"
"""Text hashed into the PostgreSQL advisory lock taken while migrating."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step, written once per dialect."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements of this step for ``dialect``."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


def bootstrap_sql(dialect: Dialect) -> str:
    """The statement creating the ``schema_version`` table (idempotent)."""
    applied_type = "TEXT" if dialect == "sqlite" else "TIMESTAMPTZ"
    return (
        "CREATE TABLE IF NOT EXISTS schema_version ("
        f"version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at {applied_type} NOT NULL)"
    )


def _tables(*, time: str, json: str, boolean: str, serial: str, real: str) -> tuple[str, ...]:
    """Version 1 for one dialect; the column types are the only difference."""
    return (
        f"""CREATE TABLE contacts (
            contact_id TEXT PRIMARY KEY,
            location_id TEXT NOT NULL DEFAULT '',
            current_bot TEXT NOT NULL DEFAULT 'lead',
            temperature TEXT,
            tags {json} NOT NULL,
            opted_out {boolean} NOT NULL DEFAULT FALSE,
            escalated {boolean} NOT NULL DEFAULT FALSE,
            state {json} NOT NULL,
            created_at {time} NOT NULL,
            updated_at {time} NOT NULL
        )""",
        f"""CREATE TABLE messages (
            id {serial},
            contact_id TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            body TEXT NOT NULL,
            channel TEXT NOT NULL,
            message_id TEXT,
            created_at {time} NOT NULL
        )""",
        "CREATE INDEX messages_contact_created ON messages (contact_id, created_at, id)",
        f"""CREATE TABLE webhook_events (
            id {serial},
            webhook_id TEXT UNIQUE,
            message_id TEXT UNIQUE,
            event_type TEXT NOT NULL,
            contact_id TEXT,
            payload {json} NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            received_at {time} NOT NULL,
            updated_at {time} NOT NULL
        )""",
        "CREATE INDEX webhook_events_status_updated ON webhook_events (status, updated_at)",
        f"""CREATE TABLE outbox (
            id {serial},
            idempotency_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            contact_id TEXT,
            payload {json} NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {time} NOT NULL,
            last_error TEXT,
            response {json},
            created_at {time} NOT NULL,
            updated_at {time} NOT NULL
        )""",
        "CREATE INDEX outbox_status_due ON outbox (status, next_attempt_at)",
        f"""CREATE TABLE handoffs (
            id {serial},
            contact_id TEXT NOT NULL,
            source_bot TEXT NOT NULL,
            target_bot TEXT NOT NULL,
            confidence {real} NOT NULL,
            reason TEXT NOT NULL,
            outcome TEXT NOT NULL,
            created_at {time} NOT NULL
        )""",
        "CREATE INDEX handoffs_contact_created ON handoffs (contact_id, created_at)",
        f"""CREATE TABLE followups (
            id {serial},
            contact_id TEXT NOT NULL,
            step TEXT NOT NULL,
            due_at {time} NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            trace_context {json} NOT NULL,
            last_error TEXT,
            created_at {time} NOT NULL,
            updated_at {time} NOT NULL
        )""",
        "CREATE INDEX followups_status_due ON followups (status, due_at)",
        "CREATE INDEX followups_contact ON followups (contact_id, status)",
    )


def _reliability(*, time: str, boolean: str) -> tuple[str, ...]:
    """Version 4 for one dialect (issue 13)."""
    return (
        # Who is sending an item (a process id with a heartbeat), when its first attempt
        # began (the read-back window), when it is given up, and whether its last
        # attempt's outcome is unknown (then GHL is read back before any new send).
        "ALTER TABLE outbox ADD COLUMN owner TEXT",
        f"ALTER TABLE outbox ADD COLUMN first_attempt_at {time}",
        f"ALTER TABLE outbox ADD COLUMN deadline_at {time}",
        f"ALTER TABLE outbox ADD COLUMN check_first {boolean} NOT NULL DEFAULT FALSE",
        "CREATE INDEX outbox_contact ON outbox (contact_id, id)",
        f"CREATE TABLE outbox_owners (owner TEXT PRIMARY KEY, heartbeat_at {time} NOT NULL)",
        f"""CREATE TABLE outbox_circuits (
            location_id TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            next_probe_at {time} NOT NULL,
            probe_owner TEXT,
            probe_expires_at {time}
        )""",
        f"ALTER TABLE webhook_events ADD COLUMN date_added {time}",
        "CREATE INDEX webhook_events_contact_status ON webhook_events (contact_id, status)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="contacts, messages, webhook events, outbox, handoffs, follow-ups",
        sqlite=(
            *_tables(
                time="TEXT",
                json="TEXT",
                boolean="INTEGER",
                serial="INTEGER PRIMARY KEY AUTOINCREMENT",
                real="REAL",
            ),
            # Per-contact leases: SQLite has no advisory locks, and a row in the shared
            # file is what every process on it can see.
            "CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at TEXT NOT NULL)",
        ),
        postgresql=_tables(
            time="TIMESTAMPTZ",
            json="JSONB",
            boolean="BOOLEAN",
            serial="BIGSERIAL PRIMARY KEY",
            real="DOUBLE PRECISION",
        ),
    ),
    Migration(
        version=2,
        description="webhook events keep the trace context of the request that stored them",
        sqlite=("ALTER TABLE webhook_events ADD COLUMN trace_context TEXT NOT NULL DEFAULT '{}'",),
        postgresql=(
            "ALTER TABLE webhook_events ADD COLUMN trace_context JSONB NOT NULL DEFAULT '{}'::jsonb",
        ),
    ),
    # Issue 10: the dialogue state, one row per filled slot of a contact.
    Migration(
        version=3,
        description="dialogue slots: what each contact told the bots, per side (buy, sell, contact)",
        sqlite=(
            """CREATE TABLE dialogue_slots (
                contact_id TEXT NOT NULL,
                side TEXT NOT NULL,
                name TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (contact_id, side, name)
            )""",
        ),
        postgresql=(
            """CREATE TABLE dialogue_slots (
                contact_id TEXT NOT NULL,
                side TEXT NOT NULL,
                name TEXT NOT NULL,
                value JSONB NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (contact_id, side, name)
            )""",
        ),
    ),
    # Issue 13: the outbox reconciles instead of guessing, waits outages out per location,
    # and a contact's events are drained in dateAdded order.
    Migration(
        version=4,
        description="outbox owners, heartbeats, per-location circuits and deadlines; event dateAdded",
        sqlite=_reliability(time="TEXT", boolean="INTEGER"),
        postgresql=_reliability(time="TIMESTAMPTZ", boolean="BOOLEAN"),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
"""The version a freshly opened store reports."""
