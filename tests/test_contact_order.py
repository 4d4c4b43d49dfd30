"""Issue 13 acceptance 4: one contact's messages, alternating between two replicas, are processed
in ``dateAdded`` order.

Two instances of the real app (uvicorn, real HTTP) share one database, as two
replicas would; 40 messages from one contact, 25 ms apart, go alternately to
each without waiting for the answers. Processing order is read from the store
(the time each event was finished), and compared with ``dateAdded``. Without
the ordered drain, 6 of 40 were out of order here.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from serving import serve_in_thread

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store

pytestmark = pytest.mark.slow

MESSAGES = 40


def _webhook(n: int, start: datetime) -> dict[str, object]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": "order-1",
        "body": f"message {n}: still looking for a 3 bedroom home in Upland",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"order-msg-{n}",
        "webhookId": f"order-wh-{n}",
        "dateAdded": (start + timedelta(milliseconds=25 * n)).isoformat().replace("+00:00", "Z"),
    }


async def _send_all(urls: list[str], start: datetime) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(n: int) -> int:
            await asyncio.sleep(0.025 * n)  # the pace of the lead's messages, not a wait for a result
            response = await http.post(f"{urls[n % 2]}/api/v1/webhooks/ghl", json=_webhook(n, start))
            return response.status_code

        return list(await asyncio.gather(*(one(n) for n in range(MESSAGES))))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_replicas_process_one_contacts_messages_in_date_added_order(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database_url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'j.db'}"
    )

    def settings(name: str) -> Settings:
        return Settings(
            data_dir=tmp_path / name,
            database_url=database_url,
            otel_exporter_type="none",
            followup_poll_seconds=0.5,  # the worker picks up anything a replica left
            # The window must outlast the spread of storage delays; this shared 2-core
            # machine, with other suites running beside, needs more than production does.
            contact_order_window_ms=1000.0,
        )

    with (
        serve_in_thread(create_app(settings("a"), manage_observability=False)) as first,
        serve_in_thread(create_app(settings("b"), manage_observability=False)) as second,
    ):
        # The lead writes the messages now, while both replicas run: the window counts from
        # each message's dateAdded, and a message older than the window goes at once.
        start = datetime.now(UTC)
        statuses = asyncio.run(_send_all([first, second], start))
        assert statuses == [200] * MESSAGES
        order = asyncio.run(_processing_order(database_url))
    dates = [date for _, date in order]
    inversions = sum(1 for a, b in itertools.pairwise(dates) if b < a)
    assert len(order) == MESSAGES
    assert inversions == 0, order


async def _processing_order(database_url: str) -> list[tuple[int, str]]:
    store = open_store(database_url)
    await store.open()
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await store._sql(  # type: ignore[attr-defined]
                "SELECT id, status, updated_at, date_added FROM webhook_events ORDER BY updated_at, id"
            )
            if all(r["status"] == "processed" for r in rows) and len(rows) == MESSAGES:
                return [(int(r["id"]), str(r["date_added"])) for r in rows]
            if time.monotonic() > deadline:
                raise AssertionError(f"not every event was processed: {[r['status'] for r in rows]}")
            await asyncio.sleep(0.1)
    finally:
        await store.close()
