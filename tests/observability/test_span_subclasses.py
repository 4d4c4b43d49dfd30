"""A finished span of a ReadableSpan subclass is exported as its properties say, by every exporter.

A processor of the user's may hand on a wrapper that overrides what a span shows (a
name, a filtered attribute set, its status). The SDK's own exporters read spans
through their properties; the shorter paths that read the SDK's fields directly
must not bypass such an override.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ghl_real_estate_ai.observability._otlpwire import encode_request
from ghl_real_estate_ai.observability._writer import _span, encode_batch
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader

TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C


class Filtered(ReadableSpan):
    """A wrapper as a user's processor might make: renamed, one attribute hidden, events dropped, failed."""

    @property
    def name(self) -> str:
        return "checkout (filtered)"

    @property
    def attributes(self) -> Mapping[str, Any]:
        return MappingProxyType({k: v for k, v in super().attributes.items() if k != "card.number"})

    @property
    def events(self) -> Sequence[Event]:
        return ()

    @property
    def status(self) -> Status:
        return Status(StatusCode.ERROR, "declined")


def filtered_span() -> Filtered:
    # Its fields hold what the SDK would store: a BoundedAttributes, a real event, an unset status.
    return Filtered(
        name="checkout",
        context=SpanContext(TRACE_ID, 0xEEE19B7EC3C1B174, False, TraceFlags(TraceFlags.SAMPLED)),
        resource=Resource.create({"service.name": "shop"}),
        attributes=BoundedAttributes(16, {"card.number": "4111111111111111", "cart.items": 3}),
        events=[Event("card.read", {"card.number": "4111111111111111"}, 5)],
        kind=SpanKind.SERVER,
        instrumentation_scope=InstrumentationScope("shop"),
        start_time=1_000,
        end_time=2_000,
    )


def test_the_direct_otlp_encoding_gives_the_sdks_bytes_for_a_subclass() -> None:
    span = filtered_span()
    encoded = encode_request([span])
    assert encoded == encode_spans([span]).SerializeToString()
    assert b"checkout (filtered)" in encoded and b"declined" in encoded
    assert b"4111111111111111" not in encoded


def test_the_writer_process_gets_what_the_properties_say() -> None:
    span = filtered_span()
    _, new_resources, rows = marshal.loads(encode_batch([span], {}))
    resources = {key: Resource(attributes, schema) for key, attributes, schema in new_resources}
    rebuilt = _span(rows[0], resources)
    assert rebuilt.name == "checkout (filtered)"
    assert dict(rebuilt.attributes or {}) == {"cart.items": 3}
    assert list(rebuilt.events) == []
    assert (rebuilt.status.status_code, rebuilt.status.description) == (StatusCode.ERROR, "declined")


def test_the_local_store_keeps_what_the_properties_say(tmp_path: Path) -> None:
    exporter = LocalSpanExporter(tmp_path / "traces.db")
    assert exporter.export([filtered_span()]).name == "SUCCESS"
    exporter.shutdown()
    (record,) = LocalTraceReader(tmp_path / "traces.db").get_trace(f"{TRACE_ID:032x}")
    assert record.name == "checkout (filtered)"
    assert record.attributes == {"cart.items": 3}
    assert record.events == []
    assert (record.status_code, record.status_message) == ("ERROR", "declined")
