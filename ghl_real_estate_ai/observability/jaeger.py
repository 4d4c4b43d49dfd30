"""Jaeger's HTTP query API: a client, and the JSON shapes the app serves.

:class:`JaegerReader` answers the same :class:`~.query.TraceQuery` questions as
the local store, over a Jaeger query service (``http://host:16686``) or over
this app's own Jaeger-shaped endpoints::

    reader = JaegerReader("http://localhost:16686")
    reader.find_traces(service="enterprisehub", tags={"workflow.temperature": "hot"})

:func:`to_jaeger_trace` and :func:`envelope` produce the JSON of Jaeger's query
API (the ``ui`` model its web UI and Grafana's Jaeger data source read):

* a trace is ``{"traceID", "spans", "processes", "warnings"}``;
* a span is ``{"traceID", "spanID", "flags", "operationName", "references",
  "startTime" (µs), "duration" (µs), "tags", "logs", "processID", "warnings"}``;
  the parent is a ``CHILD_OF`` reference and span links are ``FOLLOWS_FROM``;
* tags are ``{"key", "type": string|bool|int64|float64, "value"}``; kind and
  status become the ``span.kind``, ``otel.status_code``,
  ``otel.status_description`` and ``error`` tags, as Jaeger's own OTLP
  translation writes them; events are logs with an ``event`` field;
* every answer is wrapped as ``{"data", "total", "limit", "offset", "errors"}``.

:func:`from_jaeger_trace` reads that shape back into :class:`~.query.SpanRecord`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

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
    normalize_span_id,
    normalize_trace_id,
    summarize_trace,
)

__all__ = [
    "JaegerReader",
    "envelope",
    "error_envelope",
    "from_jaeger_trace",
    "jaeger_tag",
    "matches",
    "to_jaeger_trace",
]

# Tags that carry span fields in Jaeger's model rather than user attributes.
_KIND_TAG = "span.kind"
_STATUS_TAG = "otel.status_code"
_STATUS_MESSAGE_TAG = "otel.status_description"
_SCOPE_TAGS = ("otel.scope.name", "otel.library.name")
_DROPPED_TAGS = {"otel.scope.version", "otel.library.version", "internal.span.format"}
_KINDS = {"SERVER", "CLIENT", "PRODUCER", "CONSUMER", "INTERNAL"}
# Jaeger's UI caps a search at 1500 traces; we read at most that many per service.
MAX_JAEGER_LIMIT = 1500


def jaeger_tag(key: str, value: object) -> dict[str, Any]:
    """One typed Jaeger tag (``{"key", "type", "value"}``) for an attribute value.

    Sequences and non-finite floats become strings, as Jaeger's model has no
    array type and JSON no NaN.
    """
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"key": key, "type": "float64", "value": value}
        return {"key": key, "type": "string", "value": str(value)}
    return {"key": key, "type": "string", "value": attribute_text(value)}


def _micros(ns: int) -> int:
    return ns // 1000


def to_jaeger_trace(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """Jaeger's JSON for one trace (its spans, any order; at least one).

    Processes are numbered ``p1``, ``p2``... per distinct service and resource.
    """
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, str] = {}
    out_spans = []
    for span in spans:
        resource_tags = [jaeger_tag(k, v) for k, v in sorted(span.resource.items()) if k != "service.name"]
        key = json.dumps([span.service_name, resource_tags], sort_keys=True, default=str)
        pid = process_ids.get(key)
        if pid is None:
            pid = f"p{len(process_ids) + 1}"
            process_ids[key] = pid
            processes[pid] = {"serviceName": span.service_name, "tags": resource_tags}
        references = []
        if span.parent_span_id:
            references.append(
                {"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_span_id}
            )
        references.extend(
            {"refType": "FOLLOWS_FROM", "traceID": link.trace_id, "spanID": link.span_id}
            for link in span.links
        )
        tags = [jaeger_tag(k, v) for k, v in span.attributes.items()]
        if span.scope_name:
            tags.append(jaeger_tag("otel.scope.name", span.scope_name))
        if span.kind != "INTERNAL":
            tags.append(jaeger_tag(_KIND_TAG, span.kind.lower()))
        if span.status_code != "UNSET":
            tags.append(jaeger_tag(_STATUS_TAG, span.status_code))
        if span.status_message:
            tags.append(jaeger_tag(_STATUS_MESSAGE_TAG, span.status_message))
        if span.is_error:
            tags.append(jaeger_tag("error", True))
        logs = [
            {
                "timestamp": _micros(event.timestamp_ns),
                "fields": [jaeger_tag("event", event.name)]
                + [jaeger_tag(k, v) for k, v in event.attributes.items()],
            }
            for event in span.events
        ]
        out_spans.append(
            {
                "traceID": span.trace_id,
                "spanID": span.span_id,
                "flags": 1,
                "operationName": span.name,
                "references": references,
                "startTime": _micros(span.start_ns),
                "duration": _micros(span.duration_ns),
                "tags": tags,
                "logs": logs,
                "processID": pid,
                "warnings": None,
            }
        )
    return {"traceID": spans[0].trace_id, "spans": out_spans, "processes": processes, "warnings": None}


def envelope(data: Any, *, total: int | None = None, limit: int = 0, offset: int = 0) -> dict[str, Any]:
    """Jaeger's response wrapper around ``data``."""
    if total is None:
        total = len(data) if isinstance(data, list) else 0
    return {"data": data, "total": total, "limit": limit, "offset": offset, "errors": None}


def error_envelope(code: int, message: str) -> dict[str, Any]:
    """Jaeger's error response: no data and one ``{"code", "msg"}`` error."""
    return {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": code, "msg": message}]}


def _tag_value(tag: Mapping[str, Any]) -> AttributeValue:
    kind = tag.get("type", "string")
    value = tag.get("value")
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "int64":
        return int(value)  # type: ignore[arg-type]
    if kind == "float64":
        return float(value)  # type: ignore[arg-type]
    return "" if value is None else str(value)


def from_jaeger_trace(trace: Mapping[str, Any]) -> list[SpanRecord]:
    """Read one trace of Jaeger's JSON back into span records, ordered by start.

    Raises:
        TraceQueryError: the JSON does not have Jaeger's shape.
    """
    try:
        processes = trace.get("processes") or {}
        records = []
        for span in trace["spans"]:
            process = processes.get(span.get("processID"), {})
            resource: dict[str, AttributeValue] = {
                tag["key"]: _tag_value(tag) for tag in process.get("tags") or []
            }
            service = str(process.get("serviceName", "unknown_service"))
            resource["service.name"] = service
            attributes: dict[str, AttributeValue] = {}
            kind, status, message, scope, error = "INTERNAL", "UNSET", None, None, False
            for tag in span.get("tags") or []:
                key, value = tag["key"], _tag_value(tag)
                if key == _KIND_TAG and str(value).upper() in _KINDS:
                    kind = str(value).upper()
                elif key == _STATUS_TAG:
                    status = str(value).upper()
                elif key == _STATUS_MESSAGE_TAG:
                    message = str(value)
                elif key in _SCOPE_TAGS:
                    scope = str(value)
                elif key == "error" and value is True:
                    error = True
                elif key not in _DROPPED_TAGS:
                    attributes[key] = value
            if error and status == "UNSET":
                status = "ERROR"
            trace_id = normalize_trace_id(str(span["traceID"]))
            parent = None
            links = []
            for ref in span.get("references") or []:
                ref_trace = normalize_trace_id(str(ref["traceID"]))
                ref_span = normalize_span_id(str(ref["spanID"]))
                if ref.get("refType") == "CHILD_OF" and parent is None and ref_trace == trace_id:
                    parent = ref_span
                else:
                    links.append(SpanLink(trace_id=ref_trace, span_id=ref_span))
            events = []
            for log in span.get("logs") or []:
                fields = {field["key"]: _tag_value(field) for field in log.get("fields") or []}
                name = str(fields.pop("event", "log"))
                events.append(
                    SpanEvent(name=name, timestamp_ns=int(log["timestamp"]) * 1000, attributes=fields)
                )
            start_ns = int(span["startTime"]) * 1000
            records.append(
                SpanRecord(
                    trace_id=trace_id,
                    span_id=normalize_span_id(str(span["spanID"])),
                    parent_span_id=parent,
                    name=str(span["operationName"]),
                    kind=kind,
                    start_ns=start_ns,
                    end_ns=start_ns + int(span["duration"]) * 1000,
                    status_code=status,
                    status_message=message,
                    service_name=service,
                    attributes=attributes,
                    resource=resource,
                    events=events,
                    links=links,
                    scope_name=scope,
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TraceQueryError(f"trace JSON is not in Jaeger's shape: {exc!r}") from None
    records.sort(key=lambda record: (record.start_ns, record.span_id))
    return records


def matches(
    spans: Sequence[SpanRecord],
    *,
    service: str | None = None,
    operation: str | None = None,
    tags: Mapping[str, str] | None = None,
    min_duration_ms: float | None = None,
    max_duration_ms: float | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> bool:
    """Whether one trace's spans satisfy the filters, with :mod:`.query`'s semantics."""
    if not spans:
        return False
    low = None if min_duration_ms is None else min_duration_ms * 1e6
    high = None if max_duration_ms is None else max_duration_ms * 1e6

    def in_range(duration_ns: float) -> bool:
        return (low is None or duration_ns >= low) and (high is None or duration_ns <= high)

    if service is not None or operation is not None:
        selected = [
            s
            for s in spans
            if (service is None or s.service_name == service) and (operation is None or s.name == operation)
        ]
        if operation is not None:
            selected = [s for s in selected if in_range(s.duration_ns)]
        if not selected:
            return False
    if operation is None and not in_range(summarize_trace(spans).duration_ns):
        return False
    for key, value in (tags or {}).items():
        wanted = attribute_text(value)
        if not any(key in s.attributes and attribute_text(s.attributes[key]) == wanted for s in spans):
            return False
    start_low = None if since is None else datetime_to_ns(since)
    start_high = None if until is None else datetime_to_ns(until)
    if start_low is not None or start_high is not None:
        return any(
            (start_low is None or s.start_ns >= start_low)
            and (start_high is None or s.start_ns <= start_high)
            for s in spans
        )
    return True


def _go_duration(ms: float, *, up: bool) -> str:
    # Round outwards so the pre-filter never drops a trace the exact rule keeps.
    micros = math.ceil(ms * 1000) if up else math.floor(ms * 1000)
    return f"{micros}us"


class JaegerReader(TraceQuery):
    """The :class:`~.query.TraceQuery` questions over Jaeger's HTTP query API.

    Jaeger searches one service at a time, so a search without ``service``
    runs once per service and merges. Jaeger matches all tags on one span;
    to keep the store's any-span semantics the first tag goes to Jaeger and
    the rest are checked on the returned traces (which come whole).

    Args:
        base_url: the query service, e.g. ``http://localhost:16686`` (a path
            prefix such as ``/jaeger`` is kept).
        token: sent as ``Authorization: Bearer`` (this app's ADMIN_TOKEN).
        timeout: seconds per request.
        transport: an httpx transport (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise TraceQueryError(
                f"Jaeger URL {base_url!r} is not valid: use http://host:16686 (the query service)"
            )
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> JaegerReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, path: str, params: Sequence[tuple[str, str]] = (), *, allow_404: bool = False) -> Any:
        try:
            response = self._client.get(path, params=list(params))
        except httpx.HTTPError as exc:
            raise TraceQueryError(
                f"cannot reach Jaeger at {self.base_url!r}: {exc}; check --jaeger-url"
            ) from None
        if allow_404 and response.status_code == 404:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            detail = ""
            if isinstance(body, dict) and body.get("errors"):
                detail = "; ".join(str(e.get("msg")) for e in body["errors"] if isinstance(e, dict))
            raise TraceQueryError(
                f"Jaeger at {self.base_url!r} answered {response.status_code} to {path}"
                + (f": {detail}" if detail else "")
            )
        return body.get("data")

    def services(self) -> list[str]:
        """Service names Jaeger knows, sorted."""
        return sorted(str(s) for s in self._get("/api/services") or [])

    def operations(self, service: str) -> list[str]:
        """Operation names of ``service``, sorted."""
        data = self._get(f"/api/services/{quote(service, safe='')}/operations") or []
        return sorted(str(op) for op in data)

    def _search(
        self,
        service: str,
        operation: str | None,
        tags: Mapping[str, str],
        min_duration_ms: float | None,
        max_duration_ms: float | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[list[SpanRecord]]:
        params: list[tuple[str, str]] = [("service", service), ("limit", str(limit))]
        if operation is not None:
            params.append(("operation", operation))
        if tags:
            first = next(iter(tags.items()))
            params.append(("tags", json.dumps({first[0]: first[1]})))
        # Span-level bounds are a superset of trace-level ones, so they are a
        # safe pre-filter; `matches` then applies the exact rule.
        if min_duration_ms is not None:
            params.append(("minDuration", _go_duration(min_duration_ms, up=False)))
        if max_duration_ms is not None:
            params.append(("maxDuration", _go_duration(max_duration_ms, up=True)))
        if since is not None:
            params.append(("start", str(datetime_to_ns(since) // 1000)))
        if until is not None:
            params.append(("end", str(datetime_to_ns(until) // 1000)))
        data = self._get("/api/traces", params) or []
        if not isinstance(data, list):
            raise TraceQueryError(f"Jaeger at {self.base_url!r} answered a non-list trace search")
        return [from_jaeger_trace(trace) for trace in data]

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
        """Traces matching every filter, sorted by ``order`` (see :mod:`.query`).

        Raises:
            TraceQueryError: bad arguments, or Jaeger unreachable or refusing.
        """
        check_search(limit, order)
        tags = dict(tags or {})
        services = [service] if service is not None else self.services()
        # Ask for more than needed when some filtering happens on our side.
        fetch = min(MAX_JAEGER_LIMIT, limit if len(tags) <= 1 else limit * 10)
        if order == "duration":
            fetch = MAX_JAEGER_LIMIT if fetch < MAX_JAEGER_LIMIT else fetch
        found: dict[str, TraceSummary] = {}
        for name in services:
            for spans in self._search(
                name, operation, tags, min_duration_ms, max_duration_ms, since, until, fetch
            ):
                if spans and matches(
                    spans,
                    service=service,
                    operation=operation,
                    tags=tags,
                    min_duration_ms=min_duration_ms,
                    max_duration_ms=max_duration_ms,
                    since=since,
                    until=until,
                ):
                    found[spans[0].trace_id] = summarize_trace(spans)
        if order == "duration":
            ranked = sorted(found.values(), key=lambda s: (-s.duration_ns, s.trace_id))
        else:
            ranked = sorted(found.values(), key=lambda s: (-s.start_ns, s.trace_id))
        return ranked[:limit]

    def get_trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of one trace ordered by start; empty when Jaeger has no such trace."""
        wanted = normalize_trace_id(trace_id)
        data = self._get(f"/api/traces/{wanted}", allow_404=True)
        if not data:
            return []
        return from_jaeger_trace(data[0])

    def spans(self, since: datetime | None = None) -> Iterator[SpanRecord]:
        """Spans of the traces started since ``since``: up to 1500 traces per service."""
        seen: set[str] = set()
        for name in self.services():
            for spans in self._search(name, None, {}, None, None, since, None, MAX_JAEGER_LIMIT):
                if not spans or spans[0].trace_id in seen:
                    continue
                seen.add(spans[0].trace_id)
                for span in spans:
                    if since is None or span.start_ns >= datetime_to_ns(since):
                        yield span
