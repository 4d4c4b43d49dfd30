"""The read side of traces, shared by the local trace store and Jaeger.

Both backends answer the same :class:`TraceQuery` protocol and hand back the
same records, so ``jorge traces``, ``jorge slo`` and the ``/traces`` page work
the same over the embedded SQLite store (:mod:`.local_store`) and over a real
Jaeger (:mod:`.jaeger`)::

    reader: TraceQuery = LocalTraceReader(Path("data/traces.db"))
    for summary in reader.find_traces(tags={"workflow.bot_type": "lead_bot"}):
        print(summary.trace_id, summary.duration_ms)

Query semantics (both backends):

* ``service`` / ``operation`` select traces holding a span of that service
  (and that span name).
* ``tags``: every ``key=value`` pair must be carried by *some* span of the
  trace (not necessarily the same span), as Jaeger's tag search finds traces
  by any of their spans. Values compare as text; booleans are ``true`` /
  ``false``.
* ``min_duration_ms`` / ``max_duration_ms`` bound the duration of the spans
  named by ``operation`` when one is given, otherwise the whole trace's.
* ``since`` / ``until`` keep traces with a span starting in that window.

Also here: the parsers for the durations (``250ms``, ``1.5s``, Go's ``1m30s``)
and times (``1h`` ago, ISO 8601) that the CLI and the HTTP API accept.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol, TypeAlias

from ghl_real_estate_ai.observability.errors import TraceQueryError

__all__ = [
    "AttributeValue",
    "SpanEvent",
    "SpanLink",
    "SpanRecord",
    "TraceOrder",
    "TraceQuery",
    "TraceQueryError",
    "TraceSummary",
    "attribute_text",
    "build_tree",
    "check_search",
    "datetime_to_ns",
    "normalize_span_id",
    "normalize_trace_id",
    "normalize_trace_prefix",
    "parse_duration_ms",
    "parse_since",
    "parse_tag",
    "resolve_trace_id",
    "summarize_trace",
    "unique_prefixes",
]

AttributeValue: TypeAlias = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]
"""An attribute value as OpenTelemetry allows it (sequences come back as lists)."""

TraceOrder: TypeAlias = Literal["duration", "time"]
"""``duration``: longest first; ``time``: most recent first."""

_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """A timestamped event recorded on a span (Jaeger calls them logs)."""

    name: str
    timestamp_ns: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanLink:
    """A link to a span of another (or the same) trace: Jaeger's FOLLOWS_FROM."""

    trace_id: str
    span_id: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span as a backend stores it.

    Ids are lowercase hex: 32 characters for traces, 16 for spans. ``kind`` is
    the OpenTelemetry kind name (``INTERNAL``, ``SERVER``, ``CLIENT``,
    ``PRODUCER``, ``CONSUMER``); ``status_code`` is ``UNSET``, ``OK`` or ``ERROR``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str | None
    service_name: str
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    resource: dict[str, AttributeValue] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
    scope_name: str | None = None

    @property
    def duration_ns(self) -> int:
        """End minus start, never negative."""
        return max(0, self.end_ns - self.start_ns)

    @property
    def duration_ms(self) -> float:
        """Duration in milliseconds."""
        return self.duration_ns / 1e6

    @property
    def is_error(self) -> bool:
        """Whether the span's status is ERROR."""
        return self.status_code == "ERROR"


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One line of a trace search: the root span and the trace's extent."""

    trace_id: str
    root_name: str
    root_service: str
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    services: tuple[str, ...]
    journey: dict[str, str] = field(default_factory=dict)
    """The root span's ``journey.*`` attributes without the prefix (``final_bot``,
    ``handoff_route``, ``outcome``, ``temperature``); empty when it has none."""

    @property
    def duration_ms(self) -> float:
        """Trace duration (first start to last end) in milliseconds."""
        return self.duration_ns / 1e6

    @property
    def start(self) -> datetime:
        """When the trace started, in UTC."""
        return datetime.fromtimestamp(self.start_ns / 1e9, tz=UTC)


class TraceQuery(Protocol):
    """What every trace backend answers (the local store, Jaeger)."""

    def services(self) -> list[str]:
        """Service names that have spans, sorted."""
        ...

    def operations(self, service: str) -> list[str]:
        """Span names seen for ``service``, sorted."""
        ...

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
        """Traces matching every given filter (see the module docstring)."""
        ...

    def get_trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of one trace ordered by start; empty when unknown."""
        ...

    def spans(self, since: datetime | None = None) -> Iterable[SpanRecord]:
        """Every span started at or after ``since`` (all when ``None``)."""
        ...


def normalize_trace_id(text: str) -> str:
    """Lowercase, 32-digit hex trace id from user or Jaeger input.

    Jaeger may print 64-bit ids with 16 digits (or fewer, leading zeros trimmed);
    they are left-padded.

    Raises:
        TraceQueryError: ``text`` is not 1-32 hex digits.
    """
    value = text.strip().lower()
    if not value or len(value) > 32 or not _HEX.match(value):
        raise TraceQueryError(
            f"trace id {text!r} is not valid: give the 32 hex digits shown by `jorge traces find`"
        )
    return value.rjust(32, "0")


def normalize_trace_prefix(text: str) -> str:
    """Lowercase hex of a trace id or its first digits (not padded: a prefix, as git takes).

    Raises:
        TraceQueryError: ``text`` is not 1-32 hex digits.
    """
    value = text.strip().lower()
    if not value or len(value) > 32 or not _HEX.match(value):
        raise TraceQueryError(
            f"trace id {text!r} is not valid: give the hex id (or its first digits) "
            "shown by `jorge traces find`"
        )
    return value


def resolve_trace_id(reader: object, text: str) -> str:
    """The one full trace id that ``text`` names: all 32 digits, or a prefix unique in ``reader``.

    Args:
        reader: a backend; prefixes need one with ``trace_ids_with_prefix`` (the local store).
        text: what the user typed.

    Returns:
        32 lowercase hex digits.

    Raises:
        TraceQueryError: not hex; no trace starts with it; several do (ambiguous); or the
            backend looks traces up by full id only.
    """
    prefix = normalize_trace_prefix(text)
    if len(prefix) == 32:
        return prefix
    lookup = getattr(reader, "trace_ids_with_prefix", None)
    if lookup is None:
        raise TraceQueryError(
            f"trace id {text!r} has {len(prefix)} digits and this backend finds traces by the full id "
            "only: give all 32 hex digits"
        )
    found: list[str] = lookup(prefix, limit=4)
    if not found:
        raise TraceQueryError(f"no trace starts with {prefix!r}")
    if len(found) > 1:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        count = "more than 3" if len(found) > 3 else str(len(found))
        raise TraceQueryError(
            f"trace id prefix {prefix!r} is ambiguous: {count} traces start with it ({shown}); "
            "give more digits"
        )
    return found[0]


def unique_prefixes(reader: object, trace_ids: Sequence[str], minimum: int = 8) -> dict[str, str]:
    """Each id's shortest prefix (at least ``minimum`` digits) that no other stored trace shares.

    A backend without ``trace_ids_with_prefix`` (Jaeger) gets the full ids.
    """
    lookup = getattr(reader, "trace_ids_with_prefix", None)
    result: dict[str, str] = {}
    for trace_id in trace_ids:
        if lookup is None:
            result[trace_id] = trace_id
            continue
        length = min(minimum, len(trace_id))
        while length < len(trace_id) and len(lookup(trace_id[:length], limit=2)) > 1:
            length += 1
        result[trace_id] = trace_id[: min(length, len(trace_id))]
    return result


def normalize_span_id(text: str) -> str:
    """Lowercase, 16-digit hex span id.

    Raises:
        TraceQueryError: ``text`` is not 1-16 hex digits.
    """
    value = text.strip().lower()
    if not value or len(value) > 16 or not _HEX.match(value):
        raise TraceQueryError(f"span id {text!r} is not valid: expected up to 16 hex digits")
    return value.rjust(16, "0")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_MS = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "μs": 1e-3,
    "ms": 1.0,
    "s": 1e3,
    "m": 60e3,
    "h": 3600e3,
}


def parse_duration_ms(text: str) -> float:
    """Parse a duration such as ``250ms``, ``1.5s``, ``500us`` or ``1m30s`` into milliseconds.

    The format is Go's (what Jaeger's ``minDuration`` takes); a bare number is
    milliseconds.

    Raises:
        TraceQueryError: the text is not a non-negative duration.
    """
    value = text.strip().replace(" ", "")
    if not value:
        raise TraceQueryError("empty duration: use a value such as 250ms, 1.5s or 2m")
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or number < 0:
            raise TraceQueryError(f"duration {text!r} must be a non-negative number of milliseconds")
        return number
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        position = match.end()
    if position != len(value) or position == 0:
        raise TraceQueryError(
            f"duration {text!r} is not valid: use a number with a unit (ns, us, ms, s, m, h), "
            "such as 250ms, 1.5s or 1m30s"
        )
    return total


_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_AGO_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """Parse ``30m``, ``1h``, ``2d`` (that long ago) or an ISO 8601 time into an aware datetime.

    ISO times without a zone are taken as UTC.

    Raises:
        TraceQueryError: the text is neither form.
    """
    value = text.strip()
    match = _AGO.match(value)
    if match:
        seconds = float(match.group(1)) * _AGO_SECONDS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise TraceQueryError(
            f"time {text!r} is not valid: use an age such as 30m, 1h, 2d or an ISO time "
            "such as 2026-02-15T09:30:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_tag(text: str) -> tuple[str, str]:
    """Split ``key=value`` (Jaeger's ``key:value`` too) into its parts.

    Raises:
        TraceQueryError: no separator or an empty key.
    """
    for separator in ("=", ":"):
        key, found, value = text.partition(separator)
        if found and key.strip():
            return key.strip(), value.strip()
    raise TraceQueryError(f"tag {text!r} is not valid: use key=value, e.g. workflow.contact_id=abc123")


def attribute_text(value: object) -> str:
    """The text form under which an attribute value is indexed and matched.

    Booleans are ``true``/``false`` (as Jaeger prints them), sequences are JSON.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def check_search(limit: int, order: str) -> None:
    """Refuse a trace search's bad ``limit`` or ``order`` the same way in every backend.

    Raises:
        TraceQueryError: ``limit`` below 1, or ``order`` neither ``duration`` nor ``time``.
    """
    if limit < 1:
        raise TraceQueryError(f"limit must be at least 1, got {limit!r}")
    if order not in ("duration", "time"):
        raise TraceQueryError(f"order {order!r} is not valid: use 'duration' or 'time'")


def datetime_to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch for an (aware or UTC-naive) datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def build_tree(spans: Sequence[SpanRecord]) -> list[tuple[SpanRecord, int]]:
    """Order a trace's spans depth first (children by start), with each span's depth.

    Spans whose parent is missing (not stored, pruned or never ended) count as roots.
    """
    by_id = {span.span_id: span for span in spans}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in by_id else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.name))
    ordered: list[tuple[SpanRecord, int]] = []
    stack = [(root, 0) for root in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:  # a cycle in bad input must not loop forever
            continue
        seen.add(span.span_id)
        ordered.append((span, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return ordered


def summarize_trace(spans: Sequence[SpanRecord]) -> TraceSummary:
    """The :class:`TraceSummary` of a non-empty list of one trace's spans."""
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    ids = {span.span_id for span in spans}
    roots = [span for span in spans if span.parent_span_id not in ids]
    root = min(roots or spans, key=lambda s: s.start_ns)
    return TraceSummary(
        trace_id=spans[0].trace_id,
        root_name=root.name,
        root_service=root.service_name,
        start_ns=start,
        duration_ns=max(0, end - start),
        span_count=len(spans),
        error_count=sum(1 for span in spans if span.is_error),
        services=tuple(sorted({span.service_name for span in spans})),
        journey=_journey(spans, root),
    )


def _journey(spans: Sequence[SpanRecord], root: SpanRecord) -> dict[str, str]:
    # The journey sits on this service's root span, which may hang under a caller's span.
    for span in [root, *sorted(spans, key=lambda s: s.start_ns)]:
        found = {
            k.split(".", 1)[1]: attribute_text(v)
            for k, v in span.attributes.items()
            if k.startswith("journey.")
        }
        if found:
            return found
    return {}
