"""Every Python snippet of the user's tracing guide runs as written and makes the spans its tables promise.

The snippets are kept here verbatim (so the test runs without the guide); when
the guide is on disk (``TRACING_GUIDE`` or ``/work/shared/spec/tracing-guide.md``)
a test checks they are still exactly its code blocks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_or_skip
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import _instrument, _provider
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    continue_trace_context,
    dynamic_span_name_warnings,
    trace_workflow_node,
)
from tests.observability.snippets import python_blocks, run_snippet

SETUP = """\
from ghl_real_estate_ai.observability.otel_config import setup_observability

# Initialize on app startup
setup_observability()
"""
NODE = """\
from ghl_real_estate_ai.observability.workflow_tracing import trace_workflow_node

@trace_workflow_node("lead_bot", "analyze_intent")
async def analyze_intent(state: Dict) -> Dict:
    # Node implementation
    return updated_state
"""
HANDOFF = """\
from ghl_real_estate_ai.observability.workflow_tracing import create_handoff_span

with create_handoff_span(
    source_bot="lead",
    target_bot="buyer",
    contact_id=contact_id,
    confidence=0.85,
    reason="buyer_intent_detected",
):
    # Execute handoff
    await handoff_service.execute_handoff(...)
"""
SAMPLER = """\
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

# Sample 10% of traces
sampler = TraceIdRatioBased(0.1)
"""
PROVIDER = """\
provider = TracerProvider(
    resource=resource,
    sampler=TraceIdRatioBased(0.1)  # 10% sampling
)
"""
PROPAGATE = """\
from ghl_real_estate_ai.observability.workflow_tracing import propagate_trace_context

metadata = {"contact_id": contact_id}
metadata = propagate_trace_context(metadata)  # Inject trace context
await async_task(metadata)
"""
BAD_GOOD = """\
# Bad
@trace_workflow_node("lead_bot", f"process_{contact_id}")

# Good
@trace_workflow_node("lead_bot", "process")
async def process(state: Dict):
    # contact_id is automatically added as workflow.contact_id attribute
    ...
"""
CUSTOM_SPAN = """\
from ghl_real_estate_ai.observability.workflow_tracing import async_workflow_span

async with async_workflow_span("seller_bot", "calculate_frs", contact_id=contact_id) as span:
    span.set_attribute("seller.frs_score", frs_score)
    span.set_attribute("seller.pcs_score", pcs_score)
    # Calculation logic
"""
EVENT = """\
from ghl_real_estate_ai.observability.workflow_tracing import add_workflow_event

add_workflow_event("intent_detected", intent_type="buyer", confidence=0.85)
"""
GUIDE_SNIPPETS = (SETUP, NODE, HANDOFF, SAMPLER, PROVIDER, PROPAGATE, BAD_GOOD, CUSTOM_SPAN, EVENT)

CONTACT = "abc123xyz"  # the guide's example contact id
GHL_CONTACT = "ocQHyuzHvysMo5N5VsXc"  # what a real GHL contact id looks like
STANDARD = [
    attr.WORKFLOW_BOT_TYPE,
    attr.WORKFLOW_NODE_NAME,
    attr.WORKFLOW_CONTACT_ID,
    attr.WORKFLOW_CURRENT_STEP,
    attr.WORKFLOW_TEMPERATURE,
    attr.WORKFLOW_SUCCESS,
]
HANDOFF_KEYS = [
    attr.HANDOFF_SOURCE_BOT,
    attr.HANDOFF_TARGET_BOT,
    attr.HANDOFF_CONTACT_ID,
    attr.HANDOFF_CONFIDENCE,
    attr.HANDOFF_REASON,
]
tracer = trace.get_tracer("tests.guide")


def test_the_snippets_are_the_guides_code_blocks() -> None:
    guide = Path(os.environ.get("TRACING_GUIDE", "/work/shared/spec/tracing-guide.md"))
    if not guide.is_file():
        require_or_skip(f"the guide is not at {guide}; set TRACING_GUIDE to check for drift")
    assert tuple(python_blocks(guide.read_text(encoding="utf-8"))) == GUIDE_SNIPPETS


async def test_quick_start_setup_exports_node_spans_to_an_otlp_receiver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ghl_real_estate_ai.observability import otel_config
    from tests.observability import receivers

    with receivers.OTLPGrpcReceiver() as receiver:
        # The guide's .env, pointed at our real OTLP/gRPC receiver instead of Jaeger.
        monkeypatch.setenv("OTEL_ENABLED", "true")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "enterprisehub")
        monkeypatch.setenv("OTEL_EXPORTER_TYPE", "otlp")
        monkeypatch.setenv("OTEL_ENDPOINT", receiver.endpoint)
        try:
            await run_snippet(SETUP, {}, "guide: setup")
            namespace = await run_snippet(NODE, {"Dict": dict, "updated_state": {"temperature": "hot"}})
            await namespace["analyze_intent"]({"contact_id": CONTACT, "current_step": "day_3"})
            otel_config.flush_observability(5.0)
            spans = receiver.wait_for(lambda got: any(s.name == "lead_bot.analyze_intent" for s in got))
        finally:
            otel_config.shutdown_observability(5.0)
    (span,) = [s for s in spans if s.name == "lead_bot.analyze_intent"]
    assert span.resource["service.name"] == "enterprisehub"
    assert {key: span.attributes[key] for key in STANDARD} == {
        attr.WORKFLOW_BOT_TYPE: "lead_bot",
        attr.WORKFLOW_NODE_NAME: "analyze_intent",
        attr.WORKFLOW_CONTACT_ID: CONTACT,
        attr.WORKFLOW_CURRENT_STEP: "day_3",
        attr.WORKFLOW_TEMPERATURE: "hot",
        attr.WORKFLOW_SUCCESS: True,
    }
    assert isinstance(span.attributes[attr.WORKFLOW_DURATION_MS], float)


class HandoffService:
    """Stands in for the app's handoff service: one traced node that calls GHL (a CLIENT span)."""

    @trace_workflow_node("jorge.handoff", "execute_handoff")
    async def execute_handoff(self, *args: Any) -> None:
        with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT):
            pass


async def test_example_2_a_lead_to_buyer_handoff_is_one_trace(span_capture: SpanCapture) -> None:
    @trace_workflow_node("intent_decoder", "analyze_lead")
    async def analyze_lead(state: dict[str, Any]) -> float:
        return 0.85

    # The guide's Example 2 hangs the decoder under analyze_intent: decorate a node that calls it.
    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_with_decoder(state: dict[str, Any]) -> dict[str, Any]:
        await analyze_lead(state)
        return state

    @trace_workflow_node("buyer_bot", "analyze_buyer_intent")
    async def analyze_buyer_intent(state: dict[str, Any]) -> dict[str, Any]:
        return state

    @trace_workflow_node("buyer_bot", "generate_buyer_response")
    async def generate_buyer_response(state: dict[str, Any]) -> dict[str, Any]:
        return state

    @trace_workflow_node("buyer_bot", "process_buyer_conversation")
    async def process_buyer_conversation(state: dict[str, Any]) -> dict[str, Any]:
        await analyze_buyer_intent(state)
        return await generate_buyer_response(state)

    state = {"contact_id": CONTACT, "temperature": "hot"}
    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl", kind=SpanKind.SERVER):
        await analyze_with_decoder(state)
        await run_snippet(
            HANDOFF, {"contact_id": CONTACT, "handoff_service": HandoffService()}, "guide: handoff"
        )
        await process_buyer_conversation(state)
    # "All spans share the same trace_id".
    assert len({span.context.trace_id for span in span_capture.spans()}) == 1
    assert span_capture.tree() == (
        "POST /api/v1/webhooks/ghl\n"
        "├─ lead_bot.analyze_intent\n"
        "│  └─ intent_decoder.analyze_lead\n"
        "├─ handoff.lead_to_buyer\n"
        "│  └─ jorge.handoff.execute_handoff\n"
        "│     └─ POST\n"
        "└─ buyer_bot.process_buyer_conversation\n"
        "   ├─ buyer_bot.analyze_buyer_intent\n"
        "   └─ buyer_bot.generate_buyer_response"
    )
    assert span_capture.tree(HANDOFF_KEYS).splitlines()[3] == (
        "├─ handoff.lead_to_buyer [handoff.source_bot=lead, handoff.target_bot=buyer, "
        "handoff.contact_id=abc123xyz, handoff.confidence=0.85, handoff.reason=buyer_intent_detected]"
    )
    (handoff,) = span_capture.by_name("handoff.lead_to_buyer")
    assert handoff.attributes[attr.HANDOFF_OUTCOME] == "executed"


async def test_node_snippet_sets_the_standard_attributes(span_capture: SpanCapture) -> None:
    namespace = await run_snippet(NODE, {"Dict": dict, "updated_state": {"current_step": "day_3"}})
    await namespace["analyze_intent"]({"contact_id": CONTACT, "temperature": "hot"})
    assert span_capture.tree(STANDARD) == (
        "lead_bot.analyze_intent [workflow.bot_type=lead_bot, workflow.node_name=analyze_intent, "
        "workflow.contact_id=abc123xyz, workflow.current_step=day_3, workflow.temperature=hot, "
        "workflow.success=true]"
    )


async def test_sampling_snippets_keep_about_ten_percent() -> None:
    sampler = (await run_snippet(SAMPLER, {}))["sampler"]
    with capture_spans(sampler=sampler) as capture:
        for _ in range(1000):
            with tracer.start_as_current_span("root"):
                pass
        kept = len(capture.spans())
    assert 50 <= kept <= 160  # Binomial(1000, 0.1): beyond 5 sd either way

    resource = Resource.create({"service.name": "enterprisehub"})
    namespace = {
        "TracerProvider": TracerProvider,
        "TraceIdRatioBased": TraceIdRatioBased,
        "resource": resource,
    }
    provider = (await run_snippet(PROVIDER, namespace))["provider"]
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _provider.install()
    previous = _provider.current_delegate()
    _provider.set_delegate(provider)
    try:
        for _ in range(1000):
            with tracer.start_as_current_span("root"):
                pass
    finally:
        _provider.set_delegate(previous)
        provider.shutdown()
    assert 50 <= len(memory.get_finished_spans()) <= 160
    assert memory.get_finished_spans()[0].resource.attributes["service.name"] == "enterprisehub"


async def test_propagation_snippet_keeps_the_async_task_in_the_trace(span_capture: SpanCapture) -> None:
    async def async_task(metadata: dict[str, Any]) -> None:
        # The receiving side of a queue: nothing of the caller's context, only the carrier.
        import contextvars

        def in_fresh_context() -> None:
            with continue_trace_context(metadata), tracer.start_as_current_span("followup.dispatch"):
                pass

        contextvars.Context().run(in_fresh_context)

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl") as parent:
        namespace = await run_snippet(PROPAGATE, {"contact_id": CONTACT, "async_task": async_task})
    assert set(namespace["metadata"]) == {"contact_id", "traceparent"}
    (child,) = span_capture.by_name("followup.dispatch")
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert span_capture.tree() == "POST /api/v1/webhooks/ghl\n└─ followup.dispatch"


@pytest.fixture
def fresh_guard() -> Iterator[None]:
    _instrument.reset_dynamic_name_guard()
    yield
    _instrument.reset_dynamic_name_guard()


async def test_the_bad_span_name_warns_and_the_good_one_does_not(
    fresh_guard: None, span_capture: SpanCapture, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = {"trace_workflow_node": trace_workflow_node, "Dict": dict, "contact_id": GHL_CONTACT}
    with caplog.at_level(logging.WARNING):
        await run_snippet(BAD_GOOD, namespace, "guide: bad/good")
        # As written the two decorators stack; calling the result shows both spans.
        await namespace["process"]({"contact_id": GHL_CONTACT})
    warnings = [r.getMessage() for r in caplog.records if "looks dynamic" in r.getMessage()]
    assert len(warnings) == 1
    assert f"'lead_bot.process_{GHL_CONTACT}'" in warnings[0]
    assert "@trace_workflow_node('lead_bot', 'process')" in warnings[0]
    assert dynamic_span_name_warnings() == 1
    assert span_capture.tree([attr.WORKFLOW_CONTACT_ID]) == (
        f"lead_bot.process_{GHL_CONTACT} [workflow.contact_id={GHL_CONTACT}]\n"
        f"└─ lead_bot.process [workflow.contact_id={GHL_CONTACT}]"
    )


async def test_custom_span_snippet_records_the_scores(span_capture: SpanCapture) -> None:
    await run_snippet(CUSTOM_SPAN, {"contact_id": CONTACT, "frs_score": 82, "pcs_score": 64})
    assert span_capture.tree(["workflow.contact_id", "seller.frs_score", "seller.pcs_score"]) == (
        "seller_bot.calculate_frs [workflow.contact_id=abc123xyz, seller.frs_score=82, seller.pcs_score=64]"
    )


async def test_event_snippet_adds_an_event_to_the_current_node(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: dict[str, Any]) -> None:
        await run_snippet(EVENT, {})

    await analyze_intent({"contact_id": CONTACT})
    (span,) = span_capture.by_name("lead_bot.analyze_intent")
    assert [(e.name, dict(e.attributes)) for e in span.events] == [
        ("intent_detected", {"intent_type": "buyer", "confidence": 0.85})
    ]
