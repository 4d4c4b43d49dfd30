"""The GHL sandbox speaks GHL's shapes, checks its headers, injects faults and records calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from ghl_real_estate_ai.integrations.ghl.client import CONTACTS_VERSION, CONVERSATIONS_VERSION
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app, get_sandbox_state

AUTH = {"Authorization": "Bearer test-token"}
CONV = {**AUTH, "Version": CONVERSATIONS_VERSION}
CONT = {**AUTH, "Version": CONTACTS_VERSION}


@pytest.fixture
def sandbox() -> FastAPI:
    return create_sandbox_app(seed=7)


@pytest.fixture
async def http(sandbox: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox), base_url="http://sb") as client:
        yield client


async def test_send_sms_answers_conversation_and_message_ids(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "c1", "message": "hi"}, headers=CONV
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"conversationId", "messageId"}
    again = await http.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "c1", "message": "2"}, headers=CONV
    )
    assert again.json()["conversationId"] == body["conversationId"]  # one conversation per contact
    assert response.headers["X-RateLimit-Max"] == "100"
    assert response.headers["X-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(again.headers["X-RateLimit-Remaining"]) == int(response.headers["X-RateLimit-Remaining"]) - 1


async def test_send_email_needs_a_body_and_keeps_the_subject(
    http: httpx.AsyncClient, sandbox: FastAPI
) -> None:
    bad = await http.post("/conversations/messages", json={"type": "Email", "contactId": "c1"}, headers=CONV)
    assert bad.status_code == 422
    assert bad.json()["statusCode"] == 422
    ok = await http.post(
        "/conversations/messages",
        json={"type": "Email", "contactId": "c1", "subject": "CMA", "html": "<p>x</p>"},
        headers=CONV,
    )
    assert ok.status_code == 200 and "emailMessageId" in ok.json()
    assert get_sandbox_state(sandbox).messages[-1]["subject"] == "CMA"


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"Version": CONVERSATIONS_VERSION}, 401, "Invalid JWT"),
        ({"Version": CONVERSATIONS_VERSION, "Authorization": "Bearer "}, 401, "Invalid JWT"),
        (AUTH, 400, "Version header was not found"),
        ({**AUTH, "Version": CONTACTS_VERSION}, 400, "not supported"),
    ],
)
async def test_auth_and_version_are_checked_like_ghl(
    http: httpx.AsyncClient, headers: dict[str, str], status: int, message: str
) -> None:
    response = await http.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "c", "message": "x"}, headers=headers
    )
    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert message in response.json()["message"]


async def test_configured_api_key_must_match() -> None:
    app = create_sandbox_app(api_key="right")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        wrong = await http.get(
            "/contacts/c1", headers={"Authorization": "Bearer wrong", "Version": CONTACTS_VERSION}
        )
        right = await http.get(
            "/contacts/c1", headers={"Authorization": "Bearer right", "Version": CONTACTS_VERSION}
        )
    assert (wrong.status_code, right.status_code) == (401, 200)


async def test_tags_add_and_remove_return_the_contacts_tags(http: httpx.AsyncClient) -> None:
    added = await http.post("/contacts/c9/tags", json={"tags": ["Hot-Seller", "Needs-CMA"]}, headers=CONT)
    assert added.status_code == 201 and added.json() == {"tags": ["Hot-Seller", "Needs-CMA"]}
    removed = await http.request("DELETE", "/contacts/c9/tags", json={"tags": ["Needs-CMA"]}, headers=CONT)
    assert removed.json() == {"tags": ["Hot-Seller"]}
    contact = (await http.get("/contacts/c9", headers=CONT)).json()["contact"]
    assert contact["id"] == "c9" and contact["tags"] == ["Hot-Seller"]


async def test_task_is_created_with_ghl_shape(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/contacts/c1/tasks",
        json={"title": "Call lead", "body": "day 7", "dueDate": "2025-03-01T17:00:00Z", "completed": False},
        headers=CONT,
    )
    assert response.status_code == 201
    task = response.json()["task"]
    assert task["title"] == "Call lead" and task["dueDate"] == "2025-03-01T17:00:00Z" and task["id"]


async def test_free_slots_are_weekday_business_hours_and_skip_booked(http: httpx.AsyncClient) -> None:
    start = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # a Monday
    end = start + timedelta(days=7)
    params = {
        "startDate": int(start.timestamp() * 1000),
        "endDate": int(end.timestamp() * 1000),
        "timezone": "America/Los_Angeles",
    }
    slots = (await http.get("/calendars/cal-1/free-slots", params=params, headers=CONV)).json()
    assert "traceId" in slots
    days = {k: v for k, v in slots.items() if k != "traceId"}
    assert all(datetime.fromisoformat(d).weekday() < 5 for d in days)
    first = days["2025-03-03"]["slots"][0]
    assert first == "2025-03-03T09:00:00-08:00"
    booked = await http.post(
        "/calendars/events/appointments",
        json={"calendarId": "cal-1", "locationId": "loc", "contactId": "c1", "startTime": first},
        headers=CONV,
    )
    assert booked.status_code == 201 and booked.json()["appointmentStatus"] == "confirmed"
    again = (await http.get("/calendars/cal-1/free-slots", params=params, headers=CONV)).json()
    assert first not in again["2025-03-03"]["slots"]
    clash = await http.post(
        "/calendars/events/appointments",
        json={"calendarId": "cal-1", "locationId": "loc", "contactId": "c2", "startTime": first},
        headers=CONV,
    )
    assert clash.status_code == 400 and "no longer available" in clash.json()["message"]


async def test_free_slots_refuse_bad_zone_and_long_ranges(http: httpx.AsyncClient) -> None:
    base = {"startDate": 1740000000000, "endDate": 1740000000000 + 86_400_000}
    bad_zone = await http.get(
        "/calendars/c/free-slots", params={**base, "timezone": "Mars/Base"}, headers=CONV
    )
    assert bad_zone.status_code == 422
    too_long = await http.get(
        "/calendars/c/free-slots",
        params={"startDate": 1740000000000, "endDate": 1740000000000 + 40 * 86_400_000},
        headers=CONV,
    )
    assert too_long.status_code == 422
    missing = await http.get("/calendars/c/free-slots", headers=CONV)
    assert missing.status_code == 422 and missing.json()["error"] == "Unprocessable Entity"


async def test_calls_are_recorded_and_can_be_cleared(http: httpx.AsyncClient) -> None:
    await http.post("/contacts/c1/tags", json={"tags": ["a"]}, headers=CONT)
    await http.get("/contacts/c1", headers={"Version": CONTACTS_VERSION})  # 401, recorded too
    calls = (await http.get("/_calls")).json()
    assert calls["count"] == 2
    first, second = calls["calls"]
    assert first["method"] == "POST" and first["path"] == "/contacts/c1/tags"
    assert (
        first["body"] == {"tags": ["a"]} and first["status"] == 201 and first["version"] == CONTACTS_VERSION
    )
    assert second["status"] == 401
    assert (await http.delete("/_calls")).json() == {"cleared": 2}
    assert (await http.get("/_calls")).json()["count"] == 0


async def test_faults_switch_at_run_time(http: httpx.AsyncClient) -> None:
    assert (await http.post("/_faults", json={"failure_rate": 1.0})).json()["failure_rate"] == 1.0
    failed = await http.get("/contacts/c1", headers=CONT)
    assert failed.status_code == 503 and failed.json()["statusCode"] == 503
    await http.post("/_faults", json={"failure_rate": 0.0})
    assert (await http.get("/contacts/c1", headers=CONT)).status_code == 200
    assert (await http.post("/_faults", json={"failure_rate": 2})).status_code == 422


async def test_rate_limit_answers_429_with_retry_after() -> None:
    app = create_sandbox_app(rate_limit=3)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        statuses = [(await http.get("/contacts/c", headers=CONT)).status_code for _ in range(3)]
        limited = await http.get("/contacts/c", headers=CONT)
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1


async def test_index_and_state_are_inspectable(http: httpx.AsyncClient) -> None:
    await http.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "c1", "message": "x"}, headers=CONV
    )
    index = (await http.get("/")).json()
    assert index["counts"]["messages"] == 1 and index["counts"]["contacts"] == 1
    state = (await http.get("/_state")).json()
    assert state["messages"][0]["message"] == "x"
    await http.delete("/_state")
    assert (await http.get("/_state")).json()["contacts"] == []


async def test_unknown_paths_answer_ghl_style_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/contacts/c1/nothing-here", headers=CONT)
    assert response.status_code == 404 and response.json()["statusCode"] == 404


@pytest.mark.parametrize("prefix", ["", "/sandbox/ghl"])
async def test_a_wrong_method_is_a_405_that_names_every_method_the_path_allows(prefix: str) -> None:
    sandbox = create_sandbox_app()
    app = sandbox
    if prefix:  # as the service serves it
        app = FastAPI()
        app.mount(prefix, sandbox)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        tags = await http.patch(f"{prefix}/contacts/c1/tags", json={"tags": ["a"]}, headers=CONT)
        contact = await http.put(f"{prefix}/contacts/c1", headers=CONT)
    assert (tags.status_code, tags.headers["allow"], tags.json()["statusCode"]) == (405, "DELETE, POST", 405)
    assert (contact.status_code, contact.headers["allow"]) == (405, "GET")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        create_sandbox_app(failure_rate=1.5)
    with pytest.raises(ValueError, match="calendar_timezone"):
        create_sandbox_app(calendar_timezone="Nowhere/Town")


async def test_mounted_under_a_prefix_it_records_ghl_paths() -> None:
    outer = FastAPI()
    sandbox = create_sandbox_app()
    outer.mount("/sandbox/ghl", sandbox)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://app") as http:
        added = await http.post("/sandbox/ghl/contacts/c1/tags", json={"tags": ["a"]}, headers=CONT)
        calls = (await http.get("/sandbox/ghl/_calls")).json()["calls"]
        index = await http.get("/sandbox/ghl/")
    assert added.status_code == 201
    assert [(c["path"], c["version"]) for c in calls] == [("/contacts/c1/tags", CONTACTS_VERSION)]
    assert index.json()["name"] == "GHL sandbox"


# --- issue 13: read-back, bounded state, a call log safe for any text ---------------------


async def test_messages_read_back_newest_first_and_paged_like_ghl(http: httpx.AsyncClient) -> None:
    sent = []
    for n in range(5):
        answer = await http.post(
            "/conversations/messages",
            json={"type": "SMS", "contactId": "c1", "message": f"text {n}"},
            headers=CONV,
        )
        sent.append(answer.json()["messageId"])
    await http.post(
        "/conversations/messages", json={"type": "SMS", "contactId": "c2", "message": "x"}, headers=CONV
    )
    search = await http.get("/conversations/search", params={"contactId": "c1"}, headers=CONV)
    assert search.status_code == 200
    (conversation,) = search.json()["conversations"]
    assert conversation["contactId"] == "c1" and search.json()["total"] == 1
    first = await http.get(f"/conversations/{conversation['id']}/messages?limit=3", headers=CONV)
    page = first.json()["messages"]
    assert [m["id"] for m in page["messages"]] == sent[::-1][:3]
    assert page["nextPage"] is True and page["lastMessageId"] == sent[2]
    assert {m["direction"] for m in page["messages"]} == {"outbound"}
    assert page["messages"][0]["body"] == "text 4" and page["messages"][0]["messageType"] == "TYPE_SMS"
    rest = await http.get(
        f"/conversations/{conversation['id']}/messages",
        params={"limit": 3, "lastMessageId": page["lastMessageId"]},
        headers=CONV,
    )
    assert [m["id"] for m in rest.json()["messages"]["messages"]] == sent[::-1][3:]
    assert rest.json()["messages"]["nextPage"] is False
    unknown = await http.get("/conversations/nope/messages", headers=CONV)
    assert unknown.status_code == 400
    unversioned = await http.get(f"/conversations/{conversation['id']}/messages", headers=AUTH)
    assert unversioned.status_code == 400


async def test_state_keeps_a_bounded_window_of_recent_contacts_and_records() -> None:
    app = create_sandbox_app(max_contacts=10, max_records=25, rate_limit=10_000)
    state = get_sandbox_state(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        for n in range(100):
            body = {"type": "SMS", "contactId": f"c{n}", "message": "hi"}
            assert (await http.post("/conversations/messages", json=body, headers=CONV)).status_code == 200
    assert len(state.contacts) == 10 and len(state.conversations) <= 10
    assert set(state.contacts) == {f"c{n}" for n in range(90, 100)}
    # The window is max_records, plus at most a tenth waiting to be trimmed in one go.
    assert 25 <= len(state.messages) <= 27 and 25 <= len(state.calls) <= 27
    assert state.messages[-1]["contactId"] == "c99" and state.messages[0]["contactId"] != "c0"


async def test_call_log_survives_any_stored_text_and_deep_bodies(
    http: httpx.AsyncClient, sandbox: FastAPI
) -> None:
    surrogate = b'{"type": "SMS", "contactId": "c1", "message": "a\\ud800b\\u0000"}'
    sent = await http.post(
        "/conversations/messages", content=surrogate, headers={**CONV, "Content-Type": "application/json"}
    )
    assert sent.status_code < 500
    deep = b'{"type": "SMS", "contactId": "c1", "message": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    refused = await http.post(
        "/conversations/messages", content=deep, headers={**CONV, "Content-Type": "application/json"}
    )
    assert refused.status_code == 400 and "64" in str(refused.json()["message"])
    calls = await http.get("/_calls")
    assert calls.status_code == 200
    logged = calls.json()["calls"]
    assert logged[0]["body"]["message"] == "a\ufffdb" and logged[1]["status"] == 400
    assert (await http.get("/_state")).status_code == 200


async def test_the_default_window_is_filled_by_a_few_hundred_webhooks_and_then_holds() -> None:
    """Issue 14: the embedded sandbox's defaults keep a window small enough to fill early, so the
    service's memory after 10,000 webhooks is that after 1,000 (each webhook makes ~3 calls)."""
    app = create_sandbox_app(rate_limit=100_000)
    state = get_sandbox_state(app)
    assert (state.max_contacts, state.max_records) == (500, 1_000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        for n in range(1_200):
            body = {"type": "SMS", "contactId": f"c{n}", "message": "hi"}
            assert (await http.post("/conversations/messages", json=body, headers=CONV)).status_code == 200
    assert len(state.contacts) == 500 and len(state.conversations) <= 500
    assert 1_000 <= len(state.messages) <= 1_100 and 1_000 <= len(state.calls) <= 1_100


async def test_valid_api_calls_are_answered_by_the_routes_functions_without_fastapi_routing() -> None:
    """Issue 14: a valid API call costs its route's function, not FastAPI's per-request machinery;
    a call FastAPI must refuse still goes to FastAPI (whose API routes are removed here: 404)."""
    app = create_sandbox_app()
    api_prefixes = ("/conversations", "/contacts", "/calendars")
    app.router.routes[:] = [
        r for r in app.router.routes if not getattr(r, "path", "").startswith(api_prefixes)
    ]
    slots = {"startDate": 1740960000000, "endDate": 1740960000000 + 86_400_000}
    appointment = {
        "calendarId": "k",
        "locationId": "l",
        "contactId": "c1",
        "startTime": "2025-03-03T17:00:00Z",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        sent = await http.post(
            "/conversations/messages", json={"type": "SMS", "contactId": "c1", "message": "x"}, headers=CONV
        )
        conversation = sent.json()["conversationId"]
        answers = [
            sent,
            await http.get("/conversations/search", params={"contactId": "c1"}, headers=CONV),
            await http.get(f"/conversations/{conversation}/messages", params={"limit": 5}, headers=CONV),
            await http.get("/contacts/c1", headers=CONT),
            await http.post("/contacts/c1/tags", json={"tags": ["a"]}, headers=CONT),
            await http.request("DELETE", "/contacts/c1/tags", json={"tags": ["a"]}, headers=CONT),
            await http.post(
                "/contacts/c1/tasks", json={"title": "t", "dueDate": "2025-03-01T17:00:00Z"}, headers=CONT
            ),
            await http.get("/calendars/k/free-slots", params=slots, headers=CONV),
            await http.post("/calendars/events/appointments", json=appointment, headers=CONV),
        ]
        refused = await http.get("/conversations/search", params={"limit": 0}, headers=CONV)
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 201, 200, 201, 200, 201]
    assert refused.status_code == 404


# --- hostile input: a precise 4xx, never a 500; headers read exactly; bodies stored clean -----


def _calls(app: FastAPI) -> list[tuple[str, int | None]]:
    return [(c["path"], c["status"]) for c in get_sandbox_state(app).calls]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # the default end (start + 30 minutes) would pass year 9999
        (
            "/calendars/events/appointments",
            {
                "calendarId": "k",
                "locationId": "l",
                "contactId": "c",
                "startTime": "9999-12-31T23:59:00+00:00",
            },
            "startTime",
        ),
        # in UTC, past year 9999 or before year 1
        (
            "/calendars/events/appointments",
            {
                "calendarId": "k",
                "locationId": "l",
                "contactId": "c",
                "startTime": "9999-12-31T23:00:00-05:00",
            },
            "startTime",
        ),
        (
            "/calendars/events/appointments",
            {
                "calendarId": "k",
                "locationId": "l",
                "contactId": "c",
                "startTime": "0001-01-01T00:00:00+05:00",
            },
            "startTime",
        ),
        ("/contacts/c1/tasks", {"title": "T", "dueDate": "9999-12-31T23:00:00-05:00"}, "dueDate"),
        ("/contacts/c1/tasks", {"title": "T", "dueDate": "0001-01-01T00:00:00+01:00"}, "dueDate"),
    ],
)
async def test_times_beyond_the_calendar_are_a_logged_422_not_a_500(
    path: str, body: dict[str, str], field: str
) -> None:
    app = create_sandbox_app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = CONV if path.startswith("/calendars") else CONT
    async with httpx.AsyncClient(transport=transport, base_url="http://sb") as http:
        response = await http.post(path, json=body, headers=headers)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["statusCode"] == 422 and answer["error"] == "Unprocessable Entity"
    assert [m.split(":")[0] for m in answer["message"]] == [field]
    assert _calls(app) == [(path, 422)]  # recorded like every other refused call
    state = get_sandbox_state(app)
    assert state.appointments == [] and state.tasks == []


async def test_an_appointment_at_the_last_minute_of_9999_is_booked_with_its_own_end_time(
    http: httpx.AsyncClient,
) -> None:
    booked = await http.post(
        "/calendars/events/appointments",
        json={
            "calendarId": "k",
            "locationId": "l",
            "contactId": "c",
            "startTime": "9999-12-31T23:59:00+00:00",
            "endTime": "9999-12-31T23:59:59+00:00",
        },
        headers=CONV,
    )
    assert booked.status_code == 201 and booked.json()["endTime"] == "9999-12-31T23:59:59+00:00"


@pytest.mark.parametrize(
    "path", ["/contactsX/c1", "/contacts-old/c1", "/conversationsearch", "/calendarsX/k/free-slots"]
)
async def test_a_path_that_only_starts_like_an_api_path_gets_no_version_rule(
    http: httpx.AsyncClient, sandbox: FastAPI, path: str
) -> None:
    response = await http.get(path, headers=AUTH)  # no Version: an API path's would be a 400
    assert (response.status_code, response.json()["statusCode"]) == (404, 404)
    assert "x-ratelimit-max" not in response.headers  # not an API call: like any unknown path
    assert _calls(sandbox) == []


@pytest.mark.parametrize(
    ("path", "version"),
    [
        ("/contacts", CONTACTS_VERSION),
        ("/contacts/c1/nothing-here", CONTACTS_VERSION),
        ("/conversations", CONVERSATIONS_VERSION),
        ("/calendars/k/nothing", CONVERSATIONS_VERSION),
    ],
)
async def test_every_path_under_an_api_segment_keeps_its_version_rule(
    http: httpx.AsyncClient, sandbox: FastAPI, path: str, version: str
) -> None:
    unversioned = await http.get(path, headers=AUTH)
    assert unversioned.status_code == 400 and "Version" in unversioned.json()["message"]
    versioned = await http.get(path, headers={**AUTH, "Version": version})
    assert versioned.status_code == 404
    assert _calls(sandbox) == [(path, 400), (path, 404)]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer  right", "Bearer right ", "Bearer  right ", " Bearer right", "Bearer\tright", "Bearer ri ght"],
)
@pytest.mark.parametrize("api_key", ["right", None])
async def test_a_malformed_authorization_is_a_401_like_a_wrong_token(
    authorization: str, api_key: str | None
) -> None:
    app = create_sandbox_app(api_key=api_key)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb") as http:
        refused = await http.get(
            "/contacts/c1", headers={"Authorization": authorization, "Version": CONTACTS_VERSION}
        )
        accepted = await http.get(
            "/contacts/c1", headers={"Authorization": "Bearer right", "Version": CONTACTS_VERSION}
        )
    assert (refused.status_code, refused.json()) == (
        401,
        {"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"},
    )
    assert accepted.status_code == 200
    assert _calls(app) == [("/contacts/c1", 401), ("/contacts/c1", 200)]


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-16"),
        lambda text: text.encode("utf-16-be"),
        lambda text: text.encode("utf-32"),
        lambda text: text.encode("utf-32-le"),
        # UTF-8 holding a surrogate's 3-byte form, which json.loads reads with surrogatepass
        lambda text: (
            text.replace("\\u0000", "").replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass")
        ),
    ],
    ids=["utf-16", "utf-16-be", "utf-32", "utf-32-le", "utf-8-surrogate"],
)
async def test_bodies_in_any_json_encoding_reach_the_state_clean(
    http: httpx.AsyncClient, sandbox: FastAPI, encode: Callable[[str], bytes]
) -> None:
    text = '{"tags": ["a\\u0000b", "c\\ud800d"], "title": "x"}'
    raw = encode(text)
    assert "\\u" not in raw.decode("latin-1")  # what the old shortcut looked for
    headers = {**CONT, "Content-Type": "application/json"}
    added = await http.post("/contacts/c1/tags", content=raw, headers=headers)
    assert added.status_code == 201
    assert get_sandbox_state(sandbox).contacts["c1"]["tags"] == ["ab", "c\ufffdd"]
    assert (await http.get("/_state")).status_code == 200
    assert (await http.get("/_calls")).status_code == 200
