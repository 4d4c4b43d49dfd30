"""workflow_tracing: node spans, custom spans, handoff spans, events, trace ids and context crossing."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from ghl_real_estate_ai.observability import _instrument
from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability.testing import SpanCapture
from ghl_real_estate_ai.observability.workflow_tracing import (
    add_workflow_event,
    async_workflow_span,
    continue_trace_context,
    create_handoff_span,
    dynamic_span_name_warnings,
    get_trace_id,
    link_from_trace_context,
    propagate_trace_context,
    set_handoff_outcome,
    start_linked_trace,
    trace_workflow_node,
    workflow_span,
)

WF = [
    attr.WORKFLOW_CONTACT_ID,
    attr.WORKFLOW_CURRENT_STEP,
    attr.WORKFLOW_TEMPERATURE,
    attr.WORKFLOW_SUCCESS,
]
tracer = trace.get_tracer("tests.workflow_tracing")


def only(capture: SpanCapture, name: str) -> Any:
    spans = capture.by_name(name)
    assert len(spans) == 1, [s.name for s in capture.spans()]
    return spans[0]


# --- the node decorator ------------------------------------------------------------


async def test_async_node_span_carries_the_standard_attributes(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.002)
        return {**state, "intent": "buyer"}

    result = await analyze_intent({"contact_id": "abc123xyz", "current_step": "day_3", "temperature": "hot"})

    assert result["intent"] == "buyer"
    span = only(span_capture, "lead_bot.analyze_intent")
    attrs = dict(span.attributes)
    duration = attrs.pop(attr.WORKFLOW_DURATION_MS)
    assert attrs == {
        attr.WORKFLOW_BOT_TYPE: "lead_bot",
        attr.WORKFLOW_NODE_NAME: "analyze_intent",
        attr.WORKFLOW_CONTACT_ID: "abc123xyz",
        attr.WORKFLOW_CURRENT_STEP: "day_3",
        attr.WORKFLOW_TEMPERATURE: "hot",
        attr.WORKFLOW_SUCCESS: True,
        # The contact's conversation identity (issue 12), on every span of it.
        **dict.fromkeys(attr.SESSION_ATTRIBUTES, "abc123xyz"),
    }
    assert isinstance(duration, float)
    assert duration >= 2.0
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"lead_id": "L1"}, "L1"),
        ({"buyer_id": "B1"}, "B1"),
        ({"seller_id": "S1"}, "S1"),
        ({"seller_id": "S1", "contact_id": "C1"}, "C1"),
        ({"contact_id": "", "lead_id": "L2"}, "L2"),
        ({"contact_id": 42}, "42"),
    ],
)
def test_contact_id_comes_from_the_first_present_state_key(
    span_capture: SpanCapture, state: dict[str, Any], expected: str
) -> None:
    @trace_workflow_node("buyer_bot", "qualify_buyer")
    def qualify(state: dict[str, Any]) -> None:
        return None

    qualify(state)
    span = only(span_capture, "buyer_bot.qualify_buyer")
    assert str(span.attributes[attr.WORKFLOW_CONTACT_ID]) == expected


def test_missing_state_values_leave_their_attributes_out(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "determine_path")
    def determine_path(state: dict[str, Any]) -> str:
        return "qualify"

    assert determine_path({}) == "qualify"
    assert span_capture.tree(WF) == "lead_bot.determine_path [workflow.success=true]"


async def test_state_is_found_in_methods_and_keyword_arguments(span_capture: SpanCapture) -> None:
    class SellerBot:
        def __init__(self) -> None:
            self.calls = 0

        @trace_workflow_node("seller_bot", "qualify_seller")
        async def qualify(self, settings: object, state: dict[str, Any]) -> dict[str, Any]:
            self.calls += 1
            return state

    bot = SellerBot()
    await bot.qualify("not-a-state", {"seller_id": "s-pos"})
    await bot.qualify(settings=None, state={"seller_id": "s-kw"})

    assert bot.calls == 2
    contacts = [
        s.attributes[attr.WORKFLOW_CONTACT_ID] for s in span_capture.by_name("seller_bot.qualify_seller")
    ]
    assert contacts == ["s-pos", "s-kw"]


async def test_returned_state_updates_step_and_temperature(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "send_day_3_sms")
    async def send_day_3_sms(state: dict[str, Any]) -> dict[str, Any]:
        return {"current_step": "day_7", "temperature": "warm"}

    await send_day_3_sms({"contact_id": "c1", "current_step": "day_3", "temperature": "cold"})
    assert span_capture.tree(WF) == (
        "lead_bot.send_day_3_sms [workflow.contact_id=c1, workflow.current_step=day_7, "
        "workflow.temperature=warm, workflow.success=true]"
    )


async def test_nested_nodes_nest_their_spans(span_capture: SpanCapture) -> None:
    @trace_workflow_node("intent_decoder", "analyze_lead")
    async def decode(state: dict[str, Any]) -> float:
        return 0.9

    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: dict[str, Any]) -> dict[str, Any]:
        await decode(state)
        return state

    @trace_workflow_node("lead_bot", "determine_path")
    def determine_path(state: dict[str, Any]) -> dict[str, Any]:
        return state

    @trace_workflow_node("lead_bot", "process_lead_conversation")
    async def process(state: dict[str, Any]) -> dict[str, Any]:
        await analyze_intent(state)
        return determine_path(state)

    await process({"contact_id": "c1"})
    assert span_capture.tree() == (
        "lead_bot.process_lead_conversation\n"
        "├─ lead_bot.analyze_intent\n"
        "│  └─ intent_decoder.analyze_lead\n"
        "└─ lead_bot.determine_path"
    )
    traces = {s.context.trace_id for s in span_capture.spans()}
    assert len(traces) == 1


async def test_failing_node_records_one_exception_sets_error_and_reraises(span_capture: SpanCapture) -> None:
    @trace_workflow_node("seller_bot", "schedule_cma_appointment")
    async def schedule(state: dict[str, Any]) -> None:
        raise LookupError("no free slot on calendar 'cal-1'")

    with pytest.raises(LookupError, match="no free slot"):
        await schedule({"seller_id": "s1"})

    span = only(span_capture, "seller_bot.schedule_cma_appointment")
    assert span.attributes[attr.WORKFLOW_SUCCESS] is False
    assert span.attributes[attr.WORKFLOW_DURATION_MS] >= 0
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "LookupError: no free slot on calendar 'cal-1'"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "LookupError"


def test_failing_sync_node_also_records_once(span_capture: SpanCapture) -> None:
    @trace_workflow_node("buyer_bot", "schedule_showing")
    def schedule(state: dict[str, Any]) -> None:
        raise RuntimeError("calendar down")

    with pytest.raises(RuntimeError):
        schedule({"buyer_id": "b1"})
    span = only(span_capture, "buyer_bot.schedule_showing")
    assert [e.name for e in span.events] == ["exception"]
    assert span.status.status_code is StatusCode.ERROR


async def test_cancelled_node_is_unsuccessful_but_not_an_error(span_capture: SpanCapture) -> None:
    started = asyncio.Event()

    @trace_workflow_node("lead_bot", "initiate_day_7_call")
    async def slow(state: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(10)

    task = asyncio.create_task(slow({"contact_id": "c1"}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = only(span_capture, "lead_bot.initiate_day_7_call")
    assert span.attributes[attr.WORKFLOW_SUCCESS] is False
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()


async def test_async_generator_node_is_current_only_while_its_body_runs(span_capture: SpanCapture) -> None:
    seen_by_consumer: list[str] = []

    @trace_workflow_node("buyer_bot", "generate_buyer_response")
    async def stream(state: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for step in ("draft", "final"):
            with tracer.start_as_current_span(f"chunk.{step}"):
                await asyncio.sleep(0)
            yield {"current_step": step}

    with tracer.start_as_current_span("consumer") as consumer:
        async for _ in stream({"buyer_id": "b1"}):
            seen_by_consumer.append(
                trace.get_current_span().get_span_context().span_id == consumer.get_span_context().span_id
                and "consumer"
            )

    assert seen_by_consumer == ["consumer", "consumer"]
    assert span_capture.tree([attr.WORKFLOW_CURRENT_STEP, attr.WORKFLOW_SUCCESS]) == (
        "consumer\n"
        "└─ buyer_bot.generate_buyer_response [workflow.current_step=final, workflow.success=true]\n"
        "   ├─ chunk.draft\n"
        "   └─ chunk.final"
    )


async def test_async_generator_node_ends_when_the_consumer_stops_early(span_capture: SpanCapture) -> None:
    closed = []

    @trace_workflow_node("buyer_bot", "generate_buyer_response")
    async def stream(state: dict[str, Any]) -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(trace.get_current_span().is_recording())

    agen = stream({})
    assert await agen.__anext__() == 0
    await agen.aclose()
    assert closed == [True]  # the body's cleanup still ran inside its span
    span = only(span_capture, "buyer_bot.generate_buyer_response")
    assert span.end_time is not None
    assert span.attributes[attr.WORKFLOW_SUCCESS] is True


async def test_async_generator_node_forwards_sent_values_and_errors(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "send_day_30_nudge")
    async def echo(state: dict[str, Any]) -> Any:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "recovered"

    agen = echo({})
    assert await agen.asend(None) == "ready"
    assert await agen.asend(1) == "got 1"
    assert await agen.athrow(KeyError("x")) == "got recovered"
    with pytest.raises(ValueError):
        await agen.athrow(ValueError("stop"))
    span = only(span_capture, "lead_bot.send_day_30_nudge")
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_generator_node_spans_the_whole_iteration(span_capture: SpanCapture) -> None:
    @trace_workflow_node("lead_bot", "send_day_14_email")
    def parts(state: dict[str, Any]) -> Iterator[str]:
        for part in ("subject", "body"):
            with tracer.start_as_current_span(f"part.{part}"):
                pass
            yield part

    assert list(parts({"lead_id": "l1"})) == ["subject", "body"]
    assert span_capture.tree([attr.WORKFLOW_CONTACT_ID]) == (
        "lead_bot.send_day_14_email [workflow.contact_id=l1]\n├─ part.subject\n└─ part.body"
    )


def test_wrapped_function_keeps_its_name_and_doc() -> None:
    @trace_workflow_node("lead_bot", "generate_cma")
    async def generate_cma(state: dict[str, Any]) -> dict[str, Any]:
        """Build a CMA."""
        return state

    assert generate_cma.__name__ == "generate_cma"
    assert generate_cma.__doc__ == "Build a CMA."
    assert asyncio.iscoroutinefunction(generate_cma)


@pytest.mark.parametrize(("bot", "node"), [("", "x"), ("lead_bot", ""), ("lead_bot", None), (3, "x")])
def test_empty_or_non_string_names_are_refused(bot: Any, node: Any) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        trace_workflow_node(bot, node)


async def test_with_tracing_off_nodes_run_and_nothing_is_current() -> None:
    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: dict[str, Any]) -> str | None:
        return get_trace_id()

    assert await analyze_intent({"contact_id": "c1"}) is None


# --- custom spans and events ---------------------------------------------------------


async def test_async_workflow_span_uses_attribute_keys_as_given(span_capture: SpanCapture) -> None:
    async with async_workflow_span(
        "seller_bot", "calculate_frs", contact_id="c9", **{"seller.tier": "a"}
    ) as span:
        span.set_attribute("seller.frs_score", 81)
    got = only(span_capture, "seller_bot.calculate_frs")
    assert got.attributes["seller.frs_score"] == 81
    assert got.attributes["seller.tier"] == "a"
    assert got.attributes[attr.WORKFLOW_CONTACT_ID] == "c9"
    assert got.attributes[attr.WORKFLOW_SUCCESS] is True


def test_workflow_span_records_an_exception_once(span_capture: SpanCapture) -> None:
    with pytest.raises(ZeroDivisionError), workflow_span("buyer_bot", "affordability", extra=None):
        _ = 1 / 0
    got = only(span_capture, "buyer_bot.affordability")
    assert "extra" not in got.attributes
    assert [e.name for e in got.events] == ["exception"]
    assert got.status.status_code is StatusCode.ERROR
    assert got.attributes[attr.WORKFLOW_SUCCESS] is False


def test_add_workflow_event_goes_to_the_current_span(span_capture: SpanCapture) -> None:
    add_workflow_event("outside_any_span", x=1)  # no current span: silently nothing
    with workflow_span("lead_bot", "analyze_intent"):
        add_workflow_event("intent_detected", intent_type="buyer", confidence=0.85, skipped=None)
    got = only(span_capture, "lead_bot.analyze_intent")
    assert [(e.name, dict(e.attributes)) for e in got.events] == [
        ("intent_detected", {"intent_type": "buyer", "confidence": 0.85})
    ]


def test_get_trace_id_is_the_current_trace_in_hex(span_capture: SpanCapture) -> None:
    assert get_trace_id() is None
    with workflow_span("lead_bot", "x") as span:
        trace_id = get_trace_id()
    assert trace_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert int(trace_id, 16) == span.get_span_context().trace_id


# --- handoffs --------------------------------------------------------------------------


HANDOFF_KEYS = [
    attr.HANDOFF_SOURCE_BOT,
    attr.HANDOFF_TARGET_BOT,
    attr.HANDOFF_CONTACT_ID,
    attr.HANDOFF_CONFIDENCE,
    attr.HANDOFF_REASON,
    attr.HANDOFF_OUTCOME,
]


async def test_handoff_span_is_current_and_carries_the_handoff_attributes(span_capture: SpanCapture) -> None:
    @trace_workflow_node("jorge.handoff", "execute_handoff")
    async def execute(state: dict[str, Any]) -> None:
        await asyncio.sleep(0)

    with create_handoff_span("lead", "buyer", "abc123xyz", 0.85, "buyer_intent_detected"):
        await execute({"contact_id": "abc123xyz"})

    assert span_capture.tree(HANDOFF_KEYS) == (
        "handoff.lead_to_buyer [handoff.source_bot=lead, handoff.target_bot=buyer, "
        "handoff.contact_id=abc123xyz, handoff.confidence=0.85, handoff.reason=buyer_intent_detected, "
        "handoff.outcome=executed]\n"
        "└─ jorge.handoff.execute_handoff"
    )


def test_handoff_route_drops_the_bot_suffix(span_capture: SpanCapture) -> None:
    with create_handoff_span("lead_bot", "human", "c1", 1, "human_requested"):
        pass
    span = only(span_capture, "handoff.lead_to_human")
    assert span.attributes[attr.HANDOFF_SOURCE_BOT] == "lead_bot"
    assert span.attributes[attr.HANDOFF_CONFIDENCE] == 1.0


def test_handoff_failure_marks_the_span_and_still_ends_it(span_capture: SpanCapture) -> None:
    with pytest.raises(ConnectionError), create_handoff_span("buyer", "seller", "c1", 0.9, "seller_intent"):
        raise ConnectionError("GHL unreachable")
    span = only(span_capture, "handoff.buyer_to_seller")
    assert span.attributes[attr.HANDOFF_OUTCOME] == "failed:ConnectionError"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_handoff_span_ends_on_early_return(span_capture: SpanCapture) -> None:
    def handoff() -> str:
        with create_handoff_span("seller", "buyer", "c1", 0.7, "buyer_intent"):
            return "done"

    assert handoff() == "done"
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert only(span_capture, "handoff.seller_to_buyer").attributes[attr.HANDOFF_OUTCOME] == "executed"


def test_handoff_span_ends_when_a_generator_is_closed(span_capture: SpanCapture) -> None:
    def steps() -> Iterator[int]:
        with create_handoff_span("lead", "seller", "c1", 0.8, "seller_intent"):
            yield 1
            yield 2

    gen = steps()
    next(gen)
    gen.close()
    span = only(span_capture, "handoff.lead_to_seller")
    assert span.end_time is not None
    assert span.attributes[attr.HANDOFF_OUTCOME] == "failed:GeneratorExit"


def test_blocked_outcome_is_set_from_inside_the_block(span_capture: SpanCapture) -> None:
    def safeguard() -> bool:
        return set_handoff_outcome("blocked:cooldown")

    with create_handoff_span("lead", "buyer", "c1", 0.9, "buyer_intent"):
        assert safeguard() is True
    span = only(span_capture, "handoff.lead_to_buyer")
    assert span.attributes[attr.HANDOFF_OUTCOME] == "blocked:cooldown"
    assert span.status.status_code is StatusCode.UNSET


def test_set_handoff_outcome_outside_a_handoff_does_nothing() -> None:
    assert set_handoff_outcome("blocked:cooldown") is False


@pytest.mark.parametrize("outcome", ["", "blocked", "blocked:", "done", "failed: ", 3])
def test_malformed_outcomes_are_refused(span_capture: SpanCapture, outcome: Any) -> None:
    with (
        create_handoff_span("lead", "buyer", "c1", 0.9, "r"),
        pytest.raises(ValueError, match="blocked:<reason>"),
    ):
        set_handoff_outcome(outcome)


def test_non_numeric_confidence_is_left_out_not_raised(
    span_capture: SpanCapture, caplog: pytest.LogCaptureFixture
) -> None:
    with create_handoff_span("lead", "buyer", "c1", "high", "r"):  # type: ignore[arg-type]
        pass
    span = only(span_capture, "handoff.lead_to_buyer")
    assert attr.HANDOFF_CONFIDENCE not in span.attributes
    assert "confidence 'high' is not a number" in caplog.text


def test_nested_handoffs_restore_the_outer_one(span_capture: SpanCapture) -> None:
    with create_handoff_span("lead", "buyer", "c1", 0.9, "r"):
        with create_handoff_span("buyer", "seller", "c1", 0.9, "r"):
            set_handoff_outcome("blocked:rate_limit")
        set_handoff_outcome("blocked:in_progress")
    assert span_capture.tree([attr.HANDOFF_OUTCOME]) == (
        "handoff.lead_to_buyer [handoff.outcome=blocked:in_progress]\n"
        "└─ handoff.buyer_to_seller [handoff.outcome=blocked:rate_limit]"
    )


# --- context across boundaries -------------------------------------------------------


async def test_propagated_context_makes_a_fresh_task_a_child(span_capture: SpanCapture) -> None:
    async def worker(metadata: dict[str, Any]) -> None:
        with continue_trace_context(metadata), tracer.start_as_current_span("worker.run"):
            pass

    with tracer.start_as_current_span("webhook") as parent:
        metadata = propagate_trace_context({"contact_id": "c1"})
    assert metadata["contact_id"] == "c1"
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[13]", metadata["traceparent"])
    # A task started from an empty context: without the carrier it would be a new trace.
    await asyncio.get_running_loop().create_task(worker(metadata), context=contextvars.Context())

    child = only(span_capture, "worker.run")
    assert child.context.trace_id == parent.get_span_context().trace_id
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id


def test_continue_without_a_carrier_changes_nothing(span_capture: SpanCapture) -> None:
    for carrier in ({}, {"traceparent": "garbage"}, None, "not a dict"):
        with continue_trace_context(carrier):
            assert trace.get_current_span() is trace.INVALID_SPAN


def test_propagate_outside_a_span_adds_nothing_and_refuses_non_dicts(span_capture: SpanCapture) -> None:
    assert propagate_trace_context({"a": 1}) == {"a": 1}
    with pytest.raises(TypeError, match="needs a dict"):
        propagate_trace_context("c1")  # type: ignore[arg-type]


def test_linked_trace_is_a_new_root_that_links_back(span_capture: SpanCapture) -> None:
    with tracer.start_as_current_span("schedule_followups") as origin:
        metadata = propagate_trace_context({})
    with (
        tracer.start_as_current_span("worker.poll"),
        start_linked_trace("followup.day_7", metadata, contact_id="c1", missing=None) as root,
    ):
        assert root.is_recording()
    followup = only(span_capture, "followup.day_7")
    assert followup.parent is None
    assert followup.context.trace_id != origin.get_span_context().trace_id
    assert [link.context.span_id for link in followup.links] == [origin.get_span_context().span_id]
    assert dict(followup.attributes) == {"contact_id": "c1"}
    assert link_from_trace_context({}) == []


def test_linked_trace_records_errors(span_capture: SpanCapture) -> None:
    with pytest.raises(KeyError), start_linked_trace("followup.day_3", {}):
        raise KeyError("contact gone")
    span = only(span_capture, "followup.day_3")
    assert span.links == ()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


# --- dynamic span name guard ---------------------------------------------------------


@pytest.fixture
def fresh_guard() -> Iterator[None]:
    _instrument.reset_dynamic_name_guard()
    yield
    _instrument.reset_dynamic_name_guard()


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        ("process_1739612345", "6 or more digits"),
        ("contact_5f3a9b2e", "hex id"),
        ("run_123e4567-e89b-12d3-a456-426614174000", "UUID"),
        ("process_ocQHyuzHvysMo5N5VsXc", "letters and digits"),
    ],
)
def test_id_like_node_names_warn_once_and_are_counted(
    fresh_guard: None, caplog: pytest.LogCaptureFixture, node: str, problem: str
) -> None:
    before = dynamic_span_name_warnings()
    with caplog.at_level(logging.WARNING):
        trace_workflow_node("lead_bot", node)
        trace_workflow_node("lead_bot", node)
    warnings = [r for r in caplog.records if "looks dynamic" in r.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert problem in message
    assert "static name" in message
    assert "attribute" in message
    assert dynamic_span_name_warnings() == before + 2


def test_one_warning_per_name_pattern_not_per_contact(
    fresh_guard: None, caplog: pytest.LogCaptureFixture
) -> None:
    for contact in ("100000001", "100000002", "100000003"):
        trace_workflow_node("lead_bot", f"process_{contact}")
    assert sum("looks dynamic" in r.getMessage() for r in caplog.records) == 1
    assert "@trace_workflow_node('lead_bot', 'process')" in caplog.text
    assert dynamic_span_name_warnings() == 3


async def test_node_name_holding_the_state_contact_id_warns_at_call_time(
    fresh_guard: None, span_capture: SpanCapture, caplog: pytest.LogCaptureFixture
) -> None:
    @trace_workflow_node("lead_bot", "process_jane")
    async def process(state: dict[str, Any]) -> None:
        return None

    assert dynamic_span_name_warnings() == 0
    await process({"contact_id": "jane"})
    await process({"contact_id": "jane"})
    assert dynamic_span_name_warnings() == 2
    assert sum("the contact id of the state" in r.getMessage() for r in caplog.records) == 1


def test_the_guides_node_names_are_not_flagged(fresh_guard: None, caplog: pytest.LogCaptureFixture) -> None:
    names = {
        "lead_bot": [
            "analyze_intent",
            "determine_path",
            "generate_cma",
            "send_day_3_sms",
            "initiate_day_7_call",
            "send_day_14_email",
            "send_day_30_nudge",
            "process_lead_conversation",
        ],
        "seller_bot": [
            "analyze_seller_intent",
            "qualify_seller",
            "generate_seller_response",
            "schedule_cma_appointment",
        ],
        "buyer_bot": ["analyze_buyer_intent", "qualify_buyer", "generate_buyer_response", "schedule_showing"],
    }
    for bot, nodes in names.items():
        for node in nodes:
            trace_workflow_node(bot, node)
    assert dynamic_span_name_warnings() == 0
    assert "looks dynamic" not in caplog.text


# --- inside a LangGraph graph --------------------------------------------------------


async def test_decorated_nodes_nest_under_the_caller_inside_a_langgraph_graph(
    span_capture: SpanCapture,
) -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class LeadState(TypedDict, total=False):
        contact_id: str
        current_step: str
        temperature: str

    @trace_workflow_node("lead_bot", "analyze_intent")
    async def analyze_intent(state: LeadState) -> dict[str, Any]:
        return {"temperature": "hot"}

    @trace_workflow_node("lead_bot", "determine_path")
    def determine_path(state: LeadState) -> dict[str, Any]:  # a sync node: LangGraph runs it in a thread
        return {"current_step": "handoff"}

    graph = StateGraph(LeadState)
    graph.add_node("analyze_intent", analyze_intent)
    graph.add_node("determine_path", determine_path)
    graph.add_edge(START, "analyze_intent")
    graph.add_edge("analyze_intent", "determine_path")
    graph.add_edge("determine_path", END)
    app = graph.compile()

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl"):
        final = await app.ainvoke({"contact_id": "abc123xyz", "current_step": "new"})

    assert final == {"contact_id": "abc123xyz", "current_step": "handoff", "temperature": "hot"}
    assert span_capture.tree(WF) == (
        "POST /api/v1/webhooks/ghl\n"
        "├─ lead_bot.analyze_intent [workflow.contact_id=abc123xyz, workflow.current_step=new, "
        "workflow.temperature=hot, workflow.success=true]\n"
        "└─ lead_bot.determine_path [workflow.contact_id=abc123xyz, workflow.current_step=handoff, "
        "workflow.temperature=hot, workflow.success=true]"
    )


def test_a_held_handoff_object_can_set_its_outcome(span_capture: SpanCapture) -> None:
    handoff = create_handoff_span("seller", "human", "c1", 0.99, "legal_red_flag")
    assert handoff.route == "seller_to_human"
    with handoff:
        handoff.set_outcome("blocked:opted_out")
    assert (
        only(span_capture, "handoff.seller_to_human").attributes[attr.HANDOFF_OUTCOME] == "blocked:opted_out"
    )
