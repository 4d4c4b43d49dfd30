"""Store-operation spans (``storage/_spans.py``): the same span for the same statements, built once.

The operation's name and attributes are worked out once per distinct set of statements
(issue 14: a webhook sends the same few operations every time), never under an
unsampled parent, and an operation that fails still records its exception.
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, StatusCode

from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.storage import _spans
from ghl_real_estate_ai.storage._spans import StoreSpans

BATCH = (
    "INSERT INTO messages (id, body) VALUES (?, ?)",
    "UPDATE contacts SET temperature = ? WHERE id = ?",
    "INSERT INTO messages (id, body) VALUES (?, ?)",
)


def test_an_operation_span_is_the_same_every_time_and_its_shape_is_built_once() -> None:
    _spans._operation_shape.cache_clear()
    with capture_spans() as capture:
        spans = StoreSpans("sqlite", None, statements=False)
        tracer = capture.provider.get_tracer("test")
        with tracer.start_as_current_span("webhook"):
            for _ in range(3):
                with spans.operation(list(BATCH)) as span:
                    assert span is not None and span.is_recording()
                with spans.operation(("SELECT * FROM contacts WHERE id = ?",), "get_contact"):
                    pass
        finished = [s for s in capture.spans() if s.name != "webhook"]
    assert [s.name for s in finished] == ["BATCH", "get_contact"] * 3
    batch, named = finished[0], finished[1]
    assert {k: v for k, v in (batch.attributes or {}).items() if k.startswith("db.")} == {
        "db.system": "sqlite",
        "db.operation.name": "BATCH",
        "db.query.summary": "INSERT messages UPDATE contacts INSERT messages",
        "db.operation.batch.size": 3,
    }
    assert {k: v for k, v in (named.attributes or {}).items() if k.startswith("db.")} == {
        "db.system": "sqlite",
        "db.operation.name": "SELECT",
        "db.collection.name": "contacts",
        "db.query.summary": "SELECT contacts",
    }
    assert all(s.kind is SpanKind.CLIENT for s in finished)
    assert all(dict(s.attributes or {}) == dict(batch.attributes or {}) for s in finished[::2])
    info = _spans._operation_shape.cache_info()
    assert (info.misses, info.hits) == (2, 4)


def test_nothing_is_built_under_an_unsampled_parent() -> None:
    _spans._operation_shape.cache_clear()
    with capture_spans(sampler=ParentBased(ALWAYS_OFF)) as capture:
        spans = StoreSpans("sqlite", None, statements=False)
        tracer = capture.provider.get_tracer("test")
        with tracer.start_as_current_span("webhook"), spans.operation(list(BATCH)) as span:
            assert span is None
        assert capture.spans() == []
    info = _spans._operation_shape.cache_info()
    assert (info.misses, info.hits) == (0, 0)


def test_a_failed_operation_records_its_exception_and_re_raises() -> None:
    with capture_spans() as capture:
        spans = StoreSpans("postgresql", None, statements=False)
        with capture.provider.get_tracer("test").start_as_current_span("webhook"):
            with pytest.raises(ConnectionError), spans.operation(("DELETE FROM outbox WHERE id = $1",)):
                raise ConnectionError("gone")
            # The operation's span is no longer current once it has ended.
            with spans.operation(("SELECT 1",)) as after:
                assert after is not None
        failed, after_span = capture.spans()[:2]
    assert failed.name == "DELETE outbox"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ConnectionError"
    assert [e.name for e in failed.events] == ["exception"]
    assert after_span.parent is not None and after_span.parent.span_id != failed.context.span_id
