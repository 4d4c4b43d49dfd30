"""The local trace store: the SQLite span exporter, its retention and its queries."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from tracegen import MS, Node, emit, handoff_journey, make_provider, node_attrs

from ghl_real_estate_ai.errors import TraceQueryError
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter, LocalTraceReader
from ghl_real_estate_ai.observability.query import build_tree


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "data" / "traces.db"


def test_spans_round_trip_with_tree_attributes_events_and_resource(store: Path) -> None:
    """A handoff trace comes back whole: parents, kinds, attributes, events, resource, scope."""
    exporter = LocalSpanExporter(store)
    provider = make_provider(exporter)
    trace_id = emit(provider, handoff_journey("c-1"))
    provider.shutdown()

    spans = LocalTraceReader(store).get_trace(trace_id)
    tree = [("  " * depth) + span.name for span, depth in build_tree(spans)]
    assert tree == [
        "POST /api/v1/webhooks/ghl",
        "  lead_bot.analyze_intent",
        "    intent_decoder.analyze_lead",
        "  handoff.lead_to_buyer",
        "    jorge.handoff.evaluate_handoff",
        "    jorge.handoff.execute_handoff",
        "      POST",
        "  buyer_bot.process_buyer_conversation",
        "    buyer_bot.analyze_buyer_intent",
        "    buyer_bot.generate_buyer_response",
    ]
    by_name = {span.name: span for span in spans}
    root = by_name["POST /api/v1/webhooks/ghl"]
    assert root.kind == "SERVER" and root.parent_span_id is None
    assert root.duration_ns == 350 * MS
    assert root.attributes["http.status_code"] == 200
    assert root.resource["service.name"] == "enterprisehub"
    assert root.service_name == "enterprisehub" and root.scope_name == "tests.tracegen"
    analyze = by_name["lead_bot.analyze_intent"]
    assert analyze.parent_span_id == root.span_id
    assert analyze.attributes["workflow.success"] is True
    assert analyze.attributes["workflow.temperature"] == "hot"
    assert [(e.name, e.attributes) for e in analyze.events] == [
        ("intent_detected", {"intent_type": "buyer", "confidence": 0.85})
    ]
    assert by_name["POST"].kind == "CLIENT"
    assert all(span.trace_id == trace_id for span in spans)


def test_errors_links_and_odd_values_are_kept(store: Path) -> None:
    """ERROR status and message, span links and non-finite floats survive the store."""
    exporter = LocalSpanExporter(store)
    provider = make_provider(exporter)
    first = emit(provider, Node("lead_bot.send_day_3_sms", 0, 5))
    first_spans = LocalTraceReader(store).get_trace(first)
    from opentelemetry.trace import SpanContext, TraceFlags

    link = SpanContext(int(first, 16), int(first_spans[0].span_id, 16), False, TraceFlags(1))
    second = emit(
        provider,
        Node(
            "followup.day_7",
            0,
            12,
            {"ratio": float("nan"), "tags": ("a", "b")},
            error="GHL answered 503",
            links=[link],
        ),
    )
    provider.shutdown()
    (span,) = LocalTraceReader(store).get_trace(second)
    assert span.is_error and span.status_message == "GHL answered 503"
    assert span.attributes["ratio"] == "nan" and span.attributes["tags"] == ["a", "b"]
    assert [(lk.trace_id, lk.span_id) for lk in span.links] == [(first, first_spans[0].span_id)]
    found = LocalTraceReader(store).find_traces(tags={"error": "true"})
    assert [summary.trace_id for summary in found] == [second]
    assert found[0].error_count == 1


def _populate(store: Path) -> dict[str, str]:
    exporter = LocalSpanExporter(store)
    provider = make_provider(exporter)
    now = datetime.now(UTC)
    ids = {
        "hot": emit(provider, handoff_journey("c-hot", temperature="hot")),
        "warm": emit(provider, handoff_journey("c-warm", temperature="warm")),
        "seller": emit(
            provider,
            Node(
                "POST /api/v1/webhooks/ghl",
                0,
                900,
                children=[
                    Node(
                        "seller_bot.qualify_seller", 1, 800, node_attrs("seller_bot", "qualify_seller", "c-s")
                    )
                ],
            ),
        ),
        "old": emit(
            provider,
            Node("lead_bot.analyze_intent", 0, 20, node_attrs("lead_bot", "analyze_intent", "c-old")),
            base_ns=int((now - timedelta(hours=5)).timestamp() * 1e9),
        ),
    }
    other = make_provider(exporter, service="worker")
    ids["worker"] = emit(other, Node("followups.run_due", 0, 3000, {"followup.count": 2}))
    provider.shutdown()
    return ids


def test_find_by_tag_matches_any_span_of_the_trace(store: Path) -> None:
    """Tags may sit on different spans of one trace; every pair must be found in the trace."""
    ids = _populate(store)
    reader = LocalTraceReader(store)
    by_contact = reader.find_traces(tags={"workflow.contact_id": "c-hot"})
    assert [s.trace_id for s in by_contact] == [ids["hot"]]
    # handoff.source_bot is on the handoff span, workflow.temperature on a node span.
    both = reader.find_traces(tags={"handoff.source_bot": "lead", "workflow.temperature": "warm"})
    assert [s.trace_id for s in both] == [ids["warm"]]
    assert reader.find_traces(tags={"handoff.source_bot": "seller"}) == []
    bots = reader.find_traces(tags={"workflow.bot_type": "lead_bot"}, order="time")
    assert [s.trace_id for s in bots] == [ids["warm"], ids["hot"], ids["old"]]
    assert {s.trace_id for s in reader.find_traces(tags={"workflow.success": "true"})} == {
        ids["hot"],
        ids["warm"],
        ids["seller"],
        ids["old"],
    }
    summary = by_contact[0]
    assert summary.root_name == "POST /api/v1/webhooks/ghl" and summary.span_count == 10
    assert summary.duration_ms == pytest.approx(350) and summary.services == ("enterprisehub",)


def test_the_attribute_index_is_ordered_by_key_value_and_span(store: Path) -> None:
    """Rows of a new span go to the end of each key=value run, not to random places by trace id.

    That order is what keeps an export's cost flat as the store fills (``bench/export_path.py
    --fill``): the version 1 index, ordered by trace id, rewrote pages all over the file.
    """
    _populate(store)
    conn = sqlite3.connect(store)
    try:
        columns = [(row[1], row[5]) for row in conn.execute("PRAGMA table_info(span_attributes)")]
        clustered = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'span_attributes'").fetchone()[0]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(span_attributes)")}
    finally:
        conn.close()
    assert columns == [("key", 1), ("value", 2), ("span_ref", 3)]  # the primary key, in this order
    assert "WITHOUT ROWID" in clustered
    assert "span_attributes_by_span" in indexes  # what retention deletes by


_VERSION_1 = (
    "CREATE TABLE resources (id INTEGER PRIMARY KEY, digest TEXT NOT NULL UNIQUE,"
    " attributes_json TEXT NOT NULL)",
    "CREATE TABLE spans (id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL,"
    " span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,"
    " status_code TEXT NOT NULL, status_message TEXT, service_name TEXT NOT NULL, scope_name TEXT,"
    " resource_id INTEGER, attributes_json TEXT NOT NULL, events_json TEXT, links_json TEXT)",
    "CREATE INDEX spans_by_trace ON spans (trace_id)",
    "CREATE INDEX spans_by_start ON spans (start_ns)",
    "CREATE INDEX spans_by_service_name ON spans (service_name, name)",
    "CREATE TABLE span_attributes (span_ref INTEGER NOT NULL, trace_id TEXT NOT NULL,"
    " key TEXT NOT NULL, value TEXT NOT NULL)",
    "CREATE INDEX span_attributes_by_key_value ON span_attributes (key, value, trace_id)",
    "CREATE INDEX span_attributes_by_span ON span_attributes (span_ref)",
    "CREATE TRIGGER spans_drop_attributes AFTER DELETE ON spans BEGIN"
    " DELETE FROM span_attributes WHERE span_ref = old.id; END",
    "PRAGMA user_version = 1",
)


def test_a_version_1_store_is_converted_when_opened_and_keeps_every_row(store: Path) -> None:
    """A traces.db written before the index changed is searchable, prunable and writable after."""
    store.parent.mkdir(parents=True)
    conn = sqlite3.connect(store)
    for statement in _VERSION_1:
        conn.execute(statement)
    now = time.time_ns()
    for ref, (trace_id, contact, age_ns) in enumerate(
        [("a" * 32, "c-old", 2 * 3600 * 10**9), ("b" * 32, "c-kept", 0)], start=1
    ):
        conn.execute(
            "INSERT INTO spans VALUES (?, ?, ?, NULL, 'lead_bot.analyze_intent', 'INTERNAL', ?, ?, 1,"
            " 'OK', NULL, 'jorge', NULL, NULL, ?, NULL, NULL)",
            (
                ref,
                trace_id,
                f"{ref:016x}",
                now - age_ns,
                now - age_ns + 1,
                f'{{"workflow.contact_id":"{contact}"}}',
            ),
        )
        conn.executemany(
            "INSERT INTO span_attributes VALUES (?, ?, ?, ?)",
            [(ref, trace_id, "workflow.contact_id", contact), (ref, trace_id, "otel.status_code", "OK")],
        )
    conn.commit()
    conn.close()

    reader = LocalTraceReader(store)
    assert [s.trace_id for s in reader.find_traces(tags={"workflow.contact_id": "c-kept"})] == ["b" * 32]
    assert len(reader.find_traces(tags={"otel.status_code": "OK"})) == 2
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM span_attributes").fetchone()[0] == 4
        assert {row[1] for row in conn.execute("PRAGMA index_list(span_attributes)")} >= {
            "span_attributes_by_span"
        }
    finally:
        conn.close()
    # Retention still takes a span's index rows with it, and new spans are written and found.
    exporter = LocalSpanExporter(store, max_age_hours=1.0)
    exporter.prune()  # (opening the store for writing already applies retention)
    assert reader.get_trace("a" * 32) == []
    assert reader.find_traces(tags={"workflow.contact_id": "c-old"}) == []
    provider = make_provider(exporter)
    fresh = emit(provider, Node("fresh", 0, 1, {"k": "v"}))
    provider.shutdown()
    assert [s.trace_id for s in reader.find_traces(tags={"k": "v"})] == [fresh]
    assert len(reader.find_traces(tags={"otel.status_code": "OK"})) == 1


def test_find_by_service_operation_duration_time_and_limit(store: Path) -> None:
    """Service/operation, duration bounds, the time window, ordering and limit all filter."""
    ids = _populate(store)
    reader = LocalTraceReader(store)
    assert reader.services() == ["enterprisehub", "worker"]
    assert "handoff.lead_to_buyer" in reader.operations("enterprisehub")
    assert reader.operations("worker") == ["followups.run_due"]

    longest = reader.find_traces(limit=2)
    assert [s.trace_id for s in longest] == [ids["worker"], ids["seller"]]
    assert [s.trace_id for s in reader.find_traces(service="worker")] == [ids["worker"]]
    # Without an operation the bounds apply to the whole trace...
    mid = reader.find_traces(service="enterprisehub", min_duration_ms=300, max_duration_ms=400)
    assert {s.trace_id for s in mid} == {ids["hot"], ids["warm"]}
    # ...with one, to that operation's spans.
    slow_nodes = reader.find_traces(operation="seller_bot.qualify_seller", min_duration_ms=500)
    assert [s.trace_id for s in slow_nodes] == [ids["seller"]]
    assert reader.find_traces(operation="lead_bot.analyze_intent", min_duration_ms=150) == []
    recent = reader.find_traces(since=datetime.now(UTC) - timedelta(hours=1), limit=50)
    assert ids["old"] not in {s.trace_id for s in recent} and len(recent) == 4
    window = reader.find_traces(until=datetime.now(UTC) - timedelta(hours=4))
    assert [s.trace_id for s in window] == [ids["old"]]


def test_bad_queries_and_missing_store(tmp_path: Path, store: Path) -> None:
    """A missing store is empty; bad ids, limits and orders are clear errors."""
    reader = LocalTraceReader(tmp_path / "nothing.db")
    assert reader.services() == [] and reader.find_traces() == [] and list(reader.spans()) == []
    assert not (tmp_path / "nothing.db").exists()
    _populate(store)
    with pytest.raises(TraceQueryError, match="not valid"):
        LocalTraceReader(store).get_trace("xyz")
    with pytest.raises(TraceQueryError, match="limit"):
        LocalTraceReader(store).find_traces(limit=0)
    with pytest.raises(TraceQueryError, match="order"):
        LocalTraceReader(store).find_traces(order="size")  # type: ignore[arg-type]
    assert LocalTraceReader(store).get_trace("0" * 32) == []


def test_export_never_raises(tmp_path: Path) -> None:
    """A store that cannot be opened, or a closed exporter, reports FAILURE instead of raising."""
    blocked = tmp_path / "is_a_dir.db"
    blocked.mkdir()
    exporter = LocalSpanExporter(blocked)
    provider = make_provider(exporter)
    emit(provider, Node("x", 0, 1))  # must not raise through the processor
    span = _one_readable_span(tmp_path)
    assert exporter.export([span]) is SpanExportResult.FAILURE
    good = LocalSpanExporter(tmp_path / "ok.db")
    good.shutdown()
    assert good.export([span]) is SpanExportResult.FAILURE


def _one_readable_span(tmp_path: Path):  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    emit(make_provider(memory), Node("y", 0, 1))
    return memory.get_finished_spans()[0]


def test_count_retention_keeps_the_newest(store: Path) -> None:
    """With max_spans=100, writing 1000 spans keeps at most ~110, and they are the newest."""
    exporter = LocalSpanExporter(store, max_spans=100)
    provider = make_provider(exporter)
    ids = [emit(provider, Node(f"op{i % 3}", 0, 1)) for i in range(1000)]
    reader = LocalTraceReader(store)
    assert reader.count() <= 100 + exporter.prune_every
    exporter.prune()
    assert reader.count() == 100
    kept = {s.trace_id for s in reader.find_traces(limit=1000)}
    assert kept == set(ids[-100:])
    # The attribute index follows the spans it describes.
    assert len(reader.find_traces(tags={"otel.status_code": "UNSET"}, limit=1000)) == 0
    provider.shutdown()


def test_age_retention_drops_old_spans(store: Path) -> None:
    """Spans that started before max_age_hours are pruned with their index rows."""
    exporter = LocalSpanExporter(store, max_age_hours=1.0)
    provider = make_provider(exporter)
    old = emit(
        provider,
        Node("old", 0, 1, {"k": "v"}),
        base_ns=int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1e9),
    )
    fresh = emit(provider, Node("fresh", 0, 1, {"k": "v"}))
    assert exporter.prune() == 1
    reader = LocalTraceReader(store)
    assert reader.get_trace(old) == []
    assert [s.trace_id for s in reader.find_traces(tags={"k": "v"})] == [fresh]
    provider.shutdown()


def test_a_resource_pruned_with_its_spans_is_written_again_for_new_ones(store: Path) -> None:
    """Spans of two providers keep their own resource, also after retention dropped every row."""
    exporter = LocalSpanExporter(store, max_age_hours=1.0)
    first, second = make_provider(exporter, "svc-a"), make_provider(exporter, "svc-b")
    two_hours_ago = int((datetime.now(UTC) - timedelta(hours=2)).timestamp() * 1e9)
    emit(first, Node("old", 0, 1), base_ns=two_hours_ago)
    assert exporter.prune() == 1  # the span and its now unused resource row are gone
    a, b = emit(first, Node("a", 0, 1)), emit(second, Node("b", 0, 1))
    reader = LocalTraceReader(store)
    assert [span.resource["service.name"] for span in reader.get_trace(a)] == ["svc-a"]
    assert [span.resource["service.name"] for span in reader.get_trace(b)] == ["svc-b"]
    first.shutdown()
    second.shutdown()


def test_retention_keeps_the_store_bounded_over_100k_spans(store: Path) -> None:
    """Acceptance 5: 100k spans through a batch processor; rows and file size stay bounded."""
    exporter = LocalSpanExporter(store, max_spans=2_000)
    provider = make_provider_batch(exporter)
    tracer = provider.get_tracer("bulk")
    sizes = []
    for i in range(100_000):
        with tracer.start_as_current_span("lead_bot.analyze_intent") as span:
            span.set_attribute("workflow.contact_id", f"c-{i}")
            span.set_attribute("workflow.bot_type", "lead_bot")
        if i % 10_000 == 9_999:
            provider.force_flush()
            assert LocalTraceReader(store).count() <= 2_000 + exporter.prune_every + 512
            sizes.append(_store_bytes(store))
    provider.shutdown()
    reader = LocalTraceReader(store)
    assert reader.count() <= 2_000 + exporter.prune_every
    # Freed pages are reused: after the first 10k the file does not keep growing.
    assert max(sizes[2:]) <= sizes[1] * 1.5, sizes
    assert max(sizes) < 16 * 1024 * 1024, sizes
    newest = reader.find_traces(tags={"workflow.contact_id": "c-99999"})
    assert len(newest) == 1
    assert reader.find_traces(tags={"workflow.contact_id": "c-5"}) == []


def make_provider_batch(exporter: LocalSpanExporter):  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": "bulk"}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=20_000, max_export_batch_size=512)
    )
    return provider


def _store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.parent.glob(store.name + "*"))


def test_another_process_reads_while_the_exporter_writes(store: Path) -> None:
    """WAL + busy timeout: a second process queries the store while spans are being written."""
    exporter = LocalSpanExporter(store)
    provider = make_provider(exporter)
    emit(provider, handoff_journey("c-proc"))
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            emit(provider, Node("background", 0, 1))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        code = (
            "import sys; from pathlib import Path;"
            "from ghl_real_estate_ai.observability.local_store import LocalTraceReader as R;"
            "r = R(Path(sys.argv[1]));"
            "print(sum(len(r.find_traces(tags={'workflow.contact_id': 'c-proc'})) for _ in range(20)))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, str(store)], capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        stop.set()
        writer.join()
        provider.shutdown()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "20"
