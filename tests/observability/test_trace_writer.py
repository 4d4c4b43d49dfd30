"""The local store written by a process of its own (TRACE_STORE_PROCESS, the default).

The app's export thread only pipes plain tuples to the writer; redaction and the
SQLite inserts happen in the writer. These tests run the real writer process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Link, SpanKind, StatusCode

from ghl_real_estate_ai.observability import _lifecycle
from ghl_real_estate_ai.observability._batch import BoundedBatchSpanProcessor
from ghl_real_estate_ai.observability._writer import WriterProcessExporter
from ghl_real_estate_ai.observability.local_store import LocalTraceReader
from ghl_real_estate_ai.observability.otel_config import (
    export_stats,
    flush_observability,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter
from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401  (autouse fixture)
from tests.observability.receivers import BlackHole, OTLPGrpcReceiver, OTLPHttpReceiver

tracer = trace.get_tracer("tests.observability.writer")


def _writer() -> WriterProcessExporter:
    state = _lifecycle._state
    assert state is not None
    (processor,) = [p for p in state.processors if isinstance(p, BoundedBatchSpanProcessor)]
    assert isinstance(processor.exporter, WriterProcessExporter)
    return processor.exporter


def test_the_local_store_is_written_by_another_process_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    assert setup_observability(settings(trace_store_path=path), exporter_type="local")
    writer = _writer()
    assert writer.pid is not None and writer.pid != os.getpid()
    with tracer.start_as_current_span("webhook", kind=SpanKind.SERVER, attributes={"n": 3}) as root:
        root.add_event("received", {"bytes": 12, "tags": ("a", "b")})
        with tracer.start_as_current_span(
            "lead_bot.analyze_intent", links=[Link(root.get_span_context(), {"why": "test"})]
        ) as child:
            child.set_status(StatusCode.ERROR, "boom")
            child.set_attribute("score", 0.5)
    # The flush returns once the writer has stored the spans, not when they left the app.
    assert flush_observability()
    spans = {s.name: s for s in LocalTraceReader(path).get_trace(f"{root.get_span_context().trace_id:032x}")}
    assert set(spans) == {"webhook", "lead_bot.analyze_intent"}
    server, node = spans["webhook"], spans["lead_bot.analyze_intent"]
    assert server.kind == "SERVER" and server.parent_span_id is None
    assert server.attributes["n"] == 3
    assert [(e.name, e.attributes) for e in server.events] == [
        ("received", {"bytes": 12, "tags": ["a", "b"]})
    ]
    assert server.resource["service.name"] == "enterprisehub"
    assert node.parent_span_id == server.span_id
    assert (node.status_code, node.status_message, node.attributes["score"]) == ("ERROR", "boom", 0.5)
    assert [link.span_id for link in node.links] == [server.span_id]
    assert node.scope_name == "tests.observability.writer"
    pid = writer.pid
    shutdown_observability()
    # Stopped with tracing: the writer drained and exited.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert export_stats().exported >= 2


def test_the_writer_redacts_before_storing(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    assert setup_observability(
        settings(trace_store_path=path, otel_capture_content=False), exporter_type="local"
    )
    with tracer.start_as_current_span("probe", attributes={"note": "call me at +1 512 555 0147"}) as span:
        pass
    assert flush_observability()
    (stored,) = LocalTraceReader(path).get_trace(f"{span.get_span_context().trace_id:032x}")
    assert "555" not in str(stored.attributes["note"])


def test_a_writer_that_dies_is_counted_and_started_again(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    before = export_stats()
    assert setup_observability(settings(trace_store_path=path), exporter_type="local")
    writer = _writer()
    with tracer.start_as_current_span("before"):
        pass
    assert flush_observability()
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while writer.pid is not None:  # its reader saw it exit
        assert time.monotonic() < deadline, "the killed writer was never noticed"
        time.sleep(0.01)
    with tracer.start_as_current_span("after") as span:
        pass
    assert flush_observability(10.0)
    assert writer.pid not in (None, first)
    names = [s.name for s in LocalTraceReader(path).get_trace(f"{span.get_span_context().trace_id:032x}")]
    assert names == ["after"]
    stats = export_stats()
    assert (stats.exported - before.exported, stats.dropped - before.dropped) == (2, 0)


def test_thread_mode_keeps_the_exporter_in_the_app(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    assert setup_observability(
        settings(trace_store_path=path, trace_store_process=False), exporter_type="local"
    )
    state = _lifecycle._state
    assert state is not None
    exporters = [p.exporter for p in state.processors if isinstance(p, BoundedBatchSpanProcessor)]
    assert [type(e) for e in exporters] == [RedactingSpanExporter]
    with tracer.start_as_current_span("in-process"):
        pass
    assert flush_observability()
    assert LocalTraceReader(path).count() == 1


# --- OTLP from a writer process (OTLP_EXPORT_PROCESS, opt-in) ------------------------------------


@pytest.mark.parametrize("kind", ["otlp", "otlp_http"])
def test_otlp_from_the_writer_process_reaches_the_collector_redacted(kind: str) -> None:
    receiver_type = OTLPGrpcReceiver if kind == "otlp" else OTLPHttpReceiver
    with receiver_type() as receiver:
        assert setup_observability(
            settings(otlp_export_process=True, otel_capture_content=False),
            exporter_type=kind,
            endpoint=receiver.endpoint,
        )
        writer = _writer()
        assert writer.pid is not None and writer.pid != os.getpid()
        with (
            tracer.start_as_current_span("webhook", kind=SpanKind.SERVER),
            tracer.start_as_current_span("probe", attributes={"note": "call me at +1 512 555 0147"}),
        ):
            pass
        assert flush_observability()
        spans = receiver.wait_for(lambda spans: len(spans) == 2)
    by_name = {s.name: s for s in spans}
    assert "555" not in str(by_name["probe"].attributes["note"])
    assert by_name["probe"].parent_span_id == by_name["webhook"].span_id


def test_otlp_writer_counts_what_a_dead_collector_lost_and_shutdown_stays_bounded() -> None:
    before = export_stats()
    with BlackHole() as hole:
        assert setup_observability(
            settings(otlp_export_process=True, otel_exporter_otlp_timeout=10_000.0),
            exporter_type="otlp_http",
            endpoint=hole.endpoint,
        )
        for index in range(50):
            with tracer.start_as_current_span(f"hung-{index}"):
                pass
        assert not flush_observability(0.5)  # the writer is stuck in an export to the black hole
        started = time.monotonic()
        shutdown_observability(5.0)
        elapsed = time.monotonic() - started
    assert elapsed < 5.0
    after = export_stats()
    assert after.exported == before.exported
    assert after.dropped - before.dropped == 50


def test_a_writer_that_cannot_start_is_not_started_for_every_batch() -> None:
    """A writer that exits at once (here: a kind it does not know) loses what it was sent,
    counted; it is tried again only after a pause, not once per batch."""
    writer = WriterProcessExporter({"kind": "unknown"}, label="broken")
    provider = TracerProvider()
    own = provider.get_tracer("tests.observability.writer")

    def one() -> ReadableSpan:
        with own.start_as_current_span("lost") as span:
            pass
        assert isinstance(span, ReadableSpan)
        return span

    try:
        assert writer.export([one()]) is SpanExportResult.SUCCESS  # into the pipe, before it exits
        deadline = time.monotonic() + 30
        while writer.pid is not None:
            assert time.monotonic() < deadline, "the broken writer never exited"
            time.sleep(0.01)
        assert writer.lost == 1
        assert [writer.export([one()]) for _ in range(4)] == [SpanExportResult.FAILURE] * 4
        assert writer._starts == 1
    finally:
        writer.shutdown()
        provider.shutdown()
