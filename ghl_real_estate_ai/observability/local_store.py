"""The local trace store: finished spans in one SQLite file, and the queries over it.

The embedded default (``OTEL_EXPORTER_TYPE=local``) needs neither Docker nor
Jaeger: :class:`LocalSpanExporter` is an OpenTelemetry ``SpanExporter`` that
writes every finished span to ``./data/traces.db``, and
:class:`LocalTraceReader` answers the :class:`~.query.TraceQuery` questions
(``jorge traces``, ``jorge slo``, the ``/traces`` page and the Jaeger-shaped
API) from the same file, from another connection or another process::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(LocalSpanExporter(Path("data/traces.db"))))
    ...
    reader = LocalTraceReader(Path("data/traces.db"))
    reader.find_traces(tags={"workflow.contact_id": "abc123"})

Layout: a ``spans`` table (ids, name, kind, times, status, service, attributes,
events and links as JSON; indexed by trace id, start time and service+name), a
``resources`` table (one row per distinct resource rather than a copy per span)
and a ``span_attributes`` table holding every attribute as ``key``/``value``
text with its span's row id, ordered by key, value and span so a ``--tag
key=value`` search is one range of it (schema version 2; a version 1 file,
whose rows were ordered by trace id, is converted when first opened).

Retention: at most ``max_spans`` spans younger than ``max_age_hours``. Pruning
runs in batches of short transactions, and only every ``max_spans / 10``
inserted spans (or once a minute), never per insert, so the table holds at
most about 1.1 x ``max_spans`` rows and the file stops growing once freed
pages are being reused. WAL mode and a busy timeout let readers in other
processes query while the exporter writes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import json.encoder as json_encoder
import logging
import math
import operator
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ghl_real_estate_ai.observability._fastspan import attributes_of, events_of, links_of, own_fields
from ghl_real_estate_ai.observability.attributes import JOURNEY_KEYS
from ghl_real_estate_ai.observability.query import (
    AttributeValue,
    SpanEvent,
    SpanLink,
    SpanRecord,
    TraceOrder,
    TraceQuery,
    TraceQueryError,
    TraceSummary,
    attribute_text,
    check_search,
    datetime_to_ns,
    normalize_trace_id,
    normalize_trace_prefix,
    summarize_trace,
)

__all__ = [
    "LocalSpanExporter",
    "LocalTraceReader",
    "SpanRecord",
    "TraceQuery",
    "TraceSummary",
]

logger = logging.getLogger(__name__)

_SCHEMA_VERSION = 2
# The attribute index is one table ordered by (key, value, span_ref): a new span's rows land
# at the end of each key=value run, not at random places as with the trace id that version 1
# ordered them by, so an export batch rewrites far fewer pages (and the rows are shorter).
_ATTRIBUTES_TABLE = (
    """CREATE TABLE IF NOT EXISTS span_attributes (
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    span_ref INTEGER NOT NULL,
    PRIMARY KEY (key, value, span_ref)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS span_attributes_by_span ON span_attributes (span_ref)",
    """CREATE TRIGGER IF NOT EXISTS spans_drop_attributes AFTER DELETE ON spans BEGIN
    DELETE FROM span_attributes WHERE span_ref = old.id;
END""",
)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    attributes_json TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT,
    service_name TEXT NOT NULL,
    scope_name TEXT,
    resource_id INTEGER,
    attributes_json TEXT NOT NULL,
    events_json TEXT,
    links_json TEXT
)""",
    "CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id)",
    "CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns)",
    "CREATE INDEX IF NOT EXISTS spans_by_service_name ON spans (service_name, name)",
)
# Version 1 -> 2: the attribute rows move to the new table (without their trace id, which
# the spans table has), in one transaction.
_MIGRATE_1_TO_2 = (
    "DROP TRIGGER IF EXISTS spans_drop_attributes",
    "ALTER TABLE span_attributes RENAME TO span_attributes_v1",
    "DROP INDEX IF EXISTS span_attributes_by_key_value",
    "DROP INDEX IF EXISTS span_attributes_by_span",  # its name is taken again below
    *_ATTRIBUTES_TABLE,
    "INSERT OR IGNORE INTO span_attributes (key, value, span_ref)"
    " SELECT key, value, span_ref FROM span_attributes_v1 ORDER BY key, value, span_ref",
    "DROP TABLE span_attributes_v1",
)

# Values longer than this stay in the span's JSON but are not indexed: nobody
# searches by a whole stack trace, and the index stays small.
_MAX_INDEXED_VALUE = 256
_PRUNE_BATCH = 5_000
_AGE_PRUNE_INTERVAL_S = 60.0
_BUSY_TIMEOUT_MS = 5_000
# Bound the WAL file too: after a checkpoint SQLite truncates it to this size.
_JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.isolation_level = None  # explicit BEGIN IMMEDIATE / COMMIT below
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
    if conn.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
        _upgrade(conn)
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring a version 1 store to version 2, keeping every row."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
        if version == 1:
            for statement in _MIGRATE_1_TO_2:
                conn.execute(statement)
        elif version == 0:
            for statement in (*_SCHEMA, *_ATTRIBUTES_TABLE):
                conn.execute(statement)
        if version < _SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# Constant tuples: ``X | Y`` in an isinstance call builds a union object on every call.
_SEQUENCE_TYPES = (tuple, list)
_JSON_TYPES = (str, bool, int, float)


def _json_value(value: Any) -> AttributeValue:
    if isinstance(value, _SEQUENCE_TYPES):
        return [_json_value(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the text
    if isinstance(value, _JSON_TYPES):
        return value
    return str(value)


_PLAIN_TYPES = frozenset({str, bool, int})


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    if not attributes:
        return {}
    # Most values are plain strings, ints and bools: keep them without the
    # conversion call (this runs once per attribute of every exported span).
    return {
        key: value if type(value) in _PLAIN_TYPES else _json_value(value) for key, value in attributes.items()
    }


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# json's C encoder (None without the _json module), made once: what _ENCODER.encode builds
# on every call. Without its check for circular references, which values made of fresh
# dicts and lists cannot have.
_make_encoder = getattr(json_encoder, "c_make_encoder", None)
_C_ENCODE = (
    _make_encoder(None, _ENCODER.default, json_encoder.encode_basestring, None, ":", ",", False, False, True)
    if _make_encoder is not None
    else None
)


def _dumps(value: object) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def _attributes_json(attributes: Mapping[str, Any] | None, ref: int, index_values: list[object]) -> str:
    """The attributes' JSON text; their index rows (text form, short values only) go to ``index_values``.

    What ``_dumps(_attributes(attributes))`` and ``attribute_text`` of each converted
    value give, in one pass: plain strings, booleans, ints and finite floats are
    written and indexed as they are (converting them changes nothing); any other
    value takes the conversion.
    """
    if not attributes:
        return "{}"
    as_is = True
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:  # most values
            if len(value) <= _MAX_INDEXED_VALUE:
                index_values += (key, value, ref)
            continue
        if kind is bool:
            text = "true" if value else "false"
        elif kind is int or (kind is float and math.isfinite(value)):
            text = str(value)
        else:
            as_is = False
            text = attribute_text(_json_value(value))
        if len(text) <= _MAX_INDEXED_VALUE:
            index_values += (key, text, ref)
    if as_is and type(attributes) is dict:
        return _dumps(attributes)
    return _dumps(_attributes(attributes))


_READ_FIELDS = operator.itemgetter(
    "_context", "_parent", "_name", "_kind", "_start_time", "_end_time", "_status", "_resource",
    "_instrumentation_scope", "_attributes",
)  # fmt: skip


def _fields(span: ReadableSpan) -> tuple[Any, ...]:
    """A span's context, parent, name, kind, start and end times, status, resource, scope and attributes.

    The SDK's own finished span is read from its fields rather than through a property each.
    """
    fields = own_fields(span)
    if fields is not None:
        return _READ_FIELDS(fields)  # type: ignore[no-any-return]
    return (
        span.context, span.parent, span.name, span.kind, span.start_time, span.end_time, span.status,
        span.resource, span.instrumentation_scope, attributes_of(span),
    )  # fmt: skip


_SPAN_INSERT = (
    "INSERT INTO spans (id, trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns,"
    " duration_ns, status_code, status_message, service_name, scope_name, resource_id,"
    " attributes_json, events_json, links_json) VALUES "
)
# One row's values. The optional texts (parent span id, status message, events and links
# JSON) are given as "" for NULL: sqlite3 binds str directly but sends None through its
# adapter look-up, which costs more than NULLIF. None of them is ever "" otherwise.
_SPAN_ROW = (
    "(?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''))"
)
# OR IGNORE: a derived tag (span.kind...) equal to an attribute of the same name.
_INDEX_INSERT = "INSERT OR IGNORE INTO span_attributes (key, value, span_ref) VALUES "
_INDEX_ROW = "(?, ?, ?)"
# SQLite runs one statement (one step, one halt) per statement rather than per row, which is
# most of its cost for rows this short: rows go in statements of up to this many parameters
# (under SQLite's oldest limit of 999), each row inserted (or ignored) exactly as on its own.
_MAX_PARAMETERS = 900


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, row: str, rows: int) -> str:
    """``head`` followed by ``rows`` times ``row``."""
    return head + ", ".join([row] * rows)


def _insert_rows(conn: sqlite3.Connection, head: str, row: str, values: list[object]) -> None:
    """``INSERT ... VALUES`` of rows shaped as ``row``, their values one after the other in ``values``."""
    width = row.count("?")
    step = _MAX_PARAMETERS // width * width
    for at in range(0, len(values), step):
        chunk = values[at : at + step]
        conn.execute(_values_sql(head, row, len(chunk) // width), chunk)


class LocalSpanExporter(SpanExporter):
    """An OpenTelemetry span exporter writing to the local SQLite trace store.

    Thread-safe: the batch processor calls :meth:`export` from its worker
    thread, a simple processor from whichever thread ends a span. Export never
    raises; a database problem is logged and reported as ``FAILURE``.

    Args:
        path: the SQLite file; its folder is created when missing.
        max_spans: keep at most about this many spans (pruned in batches).
        max_age_hours: drop spans that started longer ago than this.
    """

    def __init__(self, path: Path, max_spans: int = 200_000, max_age_hours: float = 72.0) -> None:
        if max_spans < 1:
            raise ValueError(f"max_spans must be at least 1, got {max_spans!r}")
        if not max_age_hours > 0:
            raise ValueError(f"max_age_hours must be positive, got {max_age_hours!r}")
        self.path = Path(path)
        self.max_spans = max_spans
        self.max_age_ns = int(max_age_hours * 3600 * 1e9)
        self.prune_every = max(64, max_spans // 10)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._since_prune = 0
        self._last_prune = 0.0
        self._resource_ids: dict[str, int] = {}
        self._resource_objects: dict[int, tuple[Resource, int, str]] = {}
        self._failures_logged = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = _connect(self.path)
            self._prune_locked()  # a store left from an earlier run may be over its limits
        return self._conn

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans`` in one transaction; prune when due."""
        if self._closed:
            return SpanExportResult.FAILURE
        with self._lock:
            try:
                conn = self._connection()
                self._insert(conn, spans)
                self._since_prune += len(spans)
                due = time.monotonic() - self._last_prune >= _AGE_PRUNE_INTERVAL_S
                if self._since_prune >= self.prune_every or due:
                    self._prune_locked()
            except (sqlite3.Error, OSError) as exc:
                # Tracing must never break the app: report, drop this batch.
                if self._failures_logged < 10:
                    self._failures_logged += 1
                    logger.warning("local trace store %s: export failed: %s", self.path, exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _resource_id(self, conn: sqlite3.Connection, span: ReadableSpan) -> tuple[int, str]:
        """The span's resource row id and service name."""
        # Every span of a provider carries the same Resource object: look it up by
        # identity before serialising and hashing its attributes. The entry keeps
        # the resource alive, so its id cannot be reused by another object.
        resource = span.resource
        known = self._resource_objects.get(id(resource))
        if known is not None and known[0] is resource:
            return known[1], known[2]
        resource_id = self._resource_row(conn, span)
        service = str(resource.attributes.get("service.name", "unknown_service"))
        if len(self._resource_objects) >= 64:
            self._resource_objects.clear()
        self._resource_objects[id(resource)] = (resource, resource_id, service)
        return resource_id, service

    def _resource_row(self, conn: sqlite3.Connection, span: ReadableSpan) -> int:
        text = _dumps(_attributes(span.resource.attributes))
        digest = hashlib.sha1(text.encode()).hexdigest()
        cached = self._resource_ids.get(digest)
        if cached is not None:
            return cached
        conn.execute(
            "INSERT OR IGNORE INTO resources (digest, attributes_json) VALUES (?, ?)", (digest, text)
        )
        row = conn.execute("SELECT id FROM resources WHERE digest = ?", (digest,)).fetchone()
        self._resource_ids[digest] = int(row[0])
        return int(row[0])

    def _insert(self, conn: sqlite3.Connection, spans: Sequence[ReadableSpan]) -> None:
        # One transaction and a few multi-row INSERTs per export batch (issue 14): the
        # rows are built first, and the span ids are given here (we hold the write
        # lock, so nobody else takes the next ids), since executemany reports none.
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Rows as one flat list of values per table, as the multi-row INSERTs take them.
            span_values: list[object] = []
            index_values: list[object] = []
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spans'").fetchone()
            last = conn.execute("SELECT max(id) FROM spans").fetchone()[0] or 0
            ref = max(int(row[0]) if row else 0, int(last))
            last_resource: Resource | None = None
            last_trace_id, trace_hex = None, ""  # a batch holds runs of spans of one trace
            resource_id, service = 0, ""
            for span in spans:
                context, parent, name, kind_enum, start, end, status, resource, scope, attributes = _fields(
                    span
                )
                if context is None:
                    continue
                ref += 1
                start = start or 0
                end = end or start
                # An enum's .name is a descriptor call; _name_ is the same text, stored on the member.
                status_code = status.status_code._name_
                kind = kind_enum._name_
                if context.trace_id != last_trace_id:
                    last_trace_id = context.trace_id
                    trace_hex = f"{last_trace_id:032x}"
                if resource is not last_resource:  # a batch's spans nearly always share one resource
                    resource_id, service = self._resource_id(conn, span)
                    last_resource = resource
                events = [
                    {"name": e.name, "timestamp_ns": e.timestamp, "attributes": _attributes(e.attributes)}
                    for e in events_of(span)
                ]
                links = [
                    {
                        "trace_id": f"{link.context.trace_id:032x}",
                        "span_id": f"{link.context.span_id:016x}",
                        "attributes": _attributes(link.attributes),
                    }
                    for link in links_of(span)
                ]
                span_values += (
                    ref,
                    trace_hex,
                    f"{context.span_id:016x}",
                    f"{parent.span_id:016x}" if parent is not None else "",
                    name,
                    kind,
                    start,
                    end,
                    max(0, end - start),
                    status_code,
                    status.description or "",
                    service,
                    scope.name if scope else None,
                    resource_id,
                    # The attribute rows go to index_values; the tags Jaeger derives from
                    # kind and status are searchable too.
                    _attributes_json(
                        attributes if type(attributes) is dict else attributes_of(span), ref, index_values
                    ),
                    _dumps(events) if events else "",
                    _dumps(links) if links else "",
                )
                if kind != "INTERNAL":
                    index_values += ("span.kind", kind.lower(), ref)
                if status_code != "UNSET":
                    index_values += ("otel.status_code", status_code, ref)
                    if status_code == "ERROR":
                        index_values += ("error", "true", ref)
            _insert_rows(conn, _SPAN_INSERT, _SPAN_ROW, span_values)
            _insert_rows(conn, _INDEX_INSERT, _INDEX_ROW, index_values)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def prune(self) -> int:
        """Apply retention now (age, then count); returns how many spans were dropped."""
        with self._lock:
            if self._closed:
                return 0
            self._connection()
            return self._prune_locked()

    def _delete_batches(self, conn: sqlite3.Connection, sql: str, bound: int) -> int:
        deleted = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                count = conn.execute(sql, (bound, _PRUNE_BATCH)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            deleted += count
            if count < _PRUNE_BATCH:
                return deleted

    def _prune_locked(self) -> int:
        conn = self._conn
        if conn is None:
            return 0
        cutoff_ns = time.time_ns() - self.max_age_ns
        deleted = self._delete_batches(
            conn,
            "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE start_ns < ? LIMIT ?)",
            cutoff_ns,
        )
        row = conn.execute(
            "SELECT id FROM spans ORDER BY id DESC LIMIT 1 OFFSET ?", (self.max_spans,)
        ).fetchone()
        if row is not None:
            deleted += self._delete_batches(
                conn,
                "DELETE FROM spans WHERE id IN (SELECT id FROM spans WHERE id <= ? ORDER BY id LIMIT ?)",
                int(row[0]),
            )
        if deleted:
            conn.execute(
                "DELETE FROM resources WHERE NOT EXISTS"
                " (SELECT 1 FROM spans WHERE spans.resource_id = resources.id)"
            )
            self._resource_ids.clear()
            self._resource_objects.clear()
        self._since_prune = 0
        self._last_prune = time.monotonic()
        return deleted

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here: every export is committed before it returns."""
        return True

    def shutdown(self) -> None:
        """Close the database; later exports fail without raising."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None


_SPAN_COLUMNS = (
    "s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns, s.status_code,"
    " s.status_message, s.service_name, s.scope_name, s.attributes_json, s.events_json, s.links_json,"
    " r.attributes_json"
)
_SPAN_FROM = "spans AS s LEFT JOIN resources AS r ON r.id = s.resource_id"


def _record(row: Sequence[Any]) -> SpanRecord:
    events = [
        SpanEvent(name=e["name"], timestamp_ns=int(e["timestamp_ns"]), attributes=e.get("attributes", {}))
        for e in (json.loads(row[12]) if row[12] else [])
    ]
    links = [
        SpanLink(trace_id=link["trace_id"], span_id=link["span_id"], attributes=link.get("attributes", {}))
        for link in (json.loads(row[13]) if row[13] else [])
    ]
    return SpanRecord(
        trace_id=row[0],
        span_id=row[1],
        parent_span_id=row[2],
        name=row[3],
        kind=row[4],
        start_ns=int(row[5]),
        end_ns=int(row[6]),
        status_code=row[7],
        status_message=row[8],
        service_name=row[9],
        scope_name=row[10],
        attributes=json.loads(row[11]),
        events=events,
        links=links,
        resource=json.loads(row[14]) if row[14] else {},
    )


class LocalTraceReader(TraceQuery):
    """Queries over the local trace store; safe beside a writing exporter.

    A missing file is an empty store (nothing has been traced yet). Each call
    opens its own short-lived connection, so one reader can serve many threads.

    Args:
        path: the SQLite file the :class:`LocalSpanExporter` writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _open(self) -> sqlite3.Connection | None:
        if not self.path.exists():
            return None
        try:
            return _connect(self.path)
        except sqlite3.Error as exc:
            raise TraceQueryError(
                f"cannot read the trace store {str(self.path)!r}: {exc}; "
                "check TRACE_STORE_PATH points at a traces.db file"
            ) from None

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        conn = self._open()
        if conn is None:
            return []
        try:
            return list(conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise TraceQueryError(f"trace store {str(self.path)!r} query failed: {exc}") from None
        finally:
            conn.close()

    def count(self) -> int:
        """How many spans the store holds."""
        rows = self._rows("SELECT count(*) FROM spans")
        return int(rows[0][0]) if rows else 0

    def services(self) -> list[str]:
        """Service names that have spans, sorted."""
        return [row[0] for row in self._rows("SELECT DISTINCT service_name FROM spans ORDER BY 1")]

    def operations(self, service: str) -> list[str]:
        """Span names stored for ``service``, sorted."""
        rows = self._rows("SELECT DISTINCT name FROM spans WHERE service_name = ? ORDER BY 1", (service,))
        return [row[0] for row in rows]

    def find_traces(
        self,
        service: str | None = None,
        operation: str | None = None,
        tags: Mapping[str, str] | None = None,
        min_duration_ms: float | None = None,
        max_duration_ms: float | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 20,
        order: TraceOrder = "duration",
    ) -> list[TraceSummary]:
        """Traces matching every filter; see :mod:`.query` for the semantics.

        Raises:
            TraceQueryError: a bad ``limit`` or ``order``, or an unreadable store.
        """
        check_search(limit, order)
        min_ns = None if min_duration_ms is None else int(min_duration_ms * 1e6)
        max_ns = None if max_duration_ms is None else int(max_duration_ms * 1e6)

        # Each filter is a set of trace ids; the answer is their intersection,
        # so each one can use its own index.
        candidates: list[str] = []
        params: list[object] = []
        if service is not None or operation is not None:
            clauses = []
            if service is not None:
                clauses.append("service_name = ?")
                params.append(service)
            if operation is not None:
                clauses.append("name = ?")
                params.append(operation)
                if min_ns is not None:
                    clauses.append("duration_ns >= ?")
                    params.append(min_ns)
                if max_ns is not None:
                    clauses.append("duration_ns <= ?")
                    params.append(max_ns)
            candidates.append("SELECT trace_id FROM spans WHERE " + " AND ".join(clauses))
        for key, value in (tags or {}).items():
            candidates.append(
                "SELECT s.trace_id FROM span_attributes AS a JOIN spans AS s ON s.id = a.span_ref"
                " WHERE a.key = ? AND a.value = ?"
            )
            params.extend((key, attribute_text(value)))
        if since is not None or until is not None:
            clauses = []
            if since is not None:
                clauses.append("start_ns >= ?")
                params.append(datetime_to_ns(since))
            if until is not None:
                clauses.append("start_ns <= ?")
                params.append(datetime_to_ns(until))
            candidates.append("SELECT trace_id FROM spans WHERE " + " AND ".join(clauses))
        if not candidates:
            candidates.append("SELECT trace_id FROM spans")

        having: list[str] = []
        if operation is None:
            if min_ns is not None:
                having.append("max(end_ns) - min(start_ns) >= ?")
                params.append(min_ns)
            if max_ns is not None:
                having.append("max(end_ns) - min(start_ns) <= ?")
                params.append(max_ns)
        ordering = "max(end_ns) - min(start_ns) DESC" if order == "duration" else "min(start_ns) DESC"
        sql = (
            "SELECT trace_id FROM spans WHERE trace_id IN ("
            + " INTERSECT ".join(candidates)
            + ") GROUP BY trace_id"
            + (" HAVING " + " AND ".join(having) if having else "")
            + f" ORDER BY {ordering}, trace_id LIMIT ?"
        )
        params.append(limit)
        trace_ids = [row[0] for row in self._rows(sql, params)]
        if not trace_ids:
            return []

        marks = ",".join("?" * len(trace_ids))
        rows = self._rows(
            "SELECT trace_id, span_id, parent_span_id, name, service_name, start_ns, end_ns, status_code"
            f" FROM spans WHERE trace_id IN ({marks})",
            trace_ids,
        )
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            grouped.setdefault(row[0], []).append(row)
        # The journey attributes of the root spans (issue 12), through the key index.
        journeys: dict[str, dict[str, str]] = {}
        journey_rows = self._rows(
            "SELECT s.trace_id, a.key, a.value FROM spans AS s JOIN span_attributes AS a ON a.span_ref = s.id"
            f" WHERE s.trace_id IN ({marks}) AND a.key IN (?, ?, ?, ?)",
            [*trace_ids, *JOURNEY_KEYS],
        )
        for trace_id, key, value in journey_rows:
            journeys.setdefault(trace_id, {})[str(key).split(".", 1)[1]] = str(value)
        summaries = []
        for trace_id in trace_ids:
            spans = grouped.get(trace_id)
            if not spans:
                continue  # pruned between the two queries
            # Only the columns a summary reads are loaded; kind and status text are not needed.
            records = [
                SpanRecord(row[0], row[1], row[2], row[3], "", row[5], row[6], row[7], None, row[4])
                for row in spans
            ]
            summary = summarize_trace(records)
            if trace_id in journeys:
                summary = dataclasses.replace(summary, journey=journeys[trace_id])
            summaries.append(summary)
        return summaries

    def get_trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of ``trace_id`` ordered by start; empty when unknown.

        Raises:
            TraceQueryError: ``trace_id`` is not hex.
        """
        wanted = normalize_trace_id(trace_id)
        rows = self._rows(
            f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM} WHERE s.trace_id = ? ORDER BY s.start_ns, s.id",
            (wanted,),
        )
        return [_record(row) for row in rows]

    def trace_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Up to ``limit`` stored trace ids starting with ``prefix`` (lowercase hex), sorted.

        Raises:
            TraceQueryError: ``prefix`` is not 1-32 hex digits.
        """
        wanted = normalize_trace_prefix(prefix)
        # A range on the indexed text column: every id from "ab" up to (not including) "ab" + "g".
        rows = self._rows(
            "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? "
            "ORDER BY trace_id LIMIT ?",
            (wanted, wanted + "g", max(1, limit)),
        )
        return [str(row[0]) for row in rows]

    def spans(self, since: datetime | None = None) -> Iterator[SpanRecord]:
        """Stream every span started at or after ``since``, oldest first."""
        conn = self._open()
        if conn is None:
            return
        try:
            sql = f"SELECT {_SPAN_COLUMNS} FROM {_SPAN_FROM}"
            params: tuple[object, ...] = ()
            if since is not None:
                sql += " WHERE s.start_ns >= ?"
                params = (datetime_to_ns(since),)
            cursor = conn.execute(sql + " ORDER BY s.start_ns", params)
            while True:
                batch = cursor.fetchmany(1000)
                if not batch:
                    break
                yield from (_record(row) for row in batch)
        except sqlite3.Error as exc:
            raise TraceQueryError(f"trace store {str(self.path)!r} query failed: {exc}") from None
        finally:
            conn.close()
