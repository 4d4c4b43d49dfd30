"""A batch that meets a file locked by another process is tried again, and its second try works.

The first try runs on the event loop's thread with no busy timeout; when the file is locked
it fails, and the batch goes to aiosqlite's thread to wait. The first try may already have
taught the connection new kinds of write (TEMP triggers); the second must not teach them again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.sqlite import SQLiteStore


async def test_a_batch_retried_after_the_file_was_locked_keeps_its_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def turn() -> None:
        async with store.contact_lock("c1"):
            await store.add_message("c1", "inbound", "hello", "SMS", message_id="m1", defer=True)
            await store.add_message("c1", "outbound", "hi!", "SMS", message_id="m2", defer=True)
            other.execute("BEGIN IMMEDIATE")  # another process takes the write lock before the release

    try:
        task = asyncio.create_task(turn())
        # The release's first try teaches the connection its writes, then finds the file locked.
        while not store._triggers and not task.done():  # noqa: ASYNC110 (a condition of the store, no event to await)
            await asyncio.sleep(0)
        other.execute("COMMIT")
        await task
        assert [(m.direction, m.body) for m in await store.list_messages("c1")] == [
            ("inbound", "hello"),
            ("outbound", "hi!"),
        ]
    finally:
        other.close()
        await store.close()
