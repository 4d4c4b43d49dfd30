"""Store-operation spans: what a trace shows of the database.

One CLIENT span per store operation that reaches the database (a statement,
or a batch of statements sent together: a unit of work's writes, a lock with
the reads that ride along). Its name follows the query-summary convention,
``{operation} {table}`` (``INSERT outbox``), or ``BATCH`` for a batch over
several tables; its attributes:

==========================  ==========================================================
``db.system``               ``sqlite`` or ``postgresql``
``db.operation.name``       the verb (``SELECT``, ``INSERT``...) or ``BATCH``
``db.collection.name``      the table, when the operation touches one
``db.query.summary``        the summaries of its statements in order (``INSERT locks SELECT contacts``)
``db.operation.batch.size`` how many statements it sent (only for more than one)
==========================  ==========================================================

Values never reach a span: statements are described by verb and table only.
Per-statement spans (with the statement text, placeholders only) are an
opt-in for debugging, ``DATABASE_TRACE_STATEMENTS=true``. Nothing is traced
outside a trace or under an unsampled parent (no span is even started), and
the connection pool's housekeeping is never traced.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from ghl_real_estate_ai.observability._fastspan import attach_span, current_sampling, detach

__all__ = [
    "DB_BATCH_SIZE",
    "DB_COLLECTION",
    "DB_OPERATION",
    "DB_QUERY_SUMMARY",
    "DB_STATEMENT",
    "DB_SYSTEM",
    "TRACER_NAME",
    "StoreSpans",
    "describe_statement",
    "summarize",
]

TRACER_NAME = "ghl_real_estate_ai.storage"

_VERB = re.compile(r"^\s*(\w+)")
_TABLE_PATTERNS = {
    "SELECT": re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE),
    "DELETE": re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE),
    "INSERT": re.compile(r"\bINTO\s+(\w+)", re.IGNORECASE),
    "UPDATE": re.compile(r"^\s*UPDATE\s+(\w+)", re.IGNORECASE),
    "CREATE": re.compile(r"\b(?:TABLE(?:\s+IF\s+NOT\s+EXISTS)?|ON)\s+(\w+)", re.IGNORECASE),
}


@lru_cache(maxsize=1024)
def describe_statement(sql: str) -> tuple[str, str | None]:
    """The SQL verb and main table of a statement (``("UPDATE", "outbox")``); table None when unknown."""
    match = _VERB.match(sql)
    verb = match.group(1).upper() if match else ""
    pattern = _TABLE_PATTERNS.get(verb)
    table = pattern.search(sql) if pattern else None
    return verb, table.group(1) if table else None


DB_SYSTEM = "db.system"
"""The database engine: ``sqlite`` or ``postgresql``."""
DB_OPERATION = "db.operation.name"
"""The SQL verb of the operation, or ``BATCH`` for several statements."""
DB_COLLECTION = "db.collection.name"
"""The table, when the operation touches only one."""
DB_QUERY_SUMMARY = "db.query.summary"
"""``{verb} {table}`` of each statement sent, in order, space separated."""
DB_BATCH_SIZE = "db.operation.batch.size"
"""How many statements the operation sent (set when more than one)."""
DB_STATEMENT = "db.statement"
"""The statement text with its placeholders (never values); statement spans only."""


@lru_cache(maxsize=1024)
def summarize(sql: str) -> str:
    """``{verb} {table}`` of one statement (``UPDATE outbox``), or the verb alone."""
    verb, table = describe_statement(sql)
    return f"{verb} {table}" if table else verb


@lru_cache(maxsize=1024)
def _statement_text(sql: str) -> str:
    return " ".join(sql.split())


def _sampled_parent() -> bool:
    return current_sampling() is True


@lru_cache(maxsize=1024)
def _operation_shape(
    system: str, statements: tuple[str, ...], name: str | None
) -> tuple[str, tuple[tuple[str, str | int], ...]]:
    """The span name and attributes of an operation: the same statements always give the same."""
    summaries = [summarize(sql) for sql in statements]
    tables = {describe_statement(sql)[1] for sql in statements}
    if len(summaries) == 1:
        verb, table = describe_statement(statements[0])
    else:
        verb, table = "BATCH", (tables.pop() if len(tables) == 1 else None)
    attributes: dict[str, str | int] = {
        DB_SYSTEM: system,
        DB_OPERATION: verb,
        DB_QUERY_SUMMARY: " ".join(summaries),
    }
    if table:
        attributes[DB_COLLECTION] = table
    if len(summaries) > 1:
        attributes[DB_BATCH_SIZE] = len(summaries)
    return name or (f"{verb} {table}" if table else verb), tuple(attributes.items())


class _Operation:
    """The context manager of :meth:`StoreSpans.operation` (a class: a generator-based one costs more)."""

    __slots__ = ("_name", "_span", "_spans", "_statements", "_token")

    def __init__(self, spans: StoreSpans, statements: Sequence[str], name: str | None) -> None:
        self._spans = spans
        self._statements = statements
        self._name = name
        self._span: Span | None = None
        self._token: contextvars.Token[Any] | None = None

    def __enter__(self) -> Span | None:
        if not _sampled_parent():
            return None
        spans = self._spans
        span_name, attributes = _operation_shape(spans.system, tuple(self._statements), self._name)
        span = spans.tracer.start_span(span_name, kind=SpanKind.CLIENT, attributes=dict(attributes))
        self._span = span
        self._token = attach_span(span)
        return span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        try:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        finally:
            detach(self._token)  # type: ignore[arg-type]  # set in __enter__
            span.end()


@dataclass(slots=True)
class Timed:
    """When one statement of a batch ran (``time.time_ns`` values), for opt-in statement spans."""

    sql: str
    start_ns: int
    end_ns: int


class StoreSpans:
    """Starts the spans of one store (see the module docstring).

    Args:
        system: ``sqlite`` or ``postgresql``.
        tracer_provider: where spans go; the global provider when None.
        statements: also make one span per statement (debugging).
    """

    def __init__(self, system: str, tracer_provider: TracerProvider | None, *, statements: bool) -> None:
        self.system = system
        self.statements = statements
        self.tracer: Tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    def active(self) -> bool:
        """Whether an operation started now gets a span (inside a sampled trace)."""
        return _sampled_parent()

    def operation(
        self, statements: Sequence[str], name: str | None = None
    ) -> AbstractContextManager[Span | None]:
        """A span around one store operation sending ``statements``; current while it runs.

        Yields None (and costs nothing more) outside a sampled trace.
        """
        return _Operation(self, statements, name)

    def statement_spans(self, timed: Sequence[Timed]) -> None:
        """Opt-in: one span per statement already run, under the current operation span."""
        if not self.statements or not _sampled_parent():
            return
        for item in timed:
            verb, table = describe_statement(item.sql)
            attributes: dict[str, str] = {
                DB_SYSTEM: self.system,
                DB_OPERATION: verb,
                DB_STATEMENT: _statement_text(item.sql),
            }
            if table:
                attributes[DB_COLLECTION] = table
            span = self.tracer.start_span(
                summarize(item.sql), kind=SpanKind.CLIENT, attributes=attributes, start_time=item.start_ns
            )
            span.end(end_time=item.end_ns)


def now_ns() -> int:
    """Wall-clock nanoseconds, the clock spans use."""
    return time.time_ns()
