"""What only the SQLite store does: URL handling, statement spans, lease locks, several processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.errors import (
    ConfigurationError,
    LockTimeoutError,
    StorageError,
    StorageUnavailableError,
)
from ghl_real_estate_ai.storage import Contact, open_store
from ghl_real_estate_ai.storage.schema import MIGRATIONS
from ghl_real_estate_ai.storage.sqlite import SQLiteStore


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A fresh provider whose finished spans land in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


# --- URLs -------------------------------------------------------------------------


async def test_relative_sqlite_path_is_under_the_current_folder_and_its_folder_is_created(
    tmp_path: Path,
) -> None:
    store = open_store("sqlite:///data/nested/jorge.db")
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()
    assert (tmp_path / "data" / "nested" / "jorge.db").is_file()


async def test_several_stores_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL can report "locked" without waiting; open() must wait it out.

    Replicas starting together on a fresh file hit this about one time in ten per round;
    100 rounds make a regression show.
    """
    for round_ in range(100):
        url = f"sqlite:///{tmp_path / f'fresh-{round_}.db'}"
        stores = [open_store(url) for _ in range(3)]
        try:
            outcomes = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
            assert [o for o in outcomes if isinstance(o, BaseException)] == []
        finally:
            for store in stores:
                await store.close()


async def test_in_memory_sqlite_works_for_throw_away_runs() -> None:
    store = open_store("sqlite:///:memory:")
    await store.open()
    try:
        await store.upsert_contact(Contact("c1"))
        assert await store.get_contact("c1") is not None
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    ["mysql://root@db/x", "sqlite://host/jorge.db", "sqlite:///", "sqlite:///x.db?mode=ro", "jorge.db"],
)
def test_unsupported_database_urls_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        open_store(url)


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(caught.value)


async def test_a_folder_that_cannot_be_created_is_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder")
    store = open_store("sqlite:///blocker/jorge.db")
    with pytest.raises(StorageUnavailableError, match=r"DATABASE_URL='sqlite:///blocker/jorge.db'"):
        await store.open()


async def test_the_file_has_wal_and_foreign_keys(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    await store.open()
    try:
        with sqlite3.connect(tmp_path / "jorge.db") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            version_rows = raw.execute("SELECT version FROM schema_version").fetchall()
        assert version_rows == [(m.version,) for m in MIGRATIONS]
    finally:
        await store.close()


async def test_temporary_data_stays_in_memory(sqlite_url: str) -> None:
    """Statement journals, sorts and the TEMP view of a unit of work's writes make no file under /var/tmp."""
    store = open_store(sqlite_url)
    await store.open()
    try:
        conn = store._require_conn()  # type: ignore[attr-defined]
        [row] = await conn.execute_fetchall("PRAGMA temp_store")
        assert tuple(row) == (2,)  # 2: MEMORY
    finally:
        await store.close()


# --- tracing ------------------------------------------------------------------------


async def test_opt_in_statement_spans_nest_under_their_operation_and_carry_no_values(
    sqlite_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    store = open_store(sqlite_url, tracer_provider=provider, trace_statements=True)
    await store.open()
    exporter.clear()  # drop the migration's spans
    try:
        with provider.get_tracer("test").start_as_current_span("lead_bot.analyze_intent") as outer:
            await store.upsert_contact(Contact("c-555-0100", state={"phone": "+15550100"}))
            await store.get_contact("c-555-0100")
    finally:
        await store.close()

    finished = exporter.get_finished_spans()
    operations = [s for s in finished if "db.query.summary" in (s.attributes or {})]
    statements = [s for s in finished if "db.statement" in (s.attributes or {})]
    assert [s.name for s in operations] == ["INSERT contacts", "SELECT contacts"]
    assert [s.name for s in statements] == ["INSERT contacts", "SELECT contacts"]
    for operation, statement in zip(operations, statements, strict=True):
        assert operation.parent is not None and operation.parent.span_id == outer.get_span_context().span_id
        assert statement.parent is not None and statement.parent.span_id == operation.context.span_id
        assert statement.kind is SpanKind.CLIENT
    select = statements[1]
    assert dict(select.attributes or {}) == {
        "db.system": "sqlite",
        "db.operation.name": "SELECT",
        "db.collection.name": "contacts",
        "db.statement": "SELECT * FROM contacts WHERE contact_id = ?",
    }
    statement = str((statements[0].attributes or {})["db.statement"])
    assert "?" in statement and "555" not in statement


async def test_statements_outside_any_trace_start_no_trace(
    sqlite_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Migrations and the worker's polling run outside a trace: no one-span root traces."""
    provider, exporter = spans
    store = open_store(sqlite_url, tracer_provider=provider)
    await store.open()
    try:
        await store.claim_due_followups(datetime.now(UTC))
        await store.upsert_contact(Contact("c1"))
    finally:
        await store.close()
    assert exporter.get_finished_spans() == ()


async def test_unsampled_statements_record_nothing_and_still_work(sqlite_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = open_store(sqlite_url, tracer_provider=provider)
    await store.open()
    try:
        await store.upsert_contact(Contact("c1"))
        assert await store.get_contact("c1") is not None
    finally:
        await store.close()
        provider.shutdown()
    assert exporter.get_finished_spans() == ()


# --- lease locks --------------------------------------------------------------------


def _lease_row(path: Path, owner: str, expires_at: datetime) -> None:
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)",
            ("contact:c1", owner, expires_at.isoformat(timespec="microseconds")),
        )


async def test_an_expired_lease_of_a_crashed_holder_is_taken_over(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    await store.open()
    try:
        _lease_row(tmp_path / "jorge.db", "crashed-process", datetime.now(UTC) - timedelta(seconds=1))
        async with store.contact_lock("c1", timeout=0.5):
            pass
    finally:
        await store.close()


async def test_a_live_lease_of_another_process_blocks_until_timeout(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    await store.open()
    try:
        _lease_row(tmp_path / "jorge.db", "other-process", datetime.now(UTC) + timedelta(minutes=1))
        with pytest.raises(LockTimeoutError, match="'c1'"):
            async with store.contact_lock("c1", timeout=0.2):
                pass
    finally:
        await store.close()


async def test_a_holder_renews_its_lease_beyond_the_lease_length(sqlite_url: str, tmp_path: Path) -> None:
    path = tmp_path / "jorge.db"
    holder = SQLiteStore(sqlite_url, path, lock_lease=0.3)
    other = SQLiteStore(sqlite_url, path, lock_lease=0.3)
    await holder.open()
    await other.open()
    try:
        async with holder.contact_lock("c1"):
            with pytest.raises(LockTimeoutError):
                # Twice the lease: without renewal the lease would have expired and been stolen.
                async with other.contact_lock("c1", timeout=0.6):
                    pass
        with sqlite3.connect(path) as raw:
            assert raw.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0
    finally:
        await holder.close()
        await other.close()


# --- several processes --------------------------------------------------------------

_CLAIMER = textwrap.dedent(
    """
    import asyncio, json, sys
    from datetime import UTC, datetime
    from ghl_real_estate_ai.storage import open_store

    async def main():
        store = open_store(sys.argv[1])
        await store.open()
        claimed = []
        try:
            while batch := await store.claim_due_followups(datetime.now(UTC), 3):
                claimed += [f.id for f in batch]
        finally:
            await store.close()
        print(json.dumps(claimed))

    asyncio.run(main())
    """
)


async def test_processes_claiming_followups_from_one_file_never_share_a_row(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    await store.open()
    try:
        now = datetime.now(UTC)
        ids = {(await store.schedule_followup(f"c{i}", "day_3", now, {})).id for i in range(60)}
    finally:
        await store.close()

    async def claimer() -> list[int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLAIMER, sqlite_url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return list(json.loads(out))

    results = await asyncio.gather(claimer(), claimer(), claimer())
    claimed = [i for r in results for i in r]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == ids


# --- the durable intake: group commit ---------------------------------------------


def _intake(n: int) -> dict[str, object]:
    return {
        "webhook_id": f"wh-{n}",
        "message_id": f"msg-{n}",
        "event_type": "InboundMessage",
        "contact_id": f"c-{n}",
        "payload": {"n": n},
    }


async def test_webhooks_arriving_together_are_synced_to_disk_in_one_group(sqlite_url: str) -> None:
    """Concurrent intakes share one transaction and one sync of the log, and each gets its own row back."""
    store = open_store(sqlite_url)
    await store.open()
    sent: list[str] = []
    try:
        assert isinstance(store, SQLiteStore) and store._conn is not None
        store._conn._conn.set_trace_callback(lambda sql: sent.append(" ".join(sql.split())[:40]))
        inserted = await asyncio.gather(*(store.record_webhook_event(**_intake(n)) for n in range(20)))  # type: ignore[arg-type]
        store._conn._conn.set_trace_callback(None)
        syncs = store.wal_syncs
        stored = await store._sql("SELECT webhook_id FROM webhook_events ORDER BY id")
    finally:
        await store.close()
    assert sorted(i.event_id for i in inserted) == list(range(1, 21))
    assert not any(i.duplicate for i in inserted)
    assert [r["webhook_id"] for r in stored] == [f"wh-{n}" for n in range(20)]
    group = sent[sent.index("BEGIN IMMEDIATE") : sent.index("COMMIT") + 1]
    assert sent.count("BEGIN IMMEDIATE") == 1 and sent.count("COMMIT") == 1
    assert sum(s.startswith("INSERT INTO webhook_events") for s in group) == 20
    assert syncs == 1


async def test_a_durable_write_returns_after_its_commit_was_synced_to_disk(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is synced after the commit (the row is there for another connection) and before the
    write returns; the connection serves other statements while the disk is waited for."""
    from ghl_real_estate_ai.storage import sqlite as sqlite_module

    store = open_store(sqlite_url)
    await store.open()
    assert isinstance(store, SQLiteStore) and store._wal_file is not None
    real_sync = sqlite_module._sync_file
    seen: list[tuple[str, list[str], bool]] = []
    may_sync = threading.Event()

    def sync_file(path: str) -> None:  # the real sync, once the test has looked around
        reader = sqlite3.connect(store.path)
        try:
            rows = [r[0] for r in reader.execute("SELECT webhook_id FROM webhook_events")]
        finally:
            reader.close()
        seen.append((path, rows, writing.done()))
        may_sync.wait(30)
        real_sync(path)

    monkeypatch.setattr(sqlite_module, "_sync_file", sync_file)
    try:
        writing = asyncio.ensure_future(store.record_webhook_event(**_intake(1)))  # type: ignore[arg-type]
        while not seen:  # noqa: ASYNC110 - the sync is waiting in its thread
            await asyncio.sleep(0.001)
        # Meanwhile the connection is free: another statement runs at once.
        assert await asyncio.wait_for(store._sql("SELECT 1 AS one"), 30) == [{"one": 1}]
        assert not writing.done()
        may_sync.set()
        inserted = await asyncio.wait_for(writing, 30)
    finally:
        may_sync.set()
        await store.close()
    assert inserted.event_id == 1
    assert seen == [(store._wal_file, ["wh-1"], False)]
    assert store._wal_file.endswith("jorge.db-wal")


async def test_without_a_write_ahead_log_a_durable_write_commits_with_synchronous_full(
    sqlite_url: str,
) -> None:
    store = open_store(sqlite_url)
    await store.open()
    sent: list[str] = []
    try:
        assert isinstance(store, SQLiteStore) and store._conn is not None
        store._wal_file = None  # as on a file system that refuses WAL
        store._conn._conn.set_trace_callback(lambda sql: sent.append(" ".join(sql.split())[:40]))
        inserted = await store.record_webhook_event(**_intake(1))  # type: ignore[arg-type]
        store._conn._conn.set_trace_callback(None)
    finally:
        await store.close()
    assert inserted.event_id == 1 and store.wal_syncs == 0
    full, normal = sent.index("PRAGMA synchronous = FULL"), sent.index("PRAGMA synchronous = NORMAL")
    assert full < sent.index("BEGIN IMMEDIATE") < sent.index("COMMIT") < normal


async def test_the_write_ahead_log_is_checkpointed_in_a_thread_not_in_a_commit(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint runs inside a commit, on the event loop; the store's runs in a thread."""
    from ghl_real_estate_ai.storage import sqlite as sqlite_module

    threads: list[int] = []
    real_checkpoint = SQLiteStore._checkpoint

    def checkpoint(self: SQLiteStore) -> None:
        threads.append(threading.get_ident())
        real_checkpoint(self)

    monkeypatch.setattr(SQLiteStore, "_checkpoint", checkpoint)
    store = open_store(sqlite_url)
    await store.open()
    try:
        assert isinstance(store, SQLiteStore) and store._wal_file is not None
        assert await store._sql("PRAGMA wal_autocheckpoint") == [{"wal_autocheckpoint": 0}]
        for n in range(sqlite_module._CHECKPOINT_EVERY * 2):
            await store.upsert_contact(Contact(f"c-{n}"))
        assert store._checkpointer is not None
        await asyncio.wait_for(store._checkpointer, 30)
        assert store.checkpoints >= 1
        written = await store._sql("SELECT COUNT(*) AS n FROM contacts")
    finally:
        await store.close()
    assert threads and threading.get_ident() not in threads
    assert written == [{"n": sqlite_module._CHECKPOINT_EVERY * 2}]
    assert store._checkpoint_conn is None  # closed with the store


async def test_under_steady_writes_the_write_ahead_log_starts_over_and_stays_small(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint in a thread never catches up with a writer that keeps writing, and the log
    grew without end; past its limit a checkpoint is made with the connection held, the next
    write starts the log over, and its file is cut back."""
    from ghl_real_estate_ai.storage import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", 8)
    monkeypatch.setattr(sqlite_module, "_WAL_RESTART_FRAMES", 64)
    monkeypatch.setattr(sqlite_module, "_WAL_SIZE_LIMIT", 512 * 1024)
    store = open_store(sqlite_url)
    await store.open()
    wal = tmp_path / "jorge.db-wal"
    largest = 0
    try:
        assert isinstance(store, SQLiteStore)
        for n in range(600):  # about 2,400 pages: 10 MB of log if it never started over
            await store.upsert_contact(Contact(f"c-{n}", tags=[f"tag-{n}"], state={"n": n}))
            await asyncio.sleep(0)  # as a server's loop does between requests: checkpoints get their turn
            largest = max(largest, wal.stat().st_size)
        if store._checkpointer is not None:
            await asyncio.wait_for(store._checkpointer, 30)
        assert store.full_checkpoints >= 1
        assert await store._sql("SELECT COUNT(*) AS n FROM contacts") == [{"n": 600}]
    finally:
        await store.close()
    assert largest < 3 * 1024 * 1024, f"the log reached {largest} bytes"


async def test_a_store_opened_again_after_close_checkpoints_again(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghl_real_estate_ai.storage import sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_EVERY", 4)
    store = open_store(sqlite_url)
    await store.open()
    await store.close()
    await store.open()
    try:
        assert isinstance(store, SQLiteStore)
        before = store.checkpoints
        for n in range(20):
            await store.upsert_contact(Contact(f"c-{n}"))
            await asyncio.sleep(0)
        if store._checkpointer is not None:
            await asyncio.wait_for(store._checkpointer, 30)
        assert store.checkpoints > before
    finally:
        await store.close()


async def test_a_durable_write_that_fails_fails_alone_in_its_group(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    await store.open()
    try:
        assert isinstance(store, SQLiteStore)
        bad = store._durable_one(
            "INSERT INTO locks (name, owner, expires_at) VALUES (?, NULL, ?) RETURNING name", ("x", "y")
        )
        good = store.record_webhook_event(**_intake(1))  # type: ignore[arg-type]
        failed, inserted = await asyncio.gather(bad, good, return_exceptions=True)
        stored = await store._sql("SELECT webhook_id FROM webhook_events")
        locks = await store._sql("SELECT name FROM locks")
    finally:
        await store.close()
    assert isinstance(failed, StorageError) and "NOT NULL constraint failed: locks.owner" in str(failed)
    assert not isinstance(inserted, BaseException) and inserted.event_id == 1
    assert [r["webhook_id"] for r in stored] == ["wh-1"]
    assert locks == []


async def test_a_durable_write_queued_when_the_store_closes_is_refused(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    await store.open()
    writing = asyncio.ensure_future(store.record_webhook_event(**_intake(1)))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # queued: the syncer has not taken the connection yet
    await store.close()
    with pytest.raises(StorageUnavailableError, match="not open"):
        await writing


@pytest.mark.parametrize("when", ["before it ran", "while it syncs"])
async def test_writers_of_a_cancelled_sync_get_a_storage_error_not_a_cancellation(
    sqlite_url: str, when: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghl_real_estate_ai.storage import sqlite as sqlite_module

    real_sync = sqlite_module._sync_file
    syncing, may_sync = threading.Event(), threading.Event()

    def sync_file(path: str) -> None:
        syncing.set()
        may_sync.wait(30)
        real_sync(path)

    monkeypatch.setattr(sqlite_module, "_sync_file", sync_file)
    store = open_store(sqlite_url)
    await store.open()
    try:
        assert isinstance(store, SQLiteStore)
        writing = asyncio.ensure_future(store.record_webhook_event(**_intake(1)))  # type: ignore[arg-type]
        # The store has no hook for these internal moments: each loop turn checks them once.
        while store._durable_syncer is None:  # noqa: ASYNC110 - queued: the syncer exists
            await asyncio.sleep(0)
        syncer = store._durable_syncer
        if when == "while it syncs":
            while not syncing.is_set():  # noqa: ASYNC110 - committed, its log being synced
                await asyncio.sleep(0.001)
        syncer.cancel()
        with pytest.raises(StorageUnavailableError, match="stopped before the write was synced"):
            await asyncio.wait_for(writing, 30)
        assert not writing.cancelled()
        assert store._durable_syncer is None
    finally:
        may_sync.set()
        await store.close()
