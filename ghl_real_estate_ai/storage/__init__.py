"""Durable state of the service: contacts, messages, webhook events, outbox, handoffs, follow-ups.

Pick a backend from ``DATABASE_URL`` and open it::

    store = open_store(settings.database_url, pool_size=settings.database_pool_size)
    await store.open()          # connects and migrates the schema
    try:
        ...
    finally:
        await store.close()

``sqlite:///data/jorge.db`` is the embedded SQLite file (a relative path is
taken from the current directory, an absolute one is written
``sqlite:////abs/path.db``; ``sqlite:///:memory:`` for a throw-away database).
``postgresql://user:pass@host:5432/db`` (or ``postgres://``) is PostgreSQL.
Both implement :class:`~ghl_real_estate_ai.storage.base.Store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.trace import TracerProvider

from ghl_real_estate_ai.errors import ConfigurationError
from ghl_real_estate_ai.storage._sql import redact_url
from ghl_real_estate_ai.storage.base import (
    Contact,
    FollowUp,
    Handoff,
    Message,
    OutboxItem,
    Slot,
    Store,
    WebhookEvent,
    WebhookInsert,
)

if TYPE_CHECKING:
    from ghl_real_estate_ai.storage.schema import Migration

__all__ = [
    "Contact",
    "FollowUp",
    "Handoff",
    "Message",
    "OutboxItem",
    "Slot",
    "Store",
    "WebhookEvent",
    "WebhookInsert",
    "open_store",
]

_SQLITE_PREFIX = "sqlite:///"


def open_store(
    database_url: str,
    *,
    pool_size: int = 10,
    tracer_provider: TracerProvider | None = None,
    migrations: tuple[Migration, ...] | None = None,
    trace_statements: bool = False,
) -> Store:
    """Build the store ``database_url`` names; it connects on ``await store.open()``.

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql://user:pass@host:port/db``.
        pool_size: maximum PostgreSQL connections (ignored by SQLite).
        tracer_provider: where the store's spans go (default: the global provider).
        migrations: the schema steps; only tests set it.
        trace_statements: one span per SQL statement besides the one per store
            operation (DATABASE_TRACE_STATEMENTS).

    Returns:
        A store that is not connected yet.

    Raises:
        ConfigurationError: the URL has an unsupported form; the message names DATABASE_URL.
    """
    from ghl_real_estate_ai.storage.schema import MIGRATIONS

    steps = MIGRATIONS if migrations is None else migrations
    if database_url.startswith(("postgresql://", "postgres://")):
        from ghl_real_estate_ai.storage.postgres import PostgresStore

        if pool_size < 1:
            raise ConfigurationError(f"DATABASE_POOL_SIZE must be at least 1, got {pool_size!r}")
        return PostgresStore(
            database_url,
            pool_size=pool_size,
            migrations=steps,
            tracer_provider=tracer_provider,
            trace_statements=trace_statements,
        )
    if database_url.startswith(_SQLITE_PREFIX):
        from ghl_real_estate_ai.storage.sqlite import SQLiteStore

        raw = database_url[len(_SQLITE_PREFIX) :]
        if not raw or "?" in raw:
            raise ConfigurationError(
                f"DATABASE_URL={redact_url(database_url)!r} names no SQLite file (or carries options): "
                "use sqlite:///data/jorge.db or sqlite:////absolute/path.db"
            )
        # Resolved now, so a later chdir cannot move the database.
        path: Path | str = raw if raw == ":memory:" else Path.cwd() / raw
        return SQLiteStore(
            database_url,
            path,
            migrations=steps,
            tracer_provider=tracer_provider,
            trace_statements=trace_statements,
        )
    raise ConfigurationError(
        f"unsupported DATABASE_URL={redact_url(database_url)!r}: use sqlite:///data/jorge.db or "
        "postgresql://user:password@host:5432/dbname"
    )
