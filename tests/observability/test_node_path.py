"""The node decorator and the conversation processor export the same spans on their shorter paths (issue 14).

A node span's start attributes are built in one dict, and the conversation processor
skips the journey work for a span that only repeats the bot and temperature its root
already shows. These tests pin the exported attributes of node spans (order included)
and drive one set of conversations through the processor with and without the skip,
requiring every exported span, attribute, event and journey value to be equal.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import attributes as attr
from ghl_real_estate_ai.observability import journey
from ghl_real_estate_ai.observability.journey import start_session
from ghl_real_estate_ai.observability.testing import SpanCapture, capture_spans
from ghl_real_estate_ai.observability.workflow_tracing import (
    add_workflow_event,
    create_handoff_span,
    set_handoff_outcome,
    trace_workflow_node,
)

SESSION = list(attr.SESSION_ATTRIBUTES)


class Temperature(enum.Enum):
    HOT = "hot"


class Step(enum.IntEnum):
    DAY_3 = 3


def _exported(capture: SpanCapture) -> list[tuple[Any, ...]]:
    """Every finished span with its attributes in order (durations only as present) and events."""

    def attributes(span: ReadableSpan | Any) -> list[tuple[str, Any]]:
        return [
            (key, "<duration>" if key == attr.WORKFLOW_DURATION_MS else value)
            for key, value in (span.attributes or {}).items()
        ]

    return [
        (
            span.name,
            span.parent is None,
            attributes(span),
            [(event.name, attributes(event)) for event in span.events],
            span.status.status_code,
        )
        for span in capture.spans()
    ]


@trace_workflow_node("lead_bot", "analyze_intent")
async def analyze_intent(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "temperature": state.get("next_temperature", state.get("temperature"))}


@trace_workflow_node("lead_bot", "determine_path")
def determine_path(_self: object, state: dict[str, Any], **_: Any) -> dict[str, Any]:
    return {"current_step": "path"}


@trace_workflow_node("lead_bot", "fail")
async def fail(state: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("boom")


@trace_workflow_node("lead_bot", "cancelled")
async def cancelled(state: dict[str, Any]) -> dict[str, Any]:
    raise asyncio.CancelledError  # success=false without an exception event


@trace_workflow_node("buyer_bot", "qualify_buyer")
async def qualify_buyer(state: dict[str, Any]) -> dict[str, Any]:
    return {"temperature": state["temperature"]}


@trace_workflow_node("lead_bot", "hand_over")
async def hand_over(state: dict[str, Any]) -> None:
    # A node span that says it handed the contact over, without a handoff span.
    trace.get_current_span().set_attributes(
        {attr.HANDOFF_SOURCE_BOT: "lead", attr.HANDOFF_TARGET_BOT: "human", attr.HANDOFF_OUTCOME: "executed"}
    )


@trace_workflow_node("seller_bot", "note")
def note(state: dict[str, Any]) -> None:
    return None


@trace_workflow_node("intent_decoder", "analyze_lead")
async def analyze_lead(state: dict[str, Any]) -> None:
    add_workflow_event("intent_decoded", intent="buyer")


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a sync node where the table expects a coroutine."""
    return fn(*args, **kwargs)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda: analyze_intent({"contact_id": "c-17", "current_step": "day_3", "temperature": "warm"}),
            [
                (attr.WORKFLOW_BOT_TYPE, "lead_bot"),
                (attr.WORKFLOW_NODE_NAME, "analyze_intent"),
                (attr.WORKFLOW_CONTACT_ID, "c-17"),
                *[(key, "c-17") for key in SESSION],
                (attr.WORKFLOW_SUCCESS, True),
                (attr.WORKFLOW_DURATION_MS, "<duration>"),
                # Set again from the result (the whole state): moved to the end.
                (attr.WORKFLOW_CURRENT_STEP, "day_3"),
                (attr.WORKFLOW_TEMPERATURE, "warm"),
            ],
        ),
        (
            lambda: _run(note, {"buyer_id": "b-1", "current_step": "intro", "temperature": "hot", "x": 1}),
            [
                (attr.WORKFLOW_BOT_TYPE, "seller_bot"),
                (attr.WORKFLOW_NODE_NAME, "note"),
                (attr.WORKFLOW_CONTACT_ID, "b-1"),
                (attr.WORKFLOW_CURRENT_STEP, "intro"),
                (attr.WORKFLOW_TEMPERATURE, "hot"),
                *[(key, "b-1") for key in SESSION],
                (attr.WORKFLOW_SUCCESS, True),
                (attr.WORKFLOW_DURATION_MS, "<duration>"),
            ],
        ),
        (
            # An empty contact id is skipped for the next key; an Enum gives its value, an
            # IntEnum is an int and stays itself; the result's keys move to the end.
            lambda: analyze_intent(
                {
                    "contact_id": "",
                    "lead_id": 42,
                    "current_step": Step.DAY_3,
                    "temperature": Temperature.HOT,
                    "next_temperature": "cold",
                }
            ),
            [
                (attr.WORKFLOW_BOT_TYPE, "lead_bot"),
                (attr.WORKFLOW_NODE_NAME, "analyze_intent"),
                (attr.WORKFLOW_CONTACT_ID, 42),
                *[(key, 42) for key in SESSION],
                (attr.WORKFLOW_SUCCESS, True),
                (attr.WORKFLOW_DURATION_MS, "<duration>"),
                (attr.WORKFLOW_CURRENT_STEP, Step.DAY_3),
                (attr.WORKFLOW_TEMPERATURE, "cold"),
            ],
        ),
        (
            # The state found among keyword arguments, after a non-mapping positional one.
            lambda: _run(determine_path, object(), options=None, state={"seller_id": "s-9"}),
            [
                (attr.WORKFLOW_BOT_TYPE, "lead_bot"),
                (attr.WORKFLOW_NODE_NAME, "determine_path"),
                (attr.WORKFLOW_CONTACT_ID, "s-9"),
                *[(key, "s-9") for key in SESSION],
                (attr.WORKFLOW_SUCCESS, True),
                (attr.WORKFLOW_DURATION_MS, "<duration>"),
                (attr.WORKFLOW_CURRENT_STEP, "path"),
            ],
        ),
        (
            lambda: _run(determine_path, object(), 7),
            [
                (attr.WORKFLOW_BOT_TYPE, "lead_bot"),
                (attr.WORKFLOW_NODE_NAME, "determine_path"),
                (attr.WORKFLOW_SUCCESS, True),
                (attr.WORKFLOW_DURATION_MS, "<duration>"),
                (attr.WORKFLOW_CURRENT_STEP, "path"),
            ],
        ),
    ],
)
async def test_a_node_span_exports_its_attributes_in_the_same_order(call: Any, expected: Any) -> None:
    with capture_spans() as capture:
        await call()
        ((_, is_root, attributes, events, _),) = _exported(capture)
    assert is_root
    assert attributes == expected
    assert events == []


async def _conversations(capture: SpanCapture) -> None:
    """Webhook-shaped traces: repeated nodes, changed temperatures, failures, handoffs, opt-outs."""
    tracer = capture.provider.get_tracer("tests.node_path")
    state = {"contact_id": "c-1", "temperature": "cold"}

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl", kind=SpanKind.SERVER) as root:
        start_session(root, "c-1")
        await analyze_intent({**state, "next_temperature": "warm"})
        await analyze_intent({**state, "temperature": "warm"})  # repeats bot and temperature
        await analyze_lead(state)  # not a bot, with an event
        await analyze_intent({**state, "temperature": "warm", "next_temperature": "hot"})
        await analyze_intent({**state, "temperature": "hot", "next_temperature": ""})
        await analyze_intent({**state, "temperature": "hot", "next_temperature": 5})
        with pytest.raises(RuntimeError):
            await fail({**state, "temperature": "hot"})  # the same bot and temperature, failed
        await analyze_intent({**state, "temperature": "hot"})  # repeats after a failure

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl", kind=SpanKind.SERVER) as root:
        start_session(root, "c-2")
        await analyze_intent({"contact_id": "c-2", "temperature": "warm"})
        with create_handoff_span("lead_bot", "buyer_bot", "c-2", 0.9, "buyer_intent"):
            set_handoff_outcome("executed")
        await qualify_buyer({"contact_id": "c-2", "temperature": "warm"})
        await qualify_buyer({"contact_id": "c-2", "temperature": "warm"})
        with create_handoff_span("buyer_bot", "seller_bot", "c-2", 0.4, "unsure"):
            set_handoff_outcome("blocked:low_confidence")
        await qualify_buyer({"contact_id": "c-2", "temperature": "warm"})
        root.add_event("contact_opted_out")
        await qualify_buyer({"contact_id": "c-2", "temperature": "warm"})

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl", kind=SpanKind.SERVER) as root:
        # Somebody else wrote the journey before any span ended: the first node still sets its outcome.
        root.set_attributes({attr.JOURNEY_FINAL_BOT: "lead_bot", attr.JOURNEY_TEMPERATURE: "warm"})
        await analyze_intent({"contact_id": "c-3", "temperature": "warm"})
        await analyze_intent({"contact_id": "c-3", "temperature": "warm"})
        await hand_over({"contact_id": "c-3", "temperature": "warm"})
        with tracer.start_as_current_span("SELECT conversations", kind=SpanKind.CLIENT):
            pass

    with tracer.start_as_current_span("followup.send_day_3_sms"):
        await analyze_intent({"contact_id": "c-4", "temperature": "warm"})
        await analyze_intent({"contact_id": "c-4", "temperature": "warm"})

    with tracer.start_as_current_span("POST /api/v1/webhooks/ghl", kind=SpanKind.SERVER) as root:
        start_session(root, "c-5")
        await analyze_intent({"contact_id": "c-5", "temperature": "warm"})
        with pytest.raises(asyncio.CancelledError):
            await cancelled({"contact_id": "c-5", "temperature": "warm"})


class RootWatch(SpanProcessor):
    """Records the attributes of the open root span each time a span under it ends."""

    def __init__(self) -> None:
        self.root: ReadableSpan | None = None
        self.seen: list[tuple[str, list[tuple[str, Any]]]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.parent is None:
            self.root = span

    def on_end(self, span: ReadableSpan) -> None:
        if self.root is not None and span is not self.root:
            self.seen.append((span.name, list((self.root.attributes or {}).items())))


async def test_the_journey_skip_exports_what_the_full_rules_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every span, attribute (in order), event and journey value is what the processor set
    when it ran its rules on every span, and the root shows the same journey after each span."""
    runs = []
    skipped: list[bool] = []
    real = journey._repeats

    def recording(*args: Any) -> bool:
        skipped.append(real(*args))
        return skipped[-1]

    for repeats in (lambda *_: False, recording):
        monkeypatch.setattr(journey, "_repeats", repeats)
        with capture_spans() as capture:
            watch = RootWatch()
            capture.provider.add_span_processor(watch)  # after the conversation processor
            await _conversations(capture)
            runs.append((_exported(capture), watch.seen))
    (full, full_moments), (short, short_moments) = runs
    assert short_moments == full_moments
    assert short == full
    assert skipped.count(True) >= 4  # the shorter path was really taken
    roots = [span for span in short if span[1]]
    assert [dict(attributes) for _, _, attributes, _, _ in roots][:3] == [
        {
            **dict.fromkeys(SESSION, "c-1"),
            attr.JOURNEY_FINAL_BOT: "lead_bot",
            attr.JOURNEY_TEMPERATURE: "hot",
            attr.JOURNEY_HANDOFF_ROUTE: "none",
            attr.JOURNEY_OUTCOME: "failed",
        },
        {
            **dict.fromkeys(SESSION, "c-2"),
            attr.JOURNEY_FINAL_BOT: "buyer_bot",
            attr.JOURNEY_TEMPERATURE: "warm",
            attr.JOURNEY_HANDOFF_ROUTE: "lead_bot_to_buyer_bot",
            attr.JOURNEY_OUTCOME: "opted_out",
        },
        {
            attr.JOURNEY_FINAL_BOT: "lead_bot",
            attr.JOURNEY_TEMPERATURE: "warm",
            attr.JOURNEY_HANDOFF_ROUTE: "lead_to_human",
            attr.JOURNEY_OUTCOME: "escalated",
        },
    ]
