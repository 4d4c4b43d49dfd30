"""POST /api/v1/webhooks/ghl: checks in order, durable acknowledgement, dedupe, processing in the request.

The app under test is the real router on a small FastAPI app with a real SQLite
(or PostgreSQL) store, the real GHL sandbox behind the real client and outbox,
and a processor that answers every message with one SMS through the outbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.api.webhooks import WEBHOOK_PATH, router
from ghl_real_estate_ai.cache import open_cache
from ghl_real_estate_ai.integrations.ghl.client import build_ghl_client
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app, get_sandbox_state, serve_in_thread
from ghl_real_estate_ai.integrations.ghl.webhook import ED25519_HEADER, RSA_HEADER, InboundMessage
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import trace_workflow_node
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.base import Store, WebhookEvent


class ReplyingProcessor:
    """A stand-in for the bots: records each event and answers with one SMS through the outbox."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.events: list[int] = []
        self.fail = False

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        self.events.append(event.id)
        if self.fail:
            raise RuntimeError("the bot crashed")
        assert message.contact_id is not None
        await self.outbox.submit(
            f"{event.id}:reply:1",
            "send_message",
            {
                "contact_id": message.contact_id,
                "channel": message.reply_channel,
                "message": "Thanks for reaching out!",
            },
        )


@asynccontextmanager
async def _running_app(settings: Settings, store: Store | None = None) -> AsyncIterator[FastAPI]:
    """The router on an app with every dependency open; closes them afterwards."""
    own_store = store is None
    if store is None:
        store = open_store(settings.database_url)
        await store.open()
    cache = open_cache(None)
    await cache.open()
    sandbox = create_sandbox_app(seed=5)
    client = build_ghl_client(settings, cache, sandbox_app=sandbox)
    client.backoff_base = 0.001
    app = FastAPI()
    app.include_router(router)
    app.state.settings = settings
    app.state.store = store
    app.state.sandbox = sandbox
    app.state.outbox = Outbox(store, client)
    app.state.processor = ReplyingProcessor(app.state.outbox)
    try:
        yield app
    finally:
        await client.aclose()
        await cache.close()
        if own_store:
            await store.close()


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[FastAPI]:
    async with _running_app(Settings(database_url=sqlite_url)) as built:
        yield built


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jorge") as client:
        yield client


def _payload(n: int = 1, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "InboundMessage",
        "locationId": "loc-1",
        "contactId": f"contact-{n}",
        "body": "I want to sell my house in 30 days",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-{n}",
        "webhookId": f"wh-{n}",
        "conversationId": f"conv-{n}",
        "dateAdded": datetime.now(UTC).isoformat(),
        "timestamp": datetime.now(UTC).isoformat(),
    }
    data.update(overrides)
    return data


def _post(http: httpx.AsyncClient, body: bytes | dict[str, Any], **headers: str) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(WEBHOOK_PATH, content=content, headers={"Content-Type": "application/json", **headers})


def _sms(app: FastAPI) -> list[dict[str, Any]]:
    return [c for c in get_sandbox_state(app.state.sandbox).calls if c["path"] == "/conversations/messages"]


async def _stored(store: Store, event_id: int = 1) -> WebhookEvent | None:
    return await store.get_webhook_event(event_id)


# --- the happy path -----------------------------------------------------------------------


async def test_inbound_message_is_stored_processed_and_answered(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    response = await _post(http, _payload())
    assert response.status_code == 200
    assert response.json() == {"status": "processed", "event_id": 1}
    event = await _stored(app.state.store)
    assert event is not None and event.status == "processed" and event.webhook_id == "wh-1"
    assert app.state.processor.events == [1]
    assert [c["body"]["contactId"] for c in _sms(app)] == ["contact-1"]


async def test_nested_form_is_processed(app: FastAPI, http: httpx.AsyncClient) -> None:
    body = {
        "locationId": "l",
        "contactId": "c-nested",
        "message": {"type": 2, "body": "hi", "direction": "inbound"},
    }
    response = await _post(http, body)
    assert response.json()["status"] == "processed"
    assert _sms(app)[0]["body"]["contactId"] == "c-nested"


async def test_a_redelivery_is_acknowledged_and_not_processed_again(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    assert (await _post(http, _payload())).json()["status"] == "processed"
    again = await _post(http, _payload())
    same_message_new_webhook = await _post(http, _payload(webhookId="wh-other"))
    assert again.status_code == 200 and again.json() == {"status": "duplicate", "event_id": 1}
    assert same_message_new_webhook.json()["status"] == "duplicate"
    assert app.state.processor.events == [1]
    assert len(_sms(app)) == 1


@pytest.mark.parametrize(
    "body",
    [
        _payload(direction="outbound"),
        {"type": "OutboundMessage", "locationId": "l", "contactId": "c", "messageId": "m-out"},
        {"type": "ContactCreate", "id": "abc", "locationId": "l"},
    ],
)
async def test_outbound_and_unknown_events_are_stored_as_ignored(
    app: FastAPI, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await _post(http, body)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    event = await _stored(app.state.store)
    assert event is not None and event.status == "ignored"
    assert app.state.processor.events == [] and _sms(app) == []


async def test_a_processing_failure_is_acknowledged_and_left_for_the_worker(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    app.state.processor.fail = True
    response = await _post(http, _payload())
    assert response.status_code == 200 and response.json() == {"status": "queued", "event_id": 1}
    event = await _stored(app.state.store)
    assert event is not None and event.status == "received" and event.attempts == 1
    assert event.error is not None and "the bot crashed" in event.error


# --- refusals, in order ---------------------------------------------------------------------


async def test_oversized_bodies_get_413_by_header_or_by_bytes(app: FastAPI, http: httpx.AsyncClient) -> None:
    limit = app.state.settings.webhook_max_body_bytes
    big = json.dumps(_payload(body="x" * (limit + 10))).encode()
    declared = await _post(http, big)
    assert declared.status_code == 413 and "WEBHOOK_MAX_BODY_BYTES" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked, counted while read
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = await http.post(WEBHOOK_PATH, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert await _stored(app.state.store) is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_content_types_get_415(
    app: FastAPI, http: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await http.post(WEBHOOK_PATH, content=json.dumps(_payload()).encode(), headers=headers)
    assert response.status_code == 415
    assert await _stored(app.state.store) is None


async def test_json_with_charset_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        WEBHOOK_PATH,
        content=json.dumps(_payload()).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00{", b'{"type": "InboundMessage",'])
async def test_malformed_json_gets_400(app: FastAPI, http: httpx.AsyncClient, raw: bytes) -> None:
    response = await _post(http, raw)
    assert response.status_code == 400 and response.json()["detail"].startswith("body is not valid JSON")
    assert await _stored(app.state.store) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "InboundMessage", "locationId": "l"}, "contactId"),
        (_payload(contactId=42), "contactId"),
        (_payload(direction="sideways"), "direction"),
        (_payload(timestamp="last tuesday"), "timestamp"),
        ([1, 2, 3], "body"),
        ({"body": "no type"}, "type"),
    ],
)
async def test_schema_errors_get_422_naming_the_field(
    app: FastAPI, http: httpx.AsyncClient, body: Any, field: str
) -> None:
    response = await _post(http, json.dumps(body).encode())
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert field in response.json()["detail"]
    assert await _stored(app.state.store) is None


# --- signatures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.fixture
async def signed_app(
    sqlite_url: str, ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[FastAPI]:
    settings = Settings(
        database_url=sqlite_url,
        environment="production",
        ghl_webhook_public_key=_pem(ed_key.public_key()),
        ghl_webhook_rsa_public_key=_pem(rsa_key.public_key()),
    )
    async with _running_app(settings) as built:
        yield built


async def test_valid_ed25519_and_rsa_signatures_pass(
    signed_app: FastAPI, ed_key: ed25519.Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    first = json.dumps(_payload(1)).encode()
    second = json.dumps(_payload(2)).encode()
    rsa_signature = rsa_key.sign(second, padding.PKCS1v15(), hashes.SHA256())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=signed_app), base_url="http://j") as http:
        ok_ed = await _post(http, first, **{ED25519_HEADER: base64.b64encode(ed_key.sign(first)).decode()})
        ok_rsa = await _post(http, second, **{RSA_HEADER: base64.b64encode(rsa_signature).decode()})
    assert (ok_ed.status_code, ok_rsa.status_code) == (200, 200)
    assert signed_app.state.processor.events == [1, 2]


def _bad_deliveries(ed_key: ed25519.Ed25519PrivateKey) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    body = json.dumps(_payload()).encode()
    good = base64.b64encode(ed_key.sign(body)).decode()
    yield "tampered body", body.replace(b"sell", b"rent"), {ED25519_HEADER: good}
    other = ed25519.Ed25519PrivateKey.generate()
    yield "wrong key", body, {ED25519_HEADER: base64.b64encode(other.sign(body)).decode()}
    yield "missing header", body, {}
    yield "N/A", body, {ED25519_HEADER: "N/A"}
    stale = json.dumps(_payload(timestamp=(datetime.now(UTC) - timedelta(minutes=6)).isoformat())).encode()
    yield "stale timestamp", stale, {ED25519_HEADER: base64.b64encode(ed_key.sign(stale)).decode()}
    epoch_stale = json.dumps(
        _payload(timestamp=int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000))
    )
    yield (
        "stale epoch ms",
        epoch_stale.encode(),
        {ED25519_HEADER: base64.b64encode(ed_key.sign(epoch_stale.encode())).decode()},
    )
    no_stamp = json.dumps({k: v for k, v in _payload().items() if k != "timestamp"}).encode()
    yield "no timestamp", no_stamp, {ED25519_HEADER: base64.b64encode(ed_key.sign(no_stamp)).decode()}
    yield "rsa header with an ed25519 signature", body, {RSA_HEADER: good}


async def test_bad_signatures_get_401_and_store_nothing(
    signed_app: FastAPI, ed_key: ed25519.Ed25519PrivateKey
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=signed_app), base_url="http://j") as http:
        for case, body, headers in _bad_deliveries(ed_key):
            response = await _post(http, body, **headers)
            assert response.status_code == 401, case
            assert response.json()["detail"], case
    assert await _stored(signed_app.state.store) is None
    assert signed_app.state.processor.events == [] and _sms(signed_app) == []


# --- concurrency, outages, database down -------------------------------------------------------


async def test_twenty_concurrent_deliveries_are_processed_once_with_one_sms(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    body = json.dumps(_payload(7)).encode()
    responses = await asyncio.gather(*(_post(http, body) for _ in range(20)))
    statuses = sorted(r.json()["status"] for r in responses)
    assert all(r.status_code == 200 for r in responses)
    assert statuses == ["duplicate"] * 19 + ["processed"]
    assert app.state.processor.events == [1]
    assert len(_sms(app)) == 1


async def test_ghl_outage_acknowledges_webhooks_and_outbox_delivers_each_once_after(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    sandbox = get_sandbox_state(app.state.sandbox)
    sandbox.failure_rate = 1.0
    responses = [await _post(http, _payload(n)) for n in range(1, 6)]
    assert [r.status_code for r in responses] == [200] * 5
    pending = await app.state.store.list_outbox("pending")
    assert len(pending) == 5 and sandbox.messages == []
    assert {c["status"] for c in sandbox.calls} == {503}

    sandbox.failure_rate = 0.0
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await app.state.outbox.deliver_due(now=later) == 5
    assert await app.state.outbox.deliver_due(now=later + timedelta(hours=1)) == 0
    assert sorted(m["contactId"] for m in sandbox.messages) == [f"contact-{n}" for n in range(1, 6)]
    assert await app.state.store.list_outbox("pending") == []


async def test_closed_sqlite_database_answers_429_with_retry_after(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    await store.open()
    async with _running_app(Settings(database_url=sqlite_url), store=store) as built:
        await store.close()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=built), base_url="http://j") as http:
            response = await _post(http, _payload())
    assert response.status_code == 429
    assert response.headers["Retry-After"].isdigit()
    assert "could not be stored" in response.json()["detail"]


@pytest.mark.postgres
async def test_postgres_going_away_answers_429(postgres_url: str) -> None:
    import asyncpg

    settings = Settings(database_url=postgres_url)
    async with _running_app(settings) as built:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=built), base_url="http://j") as http:
            assert (await _post(http, _payload(1))).status_code == 200
            admin_url = postgres_url.rsplit("/", 1)[0] + "/postgres"
            name = postgres_url.rsplit("/", 1)[1]
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            response = await _post(http, _payload(2))
        assert response.status_code == 429 and response.headers["Retry-After"].isdigit()


# --- no input yields a 5xx -------------------------------------------------------------------


def _served_app(database: Path) -> FastAPI:
    """The router on an app whose lifespan opens everything in the server's own loop."""
    settings = Settings(database_url=f"sqlite:///{database}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running_app(settings) as inner:
            app.state.settings = inner.state.settings
            app.state.store = inner.state.store
            app.state.processor = inner.state.processor
            yield

    served = FastAPI(lifespan=lifespan)
    served.include_router(router)
    return served


def test_openapi_describes_the_body_and_schemathesis_finds_no_5xx(tmp_path: Path) -> None:
    with serve_in_thread(_served_app(tmp_path / "fuzz.db")) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        operation = schema[WEBHOOK_PATH]["POST"]
        body = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
        assert "contactId" in body["properties"]
        cases = st.one_of(
            operation.as_strategy(),
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @hypothesis_settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, timeout=30)
            assert response.status_code < 500, (response.status_code, response.text)
            response.json()  # every answer is JSON

        no_server_error()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
_field_values = st.dictionaries(
    st.sampled_from(
        [
            "type",
            "locationId",
            "contactId",
            "body",
            "messageType",
            "direction",
            "messageId",
            "webhookId",
            "timestamp",
            "dateAdded",
            "attachments",
            "message",
        ]
    ),
    _json_values,
    max_size=12,
)


def test_random_bytes_and_json_never_yield_a_5xx(tmp_path: Path) -> None:
    with (
        serve_in_thread(_served_app(tmp_path / "fuzz2.db")) as base_url,
        httpx.Client(base_url=base_url) as http,
    ):

        @given(
            body=st.binary(max_size=300)
            | _json_values.map(json.dumps).map(str.encode)
            | _field_values.map(json.dumps).map(str.encode)
        )
        @hypothesis_settings(
            max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
        )
        def no_server_error(body: bytes) -> None:
            response = http.post(WEBHOOK_PATH, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code < 500, (response.status_code, response.text)
            response.json()

        no_server_error()


# --- the request's trace holds the bot flow and its GHL call ------------------------------------


class TracedProcessor:
    """Answers through the outbox from inside a real workflow node span."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        await self.respond({"contact_id": message.contact_id, "event_id": event.id})

    @trace_workflow_node("lead_bot", "generate_response")
    async def respond(self, state: dict[str, Any]) -> dict[str, Any]:
        await self.outbox.submit(
            f"{state['event_id']}:reply:1",
            "send_message",
            {"contact_id": state["contact_id"], "channel": "SMS", "message": "Hi!"},
        )
        return state


async def test_the_ghl_call_is_a_client_span_under_the_node_under_the_request(app: FastAPI) -> None:
    app.state.processor = TracedProcessor(app.state.outbox)
    with capture_spans() as capture:
        FastAPIInstrumentor.instrument_app(app)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://j") as http:
                assert (await _post(http, _payload())).json()["status"] == "processed"
        finally:
            FastAPIInstrumentor.uninstrument_app(app)
    server = capture.by_name(f"POST {WEBHOOK_PATH}")[0]
    node = capture.by_name("lead_bot.generate_response")[0]
    # Database statements are CLIENT spans too; the HTTP ones are named `{method} {url.template}`.
    client_spans = [
        s
        for s in capture.spans()
        if s.kind is SpanKind.CLIENT and s.name.split(" ")[0] in ("GET", "POST", "DELETE")
    ]
    assert server.kind is SpanKind.SERVER
    assert node.parent is not None and node.parent.span_id == server.context.span_id
    assert len(client_spans) == 1 and client_spans[0].name == "POST /conversations/messages"
    assert client_spans[0].parent is not None and client_spans[0].parent.span_id == node.context.span_id
    assert server.attributes is not None and server.attributes["webhook.outcome"] == "processed"


# --- poison input (issue 13): a final answer, never 429, never 5xx --------------------------


async def test_nul_and_lone_surrogates_are_cleaned_stored_and_recorded(database_url: str) -> None:
    """PostgreSQL refuses NUL in JSON: the text is cleaned, the change recorded, the event processed once."""
    url = database_url
    async with (
        _running_app(Settings(database_url=url)) as built,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=built), base_url="http://j") as http,
    ):
        raw = json.dumps(_payload(body="call me\u0000 now \ud800!", contactId="c-\u0000x")).encode()
        assert b"\\u0000" in raw and b"\\ud800" in raw
        first = await _post(http, raw)
        again = await _post(http, raw)
        assert first.status_code == 200 and first.json()["status"] == "processed", first.text
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        event = await built.state.store.get_webhook_event(first.json()["event_id"])
        assert event is not None
        assert event.payload["body"] == "call me now \ufffd!"
        assert event.payload["contactId"] == "c-x"
        assert event.payload["_sanitized"] == ["contactId", "body"]
        assert [m["contactId"] for m in get_sandbox_state(built.state.sandbox).messages] == ["c-x"]


async def test_json_nested_past_the_limit_gets_400_naming_it(app: FastAPI, http: httpx.AsyncClient) -> None:
    deep = b'{"type": "InboundMessage", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await _post(http, deep)
    assert response.status_code == 400
    assert "64" in response.json()["detail"] and "nested" in response.json()["detail"]
    assert await _stored(app.state.store) is None
    # Nesting within the limit is fine (and then judged on its shape).
    ok = await _post(http, _payload(extra=[[[[{"a": 1}]]]]))
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "date_added",
    [
        "9999-12-31T23:59:59-23:59",  # overflows when moved to UTC
        "0001-01-01T00:00:00+01:00",
        "1900-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        99999999999999,
        -1,
        1e300,
    ],
)
async def test_dates_outside_the_sane_range_get_422(
    app: FastAPI, http: httpx.AsyncClient, date_added: object
) -> None:
    response = await _post(http, _payload(dateAdded=date_added))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "dateAdded"
    assert await _stored(app.state.store) is None
