"""The Jaeger-shaped trace API over the local store: shapes, parameters, errors, tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from jaeger_shape import check_envelope, check_trace
from tracegen import Node, emit, handoff_journey, make_provider, node_attrs, serve

from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.observability.jaeger import JaegerReader
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader


def _app(store: Path, *, token: str | None = None, require: bool = False) -> FastAPI:
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token=token, require_token=require))
    return app


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "traces.db"


@pytest.fixture
def ids(store: Path) -> dict[str, str]:
    exporter = LocalSpanExporter(store)
    provider = make_provider(exporter)
    out = {
        "hot": emit(provider, handoff_journey("c-hot", temperature="hot")),
        "warm": emit(provider, handoff_journey("c-warm", temperature="warm")),
        "seller": emit(
            provider,
            Node(
                "POST /api/v1/webhooks/ghl",
                0,
                1200,
                children=[
                    Node(
                        "seller_bot.qualify_seller",
                        1,
                        1100,
                        node_attrs("seller_bot", "qualify_seller", "c-s"),
                    )
                ],
            ),
        ),
    }
    out["worker"] = emit(make_provider(exporter, service="worker"), Node("followups.run_due", 0, 40))
    provider.shutdown()
    return out


@pytest.fixture
async def client(store: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_services_and_operations(client: httpx.AsyncClient, ids: dict[str, str]) -> None:
    """/api/services and /api/services/{s}/operations answer Jaeger's envelope of names."""
    body = (await client.get("/api/services")).json()
    check_envelope(body)
    assert body["data"] == ["enterprisehub", "worker"] and body["total"] == 2
    ops = (await client.get("/api/services/enterprisehub/operations")).json()
    check_envelope(ops)
    assert "handoff.lead_to_buyer" in ops["data"] and "followups.run_due" not in ops["data"]
    assert (await client.get("/api/services/nobody/operations")).json()["data"] == []


async def test_search_returns_whole_traces_in_jaegers_shape(
    client: httpx.AsyncClient, ids: dict[str, str]
) -> None:
    """Acceptance 3: every trace of a search validates against Jaeger's model."""
    response = await client.get("/api/traces", params={"service": "enterprisehub", "limit": "10"})
    assert response.status_code == 200
    body = response.json()
    check_envelope(body)
    assert body["limit"] == 10
    assert {t["traceID"] for t in body["data"]} == {ids["hot"], ids["warm"], ids["seller"]}
    for trace in body["data"]:
        check_trace(trace)
    one = (await client.get(f"/api/traces/{ids['hot']}")).json()
    check_envelope(one)
    check_trace(one["data"][0])
    assert len(one["data"][0]["spans"]) == 10


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tags": json.dumps({"workflow.contact_id": "c-hot"})}, {"hot"}),
        ({"tags": json.dumps({"handoff.source_bot": "lead", "workflow.temperature": "warm"})}, {"warm"}),
        ({"tag": "workflow.temperature:hot"}, {"hot"}),
        ({"tags": json.dumps({"workflow.success": True})}, {"hot", "warm", "seller"}),
        ({"service": "worker"}, {"worker"}),
        ({"operation": "seller_bot.qualify_seller", "minDuration": "1s"}, {"seller"}),
        ({"minDuration": "300ms", "maxDuration": "0.4s"}, {"hot", "warm"}),
        ({"lookback": "1h"}, {"hot", "warm", "seller", "worker"}),
        ({"end": str(int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1e6))}, set()),
        ({"service": "enterprisehub", "limit": "1", "sort": "duration"}, {"seller"}),
    ],
)
async def test_search_parameters(
    client: httpx.AsyncClient, ids: dict[str, str], params: dict[str, str], expected: set[str]
) -> None:
    """Jaeger's query parameters filter as documented (tags on any span of the trace)."""
    body = (await client.get("/api/traces", params=params)).json()
    check_envelope(body)
    assert {t["traceID"] for t in body["data"]} == {ids[name] for name in expected}


async def test_trace_id_list_parameter(client: httpx.AsyncClient, ids: dict[str, str]) -> None:
    """?traceID=a&traceID=b fetches those traces, skipping unknown ones."""
    params = [("traceID", ids["hot"]), ("traceID", ids["worker"]), ("traceID", "f" * 32)]
    body = (await client.get("/api/traces", params=params)).json()
    assert [t["traceID"] for t in body["data"]] == [ids["hot"], ids["worker"]]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"tags": "{not json"}, "JSON object"),
        ({"tags": '["a"]'}, "JSON object"),
        ({"tags": '{"a": {"b": 1}}'}, "JSON object"),
        ({"tag": "novalue"}, "key=value"),
        ({"limit": "ten"}, "whole number"),
        ({"limit": "0"}, "out of range"),
        ({"limit": "99999999999999999999"}, "out of range"),
        ({"minDuration": "fast"}, "duration"),
        ({"maxDuration": "-5"}, "non-negative"),
        ({"start": "yesterday"}, "microseconds"),
        ({"end": "1e400"}, "microseconds"),
        ({"lookback": "forever"}, "not valid"),
        ({"sort": "size"}, "duration or time"),
        ({"traceID": "nothex"}, "trace id"),
    ],
)
async def test_bad_values_are_400_with_a_clear_message(
    client: httpx.AsyncClient, params: dict[str, str], fragment: str
) -> None:
    """Bad parameters answer 400 in Jaeger's error shape, never a 500."""
    response = await client.get("/api/traces", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    check_envelope(body, data_type=None)
    assert fragment in body["errors"][0]["msg"]


@pytest.mark.parametrize(
    ("params", "name", "bound"),
    [
        ({"lookback": "99999999999d"}, "lookback", "3650d"),
        ({"lookback": "3651d"}, "lookback", "3650d"),
        ({"lookback": "1" * 400 + "h"}, "lookback", "64"),
        ({"minDuration": "1" * 400}, "minDuration", "64"),
        ({"minDuration": "1" * 60}, "minDuration", "168h"),
        ({"maxDuration": "9999999h"}, "maxDuration", "168h"),
        ({"minDuration": "9" * 40 + "s"}, "minDuration", "168h"),
        ({"start": "99999999999999999"}, "start", "2099"),
        ({"end": "9" * 30}, "end", "too long"),
    ],
)
async def test_huge_values_are_400_naming_the_parameter_and_the_bound(
    client: httpx.AsyncClient, params: dict[str, str], name: str, bound: str
) -> None:
    """Issue 13: numbers past any sane bound answer 400 naming the parameter and the bound."""
    response = await client.get("/api/traces", params=params)
    assert response.status_code == 400, response.text
    message = response.json()["errors"][0]["msg"]
    assert message.startswith(name) and bound in message, message


async def test_the_page_bounds_its_fields_too(store: Path, ids: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for params in ({"since": "99999999999d"}, {"min_duration": "1" * 400}, {"max_duration": "1e400"}):
            response = await http.get("/traces", params=params)
            assert response.status_code == 400, (params, response.text[:300])
            assert next(iter(params)) in response.text


async def test_unknown_and_malformed_trace_ids(client: httpx.AsyncClient, ids: dict[str, str]) -> None:
    """An unknown trace is 404, a malformed id 400; 16-digit Jaeger ids are padded."""
    missing = await client.get(f"/api/traces/{'a' * 32}")
    assert missing.status_code == 404
    check_envelope(missing.json(), data_type=None)
    assert (await client.get("/api/traces/xyz")).status_code == 400
    assert (await client.get(f"/api/traces/{'1' * 40}")).status_code == 400
    assert (await client.get(f"/api/traces/{ids['hot'].upper()}")).status_code == 200


async def test_empty_store_answers_empty_lists(tmp_path: Path) -> None:
    """Before any span is written the API answers empty data, not an error."""
    transport = httpx.ASGITransport(app=_app(tmp_path / "none.db"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        assert (await c.get("/api/services")).json()["data"] == []
        assert (await c.get("/api/traces")).json()["data"] == []
        assert (await c.get("/traces")).status_code == 200


async def test_token_required(store: Path, ids: dict[str, str]) -> None:
    """With require_token, no or a wrong token is 401; Bearer or ?token= opens every route."""
    transport = httpx.ASGITransport(app=_app(store, token="s3cret", require=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        for path in (
            "/api/services",
            "/api/traces",
            f"/api/traces/{ids['hot']}",
            "/traces",
            f"/traces/{ids['hot']}",
        ):
            refused = await c.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
            assert (await c.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401
            assert (await c.get(path, headers={"Authorization": "Bearer s3cret"})).status_code == 200
            assert (await c.get(path, params={"token": "s3cret"})).status_code == 200
        page = await c.get("/traces", params={"token": "s3cret"})
        assert f"/traces/{ids['hot']}?token=s3cret" in page.text
    closed = httpx.ASGITransport(app=_app(store, token=None, require=True))
    async with httpx.AsyncClient(transport=closed, base_url="http://test") as c:
        response = await c.get("/api/services", headers={"Authorization": "Bearer "})
        assert response.status_code == 401 and "ADMIN_TOKEN" in response.text


def test_cli_reader_reads_the_app_back_over_real_http(store: Path, ids: dict[str, str]) -> None:
    """Acceptance 3: JaegerReader pointed at the app (real uvicorn) sees what the store holds."""
    local = LocalTraceReader(store)
    with serve(_app(store)) as base_url, JaegerReader(base_url) as remote:
        assert remote.services() == local.services()
        assert remote.operations("enterprisehub") == local.operations("enterprisehub")
        for kwargs in (
            {},
            {"tags": {"workflow.contact_id": "c-warm"}},
            {"tags": {"handoff.source_bot": "lead"}, "order": "time"},
            {"service": "enterprisehub", "min_duration_ms": 300.0},
            {"operation": "seller_bot.qualify_seller"},
        ):
            assert remote.find_traces(**kwargs) == local.find_traces(**kwargs), kwargs  # type: ignore[arg-type]
        assert remote.get_trace(ids["hot"]) == local.get_trace(ids["hot"])
        assert remote.get_trace("0" * 32) == []
        assert sorted(s.span_id for s in remote.spans()) == sorted(s.span_id for s in local.spans())
