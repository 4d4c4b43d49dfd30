"""The trace contract end to end: the real app under uvicorn, exporting to a real OTLP/gRPC receiver.

A webhook with buyer intent (and its seller twin) must arrive at the receiver
as ONE trace whose contract view (see ``tests/test_trace_contract.py``: no
database, cache, ASGI message or GHL-side spans) is the DESIGN section 4 tree,
rooted at the FastAPI SERVER span.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind
from serving import serve_in_thread

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings
from tests.observability.receivers import OTLPGrpcReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

BUYER_MESSAGE = "I'm pre-approved for $500k and looking to buy a 3 bedroom home in Upland"
SELLER_MESSAGE = "We're relocating for work, so I want to sell my house in Upland and list it within 30 days"

LEAD_TO_BUYER = """\
POST /api/v1/webhooks/ghl [SERVER]
├─ lead_bot.process_lead_conversation
│  ├─ lead_bot.analyze_intent
│  │  └─ intent_decoder.analyze_lead
│  └─ lead_bot.determine_path
├─ handoff.lead_to_buyer [executed]
│  ├─ jorge.handoff.evaluate_handoff
│  └─ jorge.handoff.execute_handoff
│     └─ POST /contacts/{contactId}/tags [CLIENT]
└─ buyer_bot.process_buyer_conversation
   ├─ buyer_bot.analyze_buyer_intent
   ├─ buyer_bot.qualify_buyer
   └─ buyer_bot.generate_buyer_response
      └─ POST /conversations/messages [CLIENT]"""

LEAD_TO_SELLER = LEAD_TO_BUYER.replace("buyer", "seller").replace("lead_to_seller", "lead_to_seller")


def contract_tree(spans: list[ReceivedSpan]) -> str:
    by_id = {s.span_id: s for s in spans}

    def hidden(span: ReceivedSpan) -> bool:
        if (
            "db.system" in span.attributes
            or span.name.startswith("cache.")
            or "asgi.event.type" in span.attributes
        ):
            return True
        parent = by_id.get(span.parent_span_id or "")
        while parent is not None:
            if parent.kind == SpanKind.CLIENT:
                return True
            parent = by_id.get(parent.parent_span_id or "")
        return False

    shown = [s for s in spans if not hidden(s)]
    children: dict[str | None, list[ReceivedSpan]] = {}
    for span in shown:
        key = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(key, []).append(span)
    for kids in children.values():
        kids.sort(key=lambda s: s.start_time_unix_nano)

    def label(span: ReceivedSpan) -> str:
        if span.kind in (SpanKind.SERVER, SpanKind.CLIENT):
            return f"{span.name} [{span.kind.name}]"
        if "handoff.outcome" in span.attributes:
            return f"{span.name} [{span.attributes['handoff.outcome']}]"
        return span.name

    lines: list[str] = []

    def walk(span: ReceivedSpan, prefix: str, last: bool, root: bool) -> None:
        lines.append(label(span) if root else f"{prefix}{'└─ ' if last else '├─ '}{label(span)}")
        below = "" if root else prefix + ("   " if last else "│  ")
        kids = children.get(span.span_id, [])
        for i, kid in enumerate(kids):
            walk(kid, below, i == len(kids) - 1, False)

    for root in children.get(None, []):
        walk(root, "", True, True)
    return "\n".join(lines)


def _webhook(contact: str, body: str) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": body,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-contract-{contact}",
        "webhookId": f"wh-contract-{contact}",
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, OTLPGrpcReceiver]]:
    with OTLPGrpcReceiver() as receiver:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
            otel_exporter_type="otlp",
            otel_endpoint=receiver.endpoint,
            otel_bsp_schedule_delay=100.0,
            followup_poll_seconds=3600.0,
        )
        with serve_in_thread(create_app(settings)) as base_url:
            yield base_url, receiver


def _trace_of(receiver: OTLPGrpcReceiver, contact: str) -> list[ReceivedSpan]:
    def complete(spans: list[ReceivedSpan]) -> bool:
        ids = {s.trace_id for s in spans if s.attributes.get("workflow.contact_id") == contact}
        return any(
            s.kind == SpanKind.SERVER and s.trace_id in ids and s.name == "POST /api/v1/webhooks/ghl"
            for s in spans
        )

    spans = receiver.wait_for(complete, timeout=20)
    (trace_id,) = {s.trace_id for s in spans if s.attributes.get("workflow.contact_id") == contact}
    return [s for s in spans if s.trace_id == trace_id]


@pytest.mark.parametrize(
    ("contact", "body", "expected"),
    [("e2e-buyer", BUYER_MESSAGE, LEAD_TO_BUYER), ("e2e-seller", SELLER_MESSAGE, LEAD_TO_SELLER)],
    ids=["lead_to_buyer", "lead_to_seller"],
)
def test_a_webhook_arrives_at_the_collector_as_the_design_trace(
    served: tuple[str, OTLPGrpcReceiver], contact: str, body: str, expected: str
) -> None:
    base_url, receiver = served
    # urllib, not httpx: the in-process httpx instrumentation would make this test's
    # request the trace's parent, and GHL's webhook calls carry no trace context.
    request = urllib.request.Request(
        f"{base_url}/api/v1/webhooks/ghl",
        data=json.dumps(_webhook(contact, body)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    spans = _trace_of(receiver, contact)
    listing = "\n".join(
        f"{sp.name} {sp.kind.name} {sp.span_id} parent={sp.parent_span_id}"
        for sp in sorted(spans, key=lambda x: x.start_time_unix_nano)
    )
    assert contract_tree(spans) == expected, listing
    (root,) = [s for s in spans if s.parent_span_id is None]
    assert root.resource["service.name"] == "enterprisehub"
