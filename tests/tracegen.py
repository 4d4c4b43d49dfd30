"""Real spans for the trace store tests, made with the OpenTelemetry SDK.

Tests describe a trace as a tree of :class:`Node` (name, offset and duration in
milliseconds, attributes, error) and :func:`emit` starts and ends real SDK
spans with exactly those times, so figures computed by hand from the tree are
the figures the store must give back.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

MS = 1_000_000


@dataclass
class Node:
    """One span to emit: offsets and durations in ms relative to the trace start."""

    name: str
    start_ms: float
    duration_ms: float
    attributes: dict[str, object] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    kind: SpanKind = SpanKind.INTERNAL
    error: str | None = None
    links: list[SpanContext] = field(default_factory=list)
    events: list[tuple[str, dict[str, object]]] = field(default_factory=list)


def make_provider(exporter: SpanExporter, service: str = "enterprisehub") -> TracerProvider:
    """A fresh SDK provider exporting synchronously to ``exporter``."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def emit(provider: TracerProvider, root: Node, *, base_ns: int | None = None) -> str:
    """Emit the tree under ``root``; returns the trace id (32 hex digits)."""
    tracer = provider.get_tracer("tests.tracegen")
    # Whole microseconds, so Jaeger's µs JSON holds these times exactly.
    base = base_ns if base_ns is not None else (time.time_ns() // 1000) * 1000 - 60 * 1_000_000_000
    context = _emit(tracer, root, base, None)
    return format(context.trace_id, "032x")


def _emit(tracer: trace.Tracer, node: Node, base: int, parent: trace.Span | None) -> SpanContext:
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    start = base + int(node.start_ms * MS)
    span = tracer.start_span(
        node.name,
        context=ctx,
        kind=node.kind,
        attributes=node.attributes,  # type: ignore[arg-type]
        links=[Link(link) for link in node.links],
        start_time=start,
    )
    for name, attributes in node.events:
        span.add_event(name, attributes, timestamp=start + MS)  # type: ignore[arg-type]
    for child in node.children:
        _emit(tracer, child, base, span)
    if node.error:
        span.set_status(Status(StatusCode.ERROR, node.error))
    span.end(end_time=start + int(node.duration_ms * MS))
    return span.get_span_context()


def node_attrs(bot: str, node: str, contact: str, **extra: object) -> dict[str, object]:
    """The standard workflow attributes of a node span."""
    attrs: dict[str, object] = {
        "workflow.bot_type": bot,
        "workflow.node_name": node,
        "workflow.contact_id": contact,
        "workflow.success": True,
    }
    attrs.update(extra)
    return attrs


def handoff_journey(contact: str, *, temperature: str = "hot", outcome: str = "executed") -> Node:
    """Example 2 of the guide: a webhook whose lead is handed to the buyer bot."""
    handoff = {
        "handoff.source_bot": "lead",
        "handoff.target_bot": "buyer",
        "handoff.contact_id": contact,
        "handoff.confidence": 0.85,
        "handoff.reason": "buyer_intent_detected",
        "handoff.outcome": outcome,
    }
    return Node(
        "POST /api/v1/webhooks/ghl",
        0,
        350,
        {"http.method": "POST", "http.route": "/api/v1/webhooks/ghl", "http.status_code": 200},
        kind=SpanKind.SERVER,
        children=[
            Node(
                "lead_bot.analyze_intent",
                5,
                100,
                node_attrs("lead_bot", "analyze_intent", contact, **{"workflow.temperature": temperature}),
                children=[Node("intent_decoder.analyze_lead", 10, 80, {"intent.buyer_confidence": 0.85})],
                events=[("intent_detected", {"intent_type": "buyer", "confidence": 0.85})],
            ),
            Node(
                "handoff.lead_to_buyer",
                110,
                150,
                handoff,
                children=[
                    Node("jorge.handoff.evaluate_handoff", 112, 50),
                    Node(
                        "jorge.handoff.execute_handoff",
                        165,
                        100,
                        children=[
                            Node(
                                "POST",
                                168,
                                90,
                                {"http.method": "POST", "url.path": f"/contacts/{contact}/tags"},
                                kind=SpanKind.CLIENT,
                            )
                        ],
                    ),
                ],
            ),
            Node(
                "buyer_bot.process_buyer_conversation",
                250,
                100,
                {"workflow.bot_type": "buyer_bot", "workflow.contact_id": contact},
                children=[
                    Node(
                        "buyer_bot.analyze_buyer_intent",
                        252,
                        40,
                        node_attrs("buyer_bot", "analyze_buyer_intent", contact),
                    ),
                    Node(
                        "buyer_bot.generate_buyer_response",
                        292,
                        58,
                        node_attrs("buyer_bot", "generate_buyer_response", contact),
                    ),
                ],
            ),
        ],
    )


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve an ASGI app with a real uvicorn server on a free port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):  # wait for start-up, at most ~10 s
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def slo_traces() -> list[Node]:
    """A fixed set of 20 traces whose SLO figures are worked out by hand in test_slo.py.

    * ``lead_bot.analyze_intent`` in every trace, 100 ms x trace number (1..20);
      trace 20's fails with ERROR, trace 19's reports ``workflow.success=false``.
    * ``buyer_bot.qualify_buyer`` in traces 6 (2500 ms) and 7 (500 ms).
    * Handoffs: ``handoff.lead_to_buyer`` in traces 1-4 (100/200/300/400 ms;
      outcomes executed, executed, blocked:cooldown, failed:ghl_error), each with
      an execute child that repeats the handoff attributes; an attribute-only
      buyer->seller handoff span with ERROR in trace 5 (50 ms); a
      ``handoff.lead_to_seller`` without attributes in trace 8 (80 ms, executed).
    """
    outcomes = {1: "executed", 2: "executed", 3: "blocked:cooldown", 4: "failed:ghl_error"}
    traces = []
    for i in range(1, 21):
        extra: dict[str, object] = {"workflow.success": False} if i == 19 else {}
        children = [
            Node(
                "lead_bot.analyze_intent",
                1,
                100 * i,
                node_attrs("lead_bot", "analyze_intent", f"c-{i}", **extra),
                error="intent model failed" if i == 20 else None,
            )
        ]
        if i in outcomes:
            attrs = {
                "handoff.source_bot": "lead",
                "handoff.target_bot": "buyer",
                "handoff.outcome": outcomes[i],
            }
            children.append(
                Node(
                    "handoff.lead_to_buyer",
                    100 * i + 2,
                    100 * i,
                    attrs,
                    children=[Node("jorge.handoff.execute_handoff", 100 * i + 3, 10, dict(attrs))],
                )
            )
        if i == 5:
            children.append(
                Node(
                    "jorge.handoff.evaluate",
                    600,
                    50,
                    {"handoff.source_bot": "buyer", "handoff.target_bot": "seller"},
                    error="GHL tag update failed",
                )
            )
        if i in (6, 7):
            duration = 2500 if i == 6 else 500
            children.append(
                Node(
                    "buyer_bot.qualify_buyer",
                    700,
                    duration,
                    node_attrs("buyer_bot", "qualify_buyer", f"c-{i}"),
                )
            )
        if i == 8:
            children.append(Node("handoff.lead_to_seller", 900, 80, {"handoff.outcome": "executed"}))
        traces.append(Node("POST /api/v1/webhooks/ghl", 0, 4000, kind=SpanKind.SERVER, children=children))
    return traces
