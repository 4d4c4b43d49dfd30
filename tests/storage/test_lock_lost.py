"""A contact lock lost while held stops the work it guarded (issue 13).

SQLite: another process takes the lease over (it looked expired to it);
PostgreSQL: the connection holding the advisory lock dies. Either way the
holder's block is cancelled at its next ``await`` and ``LockLostError`` is
raised, instead of the work running on unguarded beside the lock's new holder.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ghl_real_estate_ai.errors import LockLostError
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.postgres import PostgresStore
from ghl_real_estate_ai.storage.sqlite import SQLiteStore


async def _guarded_work(store: SQLiteStore | PostgresStore, started: asyncio.Event, done: list[str]) -> None:
    async with store.contact_lock("c1", timeout=2):
        started.set()
        await asyncio.Event().wait()  # the work: it only ends by being stopped
        done.append("finished unguarded")


async def test_sqlite_lease_taken_over_cancels_the_holder(sqlite_url: str, tmp_path: Path) -> None:
    store = SQLiteStore(sqlite_url, tmp_path / "jorge.db", lock_lease=0.3)
    await store.open()
    try:
        started, done = asyncio.Event(), []
        work = asyncio.create_task(_guarded_work(store, started, done))
        await asyncio.wait_for(started.wait(), 10)
        with sqlite3.connect(tmp_path / "jorge.db") as raw:
            raw.execute(
                "UPDATE locks SET owner = 'another-process', expires_at = ? WHERE name = 'contact:c1'",
                ((datetime.now(UTC) + timedelta(minutes=5)).isoformat(timespec="microseconds"),),
            )
        with pytest.raises(LockLostError, match="'c1'"):
            await asyncio.wait_for(work, 10)
        assert done == []
        with sqlite3.connect(tmp_path / "jorge.db") as raw:  # the new holder's lease is left alone
            assert raw.execute("SELECT owner FROM locks").fetchall() == [("another-process",)]
    finally:
        await store.close()


async def test_sqlite_lock_kept_and_released_normally(sqlite_url: str, tmp_path: Path) -> None:
    """No false alarm: a lease renewed as it should lets the block finish."""
    store = SQLiteStore(sqlite_url, tmp_path / "jorge.db", lock_lease=0.3)
    await store.open()
    try:
        async with store.contact_lock("c1", timeout=2):
            await asyncio.sleep(1.0)  # several renewals
        with sqlite3.connect(tmp_path / "jorge.db") as raw:
            assert raw.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_lock_connection_killed_cancels_the_holder(postgres_url: str) -> None:
    import asyncpg

    store = open_store(postgres_url, pool_size=2)
    assert isinstance(store, PostgresStore)
    store.lock_check_seconds = 0.1
    await store.open()
    other = open_store(postgres_url, pool_size=2)
    await other.open()
    try:
        started, done = asyncio.Event(), []
        work = asyncio.create_task(_guarded_work(store, started, done))
        await asyncio.wait_for(started.wait(), 10)
        assert store._lock_conn is not None
        pid = store._lock_conn.get_server_pid()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(LockLostError, match="'c1'"):
            await asyncio.wait_for(work, 10)
        assert done == []
        async with other.contact_lock("c1", timeout=5):  # the server freed it with the session
            pass
        async with store.contact_lock("c1", timeout=5):  # and the holder can lock again
            pass
    finally:
        await store.close()
        await other.close()
