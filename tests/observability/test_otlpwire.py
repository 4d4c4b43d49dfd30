"""The OTLP request written directly is the SDK encoder's, byte for byte (issue 14).

``_otlpwire.encode_request`` replaces ``encode_spans(spans).SerializeToString()`` in the
gRPC span exporter. These tests encode spans of every shape both ways and require the
same bytes: the SDK's provider and ours, every attribute value type, events, links,
remote parents, trace state, statuses, dropped counts, several resources and scopes,
spans made by hand (as redaction makes them) and values the SDK refuses. Then the
exporter the set-up builds sends a real gRPC receiver what the SDK would have sent,
including after the collector was down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from ghl_real_estate_ai.observability import _otlpwire
from ghl_real_estate_ai.observability._exporters import OtlpConfig, build_otlp_span_exporter
from ghl_real_estate_ai.observability._fastspan import FastTracerProvider
from ghl_real_estate_ai.observability._otlpwire import encode_request
from tests.observability.receivers import OTLPGrpcReceiver, closed_port

VALUES: dict[str, object] = {
    "text": "Maria wants a 3-bed in Rancho Cucamonga",
    "empty": "",
    "unicode": "señora 東京 🏠",
    "long": "x" * 1000,
    "yes": True,
    "no": False,
    "zero": 0,
    "one": 1,
    "negative": -42,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "float": 0.25,
    "float.zero": 0.0,
    "float.negative": -1e300,
    "nan": math.nan,
    "strings": ("a", "", "b"),
    "bools": (True, False),
    "ints": (1, -1, 2**40),
    "floats": (1.5, -0.0),
    "nothing": (),
}

REMOTE_PARENT = SpanContext(
    trace_id=0x0123456789ABCDEF0123456789ABCDEF,
    span_id=0x0123456789ABCDEF,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value"), ("other", "x")]),
)


def _spans_of(provider: TracerProvider) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("jorge.tests", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0")
    other = provider.get_tracer("jorge.other")
    with tracer.start_as_current_span("lead_bot.process_lead_conversation", kind=SpanKind.SERVER) as root:
        root.set_attributes(VALUES)
        root.add_event("intent.decided", {"intent": "buy", "score": 0.9, "hot": True})
        root.add_event("")
        with other.start_as_current_span("POST /conversations/messages", kind=SpanKind.CLIENT) as call:
            call.set_attribute("http.response.status_code", 503)
            call.set_status(Status(StatusCode.ERROR, "GHL answered 503"))
            call.record_exception(RuntimeError("boom"))
        for kind in SpanKind:
            with tracer.start_as_current_span(f"kind {kind.name}", kind=kind) as span:
                span.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("") as unnamed:
            unnamed.set_attribute("db.system", "sqlite")
    linked = tracer.start_span(
        "under a remote parent",
        context=set_span_in_context(NonRecordingSpan(REMOTE_PARENT)),
        links=[Link(REMOTE_PARENT, {"link.kind": "follows"}), Link(root.get_span_context())],
    )
    linked.end()
    return list(exporter.get_finished_spans())


def _assert_same_bytes(spans: list[ReadableSpan]) -> None:
    expected = encode_spans(spans).SerializeToString()
    assert encode_request(spans) == expected
    # Twice: the second time the repeated attributes come from the cache.
    assert encode_request(spans) == expected


@pytest.mark.parametrize("provider_class", [TracerProvider, FastTracerProvider])
def test_the_spans_of_a_provider_encode_to_the_sdk_bytes(
    provider_class: type[TracerProvider],
) -> None:
    spans = _spans_of(provider_class(resource=Resource.create({"service.name": "jorge"})))
    assert len(spans) == 9
    _assert_same_bytes(spans)


def test_dropped_attributes_events_and_links_are_counted_as_the_sdk_counts_them() -> None:
    limits = SpanLimits(max_span_attributes=3, max_events=1, max_links=1, max_event_attributes=1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("limits")
    span = tracer.start_span("crowded", links=[Link(REMOTE_PARENT), Link(REMOTE_PARENT, {"a": 1})])
    span.set_attributes({f"key{n}": n for n in range(7)})
    span.add_event("first", {"a": 1, "b": 2})
    span.add_event("second")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert (finished.dropped_attributes, finished.dropped_events, finished.dropped_links) == (
        4,
        1,
        1,
    )
    _assert_same_bytes([finished])


def _by_hand(
    name: str, resource: Resource, scope: InstrumentationScope | None, **attributes: object
) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        context=SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        parent=None,
        resource=resource,
        attributes=attributes,
        events=(Event("made", {"by": "hand"}, timestamp=1_700_000_000_000_000_000),),
        kind=SpanKind.PRODUCER,
        status=Status(StatusCode.UNSET),
        start_time=1_700_000_000_000_000_000,
        end_time=1_700_000_000_500_000_000,
        instrumentation_scope=scope,
    )


def test_resources_and_scopes_group_by_equality_in_order_of_first_appearance() -> None:
    # Two Resource objects that are equal share one ResourceSpans, as in the SDK's encoder;
    # spans keep the batch's order inside each group.
    jorge, jorge_again = Resource({"service.name": "jorge"}), Resource({"service.name": "jorge"})
    other = Resource({"service.name": "other"}, schema_url="https://example.com/schema")
    scope = InstrumentationScope("s", "1", "https://example.com/scope", {"scope.attr": "v"})
    scope_again = InstrumentationScope("s", "1", "https://example.com/scope", {"scope.attr": "v"})
    spans = [
        _by_hand("a", jorge, scope),
        _by_hand("b", other, None),
        _by_hand("c", jorge_again, scope_again),
        _by_hand("d", jorge, None),
        _by_hand("e", Resource({}), InstrumentationScope("")),
        _by_hand("f", other, scope),
    ]
    _assert_same_bytes(spans)
    request = ExportTraceServiceRequest.FromString(encode_request(spans))
    assert [len(group.scope_spans) for group in request.resource_spans] == [2, 2, 1]
    assert [span.name for span in request.resource_spans[0].scope_spans[0].spans] == ["a", "c"]


def test_values_only_a_span_made_by_hand_can_hold_are_encoded_as_the_sdk_encodes_them() -> None:
    resource = Resource({"service.name": "jorge"})
    span = _by_hand(
        "hand made",
        resource,
        None,
        none=None,
        raw=b"\x00\xff",
        mapping={"nested": {"deeper": [1, "two", None]}, 3: 4.5},
        array=["mixed", 1, True, None, 2.5, b"z", ("inner",)],
    )
    _assert_same_bytes([span])


def test_a_value_the_sdk_refuses_is_left_out_with_the_sdks_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    span = _by_hand("refused", Resource({}), None, before="kept", huge=2**64, odd=object(), after="kept")
    with caplog.at_level(logging.ERROR):
        _assert_same_bytes([span])
    refused = [record.getMessage() for record in caplog.records if record.name == _otlpwire.__name__]
    assert len(refused) == 4  # two keys, encoded twice
    assert refused[0].startswith("Failed to encode key huge")


def test_equal_values_of_different_types_are_not_confused_by_the_cache() -> None:
    # True == 1 == 1.0 and they hash alike; each must keep its own encoding.
    resource = Resource({})
    spans = [
        _by_hand(str(n), resource, None, flag=value) for n, value in enumerate([True, 1, 1.0, "1", 1, True])
    ]
    _assert_same_bytes(spans)
    decoded = ExportTraceServiceRequest.FromString(encode_request(spans))
    kinds = [
        span.attributes[0].value.WhichOneof("value")
        for span in decoded.resource_spans[0].scope_spans[0].spans
    ]
    assert kinds == [
        "bool_value",
        "int_value",
        "double_value",
        "string_value",
        "int_value",
        "bool_value",
    ]


def test_the_cache_stays_within_its_size_and_keeps_encoding_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = _otlpwire._Encoder()
    encoder._span_attributes = _otlpwire._SpanAttributes(size=8)
    monkeypatch.setattr(_otlpwire, "_ENCODER", encoder)
    resource = Resource({})
    spans = [_by_hand(f"s{n}", resource, None, id=f"contact-{n}", system="sqlite") for n in range(40)]
    _assert_same_bytes(spans)
    assert len(encoder._span_attributes._cache) <= 8


# --- the exporter the set-up builds ---------------------------------------------------


@pytest.fixture
def webhook_like_spans() -> Iterator[list[ReadableSpan]]:
    yield _spans_of(FastTracerProvider(resource=Resource.create({"service.name": "jorge"})))


def test_the_built_grpc_exporter_sends_what_the_sdk_would_send(
    webhook_like_spans: list[ReadableSpan],
) -> None:
    with OTLPGrpcReceiver() as receiver:
        exporter, label = build_otlp_span_exporter(
            "otlp", OtlpConfig(receiver.endpoint, {"x-team": "jorge"}, 5.0)
        )
        try:
            assert isinstance(exporter, OTLPSpanExporter)
            assert type(exporter) is not OTLPSpanExporter  # the one that writes its own bytes
            assert exporter.export(webhook_like_spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        (request,) = receiver.trace_requests()
        assert request == encode_spans(webhook_like_spans)
        assert receiver.headers()[0]["x-team"] == "jorge"
        assert "plaintext" in label


def test_the_exporter_reconnects_with_its_own_stub_after_the_collector_was_down(
    webhook_like_spans: list[ReadableSpan],
) -> None:
    endpoint = closed_port()
    exporter, _ = build_otlp_span_exporter("otlp", OtlpConfig(endpoint, {}, 1.0))
    try:
        first_channel = exporter._channel
        assert exporter.export(webhook_like_spans[:2]) is SpanExportResult.FAILURE
        # The SDK made a new channel after UNAVAILABLE; the stub on it is still ours.
        assert exporter._channel is not first_channel
        assert isinstance(exporter._client, _otlpwire._PassThroughTraceStub)
        port = int(endpoint.rsplit(":", 1)[1])
        with OTLPGrpcReceiver(port=port) as receiver:
            # The new channel may still be in gRPC's reconnect back-off when the collector
            # comes up: export until it goes through (each try is bounded by the 1 s timeout).
            for _ in range(60):
                if exporter.export(webhook_like_spans) is SpanExportResult.SUCCESS:
                    break
            else:
                pytest.fail("the exporter never reached the collector once it was up")
            requests = receiver.trace_requests()
            assert requests and all(request == encode_spans(webhook_like_spans) for request in requests)
    finally:
        exporter.shutdown()


def test_an_exporter_package_without_the_expected_internals_gets_the_sdks_exporter() -> None:
    class Unfamiliar:
        pass

    assert _otlpwire._wire_ready(OTLPSpanExporter)
    assert not _otlpwire._wire_ready(Unfamiliar)
