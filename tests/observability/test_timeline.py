"""A contact's timeline from its session's traces (issue 12): webhooks and the follow-ups they scheduled."""

from __future__ import annotations

import time
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanContext, TraceFlags
from tracegen import Node, emit, handoff_journey, node_attrs

from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader
from ghl_real_estate_ai.observability.timeline import contact_timeline

MS = 1_000_000


def test_webhook_then_its_linked_follow_up_in_time_order(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    provider = TracerProvider(resource=Resource.create({"service.name": "enterprisehub"}))
    provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(LocalSpanExporter(store)))
    base = time.time_ns() - 3600 * 1_000_000_000
    journey = handoff_journey("c-7", temperature="warm")
    journey.children[0].attributes["lead.frs_score"] = 62.0
    webhook = emit(provider, journey, base_ns=base)
    scheduled_by = SpanContext(int(webhook, 16), 1, is_remote=False, trace_flags=TraceFlags(1))
    followup = emit(
        provider,
        Node(
            "lead_bot.followup",
            0,
            40,
            node_attrs(
                "lead_bot",
                "followup",
                "c-7",
                **{"followup.step": "send_day_3_sms", "followup.outcome": "done"},
            ),
            links=[scheduled_by],
            children=[
                Node("lead_bot.send_day_3_sms", 5, 30, node_attrs("lead_bot", "send_day_3_sms", "c-7"))
            ],
        ),
        base_ns=base + 3 * 24 * 3600 * 1_000_000_000 // 100,  # later than the webhook
    )
    emit(provider, handoff_journey("someone-else"), base_ns=base)
    provider.shutdown()

    timeline = contact_timeline(LocalTraceReader(store), "c-7")
    assert [t.trace_id for t in timeline] == [webhook, followup]
    first, second = timeline
    assert first.title == "inbound message"
    assert [(e.kind, e.text) for e in first.entries if e.kind != "inbound"] == [
        ("score", "lead frs 62"),
        ("handoff", "lead → buyer: executed"),
    ]
    assert first.journey["handoff_route"] == "lead_to_buyer"
    assert second.title == "follow-up send_day_3_sms"
    assert second.linked_from == (webhook,)
    assert [(e.kind, e.text) for e in second.entries] == [("event", "follow-up done")]
    assert all(
        a.time_ns <= b.time_ns for t in timeline for a, b in zip(t.entries, t.entries[1:], strict=False)
    )
