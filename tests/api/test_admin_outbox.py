"""``GET /admin/outbox`` and ``POST /admin/outbox/retry``, and ``jorge outbox``: dead items are
visible with their reason and can be sent again (issue 13)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from ghl_real_estate_ai.api.admin import create_admin_router
from ghl_real_estate_ai.cli import app as jorge
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import Store
from tests.ghl_fixtures import *  # noqa: F403  (the pytest fixtures cache, ghl, sandbox, store)

SMS = {"contact_id": "c1", "channel": "SMS", "message": "Still there?"}


async def _dead_item(store: Store, ghl: GHLClient, sandbox: FastAPI) -> Outbox:
    outbox = Outbox(store, ghl, max_age=timedelta(minutes=1))
    get_sandbox_state(sandbox).failure_rate = 1.0
    item = await outbox.submit("evt-1:reply:1", "send_message", dict(SMS))
    await outbox.deliver_due(now=item.created_at + timedelta(minutes=2))
    get_sandbox_state(sandbox).failure_rate = 0.0
    return outbox


async def test_dead_items_are_listed_with_their_reason_and_retried_once(
    store: Store, ghl: GHLClient, sandbox: FastAPI
) -> None:
    outbox = await _dead_item(store, ghl, sandbox)
    app = FastAPI()
    app.include_router(create_admin_router(admin_token=None, require_token=False))
    app.state.store, app.state.outbox = store, outbox
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://j") as http:
        listed = (await http.get("/admin/outbox")).json()
        assert listed["counts"]["dead"] == 1 and listed["counts"]["pending"] == 0
        (dead,) = listed["items"]
        assert dead["status"] == "dead" and "OUTBOX_MAX_AGE_HOURS" in dead["reason"]
        assert (await http.get("/admin/outbox", params={"status": "nope"})).status_code == 400
        assert (await http.get("/admin/outbox", params={"limit": "²"})).status_code == 400
        assert (await http.post("/admin/outbox/retry", json={"ids": ["x"]})).status_code == 422
        retried = await http.post("/admin/outbox/retry", json={"ids": [dead["id"]]})
        assert retried.json() == {"retried": [dead["id"]]}
    await store.outbox_circuit_closed(outbox.location_id)
    assert await outbox.deliver_due() == 1
    assert len(get_sandbox_state(sandbox).messages) == 1


async def test_jorge_outbox_list_and_retry(
    store: Store, ghl: GHLClient, sandbox: FastAPI, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _dead_item(store, ghl, sandbox)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    runner = CliRunner()
    listed = await _in_thread(lambda: runner.invoke(jorge, ["outbox", "list"]))
    assert listed.exit_code == 0, listed.output
    assert "dead=1" in listed.output and "OUTBOX_MAX_AGE_HOURS" in listed.output
    retried = await _in_thread(lambda: runner.invoke(jorge, ["outbox", "retry"]))
    assert retried.exit_code == 0 and "1 item(s) pending again" in retried.output
    again = await _in_thread(lambda: runner.invoke(jorge, ["outbox", "retry"]))
    assert "no dead item" in again.output
    bad = await _in_thread(lambda: runner.invoke(jorge, ["outbox", "retry", "--status", "sent"]))
    assert bad.exit_code == 2
    (item,) = await store.list_outbox("pending")
    assert item.deadline_at is not None


async def _in_thread(call: object) -> object:
    import asyncio

    return await asyncio.to_thread(call)  # type: ignore[arg-type]
