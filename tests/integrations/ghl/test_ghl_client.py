"""The GHL client: endpoints and Version headers, retries, the shared rate limit, tracing, TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.cache import Cache, open_cache
from ghl_real_estate_ai.errors import ConfigurationError, GHLError, GHLOutcomeUnknownError, GHLRateLimitError
from ghl_real_estate_ai.integrations.ghl.client import (
    CONTACTS_VERSION,
    CONVERSATIONS_VERSION,
    SANDBOX_BASE_URL,
    GHLClient,
    RateLimiter,
    build_ghl_client,
)
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app, get_sandbox_state, serve_in_thread
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.settings import Settings
from tests.ghl_fixtures import *  # noqa: F403  (the pytest fixtures cache, ghl, sandbox, store)


def _mock_client(
    cache: Cache, handler: Callable[[httpx.Request], httpx.Response], **options: object
) -> GHLClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return GHLClient(
        base_url="https://ghl.test",
        api_key="k",
        location_id="loc",
        http=http,
        cache=cache,
        backoff_base=0.001,
        **options,  # type: ignore[arg-type]
    )


# --- endpoints against the sandbox --------------------------------------------------------


async def test_every_endpoint_sends_the_right_path_body_and_version(ghl: GHLClient, sandbox: FastAPI) -> None:
    sent = await ghl.send_message("c1", "SMS", "Hello there")
    assert sent["conversationId"] and sent["messageId"]
    await ghl.send_message("c1", "Email", "plain", subject="Your CMA", html="<p>CMA</p>")
    assert (await ghl.add_tags("c1", ["Hot-Seller", "Needs-CMA"]))["tags"] == ["Hot-Seller", "Needs-CMA"]
    assert (await ghl.remove_tags("c1", ["Needs-CMA"]))["tags"] == ["Hot-Seller"]
    due = datetime(2025, 3, 3, 17, 0, tzinfo=UTC)
    task = await ghl.create_task("c1", "Day 7 call", "Call the lead", due)
    assert task["task"]["dueDate"] == "2025-03-03T17:00:00Z"
    start = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
    slots = await ghl.get_free_slots("cal-1", start, start + timedelta(days=2))
    assert slots == sorted(slots) and all(s.tzinfo is not None for s in slots)
    booked = await ghl.book_appointment("cal-1", "c1", slots[0], title="CMA review")
    assert booked["appointmentStatus"] == "confirmed"
    assert (await ghl.get_free_slots("cal-1", start, start + timedelta(days=2)))[0] != slots[0]
    assert (await ghl.get_contact("c1"))["tags"] == ["Hot-Seller"]

    calls = get_sandbox_state(sandbox).calls
    assert [(c["method"], c["path"], c["version"], c["status"]) for c in calls] == [
        ("POST", "/conversations/messages", CONVERSATIONS_VERSION, 200),
        ("POST", "/conversations/messages", CONVERSATIONS_VERSION, 200),
        ("POST", "/contacts/c1/tags", CONTACTS_VERSION, 201),
        ("DELETE", "/contacts/c1/tags", CONTACTS_VERSION, 200),
        ("POST", "/contacts/c1/tasks", CONTACTS_VERSION, 201),
        ("GET", "/calendars/cal-1/free-slots", CONVERSATIONS_VERSION, 200),
        ("POST", "/calendars/events/appointments", CONVERSATIONS_VERSION, 201),
        ("GET", "/calendars/cal-1/free-slots", CONVERSATIONS_VERSION, 200),
        ("GET", "/contacts/c1", CONTACTS_VERSION, 200),
    ]
    assert calls[0]["body"] == {"type": "SMS", "contactId": "c1", "message": "Hello there"}
    assert calls[1]["body"] == {
        "type": "Email",
        "contactId": "c1",
        "message": "plain",
        "subject": "Your CMA",
        "html": "<p>CMA</p>",
    }
    assert calls[6]["body"]["locationId"] == "sandbox-location"
    assert "startDate=" in calls[5]["query"] and "timezone=America%2FLos_Angeles" in calls[5]["query"]


async def test_contact_is_cached_and_tag_changes_drop_the_copy(ghl: GHLClient, sandbox: FastAPI) -> None:
    await ghl.get_contact("c5")
    await ghl.get_contact("c5")
    assert len(get_sandbox_state(sandbox).calls) == 1
    await ghl.add_tags("c5", ["x"])
    assert (await ghl.get_contact("c5"))["tags"] == ["x"]
    assert len(get_sandbox_state(sandbox).calls) == 3


async def test_naive_datetimes_are_refused(ghl: GHLClient) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await ghl.create_task("c", "t", "b", datetime(2025, 1, 1))


# --- retries ---------------------------------------------------------------------------


async def test_5xx_and_transport_errors_are_retried_until_success(cache: Cache) -> None:
    answers: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        answers.append(len(answers))
        if len(answers) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(answers) == 2:
            return httpx.Response(502, json={"message": "bad gateway"})
        return httpx.Response(200, json={"contact": {"id": "c"}})

    client = _mock_client(cache, handler)
    assert (await client.get_contact("c"))["id"] == "c"
    assert len(answers) == 3
    await client.aclose()


async def test_retry_after_is_honoured_and_429_ends_in_rate_limit_error(cache: Cache) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "slow down"})

    client = _mock_client(cache, handler, max_retries=2)
    with pytest.raises(GHLRateLimitError, match="429: slow down") as info:
        await client.add_tags("c", ["t"])
    assert len(seen) == 3
    assert info.value.status_code == 429 and info.value.retry_after == 0
    await client.aclose()


async def test_a_long_retry_after_is_not_slept_on(cache: Cache) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, headers={"Retry-After": "3600"}, json={"message": "maintenance"})

    client = _mock_client(cache, handler, max_retries=4, max_retry_wait=5)
    with pytest.raises(GHLError) as info:
        await client.send_message("c", "SMS", "x")
    assert len(calls) == 1 and info.value.retry_after == 3600
    assert not isinstance(info.value, GHLRateLimitError)
    await client.aclose()


async def test_other_4xx_are_not_retried(cache: Cache) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(422, json={"statusCode": 422, "message": ["contactId must be a string"]})

    client = _mock_client(cache, handler)
    with pytest.raises(GHLError, match="422") as info:
        await client.send_message("c", "SMS", "x")
    assert len(calls) == 1 and info.value.status_code == 422
    await client.aclose()


async def test_requests_carry_bearer_version_and_accept(cache: Cache) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"tags": []})

    client = _mock_client(cache, handler)
    await client.remove_tags("c 1", ["a"])
    request = seen[0]
    assert request.method == "DELETE"
    assert request.url.path == "/contacts/c%201/tags" or request.url.raw_path == b"/contacts/c%201/tags"
    assert request.headers["Authorization"] == "Bearer k"
    assert request.headers["Version"] == CONTACTS_VERSION
    assert request.headers["Accept"] == "application/json"
    await client.aclose()


async def test_non_json_success_is_a_clear_error(cache: Cache) -> None:
    client = _mock_client(cache, lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(GHLError, match="non-JSON"):
        await client.get_contact("c")
    await client.aclose()


# --- rate limit ------------------------------------------------------------------------


async def test_limiter_waits_instead_of_failing_when_the_window_is_full(cache: Cache) -> None:
    limiter = RateLimiter(cache, "test:rl", limit=3, window_seconds=0.3)
    waits = [await limiter.acquire() for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    assert await limiter.acquire() > 0  # the fourth had to wait for the window to slide


async def test_limiters_sharing_a_cache_share_the_budget(cache: Cache) -> None:
    replica_a = RateLimiter(cache, "ghl:ratelimit:loc", limit=4, window_seconds=0.3)
    replica_b = RateLimiter(cache, "ghl:ratelimit:loc", limit=4, window_seconds=0.3)
    other_location = RateLimiter(cache, "ghl:ratelimit:other", limit=4, window_seconds=0.3)
    for _ in range(4):
        assert await replica_a.acquire() == 0.0
    assert await other_location.acquire() == 0.0
    assert await replica_b.acquire() > 0


@pytest.mark.redis
async def test_limiters_on_redis_share_the_budget_across_connections(
    redis_url: str, redis_namespace: str
) -> None:
    first, second = (
        open_cache(redis_url, namespace=redis_namespace),
        open_cache(redis_url, namespace=redis_namespace),
    )
    await first.open()
    await second.open()
    try:
        replica_a = RateLimiter(first, "ghl:ratelimit:loc", limit=3, window_seconds=0.5)
        replica_b = RateLimiter(second, "ghl:ratelimit:loc", limit=3, window_seconds=0.5)
        results = await asyncio.gather(*(replica_a.acquire() for _ in range(3)))
        assert results == [0.0, 0.0, 0.0]
        assert await replica_b.acquire() > 0
    finally:
        await first.close()
        await second.close()


async def test_a_burst_over_the_limit_waits_and_every_call_succeeds(cache: Cache) -> None:
    sandbox = create_sandbox_app(rate_limit=5)
    client = build_ghl_client(Settings(ghl_rate_limit_per_10s=5), cache, sandbox_app=sandbox)
    client.backoff_base = 0.001
    client.limiter.window = 0.5  # a short window keeps the test quick; the sandbox's is 10 s
    state = get_sandbox_state(sandbox)
    state.rate_interval_ms = 500
    contacts = await asyncio.gather(*(client.get_contact(f"c{i}") for i in range(8)))
    assert sorted(c["id"] for c in contacts) == [f"c{i}" for i in range(8)]
    statuses = [c["status"] for c in state.calls]
    assert statuses[:5] == [200] * 5  # the first five went straight out, the rest waited for the window
    assert statuses.count(200) == 8
    await client.aclose()


# --- factory, tracing, TCP ------------------------------------------------------------------


def test_production_client_needs_an_api_key(cache: Cache) -> None:
    with pytest.raises(ConfigurationError, match="GHL_API_KEY"):
        build_ghl_client(Settings(ghl_base_url="https://services.leadconnectorhq.com"), cache)


async def test_every_call_is_an_httpx_client_span_under_the_caller(ghl: GHLClient) -> None:
    tracer = trace.get_tracer("test")
    with capture_spans() as capture, tracer.start_as_current_span("seller_bot.schedule_cma_appointment"):
        await ghl.send_message("c1", "SMS", "hi")
        await ghl.add_tags("c1", ["Hot-Seller"])
    node = capture.by_name("seller_bot.schedule_cma_appointment")[0]
    clients = [s for s in capture.spans() if s.kind is SpanKind.CLIENT]
    # Named `{method} {url.template}` with url.template set (issue 12); ids stay in the URL.
    assert [s.name for s in clients] == ["POST /conversations/messages", "POST /contacts/{contactId}/tags"]
    assert [s.attributes["url.template"] for s in clients] == [
        "/conversations/messages",
        "/contacts/{contactId}/tags",
    ]
    assert all(s.parent is not None and s.parent.span_id == node.context.span_id for s in clients)
    assert all(s.context.trace_id == node.context.trace_id for s in clients)
    urls = [str(s.attributes.get("url.full") or s.attributes.get("http.url")) for s in clients]
    assert urls[0].endswith("/conversations/messages") and urls[1].endswith("/contacts/c1/tags")


@pytest.mark.parametrize("off", [{"otel_enabled": False}, {"otel_sdk_disabled": True}])
async def test_with_tracing_off_for_good_the_sandbox_client_is_not_instrumented(
    cache: Cache, off: dict[str, bool]
) -> None:
    """Like httpx's own transports, whose instrumentation is only loaded when tracing is set up."""
    client = build_ghl_client(Settings(**off), cache, sandbox_app=create_sandbox_app())  # type: ignore[arg-type]
    try:
        with capture_spans() as capture, trace.get_tracer("test").start_as_current_span("node"):
            await client.send_message("c1", "SMS", "hi")
    finally:
        await client.aclose()
    assert "node" in [s.name for s in capture.spans()]
    assert [s.name for s in capture.spans() if s.kind is SpanKind.CLIENT] == []


async def test_client_talks_to_a_real_server_over_tcp(cache: Cache) -> None:
    sandbox = create_sandbox_app(api_key="secret-token")
    with serve_in_thread(sandbox) as base_url:
        settings = Settings(ghl_base_url=base_url, ghl_api_key="secret-token", ghl_location_id="loc-tcp")
        client = build_ghl_client(settings, cache)
        try:
            sent = await client.send_message("c-tcp", "SMS", "over the wire")
            async with httpx.AsyncClient(base_url=base_url) as inspector:
                calls = (await inspector.get("/_calls")).json()["calls"]
        finally:
            await client.aclose()
    assert sent["messageId"]
    assert calls == [
        {
            **calls[0],
            "method": "POST",
            "path": "/conversations/messages",
            "status": 200,
            "body": {"type": "SMS", "contactId": "c-tcp", "message": "over the wire"},
        }
    ]


async def test_wrong_token_over_tcp_is_a_401_error_without_retries(cache: Cache) -> None:
    sandbox = create_sandbox_app(api_key="secret-token")
    with serve_in_thread(sandbox) as base_url:
        client = build_ghl_client(Settings(ghl_base_url=base_url, ghl_api_key="wrong"), cache)
        try:
            with pytest.raises(GHLError, match="401: Invalid JWT"):
                await client.get_contact("c")
        finally:
            await client.aclose()
    assert len(get_sandbox_state(sandbox).calls) == 1


async def test_cookies_an_answer_sets_are_neither_kept_nor_sent_back(cache: Cache) -> None:
    """GHL's API authenticates by token: a Set-Cookie from its front end is not replayed on later calls."""
    front = FastAPI()
    cookie_headers: list[str | None] = []

    @front.post("/conversations/messages")
    async def send(request: Request) -> JSONResponse:
        cookie_headers.append(request.headers.get("cookie"))
        answer = JSONResponse({"conversationId": "conv", "messageId": f"m{len(cookie_headers)}"})
        answer.set_cookie("__cf_bm", "edge-session", path="/")
        return answer

    with serve_in_thread(front) as base_url:
        client = build_ghl_client(Settings(ghl_base_url=base_url, ghl_api_key="k"), cache)
        try:
            for n in range(3):
                assert (await client.send_message(f"c{n}", "SMS", "hi"))["messageId"] == f"m{n + 1}"
            assert list(client.http.cookies.jar) == []
            with pytest.raises(AttributeError, match="keeps no cookies"):
                client.http.cookies = {"session": "x"}
        finally:
            await client.aclose()
    assert cookie_headers == [None, None, None]


def _sent(request: httpx.Request) -> tuple[object, ...]:
    headers = request.headers.multi_items()
    return (request.method, str(request.url), headers, request.read(), request.extensions)


@pytest.mark.parametrize(
    ("method", "url", "options"),
    [
        ("POST", "https://ghl.test/conversations/messages", {"json": {"type": "SMS", "message": "héllo"}}),
        ("GET", "https://ghl.test/calendars/cal/free-slots", {"params": {"startDate": 1, "endDate": 2}}),
        ("DELETE", "http://ghl.test/contacts/c1/tags", {"json": {"tags": ["a", "b"]}}),
        ("PUT", "https://ghl.test/contacts/c1", {"content": b"{}"}),
        # Not the GHL client's own shape: httpx's build, as it is.
        ("GET", "/relative/path", {}),
        ("POST", "https://ghl.test/x", {"data": {"a": "1"}}),
        ("GET", "https://ghl.test/x", {"cookies": {"a": "1"}}),
        ("GET", "https://ghl.test/x", {"timeout": 1.0}),
        ("GET", "https://ghl.test/x", {"extensions": {"trace": None}}),
        ("GET", httpx.URL("https://ghl.test/x"), {}),
    ],
)
async def test_the_client_builds_the_request_httpx_would_build(
    method: str, url: object, options: dict[str, object]
) -> None:
    """The GHL client's cheaper request build sends what httpx's own build sends, call after call."""
    http = build_ghl_client(Settings(ghl_base_url="https://ghl.test", ghl_api_key="k"), open_cache(None)).http
    try:
        http.headers["X-Team"] = "jorge"
        for version in (CONVERSATIONS_VERSION, CONTACTS_VERSION, CONVERSATIONS_VERSION):
            headers = {"Version": version, "Accept": "application/json", "Authorization": "Bearer k"}
            ours = http.build_request(method, url, headers=headers, **options)  # type: ignore[arg-type]
            theirs = httpx.AsyncClient.build_request(http, method, url, headers=headers, **options)  # type: ignore[arg-type]
            assert _sent(ours) == _sent(theirs)
        http.headers["X-Team"] = "changed"  # the client's own headers change: requests follow
        ours = http.build_request(method, url, headers={"Version": CONTACTS_VERSION}, **options)  # type: ignore[arg-type]
        assert ours.headers["X-Team"] == "changed"
    finally:
        await http.aclose()


async def test_the_ghl_client_merges_a_header_set_and_parses_a_url_once(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeated header set is not merged and normalised with the client's headers again at each call."""
    merges: list[object] = []
    update = httpx.Headers.update

    def counted(self: httpx.Headers, headers: object = None) -> None:
        merges.append(headers)
        update(self, headers)  # type: ignore[arg-type]

    client = build_ghl_client(Settings(), cache)
    try:
        monkeypatch.setattr(httpx.Headers, "update", counted)
        for n in range(5):
            await client.send_message(f"c{n}", "SMS", "hi")
            await client.add_tags(f"c{n}", ["hot"])
    finally:
        await client.aclose()
    assert len(merges) == 2  # one per header set (two API versions), not one per call
    # and a URL called again is not parsed again (httpx's URLs are immutable)
    parsed: list[str] = []
    parse = httpx._urls.urlparse

    def counted_parse(url: str = "", **kwargs: Any) -> Any:
        parsed.append(url)
        return parse(url, **kwargs)

    monkeypatch.setattr(httpx._urls, "urlparse", counted_parse)
    for _ in range(3):
        client.http.build_request("POST", SANDBOX_BASE_URL + "/x", headers={"Version": CONVERSATIONS_VERSION})
    assert parsed == [SANDBOX_BASE_URL + "/x"]


# --- issue 13: a write is retried only when it provably did not take effect ----------------


@pytest.mark.parametrize(
    ("failure", "calls", "error"),
    [
        (httpx.ReadTimeout("slow"), 1, GHLOutcomeUnknownError),  # it left: no blind retry
        (httpx.RemoteProtocolError("reset"), 1, GHLOutcomeUnknownError),
        (503, 1, GHLOutcomeUnknownError),  # GHL may have done it
        (httpx.ConnectError("refused"), 4, GHLError),  # never left: retried
        (429, 4, GHLRateLimitError),  # refused by GHL: retried
    ],
)
async def test_a_post_is_retried_only_when_it_never_took_effect(
    cache: Cache, failure: object, calls: int, error: type[Exception]
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if isinstance(failure, int):
            return httpx.Response(failure, headers={"Retry-After": "0"}, json={"message": "no"})
        assert isinstance(failure, Exception)
        raise failure

    client = _mock_client(cache, handler, max_retries=3)
    with pytest.raises(error) as info:
        await client.send_message("c1", "SMS", "hi")
    assert len(seen) == calls and type(info.value) is error
    await client.aclose()


async def test_a_read_is_still_retried_on_5xx_and_timeouts(cache: Cache) -> None:
    answers = iter([httpx.ReadTimeout("slow"), 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"contact": {"id": "c1"}} if answer == 200 else {"message": "x"})

    client = _mock_client(cache, handler, max_retries=3)
    assert (await client.get_contact("c1"))["id"] == "c1"
    await client.aclose()
