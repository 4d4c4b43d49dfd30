"""The local store writes exactly the rows it always wrote, whatever shortcut builds them.

``reference_rows`` is the row building of the store before it was made faster
(one property read per field, every attribute converted, ``json.dumps`` per
value, one INSERT per row); every test here compares what the store holds
with it, on spans with every kind of value an attribute can carry.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ghl_real_estate_ai.observability import local_store
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter
from ghl_real_estate_ai.observability.query import attribute_text

# --- the store's row building as it was (the reference) -------------------------------


def _ref_json_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_ref_json_value(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _ref_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    return {key: _ref_json_value(value) for key, value in attributes.items()}


def _ref_dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def reference_rows(
    spans: Sequence[ReadableSpan], resource_ids: Mapping[int, int]
) -> tuple[list[tuple[Any, ...]], set[tuple[str, str, int]]]:
    """The spans and span_attributes rows the store wrote for ``spans`` (ids from 1)."""
    span_rows: list[tuple[Any, ...]] = []
    index_rows: set[tuple[str, str, int]] = set()
    ref = 0
    for span in spans:
        context = span.context
        if context is None:
            continue
        ref += 1
        start = span.start_time or 0
        end = span.end_time or start
        attributes = _ref_attributes(span.attributes)
        status = span.status.status_code.name
        kind = span.kind.name
        service = str(span.resource.attributes.get("service.name", "unknown_service"))
        events = [
            {"name": e.name, "timestamp_ns": e.timestamp, "attributes": _ref_attributes(e.attributes)}
            for e in span.events
        ]
        links = [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": _ref_attributes(link.attributes),
            }
            for link in span.links
        ]
        span_rows.append(
            (
                ref,
                format(context.trace_id, "032x"),
                format(context.span_id, "016x"),
                format(span.parent.span_id, "016x") if span.parent is not None else None,
                span.name,
                kind,
                start,
                end,
                max(0, end - start),
                status,
                span.status.description or None,
                service,
                span.instrumentation_scope.name if span.instrumentation_scope else None,
                resource_ids[id(span.resource)],
                _ref_dumps(attributes),
                _ref_dumps(events) if events else None,
                _ref_dumps(links) if links else None,
            )
        )
        for key, value in attributes.items():
            text = value if type(value) is str else attribute_text(value)
            if len(text) <= 256:
                index_rows.add((key, text, ref))
        if kind != "INTERNAL":
            index_rows.add(("span.kind", kind.lower(), ref))
        if status != "UNSET":
            index_rows.add(("otel.status_code", status, ref))
        if status == "ERROR":
            index_rows.add(("error", attribute_text(True), ref))
    return span_rows, index_rows


# --- spans with every kind of value ---------------------------------------------------


class Level(IntEnum):
    HIGH = 3


class Odd:
    def __str__(self) -> str:
        return "odd-object"


RESOURCE = Resource.create({"service.name": "enterprisehub", "deployment.environment": "test"})
OTHER_RESOURCE = Resource.create({"deployment.environment": "other"})  # no service.name: unknown_service
SCOPE = InstrumentationScope("tests.rows", "1.0")

ODD_VALUES: dict[str, Any] = {
    "plain.str": "hello",
    "unicode.str": "Grüße — 東京 ✓",
    "quote.str": 'say "hi"\n\\ and \t tab',
    "empty.str": "",
    "long.str": "x" * 300,  # in the JSON, not indexed
    "edge.str": "y" * 256,  # indexed: exactly the limit
    "bool.true": True,
    "bool.false": False,
    "int.small": 7,
    "int.negative": -12,
    "int.huge": 10**300,  # indexed text longer than 256: not indexed
    "float.finite": 0.85,
    "float.whole": 3.0,
    "float.nan": float("nan"),
    "float.inf": float("inf"),
    "float.ninf": float("-inf"),
    "tuple.str": ("a", "b"),
    "tuple.mixed": ("a", 1, True, 2.5),
    "tuple.nan": (1.0, float("nan")),
    "tuple.unicode": ("é", "ü"),
    "tuple.empty": (),
    "list.int": [1, 2, 3],
    "none": None,
    "bytes": b"raw",
    "dict": {"a": 1},
    "int.enum": Level.HIGH,
    "object": Odd(),
    "tuple.none": ("a", None),
    "span.kind": "client",  # equal to the derived tag: stored once
}


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, False, TraceFlags(1))


def odd_spans() -> list[ReadableSpan]:
    """Hand-made spans: odd values, events, links, every status and kind, two resources, gaps."""
    trace = 0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0
    spans = [
        ReadableSpan(
            name="odd values",
            context=_context(trace, 1),
            parent=_context(trace, 2),
            resource=RESOURCE,
            attributes=dict(ODD_VALUES),
            events=[
                Event("plain event", {"confidence": 0.5, "intent": "buyer"}, 1_000),
                Event("odd event", {"nan": float("nan"), "t": (1, "x"), "none": None}, 2_000),
                Event("empty event", None, 3_000),
            ],
            links=[Link(_context(trace + 1, 9), {"link.kind": "follows", "n": 2}), Link(_context(5, 6))],
            kind=SpanKind.CLIENT,
            status=Status(StatusCode.ERROR, "it broke: é"),
            start_time=100,
            end_time=250,
            instrumentation_scope=SCOPE,
        ),
        ReadableSpan(
            name="root, no attributes",
            context=_context(trace, 2),
            resource=RESOURCE,
            kind=SpanKind.SERVER,
            status=Status(StatusCode.OK),
            start_time=50,
            end_time=400,
            instrumentation_scope=SCOPE,
        ),
        ReadableSpan(name="no context", context=None, resource=RESOURCE),  # skipped
        ReadableSpan(
            name="no times, other resource, no scope",
            context=_context(trace, 3),
            resource=OTHER_RESOURCE,
            attributes=MappingProxyType({"proxied": "yes", "n": 1}),  # not a dict
        ),
        ReadableSpan(
            name="end before start",
            context=_context(trace, 4),
            resource=RESOURCE,
            attributes={"a": "b", "f": 1.5},
            kind=SpanKind.CONSUMER,
            start_time=500,
            end_time=400,
        ),
        ReadableSpan(
            name="producer",
            context=_context(trace, 5),
            resource=OTHER_RESOURCE,
            attributes={"workflow.node_name": "n", "workflow.success": True, "workflow.duration_ms": 12.25},
            kind=SpanKind.PRODUCER,
            start_time=0,
            end_time=0,
        ),
    ]
    # One odd value among plain ones: each must still take the conversion.
    for number, (key, value) in enumerate(ODD_VALUES.items()):
        if type(value) is not str:
            attributes = {"plain": "text", "count": 2, "ok": True, "ratio": 0.5, key: value}
            spans.append(ReadableSpan(name=key, context=_context(trace, 100 + number), attributes=attributes))
    return spans


def sdk_spans() -> list[ReadableSpan]:
    """Spans the SDK made (BoundedAttributes, bounded event lists), as an exporter gets them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.rows")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_attributes({"http.status_code": 200, "session.id": "c-1", "ratio": 0.25})
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("tags", ["a", "b"])
            child.set_attribute("workflow.success", False)
            child.add_event("intent_detected", {"intent_type": "buyer", "confidence": 0.85})
            child.set_status(Status(StatusCode.ERROR, "bad"))
    provider.shutdown()
    return list(memory.get_finished_spans())


class NotExactlyReadable(ReadableSpan):
    """A subclass: the store reads it through the public properties."""


def subclass_spans() -> list[ReadableSpan]:
    return [
        NotExactlyReadable(
            name="subclass",
            context=_context(77, 1),
            resource=RESOURCE,
            attributes={"k": "v", "x": float("nan")},
            events=[Event("e", {"a": 1}, 5)],
            kind=SpanKind.CLIENT,
            start_time=1,
            end_time=2,
        )
    ]


def stored(path: Path) -> tuple[list[tuple[Any, ...]], set[tuple[str, str, int]], dict[int, str]]:
    conn = sqlite3.connect(path)
    try:
        spans = conn.execute("SELECT * FROM spans ORDER BY id").fetchall()
        index = set(conn.execute("SELECT key, value, span_ref FROM span_attributes").fetchall())
        resources = dict(conn.execute("SELECT id, attributes_json FROM resources").fetchall())
    finally:
        conn.close()
    return spans, index, resources


def _resource_ids(spans: Sequence[ReadableSpan], resources: Mapping[int, str]) -> dict[int, int]:
    by_text = {text: row_id for row_id, text in resources.items()}
    return {
        id(span.resource): by_text[_ref_dumps(_ref_attributes(span.resource.attributes))]
        for span in spans
        if span.context is not None
    }


@pytest.mark.parametrize("make", [odd_spans, sdk_spans, subclass_spans], ids=["odd", "sdk", "subclass"])
def test_the_rows_are_those_the_store_always_wrote(tmp_path: Path, make: Any) -> None:
    """spans and span_attributes rows equal the reference's, column by column."""
    spans = make()
    exporter = LocalSpanExporter(tmp_path / "traces.db")
    assert exporter.export(spans).name == "SUCCESS"
    exporter.shutdown()
    span_rows, index_rows, resources = stored(tmp_path / "traces.db")
    expected_spans, expected_index = reference_rows(spans, _resource_ids(spans, resources))
    assert span_rows == expected_spans
    assert index_rows == expected_index


def test_batches_larger_than_one_statement_keep_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows split over several multi-row statements (and a remainder) are all written, once."""
    monkeypatch.setattr(local_store, "_MAX_PARAMETERS", 40)  # 2 span rows, 13 index rows a statement
    spans = odd_spans() * 7 + sdk_spans() * 5
    exporter = LocalSpanExporter(tmp_path / "traces.db")
    assert exporter.export(spans).name == "SUCCESS"
    assert exporter.export(spans[:3]).name == "SUCCESS"  # ids go on from the last batch
    exporter.shutdown()
    span_rows, index_rows, resources = stored(tmp_path / "traces.db")
    both = [*spans, *spans[:3]]
    expected_spans, expected_index = reference_rows(both, _resource_ids(both, resources))
    assert span_rows == expected_spans
    assert index_rows == expected_index


def test_a_failing_batch_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index row SQLite refuses rolls the whole batch back, spans included."""
    exporter = LocalSpanExporter(tmp_path / "traces.db")
    assert exporter.export(sdk_spans()).name == "SUCCESS"
    before = stored(tmp_path / "traces.db")
    real = local_store._insert_rows

    def broken(conn: sqlite3.Connection, head: str, row: str, values: list[object]) -> None:
        if head is local_store._INDEX_INSERT:
            raise sqlite3.OperationalError("disk I/O error")
        real(conn, head, row, values)

    monkeypatch.setattr(local_store, "_insert_rows", broken)
    assert exporter.export(odd_spans()).name == "FAILURE"
    exporter.shutdown()
    assert stored(tmp_path / "traces.db") == before


DUMPED: list[Any] = [
    {},
    {"a": "Grüße — 東京 ✓", "b": 'q"\n\\\t\x00', "c": [1, 2.5, True, None, "x"], "d": {"e": []}},
    [{"name": "e", "timestamp_ns": 10**18, "attributes": {"f": float("nan"), "g": float("-inf")}}],
    {7: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    {"big": 10**40, "small": 1e-300, "neg": -0.0},
]


@pytest.mark.parametrize("c_encoder", [True, False], ids=["C encoder", "fallback"])
def test_dumps_is_json_dumps_with_the_store_options(monkeypatch: pytest.MonkeyPatch, c_encoder: bool) -> None:
    if not c_encoder:
        monkeypatch.setattr(local_store, "_C_ENCODE", None)
    for value in DUMPED:
        assert local_store._dumps(value) == _ref_dumps(value)
    with pytest.raises(TypeError):
        local_store._dumps({("tuple", "key"): 1})
    assert local_store._dumps({"after": "an error"}) == '{"after":"an error"}'
