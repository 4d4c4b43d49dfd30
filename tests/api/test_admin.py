"""``POST /admin/followups/run-due``: runs what is due, token-protected, precise 4xx on bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ghl_real_estate_ai.api.admin import create_admin_router
from ghl_real_estate_ai.followups import FollowUpRunner
from tests.conversation_kit import Harness

URL = "/admin/followups/run-due"
TOKEN = "s3cret-admin-token"


def _app(h: Harness | None, *, admin_token: str | None = None, require_token: bool = False) -> FastAPI:
    app = FastAPI()
    app.include_router(create_admin_router(admin_token=admin_token, require_token=require_token))
    if h is not None:
        app.state.followups = FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock)
    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jorge")


@pytest.fixture
async def harness(sqlite_url: str) -> AsyncIterator[Harness]:
    async with Harness.open(sqlite_url) as h:
        await h.say("c-1", "Hi, who is this?")
        await h.clear_calls()
        yield h


async def test_run_due_without_a_body_runs_what_is_due_on_the_runners_clock(harness: Harness) -> None:
    h = harness
    h.clock.advance(days=3)
    async with _client(_app(h)) as client:
        response = await client.post(URL)
    assert response.status_code == 200
    report = response.json()
    assert report["now"] == h.clock().isoformat()
    assert [(s["step"], s["outcome"]) for s in report["steps"]] == [("send_day_3_sms", "done")]
    assert [c["body"]["type"] for c in await h.calls()] == ["SMS"]


async def test_run_due_at_a_given_now_runs_everything_due_then(harness: Harness) -> None:
    h = harness
    when = h.clock() + timedelta(days=15)
    async with _client(_app(h)) as client:
        response = await client.post(URL, json={"now": when.isoformat().replace("+00:00", "Z")})
        again = await client.post(URL, json={"now": when.isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert body["now"] == when.isoformat()
    assert [s["step"] for s in body["steps"]] == [
        "send_day_3_sms",
        "initiate_day_7_call",
        "send_day_14_email",
    ]
    assert (body["done"], body["dead"]) == (3, 0)
    assert again.json()["claimed"] == 0


async def test_a_null_now_or_empty_object_means_the_clocks_now(harness: Harness) -> None:
    async with _client(_app(harness)) as client:
        for body in ({"now": None}, {}):
            response = await client.post(URL, json=body)
            assert response.status_code == 200
            assert response.json()["now"] == harness.clock().isoformat()


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"json": {"now": "tomorrow"}}, 422, "now must be an ISO-8601 time such as"),
        ({"json": {"now": 17}}, 422, "got 17"),
        ({"json": ["2025-01-01"]}, 422, "must be a JSON object"),
        ({"json": {"now": "2025-01-01", "limit": 3}}, 422, "unknown field(s) ['limit']"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed JSON body",
        ),
        ({"content": b"now=2025-01-01", "headers": {"Content-Type": "text/plain"}}, 415, "send JSON"),
        ({"json": {"now": "x" * 5000}}, 413, "body too large"),
    ],
)
async def test_bad_bodies_get_a_precise_4xx(
    harness: Harness, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    async with _client(_app(harness)) as client:
        response = await client.post(URL, **kwargs)
    assert response.status_code == status
    assert fragment in response.json()["detail"]
    assert await harness.calls() == []


async def test_a_configured_token_is_required(harness: Harness) -> None:
    harness.clock.advance(days=3)
    app = _app(harness, admin_token=TOKEN, require_token=True)
    async with _client(app) as client:
        missing = await client.post(URL)
        wrong = await client.post(URL, headers={"Authorization": "Bearer nope"})
        basic = await client.post(URL, headers={"Authorization": f"Basic {TOKEN}"})
        assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert "missing admin token" in missing.json()["detail"]
        assert "wrong admin token" in wrong.json()["detail"]
        assert await harness.calls() == [], "nothing runs without the token"

        right = await client.post(URL, headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert right.json()["done"] == 1


async def test_a_required_token_that_is_not_configured_refuses_everything(harness: Harness) -> None:
    async with _client(_app(harness, admin_token=None, require_token=True)) as client:
        response = await client.post(URL, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert "set ADMIN_TOKEN" in response.json()["detail"]


async def test_open_in_the_embedded_mode_when_no_token_is_configured(harness: Harness) -> None:
    async with _client(_app(harness, admin_token=None, require_token=False)) as client:
        assert (await client.post(URL)).status_code == 200


async def test_no_runner_configured_is_503() -> None:
    async with _client(_app(None)) as client:
        response = await client.post(URL)
    assert response.status_code == 503
    assert "app.state.followups" in response.json()["detail"]


async def test_a_database_that_went_away_is_503_with_retry_after(sqlite_url: str) -> None:
    async with Harness.open(sqlite_url) as h:
        app = _app(h)
        await h.store.close()
        async with _client(app) as client:
            response = await client.post(URL)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "the database is unavailable" in response.json()["detail"]


def test_the_openapi_schema_documents_the_optional_body() -> None:
    schema = _app(None).openapi()
    operation = schema["paths"][URL]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["now"]["format"] == "date-time"
    assert operation["requestBody"]["required"] is False
