"""The writer's shortcuts change nothing: rebuilt spans and redaction results as before.

The writer rebuilds each span from the pipe's row reusing immutable pieces (trace
flags, a status without description, the instrumentation scope), and redaction
handles its two commonest cases inline. Each test compares with the former code,
kept here as the reference.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ghl_real_estate_ai.observability import _writer, redaction

# --- the writer's rebuild ----------------------------------------------------------------


def _ref_context(trace_id: int, span_id: int, flags: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(flags))


def reference_span(row: tuple[Any, ...], resources: dict[int, Resource]) -> ReadableSpan:
    """_writer._span as it was."""
    (trace_id, span_id, flags, parent_id, parent_remote, name, kind, start, end, code, description,
     attributes, events, links, scope_name, scope_version, resource_key) = row  # fmt: skip
    kinds, codes = tuple(SpanKind), tuple(StatusCode)
    scope = InstrumentationScope(scope_name, scope_version) if scope_name is not None else None
    return ReadableSpan(
        name=name,
        context=_ref_context(trace_id, span_id, flags),
        parent=_ref_context(trace_id, parent_id, flags, parent_remote) if parent_id is not None else None,
        resource=resources.get(resource_key) or Resource.get_empty(),
        attributes=attributes,
        events=[Event(e_name, e_attributes, e_time) for e_name, e_time, e_attributes in events or ()],
        links=[Link(_ref_context(t, s, f), a) for t, s, f, a in links or ()],
        kind=kinds[kind] if 0 <= kind < len(kinds) else SpanKind.INTERNAL,
        status=Status(codes[code], description) if description else Status(codes[code]),
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )


def shape(span: ReadableSpan) -> tuple[Any, ...]:
    """Everything a span shows an exporter, as plain values."""
    scope = span.instrumentation_scope
    return (
        span.name,
        tuple(span.context) if span.context else None,
        type(span.context.trace_flags) if span.context else None,
        tuple(span.parent) if span.parent else None,
        span.resource.attributes,
        span.resource.schema_url,
        dict(span.attributes or {}),
        [(e.name, dict(e.attributes or {}), e.timestamp) for e in span.events],
        [(tuple(link.context), dict(link.attributes or {})) for link in span.links],
        span.kind,
        span.status.status_code,
        span.status.description,
        span.start_time,
        span.end_time,
        (scope.name, scope.version, scope.schema_url, dict(scope.attributes)) if scope else None,
        type(span),
        type(span.events),
        type(span.links),
    )


ROWS = [
    # a child under a remote parent, sampled, with events and a link
    (1 << 100, 11, 1, 10, True, "child", 2, 100, 200, 2, "broke", {"a": "b", "n": 1},
     [("e1", 150, {"x": 1.5}), ("e2", 160, {})], [(5, 6, 0, {"k": "v"}), (7, 8, 1, {})],
     "lib", "1.2", 1),
    # a root, unsampled, no events or links, no scope version
    (2, 12, 0, None, False, "root", 1, 50, 300, 1, None, {}, None, None, "lib", None, 1),
    # a description on a non-ERROR status is dropped, as the SDK does
    (3, 13, 1, 10, False, "ok with text", 0, 1, 2, 1, "ignored", {"t": (1, 2)}, [], [], None, None, 2),
    # flags beyond one byte, an unknown kind, an unknown resource
    (4, 14, 300, None, False, "odd", 99, 0, 0, 0, None, {"f": float("nan")}, None, None, "x", "", 42),
    # the same scope again: shared, and the same as a new one
    (5, 15, 1, None, False, "again", 3, 5, 9, 0, "", {}, None, None, "lib", "1.2", 1),
]  # fmt: skip


def test_rebuilt_spans_are_the_same_as_before() -> None:
    resources = {1: Resource({"service.name": "svc"}, "https://schema"), 2: Resource({})}
    for row in ROWS:
        assert shape(_writer._span(row, resources)) == shape(reference_span(row, resources))


def test_the_scope_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_writer, "_scopes", {})
    for n in range(_writer._MAX_SCOPES * 2 + 3):
        scope = _writer._scope(f"lib{n}", None)
        assert (scope.name, scope.version) == (f"lib{n}", None)
        assert len(_writer._scopes) <= _writer._MAX_SCOPES
    assert _writer._scope("lib-a", "1") is _writer._scope("lib-a", "1")
    assert _writer._scope("lib-a", "1") is not _writer._scope("lib-a", "2")


# --- redaction ---------------------------------------------------------------------------


def reference_redacted_or_none(
    attributes: dict[str, Any] | None, capture_content: bool
) -> dict[str, Any] | None:
    """redaction._redacted_or_none as it was: _redact_value for every attribute."""
    if not attributes:
        return None
    changed: dict[str, Any] | None = None
    for key, value in attributes.items():
        cleaned = redaction._redact_value(key, value, capture_content)
        if cleaned is not value and cleaned != value:
            if changed is None:
                changed = dict(attributes)
            changed[key] = cleaned
    return changed


VALUES: list[Any] = [
    "plain",
    "",
    "call me at (555) 123-4567",
    "write to jane.doe@example.com",
    "+447911123456",
    "order 2024-01-15 cost 1234567",
    "x" * 65,  # just past the text cache's length
    "555-123-4567 " * 20,  # long, with phone numbers
    "Grüße jane@example.de",
    True,
    False,
    0,
    5551234567,
    3.5,
    float("nan"),
    ("a", "jane@example.com"),
    ("plain", 1),
    [1, 2],
    (),
    None,
    b"jane@example.com",
]
KEYS = [
    "workflow.node_name",  # plain text
    "message.body",  # content
    "body",
    "http.request.header.authorization",  # secret
    "api_key",
    "url.full",  # URL
    "http.url",
    "url.query",
    "db.statement",
    "exception.message",  # pattern only
    "Phone",  # content, any case
]


@pytest.mark.parametrize("capture_content", [False, True])
def test_redaction_gives_what_it_gave_before(capture_content: bool) -> None:
    """Every key kind x every value kind, with the caches cold, then warm, then full."""
    urls = ["https://u:p@example.com/a?x=1&email=jane@example.com", "/api/v1/contacts/5551234567?q=1"]
    sql = ["SELECT * FROM t WHERE email = 'jane@example.com'", "UPDATE t SET n = 1"]
    for round_ in range(3):
        if round_ == 0:
            redaction._plans.clear()
            redaction._texts.clear()
            redaction._parsed.clear()
            redaction._kept.clear()
        if round_ == 2:  # caches at their bound: the next entry clears them
            while len(redaction._texts) < redaction._MAX_CACHED:
                filler = f"filler {len(redaction._texts)}"
                redaction._texts[filler] = filler
            while len(redaction._kept) < redaction._MAX_CACHED:
                redaction._kept.add(("filler", f"filler {len(redaction._kept)}"))
        for key in KEYS:
            for value in [*VALUES, *urls, *sql]:
                attributes = {"before": "ok", key: value, "after": 1}
                got = redaction._redacted_or_none(attributes, capture_content)
                want = reference_redacted_or_none(attributes, capture_content)
                assert got == want or (got is None and want is None), (key, value)
                if want is not None:
                    assert got is not None and [type(v) for v in got.values()] == [
                        type(v) for v in want.values()
                    ]
        assert len(redaction._texts) <= redaction._MAX_CACHED
        assert len(redaction._kept) <= redaction._MAX_CACHED


def test_nan_and_unchanged_values_are_not_reported_as_changes() -> None:
    """A value that redacts to itself (even NaN, unequal to itself) leaves the attributes alone."""
    assert redaction._redacted_or_none({"a": float("nan"), "b": "x", "c": (1, 2)}, False) is None
    assert redaction._redacted_or_none({"a": "jane@example.com"}, False) == {"a": "[REDACTED_EMAIL]"}


@pytest.mark.parametrize("capture_content", [False, True])
def test_a_rebuilt_span_is_redacted_as_a_full_copy_would_be(capture_content: bool) -> None:
    """The writer's spans hold plain dicts, read as they are: the result is redact_span's."""
    resources = {1: Resource({"service.name": "svc"})}
    attributes = {
        "workflow.node_name": "lead_bot.reply",
        "message.body": "call me at 555-123-4567",
        "note": "jane@example.com",
        "http.request.header.authorization": "Bearer x",
        "n": 3,
        "tags": ("a", "jane@example.com"),
    }
    row = (9, 19, 1, None, False, "reply to jane@example.com", 0, 1, 2, 0, None, attributes,
           [("sent to 555-123-4567", 1, {"to": "jane@example.com"})], [(1, 2, 1, {"phone": "x"})],
           "lib", None, 1)  # fmt: skip
    span = _writer._span(row, resources)
    cleaned = redaction._redact_span_if_needed(span, capture_content)
    full = redaction.redact_span(span, capture_content)
    assert shape(cleaned)[:15] == shape(full)[:15]
    assert span.attributes == attributes  # the rebuilt span itself is left as it was
    plain = _writer._span((*row[:11], {"workflow.node_name": "n", "n": 1}, *row[12:]), resources)
    assert dict(redaction._redact_span_if_needed(plain, capture_content).attributes) == {
        "workflow.node_name": "n",
        "n": 1,
    }


def test_what_capture_on_keeps_is_still_redacted_with_capture_off() -> None:
    """The kept-values cache never carries a decision from one setting to the other."""
    redaction._kept.clear()
    attributes = {"message.body": "call 555-123-4567", "note": "jane@example.com", "x": "plain"}
    assert redaction._redacted_or_none(attributes, True) is None
    assert redaction._redacted_or_none(attributes, False) == {
        "message.body": "[REDACTED]",
        "note": "[REDACTED_EMAIL]",
        "x": "plain",
    }
    assert redaction._redacted_or_none(attributes, True) is None
