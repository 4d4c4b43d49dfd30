"""The set-up's tracer provider takes a shorter path through the SDK and makes the very same spans.

``FastTracerProvider`` (``observability/_fastspan.py``) starts children with one parent
lookup and stores attribute values that are already clean without the SDK's cleaning.
Each test here drives the same calls through the SDK's own ``TracerProvider`` and ours,
with the same ids, and requires every exported field to be equal, including the cases
the shorter path hands back to the SDK (bad keys, long strings, full attribute sets,
lists, ``None``, links, unsampled and remote parents, other samplers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from ghl_real_estate_ai.observability import _fastspan, _lifecycle
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.otel_config import setup_observability
from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401  (autouse fixture)


class CountingIds(IdGenerator):
    """The same ids in the same order for both providers."""

    def __init__(self) -> None:
        self.next = 0

    def generate_span_id(self) -> int:
        self.next += 1
        return self.next

    def generate_trace_id(self) -> int:
        self.next += 1
        return 0xABC0000 + self.next


def _fields(span: ReadableSpan) -> tuple[Any, ...]:
    return (
        span.name,
        span.context,
        span.context.trace_flags,
        span.context.trace_state,
        span.parent,
        span.kind,
        list((span.attributes or {}).items()),  # order too
        span.dropped_attributes,
        [(e.name, e.timestamp, list((e.attributes or {}).items())) for e in span.events],
        [(link.context, dict(link.attributes or {})) for link in span.links],
        span.dropped_events,
        span.dropped_links,
        span.status.status_code,
        span.status.description,
        span.instrumentation_scope,
    )


def _both(
    scenario: Callable[[trace.Tracer], Any],
    *,
    sampler: Sampler | None = None,
    limits: SpanLimits | None = None,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], Any, Any]:
    results = []
    for provider_type in (TracerProvider, _fastspan.FastTracerProvider):
        memory = InMemorySpanExporter()
        provider = provider_type(sampler=sampler, id_generator=CountingIds(), span_limits=limits)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        returned = scenario(provider.get_tracer("tests.fastspan", "1.0"))
        spans = sorted(memory.get_finished_spans(), key=lambda s: s.context.span_id)
        results.append(([_fields(s) for s in spans], returned))
        provider.shutdown()
    (sdk, sdk_returned), (fast, fast_returned) = results
    return sdk, fast, sdk_returned, fast_returned


def _webhook_like(tracer: trace.Tracer) -> list[Any]:
    with tracer.start_as_current_span("POST /webhook", kind=SpanKind.SERVER) as root:
        root.set_attribute("webhook.event_type", "InboundMessage")
        start: dict[str, Any] = {"workflow.bot_type": "lead_bot", "n": 3, "x": 0.5, "ok": True}
        with tracer.start_as_current_span("lead_bot.analyze_intent", attributes=start) as node:
            node.set_attributes({"intent.acts": ("answer", "question"), "slots": ["a", "b"], "empty": ()})
            node.set_attribute("workflow.success", True)
            node.set_attribute("workflow.success", False)  # set again: moves to the end, as in the SDK
            node.add_event("slot_filled", {"slot.name": "areas", "slot.value": 3}, timestamp=123)
            node.add_event("no_attributes", timestamp=124)
            with tracer.start_as_current_span("INSERT outbox", kind=SpanKind.CLIENT) as store:
                store.set_status(StatusCode.ERROR, "boom")
        child = tracer.start_span("detached child", context=trace.set_span_in_context(root))
        child.end(end_time=999)
    return []


def test_the_set_up_builds_the_fast_provider_with_the_installed_sdk() -> None:
    assert _fastspan.available(), "the installed opentelemetry-sdk lacks what _fastspan relies on"
    setup_observability(exporter_type="none")
    provider = _lifecycle.get_sdk_tracer_provider()
    assert isinstance(provider, _fastspan.FastTracerProvider)
    assert type(provider.get_tracer("x")) is _fastspan._FastTracer


def test_a_webhook_shaped_trace_is_the_same_field_for_field() -> None:
    sdk, fast, _, _ = _both(_webhook_like)
    assert len(sdk) == 4
    assert fast == sdk


def test_roots_and_children_really_took_the_short_path(monkeypatch: pytest.MonkeyPatch) -> None:
    through_sdk: list[str] = []
    original = _fastspan._FastTracer._sdk_start

    def recorded(self: _fastspan._FastTracer, name: str, *args: Any) -> trace.Span:
        through_sdk.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(_fastspan._FastTracer, "_sdk_start", recorded)
    provider = _fastspan.FastTracerProvider()
    tracer = provider.get_tracer("tests.fastspan")
    with tracer.start_as_current_span("root", attributes={"a": 1}) as root:
        with tracer.start_as_current_span("child") as child:
            pass
        with tracer.start_as_current_span("linked", links=[trace.Link(child.get_span_context())]):
            pass
    assert type(root) is _fastspan._FastSpan and type(child) is _fastspan._FastSpan
    assert through_sdk == ["linked"]  # links are the SDK's business; roots and children are ours


class Deciding(Sampler):
    """A root sampler that records without sampling, adds attributes and a trace state, or drops."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any
    ) -> SamplingResult:
        attributes = dict(args[1] or {}) if len(args) > 1 else {}
        attributes["sampler.says"] = ["yes", name] if self.decision is not Decision.DROP else None
        return SamplingResult(self.decision, attributes, TraceState([("deciding", name)]))

    def get_description(self) -> str:
        return "Deciding"


@pytest.mark.parametrize(
    "sampler",
    [
        ParentBased(ALWAYS_OFF),
        ParentBased(TraceIdRatioBased(0.5)),
        Deciding(Decision.RECORD_ONLY),
        Deciding(Decision.RECORD_AND_SAMPLE),
        Deciding(Decision.DROP),
    ],
    ids=["always off", "ratio", "record only", "sampled with attributes", "dropped"],
)
def test_a_root_is_decided_and_built_as_the_sdk_does(sampler: Sampler) -> None:
    def scenario(tracer: trace.Tracer) -> list[Any]:
        returned = []
        for n in range(8):
            attributes = {"n": n, "long": "abcdefghij"} if n % 2 else {"n": n, "": "bad key"}
            with (
                tracer.start_as_current_span(f"root{n}", attributes=attributes) as root,
                tracer.start_as_current_span("child") as child,
            ):
                pass
            returned.append(
                (root.get_span_context(), type(root).__name__, root.is_recording(), child.is_recording())
            )
        return returned

    sdk, fast, sdk_returned, fast_returned = _both(
        scenario, sampler=sampler, limits=SpanLimits(max_attribute_length=4)
    )
    assert fast == sdk
    assert [r[0] for r in fast_returned] == [r[0] for r in sdk_returned]
    assert [r[2:] for r in fast_returned] == [r[2:] for r in sdk_returned]


def test_values_the_sdk_must_clean_are_cleaned_as_it_does(caplog: pytest.LogCaptureFixture) -> None:
    class Custom:
        def __str__(self) -> str:
            return "custom"

    def scenario(tracer: trace.Tracer) -> list[Any]:
        with (
            tracer.start_as_current_span("root"),
            tracer.start_as_current_span(
                "child",
                attributes={"long": "abcdefghij", "none": None, "list": [1, 2], "nested": ["abcdefgh"]},
            ) as span,
        ):
            span.set_attribute("custom", Custom())  # type: ignore[arg-type]
            span.set_attribute("long2", "0123456789")
            span.set_attribute("", "empty key")
            span.set_attribute(7, "not a str key")  # type: ignore[arg-type]
            span.set_attributes({"ok": "fine", "": "dropped"})
            span.set_attributes({"bytes": b"raw"})
            span.add_event("e", {"long": "abcdefghij", 5: "bad key"}, timestamp=1)  # type: ignore[dict-item]
            for n in range(6):  # past the attribute limit: the oldest go, counted
                span.set_attribute(f"k{n}", n)
        return []

    with caplog.at_level(logging.WARNING):
        sdk, fast, _, _ = _both(scenario, limits=SpanLimits(max_attributes=5, max_attribute_length=4))
    assert fast == sdk
    child = next(s for s in fast if s[0] == "child")
    assert child[7] > 0  # something was dropped, in both


def test_an_unsampled_parent_gives_the_same_non_recording_child() -> None:
    def scenario(tracer: trace.Tracer) -> list[Any]:
        with tracer.start_as_current_span("root") as root:
            child = tracer.start_span("child", attributes={"a": 1})
        return [root.get_span_context(), child.get_span_context(), type(child), child.is_recording()]

    sdk, fast, sdk_returned, fast_returned = _both(scenario, sampler=ParentBased(ALWAYS_OFF))
    assert sdk == fast == []
    assert fast_returned == sdk_returned
    assert fast_returned[2] is NonRecordingSpan and not fast_returned[1].trace_flags.sampled


@pytest.mark.parametrize("sampled", [True, False])
def test_a_remote_parent_keeps_its_trace_state_and_decision(sampled: bool) -> None:
    remote = SpanContext(
        0xFEED,
        0xBEEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        trace_state=TraceState([("vendor", "value")]),
    )

    def scenario(tracer: trace.Tracer) -> list[Any]:
        token = context_api.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
        try:
            with (
                tracer.start_as_current_span("server", kind=SpanKind.SERVER) as server,
                tracer.start_as_current_span("inner") as inner,
            ):
                pass
        finally:
            context_api.detach(token)
        return [server.get_span_context(), inner.get_span_context()]

    sdk, fast, sdk_returned, fast_returned = _both(scenario)
    assert fast == sdk
    assert fast_returned == sdk_returned
    assert fast_returned[1].trace_state == remote.trace_state


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, ParentBased(TraceIdRatioBased(0.5)), ParentBased(ALWAYS_ON, local_parent_sampled=ALWAYS_OFF)],
    ids=["not parent-based", "ratio root", "other delegates"],
)
def test_other_samplers_and_links_go_through_the_sdk_with_the_same_result(sampler: Sampler) -> None:
    def scenario(tracer: trace.Tracer) -> list[Any]:
        contexts = []
        for n in range(8):
            with tracer.start_as_current_span(f"root{n}") as root:
                linked = trace.Link(root.get_span_context(), {"why": "follows"})
                with tracer.start_as_current_span("child", links=[linked]) as child:
                    child.set_attribute("n", n)
                contexts.append(child.get_span_context())
        return contexts

    sdk, fast, sdk_returned, fast_returned = _both(scenario, sampler=sampler)
    assert fast == sdk
    assert fast_returned == sdk_returned


def test_events_and_links_keep_the_sdk_limits_and_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """The event and link lists are made on the first one (most spans have none), with the same limits."""

    def scenario(tracer: trace.Tracer) -> list[Any]:
        with tracer.start_as_current_span("root") as root:
            with tracer.start_as_current_span("no events") as quiet:
                pass
            with tracer.start_as_current_span("events") as busy:
                for n in range(3):  # one past the limit: the oldest dropped and counted
                    busy.add_event(f"e{n}", {"n": n}, timestamp=n)
                busy.add_link(root.get_span_context(), {"why": "later"})
                busy.add_link(quiet.get_span_context())
                busy.add_link(root.get_span_context())
                try:
                    raise ValueError("boom")
                except ValueError as exc:
                    busy.record_exception(exc, timestamp=9)
        with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
            quiet.add_event("after the end", timestamp=10)
            quiet.add_link(root.get_span_context())
        return []

    sdk, fast, _, _ = _both(scenario, limits=SpanLimits(max_events=2, max_links=2))
    assert fast == sdk
    busy = next(s for s in fast if s[0] == "events")
    assert busy[-5:-3] == (2, 1)  # dropped events and links, in both
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings.count("Tried calling _add_event on an ended span.") == 2
    assert warnings.count("Tried calling _add_link on an ended span.") == 2


def test_setting_attributes_on_an_ended_span_warns_and_changes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def scenario(tracer: trace.Tracer) -> list[Any]:
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child") as child:
            pass
        with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
            child.set_attribute("late", 1)
            child.set_attributes({"later": 2})
        return []

    sdk, fast, _, _ = _both(scenario)
    assert fast == sdk
    assert [r.getMessage() for r in caplog.records].count("Setting attribute on ended span.") == 4


@pytest.fixture
def plain_sdk_provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def test_the_conversation_processor_still_works_on_a_plain_sdk_provider(
    plain_sdk_provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A host's own SDK provider (joined, not ours) gets the session keys and the journey too."""
    provider, memory = plain_sdk_provider
    tracer = provider.get_tracer("tests.fastspan")
    with tracer.start_as_current_span("POST /webhook") as root:
        root.set_attributes(dict.fromkeys(("session.id", "user.id", "gen_ai.conversation.id"), "c-1"))
        with tracer.start_as_current_span("INSERT outbox"):
            pass
        with tracer.start_as_current_span(
            "lead_bot.analyze_intent", attributes={"workflow.bot_type": "lead_bot"}
        ) as node:
            node.set_attribute("workflow.temperature", "warm")
    spans = {s.name: dict(s.attributes or {}) for s in memory.get_finished_spans()}
    assert spans["INSERT outbox"]["session.id"] == "c-1"
    assert spans["lead_bot.analyze_intent"]["user.id"] == "c-1"
    journey = {k: v for k, v in spans["POST /webhook"].items() if k.startswith("journey.")}
    assert journey == {
        "journey.final_bot": "lead_bot",
        "journey.outcome": "completed",
        "journey.temperature": "warm",
        "journey.handoff_route": "none",
    }


def test_readers_fall_back_to_the_public_properties_for_other_spans() -> None:
    span = ReadableSpan("made by hand", attributes={"a": 1}, events=(), links=())
    assert _fastspan.attributes_of(span) == {"a": 1}
    assert _fastspan.events_of(span) == ()
    assert _fastspan.links_of(span) == ()
    assert _fastspan.attributes_of(NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)) == {}


class Recorder(SpanProcessor):
    """Records which hooks it was called for (each subclass implements some of them)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []


class StartsOnly(Recorder):
    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        self.calls.append(("start", span.name))


class EndingOnly(Recorder):
    def _on_ending(self, span: Span) -> None:
        self.calls.append(("ending", span.name))


class EndsOnly(Recorder):
    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append(("end", span.name))


def test_the_processor_list_calls_each_processor_for_the_hooks_it_implements() -> None:
    provider = _fastspan.FastTracerProvider()
    first, second = StartsOnly(), EndingOnly()
    provider.add_span_processor(first)
    provider.add_span_processor(second)
    tracer = provider.get_tracer("tests.fastspan")
    with tracer.start_as_current_span("before"):
        pass
    third = EndsOnly()
    provider.add_span_processor(third)  # added while spans are being made: gets the next ones
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
        pass
    assert first.calls == [("start", "before"), ("start", "root"), ("start", "child")]
    assert second.calls == [("ending", "before"), ("ending", "child"), ("ending", "root")]
    assert third.calls == [("end", "child"), ("end", "root")]
    active = provider._active_span_processor
    assert isinstance(active, _fastspan._Processors)
    assert len(active._starts) == len(active._endings) == len(active._ends) == 1


class RandomCountingIds(CountingIds):
    """Counting ids that say they are random: the W3C random flag goes on every span's context."""

    def is_trace_id_random(self) -> bool:
        return True


def test_the_random_trace_id_flag_and_every_context_field_match_the_sdk() -> None:
    """The short path builds a span's context without SpanContext's constructor: same tuple, same flags."""

    def scenario(tracer: trace.Tracer) -> list[Any]:
        with tracer.start_as_current_span("root") as root, tracer.start_as_current_span("child") as child:
            pass
        return [tuple(root.get_span_context()), tuple(child.get_span_context())]

    results = []
    for provider_type in (TracerProvider, _fastspan.FastTracerProvider):
        provider = provider_type(id_generator=RandomCountingIds())
        results.append(scenario(provider.get_tracer("tests.fastspan")))
    sdk, fast = results
    assert fast == sdk
    flags = fast[1][3]
    assert flags.sampled and flags.random_trace_id and fast[1][5] is True


class OwnSpan(NonRecordingSpan):
    """A span type the fast look-up does not know: the API's path answers for it."""


def test_the_context_helpers_answer_as_the_api_does(caplog: pytest.LogCaptureFixture) -> None:
    assert _fastspan.current_span() is trace.get_current_span() is trace.INVALID_SPAN
    assert _fastspan.current_sampling() is None
    provider = _fastspan.FastTracerProvider(sampler=ParentBased(ALWAYS_ON))
    tracer = provider.get_tracer("tests.fastspan")
    span = tracer.start_span("made current")
    token = _fastspan.attach_span(span)
    try:
        assert _fastspan.current_span() is trace.get_current_span() is span
        assert _fastspan.current_sampling() is True
        unsampled = NonRecordingSpan(SpanContext(0xA, 0xB, is_remote=False))
        inner = _fastspan.attach_span(unsampled)
        assert _fastspan.current_span() is trace.get_current_span() is unsampled
        assert _fastspan.current_sampling() is False
        _fastspan.detach(inner)
        assert _fastspan.current_span() is span
        own = OwnSpan(SpanContext(0xC, 0xD, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        given = trace.set_span_in_context(own)
        assert _fastspan.current_span(given) is trace.get_current_span(given) is own
        assert _fastspan.current_span(context_api.Context()) is trace.INVALID_SPAN
    finally:
        _fastspan.detach(token)
    assert _fastspan.current_span() is trace.INVALID_SPAN
    span.end()
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        _fastspan.detach(token)  # used twice: logged as the API logs it, never raised
    assert "Failed to detach context" in caplog.text


def test_end_keeps_the_sdk_checks_and_works_with_any_processor(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor

    ends = EndsOnly()
    active = SynchronousMultiSpanProcessor()
    active.add_span_processor(ends)
    provider = _fastspan.FastTracerProvider(active_span_processor=active)  # not the processor list
    span = provider.get_tracer("tests.fastspan").start_span("custom processor")
    assert type(span) is _fastspan._FastSpan
    span.end()
    assert ends.calls == [("end", "custom processor")]
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
        span.end()
    assert "Calling end() on an ended span." in caplog.text
    assert ends.calls == [("end", "custom processor")]
    assert span.get_span_context() is span.context
