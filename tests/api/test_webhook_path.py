"""The webhook's request path does no work it does not need (issue 14), and still the same work.

* The route skips FastAPI's request handler (dependencies, body validation, return
  value serialisation), which it never used; an endpoint that asks for any of those
  is refused when the route is built rather than silently served without them.
* ``make_storable`` looks at each string once when nothing needs cleaning and hands
  back the same object; what needs cleaning is still found, wherever it is.
* The access log does nothing per request while its lines are not written.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ghl_real_estate_ai.api.webhooks import WEBHOOK_PATH, router
from ghl_real_estate_ai.logs import ACCESS_LOGGER, AccessLogMiddleware
from ghl_real_estate_ai.payloads import make_storable


def test_the_webhook_route_keeps_its_openapi_description() -> None:
    app = FastAPI()
    app.include_router(router)
    operation = app.openapi()["paths"][WEBHOOK_PATH]["post"]
    assert "contactId" in operation["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"200", "400", "401", "413", "415", "422", "429"} <= set(operation["responses"])


def test_a_raw_request_route_refuses_an_endpoint_that_needs_fastapis_handler() -> None:
    raw = APIRouter(route_class=type(router.routes[0]))

    async def wants_a_query(request: Request, limit: int = Query(10)) -> JSONResponse:
        return JSONResponse({"limit": limit})

    with pytest.raises(TypeError, match="takes the Request only"):
        raw.post("/q")(wants_a_query)


def test_clean_text_comes_back_as_the_same_object_and_unclean_text_is_still_found() -> None:
    clean = {"body": "Hola, ¿cómo está? 🏡", "tags": ["niño", {"ciudad": "Ontario"}], "n": 3}
    assert make_storable(clean) == (clean, [])
    assert make_storable(clean)[0] is clean

    # A surrogate after other non-ASCII text, in a list inside a dict, and in a key.
    hidden = {"tags": ["niño", {"ciudad": "Onta\ud800rio"}], "é\udfffkey": "x\x00"}
    cleaned, changed = make_storable(hidden)
    assert cleaned == {"tags": ["niño", {"ciudad": "Onta\ufffdrio"}], "é\ufffdkey": "x"}
    assert sorted(changed) == ["tags[1].ciudad", "é\ufffdkey", "é\ufffdkey"]


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(("level", "lines"), [(logging.INFO, 1), (logging.WARNING, 0)])
async def test_the_access_log_writes_its_line_only_at_info(
    level: int, lines: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, ACCESS_LOGGER)
    transport = httpx.ASGITransport(app=AccessLogMiddleware(_ok))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/health")).status_code == 204
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == lines
    if lines:
        assert getattr(records[0], "http_status", None) == 204
