"""Finding a webhook's trace (issue 12), through the real app under uvicorn and the local store.

* the answer names its trace: the W3C ``traceresponse`` header and ``trace_id`` in the body,
  parsed back to the stored trace that holds the request's spans;
* the structured access line of the request carries the same trace id;
* every span of the conversation carries ``session.id``/``user.id`` (the contact);
* the root span carries the journey, as tags in the Jaeger-shaped API, searchable.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import serve_in_thread

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.logs import ACCESS_LOGGER
from ghl_real_estate_ai.observability.local_store import LocalTraceReader
from ghl_real_estate_ai.observability.query import SpanRecord
from ghl_real_estate_ai.settings import Settings

pytestmark = pytest.mark.slow

BUYER_MESSAGE = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days. "
    "Can I see some houses this weekend?"
)
TRACERESPONSE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _webhook(contact: str, n: int) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": BUYER_MESSAGE,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-find-{contact}-{n}",
        "conversationId": f"conv-{contact}",
        "webhookId": f"wh-find-{contact}-{n}",
        "dateAdded": "2026-02-15T09:30:00.000Z",
    }


def _stored_trace(reader: LocalTraceReader, trace_id: str, server_span_id: str) -> list[SpanRecord]:
    """The trace once the request's SERVER span (it ends last) has reached the store."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        spans = reader.get_trace(trace_id)
        if any(s.span_id == server_span_id for s in spans):
            return spans
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} did not reach the store")


def _subtree(spans: list[SpanRecord], top: str) -> list[SpanRecord]:
    wanted, grew = {top}, True
    while grew:
        before = len(wanted)
        wanted |= {s.span_id for s in spans if s.parent_span_id in wanted}
        grew = len(wanted) > before
    return [s for s in spans if s.span_id in wanted]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
        otel_exporter_type="local",
        otel_bsp_schedule_delay=50.0,
        followup_poll_seconds=3600.0,
    )


def test_the_answer_the_access_line_and_the_journey_lead_to_the_trace(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    contact = "find-contact-1"
    caplog.set_level(logging.INFO, ACCESS_LOGGER)
    with (
        serve_in_thread(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        response = client.post("/api/v1/webhooks/ghl", json=_webhook(contact, 1))
        assert response.status_code == 200, response.text
        match = TRACERESPONSE.match(response.headers["traceresponse"])
        assert match is not None, response.headers["traceresponse"]
        trace_id, server_span_id = match.groups()
        assert response.json()["trace_id"] == trace_id
        assert response.json()["status"] == "processed"

        reader = LocalTraceReader(settings.resolved_trace_store_path)
        spans = _stored_trace(reader, trace_id, server_span_id)
        server = next(s for s in spans if s.span_id == server_span_id)
        assert server.name == "POST /api/v1/webhooks/ghl" and server.kind == "SERVER"
        names = {s.name for s in spans}
        assert {"lead_bot.analyze_intent", "handoff.lead_to_buyer"} <= names, names

        # Sessions: every span of the conversation, auto-instrumented ones included. (The test's
        # own httpx client is instrumented too, in this process: its CLIENT span is the caller's.)
        ours = _subtree(spans, server_span_id)
        assert len(ours) > 5
        for span in ours:
            assert span.attributes.get("session.id") == contact, span.name
            assert span.attributes.get("user.id") == contact, span.name
            assert span.attributes.get("gen_ai.conversation.id") == contact, span.name
        assert any("db.system" in s.attributes for s in ours) and any(s.kind == "CLIENT" for s in ours)

        # The journey on the root span, and as tags in the Jaeger-shaped API.
        journey = {k: v for k, v in server.attributes.items() if k.startswith("journey.")}
        assert journey["journey.final_bot"] == "buyer_bot"
        assert journey["journey.handoff_route"] == "lead_to_buyer"
        assert journey["journey.outcome"] == "handed_off"
        assert journey["journey.temperature"] in ("hot", "warm", "lukewarm", "cold")
        api = client.get(f"/api/traces/{trace_id}").json()["data"][0]
        root = next(s for s in api["spans"] if s["spanID"] == server_span_id)
        tags = {t["key"]: t["value"] for t in root["tags"]}
        assert {k: tags[k] for k in journey} == journey
        found = client.get(
            "/api/traces",
            params={
                "service": "enterprisehub",
                "tags": json.dumps({"journey.handoff_route": "lead_to_buyer"}),
            },
        ).json()["data"]
        assert [t["traceID"] for t in found] == [trace_id]

        # A refusal names its trace too.
        refused = client.post(
            "/api/v1/webhooks/ghl", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert refused.status_code == 400
        assert refused.json()["trace_id"] == TRACERESPONSE.match(refused.headers["traceresponse"]).group(1)  # type: ignore[union-attr]

    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER and getattr(r, "http_method", "") == "POST"]
    first = lines[0]
    assert first.getMessage().startswith("POST /api/v1/webhooks/ghl 200 ")
    assert (first.trace_id, first.span_id, first.http_status) == (trace_id, server_span_id, 200)  # type: ignore[attr-defined]
    assert lines[1].http_status == 400 and lines[1].trace_id == refused.json()["trace_id"]  # type: ignore[attr-defined]


def test_the_contact_timeline_lists_each_message_reply_score_and_handoff_in_order(settings: Settings) -> None:
    contact = "find-contact-2"
    with (
        serve_in_thread(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        first = client.post("/api/v1/webhooks/ghl", json=_webhook(contact, 1)).json()["trace_id"]
        second_body = _webhook(contact, 2) | {"body": "We would like 3 bedrooms, and we can move in 60 days"}
        second = client.post("/api/v1/webhooks/ghl", json=second_body).json()["trace_id"]
        # A trace is listed as soon as its first span is stored; its other spans (the
        # server span ends last) may come in a later export batch. Wait until both
        # traces show both the inbound message (from the server span) and the reply.
        deadline = time.monotonic() + 60
        while True:
            page = client.get(f"/traces/contacts/{contact}")
            assert page.status_code == 200, page.text
            html = page.text
            blocks = html.split("class=timeline-trace")[1:]
            kinds = [set(re.findall(r"<li class='entry (\w+)'>", block)) for block in blocks]
            if len(kinds) == 2 and all({"inbound", "reply"} <= k for k in kinds):
                break
            assert time.monotonic() < deadline, html
            time.sleep(0.05)
        order = re.findall(r"data-trace-id='([0-9a-f]{32})'", html)
        assert order == [first, second]
        first_kinds = re.findall(r"<li class='entry (\w+)'>", blocks[0])
        assert first_kinds[0] == "inbound"
        assert {"inbound", "score", "handoff", "reply"} <= set(first_kinds), first_kinds
        assert "lead → buyer: executed" in blocks[0]
        assert "lead→buyer handed_off" in blocks[0]
        assert re.findall(r"<li class='entry (\w+)'>", blocks[1])[0] == "inbound"
        # The waterfall of either trace links to the timeline.
        assert f"/traces/contacts/{contact}" in client.get(f"/traces/{second}").text
        assert client.get("/traces/contacts/nobody-here").status_code == 200
        assert "No trace of this contact" in client.get("/traces/contacts/nobody-here").text
        assert client.get(f"/traces/contacts/{'x' * 300}").status_code == 400
