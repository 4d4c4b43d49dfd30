"""OTLP trace requests written straight to protobuf bytes (issue 14).

Internal. The OTLP exporter's encoding (``encode_spans`` from
opentelemetry-exporter-otlp-proto-common, then ``SerializeToString``) builds a
protobuf object for every span, attribute, value, event and status before it
serialises them: 60-120 µs of the export thread's CPU per span here, work that
competes with the event loop for the GIL. A webhook's 18 spans cost more to
encode than several of its own stages.

:func:`encode_request` writes the same ``ExportTraceServiceRequest``, byte for
byte, from the finished spans directly: the same grouping (by resource, then by
instrumentation scope, in order of first appearance), the same fields, the same
value types, the same span flags. A ``(key, str value)`` attribute that repeats
across spans (``db.system``, route names, bot names) is encoded once and kept in a
bounded cache. An attribute the SDK's encoder would refuse (a type it does not
know, an int beyond 64 bits) is left out with the same log line, as the SDK does.

:func:`grpc_span_exporter` is the SDK's gRPC ``OTLPSpanExporter`` whose request
is those bytes, sent on a stub that passes them through: retries, timeouts,
compression, headers, reconnection and its self-metrics stay the SDK's own. With
an exporter package whose internals differ from what this relies on, it returns
the SDK's exporter unchanged.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability._fastspan import (
    attributes_of,
    events_of,
    links_of,
    own_fields,
)

__all__ = ["encode_request", "grpc_span_exporter"]

_logger = logging.getLogger(__name__)

_EXPORT_METHOD: Final = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# SpanKind.INTERNAL is 0 in the API and 1 (SPAN_KIND_INTERNAL) in OTLP, and so on.
_KINDS: Final = {kind: bytes((0x30, kind.value + 1)) for kind in SpanKind}
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
# SpanFlags: the parent's "is remote" is known (0x100), and it was remote (0x200); field 16, fixed32.
_LOCAL_FLAGS: Final = b"\x85\x01" + struct.pack("<I", 0x100)
_REMOTE_FLAGS: Final = b"\x85\x01" + struct.pack("<I", 0x300)
_LINK_LOCAL_FLAGS: Final = b"\x35" + struct.pack("<I", 0x100)
_LINK_REMOTE_FLAGS: Final = b"\x35" + struct.pack("<I", 0x300)
_ONE_BYTE: Final = tuple(bytes((n,)) for n in range(0x80))
_CACHE_SIZE: Final = 4096
_CACHED_LENGTH: Final = 128


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    size = len(payload)
    return tag + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``'s body, by the same type tests, in the same order, as the SDK's encoder."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(item)) for item in value]))
    if isinstance(value, Mapping):
        body = b"".join([_field(b"\x0a", _key_value(str(key), item)) for key, item in value.items()])
        return _field(b"\x32", body)
    raise Exception(f"Invalid type {type(value)} of value {value}")  # the SDK's own words


def _key_value(key: str, value: Any) -> bytes:
    # proto3 leaves an empty string out; the value is a message, present even when empty.
    return (_field(b"\x0a", key.encode()) if key else b"") + _field(b"\x12", _any_value(value))


def _attribute(tag: bytes, key: str, value: Any) -> bytes | None:
    """One ``KeyValue`` field under ``tag``; ``None`` (and the SDK's log line) for one the SDK refuses."""
    try:
        return _field(tag, _key_value(key, value))
    except Exception as error:
        _logger.exception("Failed to encode key %s: %s", key, error)
        return None


def _attributes(tag: bytes, attributes: Mapping[str, Any]) -> list[bytes]:
    """Each attribute as a ``KeyValue`` field under ``tag``; one the SDK refuses is left out."""
    encoded = [_attribute(tag, key, value) for key, value in attributes.items()]
    return [field for field in encoded if field is not None]


class _SpanAttributes:
    """A span's attributes as fields 9; a short value that repeats is served from a cache.

    Cached: ``str`` values up to ``_CACHED_LENGTH`` characters (those that repeat are
    names, systems and routes; a message's text does not), ``bool`` and ``int``. The
    cache is emptied when it holds ``size`` pairs, so it stays small.
    """

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._cache: dict[tuple[str, Any, type], bytes] = {}

    def encode(self, attributes: Mapping[str, Any], out: list[bytes]) -> None:
        cache = self._cache
        for key, value in attributes.items():
            cls = type(value)
            cacheable = (cls is str and len(value) <= _CACHED_LENGTH) or cls is bool or cls is int
            if cacheable:
                # The type is part of the key: True == 1 == 1.0, and each is encoded differently.
                pair = (key, value, cls)
                encoded = cache.get(pair)
                if encoded is not None:
                    out.append(encoded)
                    continue
            encoded = _attribute(b"\x4a", key, value)
            if encoded is None:
                continue
            if cacheable:
                if len(cache) >= self._size:
                    cache.clear()
                cache[pair] = encoded
            out.append(encoded)


def _event(event: Any) -> bytes:
    parts = [b"\x09" + _FIXED64(event.timestamp)] if event.timestamp else []
    if event.name:
        parts.append(_field(b"\x12", event.name.encode()))
    parts += _attributes(b"\x1a", attributes_of(event))
    dropped = event.dropped_attributes
    if dropped:
        parts.append(b"\x20" + _varint(dropped))
    return _field(b"\x5a", b"".join(parts))


def _link(link: Any) -> bytes:
    context = link.context
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    parts += _attributes(b"\x22", attributes_of(link))
    dropped = link.dropped_attributes
    if dropped:
        parts.append(b"\x28" + _varint(dropped))
    parts.append(_LINK_REMOTE_FLAGS if context.is_remote else _LINK_LOCAL_FLAGS)
    return _field(b"\x6a", b"".join(parts))


def _status(status: Any) -> bytes:
    if status is None:
        return b""
    code, description = status.status_code.value, status.description
    body = _field(b"\x12", description.encode()) if description else b""
    if code:
        body += b"\x18" + _varint(code)
    return _field(b"\x7a", body)


class _Encoder:
    def __init__(self) -> None:
        self._span_attributes = _SpanAttributes()

    def span(self, span: ReadableSpan) -> bytes:
        fields = own_fields(span)
        if fields is not None:
            # The SDK's own span: its fields read directly, not through a property each.
            context, parent, name, kind = (
                fields["_context"],
                fields["_parent"],
                fields["_name"],
                fields["_kind"],
            )
            start, end, status = fields["_start_time"], fields["_end_time"], fields["_status"]
            # As ReadableSpan.dropped_*: a bounded collection's count, else none.
            stored = fields["_attributes"]
            dropped_attributes = stored.dropped if isinstance(stored, BoundedAttributes) else 0
            stored = fields["_events"]
            dropped_events = stored.dropped if isinstance(stored, BoundedList) else 0
            stored = fields["_links"]
            dropped_links = stored.dropped if isinstance(stored, BoundedList) else 0
        else:
            context, parent, name, kind = span.get_span_context(), span.parent, span.name, span.kind
            start, end, status = span.start_time, span.end_time, span.status
            dropped_attributes, dropped_events = span.dropped_attributes, span.dropped_events
            dropped_links = span.dropped_links
        # A SpanContext is a tuple: (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid).
        parts = [
            b"\x0a\x10" + context[0].to_bytes(16, "big"),
            b"\x12\x08" + context[1].to_bytes(8, "big"),
        ]
        trace_state = context[4]
        if trace_state:
            parts.append(_field(b"\x1a", ",".join([f"{k}={v}" for k, v in trace_state.items()]).encode()))
        if parent:
            parts.append(b"\x22\x08" + parent[1].to_bytes(8, "big"))
        if name:
            parts.append(_field(b"\x2a", name.encode()))
        parts.append(_KINDS[kind])
        if start:
            parts.append(b"\x39" + _FIXED64(start))
        if end:
            parts.append(b"\x41" + _FIXED64(end))
        self._span_attributes.encode(attributes_of(span), parts)
        if dropped_attributes:
            parts.append(b"\x50" + _varint(dropped_attributes))
        for event in events_of(span):
            parts.append(_event(event))
        if dropped_events:
            parts.append(b"\x60" + _varint(dropped_events))
        for link in links_of(span):
            parts.append(_link(link))
        if dropped_links:
            parts.append(b"\x70" + _varint(dropped_links))
        parts.append(_status(status))
        parts.append(_REMOTE_FLAGS if parent and parent[2] else _LOCAL_FLAGS)
        return _field(b"\x12", b"".join(parts))  # ScopeSpans.spans

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped by resource, then by scope, by equality and in order of first appearance, as the
        # SDK groups them; each distinct object is compared once (a Resource hashes its attributes).
        # The ids stay valid: every span holds its resource and scope for the whole call.
        groups: dict[Any, dict[Any, list[bytes]]] = {}
        by_resource: dict[int, dict[Any, list[bytes]]] = {}
        by_scope: dict[tuple[int, int], list[bytes]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            spans_of = by_scope.get((id(resource), id(scope)))
            if spans_of is None:
                scopes = by_resource.get(id(resource))
                if scopes is None:
                    scopes = groups.setdefault(resource, {})
                    by_resource[id(resource)] = scopes
                spans_of = scopes.setdefault(scope, [])
                by_scope[(id(resource), id(scope))] = spans_of
            spans_of.append(self.span(span))
        resource_spans = []
        for resource, scopes in groups.items():
            scope_spans = []
            for scope, encoded in scopes.items():
                body = _field(b"\x0a", _scope(scope)) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    body += _field(b"\x1a", scope.schema_url.encode())
                scope_spans.append(_field(b"\x12", body))
            body = _field(b"\x0a", b"".join(_attributes(b"\x0a", resource.attributes)))
            body += b"".join(scope_spans)
            if resource.schema_url:
                body += _field(b"\x1a", resource.schema_url.encode())
            resource_spans.append(_field(b"\x0a", body))
        return b"".join(resource_spans)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    body = _field(b"\x0a", scope.name.encode()) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", scope.version.encode())
    return body + b"".join(_attributes(b"\x1a", scope.attributes or {}))


_ENCODER = _Encoder()


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """``encode_spans(spans).SerializeToString()``, the same bytes, written directly."""
    return _ENCODER.request(spans)


class _PassThroughTraceStub:
    """The generated ``TraceServiceStub``, except that its request is already serialised bytes."""

    def __init__(self, channel: Any) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        # No request serializer: gRPC sends bytes as they are.
        self.Export = channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
            _registered_method=True,
        )


def grpc_span_exporter(**kwargs: Any) -> Any:
    """The SDK's gRPC ``OTLPSpanExporter(**kwargs)``, encoding with :func:`encode_request`."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if not _wire_ready(OTLPSpanExporter):
        return OTLPSpanExporter(**kwargs)
    return _wire_class(OTLPSpanExporter)(**kwargs)


def _wire_ready(base: type) -> bool:
    return all(
        callable(getattr(base, name, None))
        for name in ("_initialize_channel_and_stub", "_translate_data", "_export")
    )


@functools.cache
def _wire_class(base: type) -> type:
    class WireOTLPSpanExporter(base):  # type: ignore[misc]
        """The SDK's gRPC span exporter; its request is written by :func:`encode_request`."""

        def _initialize_channel_and_stub(self) -> None:
            super()._initialize_channel_and_stub()
            self._client = _PassThroughTraceStub(self._channel)

        def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:
            return encode_request(data)

    return WireOTLPSpanExporter
