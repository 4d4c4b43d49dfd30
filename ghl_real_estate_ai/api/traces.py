"""The trace viewer routes: Jaeger's query API over the local store, and the ``/traces`` page.

``create_traces_router(store_path, admin_token=..., require_token=...)`` returns a
router serving, from the local SQLite trace store:

* ``GET /api/services``, ``GET /api/services/{service}/operations``,
  ``GET /api/traces`` and ``GET /api/traces/{trace_id}`` with Jaeger's query
  parameters (``service``, ``operation``, ``tags`` as a JSON object or repeated
  ``tag=key:value``, ``minDuration``/``maxDuration`` as Go durations,
  ``start``/``end`` in microseconds, ``lookback``, ``limit``, ``traceID``) and
  Jaeger's JSON, so Jaeger clients (Grafana's Jaeger data source,
  ``jorge traces --jaeger-url``) read it. Our own extra: ``sort=duration|time``
  (default ``time``, most recent first);
* ``GET /traces``: a search form and its results; ``GET /traces/{trace_id}``: the
  waterfall, a span's attributes shown on click (rendered from ``api/templates/``);
  ``GET /static/{name}``: the pages' style sheets and scripts (``api/static/``).

Every parameter is bounded: ``limit`` 1 to the Jaeger maximum, durations up to
:data:`MAX_DURATION` (a week), ages (``lookback``, ``since``) up to
:data:`MAX_AGE` (ten years), times within 1970-2100. Bad parameter values,
out-of-bound ones included, answer 400 naming the parameter and the bound, with Jaeger's error JSON
(``{"data": null, "errors": [{"code": 400, "msg": ...}], ...}``), an unknown
trace 404, an unreadable store 503. With ``require_token``, every route needs
``Authorization: Bearer <admin_token>`` or ``?token=<admin_token>`` (401 otherwise).
"""

from __future__ import annotations

import hmac
import json
import math
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ghl_real_estate_ai.api.traces_page import (
    SearchForm,
    add_static_route,
    render_contact_page,
    render_message_page,
    render_search_page,
    render_trace_page,
)
from ghl_real_estate_ai.observability.jaeger import (
    MAX_JAEGER_LIMIT,
    envelope,
    error_envelope,
    to_jaeger_trace,
)
from ghl_real_estate_ai.observability.local_store import LocalTraceReader
from ghl_real_estate_ai.observability.query import (
    TraceOrder,
    TraceQueryError,
    TraceSummary,
    attribute_text,
    normalize_trace_id,
    parse_duration_ms,
    parse_since,
    parse_tag,
)
from ghl_real_estate_ai.observability.timeline import contact_timeline

__all__ = ["MAX_AGE", "MAX_DURATION", "create_traces_router"]

MAX_DURATION = timedelta(days=7)
"""The longest ``minDuration``/``maxDuration`` accepted."""
MAX_AGE = timedelta(days=3650)
"""The furthest back ``lookback``/``since`` may reach."""
_MAX_DURATION_TEXT = "168h (a week)"
_MAX_AGE_TEXT = "3650d (ten years)"
_MAX_PARAM_CHARS = 64
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass
class _Search:
    service: str | None = None
    operation: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    min_ms: float | None = None
    max_ms: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 20
    order: TraceOrder = "time"


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _parse_limit(raw: str | None, default: int) -> int:
    if _text(raw) is None:
        return default
    try:
        limit = int(str(raw).strip()[: _MAX_PARAM_CHARS + 1])
    except ValueError:
        raise TraceQueryError(f"limit {raw!r} is not a whole number: use e.g. limit=20") from None
    if len(str(raw).strip()) > _MAX_PARAM_CHARS or not 1 <= limit <= MAX_JAEGER_LIMIT:
        raise TraceQueryError(f"limit {raw!r} is out of range: use 1 to {MAX_JAEGER_LIMIT}")
    return limit


def _parse_order(raw: str | None, default: TraceOrder) -> TraceOrder:
    value = _text(raw)
    if value is None:
        return default
    if value == "duration":
        return "duration"
    if value == "time":
        return "time"
    raise TraceQueryError(f"sort {raw!r} is not valid: use duration or time")


def _parse_micros(name: str, raw: str | None) -> datetime | None:
    value = _text(raw)
    if value is None:
        return None
    if len(value) > 20:
        raise TraceQueryError(f"{name} {value[:40]!r}... is too long: use microseconds since the epoch")
    try:
        micros = int(value)
        moment = datetime.fromtimestamp(micros / 1e6, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise TraceQueryError(f"{name} {raw!r} is not valid: use microseconds since the epoch") from None
    return _within_range(name, value, moment)


def _within_range(name: str, raw: str, moment: datetime) -> datetime:
    if not _EARLIEST <= moment < _LATEST:
        raise TraceQueryError(
            f"{name} {raw!r} is out of bounds: use a time from {_EARLIEST.year} to {_LATEST.year - 1}"
        )
    return moment


def _parse_duration(name: str, raw: str) -> float:
    """A Go duration in ms, at most :data:`MAX_DURATION`."""
    if len(raw) > _MAX_PARAM_CHARS:
        raise TraceQueryError(f"{name} is {len(raw)} characters long: use at most {_MAX_PARAM_CHARS}")
    try:
        millis = parse_duration_ms(raw)
    except (OverflowError, ValueError):
        millis = math.inf
    except TraceQueryError as exc:
        raise TraceQueryError(f"{name}: {exc}") from None
    if not millis <= MAX_DURATION.total_seconds() * 1000:
        raise TraceQueryError(f"{name} {raw!r} is out of bounds: use at most {_MAX_DURATION_TEXT}")
    return millis


def _parse_age(name: str, raw: str) -> datetime:
    """An age (``2d``) or an ISO time, at most :data:`MAX_AGE` back."""
    if len(raw) > _MAX_PARAM_CHARS:
        raise TraceQueryError(f"{name} is {len(raw)} characters long: use at most {_MAX_PARAM_CHARS}")
    now = datetime.now(UTC)
    try:
        moment = parse_since(raw, now=now)
    except (OverflowError, ValueError):
        raise TraceQueryError(
            f"{name} {raw!r} is out of bounds: use an age of at most {_MAX_AGE_TEXT}"
        ) from None
    except TraceQueryError as exc:
        raise TraceQueryError(f"{name}: {exc}") from None
    if moment < now - MAX_AGE:
        raise TraceQueryError(f"{name} {raw!r} is out of bounds: use an age of at most {_MAX_AGE_TEXT}")
    return _within_range(name, raw, moment)


def _parse_api_search(request: Request) -> _Search:
    query = request.query_params
    search = _Search(
        service=_text(query.get("service")),
        operation=_text(query.get("operation")),
        limit=_parse_limit(query.get("limit"), 20),
        order=_parse_order(query.get("sort"), "time"),
    )
    raw_tags = _text(query.get("tags"))
    if raw_tags is not None:
        try:
            parsed = json.loads(raw_tags)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(v, str | int | float | bool) for v in parsed.values()
        ):
            raise TraceQueryError(
                f"tags {raw_tags!r} is not valid: use a JSON object such as "
                '{"workflow.contact_id":"abc123"}'
            )
        search.tags.update({str(k): attribute_text(v) for k, v in parsed.items()})
    for raw in query.getlist("tag"):
        key, value = parse_tag(raw)
        search.tags[key] = value
    if _text(query.get("minDuration")):
        search.min_ms = _parse_duration("minDuration", query["minDuration"])
    if _text(query.get("maxDuration")):
        search.max_ms = _parse_duration("maxDuration", query["maxDuration"])
    search.since = _parse_micros("start", query.get("start"))
    search.until = _parse_micros("end", query.get("end"))
    lookback = _text(query.get("lookback"))
    if lookback is not None and lookback != "custom" and search.since is None:
        search.since = _parse_age("lookback", lookback)
    return search


def _parse_page_form(form: SearchForm) -> _Search:
    search = _Search(
        service=_text(form.service),
        operation=_text(form.operation),
        limit=_parse_limit(form.limit, 20),
        order=_parse_order(form.sort, "duration"),
    )
    try:
        pairs = shlex.split(form.tags)
    except ValueError:
        raise TraceQueryError(f"tags {form.tags!r} are not valid: close the quotes") from None
    for pair in pairs:
        key, value = parse_tag(pair)
        search.tags[key] = value
    if _text(form.min_duration):
        search.min_ms = _parse_duration("min_duration", form.min_duration)
    if _text(form.max_duration):
        search.max_ms = _parse_duration("max_duration", form.max_duration)
    if _text(form.since):
        search.since = _parse_age("since", form.since)
    return search


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(error_envelope(400, message), status_code=400)


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(error_envelope(503, message), status_code=503)


def create_traces_router(store_path: Path, *, admin_token: str | None, require_token: bool) -> APIRouter:
    """Build the trace viewer routes over the local store at ``store_path``.

    Args:
        store_path: the SQLite file the local exporter writes (it may not exist yet).
        admin_token: the token that unlocks the routes when ``require_token`` is set.
        require_token: demand ``Authorization: Bearer <admin_token>`` or ``?token=``;
            with no ``admin_token`` configured every request is then refused.

    Returns:
        A router to include in the app (no prefix needed).
    """
    reader = LocalTraceReader(store_path)
    router = APIRouter(tags=["traces"])
    expected = admin_token.encode() if admin_token else None

    def authorized(request: Request) -> bool:
        if not require_token:
            return True
        header = request.headers.get("authorization", "")
        supplied = (
            header[7:].strip() if header[:7].lower() == "bearer " else request.query_params.get("token")
        )
        return (
            expected is not None and supplied is not None and hmac.compare_digest(supplied.encode(), expected)
        )

    def api_refusal() -> JSONResponse:
        message = (
            "missing or wrong token: send Authorization: Bearer <ADMIN_TOKEN>"
            if expected is not None
            else "trace API is closed: set ADMIN_TOKEN to open it"
        )
        return JSONResponse(
            error_envelope(401, message), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    def page_refusal() -> HTMLResponse:
        return HTMLResponse(
            render_message_page("Token required", "Open this page with ?token=<ADMIN_TOKEN>."),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def page_token(request: Request) -> str | None:
        # Carry a ?token= through the page's links and form so navigation keeps working.
        return request.query_params.get("token") if require_token else None

    add_static_route(router)

    @router.get("/api/services", summary="Services with traces (Jaeger API)")
    def list_services(request: Request) -> Response:
        if not authorized(request):
            return api_refusal()
        try:
            return JSONResponse(envelope(reader.services()))
        except TraceQueryError as exc:
            return _unavailable(str(exc))

    @router.get("/api/services/{service}/operations", summary="Operations of a service (Jaeger API)")
    def list_operations(service: str, request: Request) -> Response:
        if not authorized(request):
            return api_refusal()
        try:
            return JSONResponse(envelope(reader.operations(service)))
        except TraceQueryError as exc:
            return _unavailable(str(exc))

    @router.get("/api/traces", summary="Search traces (Jaeger API)")
    def search_traces(
        request: Request,
        service: str | None = None,
        operation: str | None = None,
        tags: str | None = None,
        minDuration: str | None = None,  # Jaeger's parameter names, camelCase
        maxDuration: str | None = None,
        start: str | None = None,
        end: str | None = None,
        lookback: str | None = None,
        limit: str | None = None,
        sort: str | None = None,
    ) -> Response:
        if not authorized(request):
            return api_refusal()
        trace_ids = request.query_params.getlist("traceID")
        try:
            wanted = [normalize_trace_id(t) for t in trace_ids]
            search = None if wanted else _parse_api_search(request)
        except TraceQueryError as exc:
            return _bad_request(str(exc))
        try:
            if search is None:
                found = [spans for spans in (reader.get_trace(t) for t in wanted) if spans]
            else:
                summaries = _find(reader, search)
                found = [spans for spans in (reader.get_trace(s.trace_id) for s in summaries) if spans]
        except TraceQueryError as exc:
            return _unavailable(str(exc))
        data = [to_jaeger_trace(spans) for spans in found]
        return JSONResponse(envelope(data, limit=search.limit if search else 0))

    @router.get("/api/traces/{trace_id}", summary="One trace (Jaeger API)")
    def get_trace(trace_id: str, request: Request) -> Response:
        if not authorized(request):
            return api_refusal()
        try:
            wanted = normalize_trace_id(trace_id)
        except TraceQueryError as exc:
            return _bad_request(str(exc))
        try:
            spans = reader.get_trace(wanted)
        except TraceQueryError as exc:
            return _unavailable(str(exc))
        if not spans:
            return JSONResponse(error_envelope(404, f"trace {wanted} not found"), status_code=404)
        return JSONResponse(envelope([to_jaeger_trace(spans)]))

    @router.get("/traces", response_class=HTMLResponse, summary="Trace search page")
    def traces_page(
        request: Request,
        service: str = "",
        operation: str = "",
        tags: str = "",
        min_duration: str = "",
        max_duration: str = "",
        since: str = "",
        limit: str = "20",
        sort: str = "duration",
    ) -> Response:
        if not authorized(request):
            return page_refusal()
        token = page_token(request)
        form = SearchForm(service, operation, tags, min_duration, max_duration, since, limit, sort)
        error = None
        results: list[TraceSummary] | None = None
        status = 200
        try:
            services = reader.services()
            operations = (
                reader.operations(form.service)
                if form.service
                else sorted({op for s in services for op in reader.operations(s)})
            )
        except TraceQueryError as exc:
            services, operations, error, status = [], [], str(exc), 503
        if status == 200:
            try:
                search = _parse_page_form(form)
            except TraceQueryError as exc:
                error, status = str(exc), 400
            else:
                try:
                    results = _find(reader, search)
                except TraceQueryError as exc:
                    error, status = str(exc), 503
        html = render_search_page(
            form=form, services=services, operations=operations, results=results, error=error, token=token
        )
        return HTMLResponse(html, status_code=status)

    @router.get(
        "/traces/contacts/{contact_id}", response_class=HTMLResponse, summary="A contact's timeline page"
    )
    def contact_page(contact_id: str, request: Request) -> Response:
        if not authorized(request):
            return page_refusal()
        token = page_token(request)
        if not contact_id.strip() or len(contact_id) > 200:
            message = (
                f"contact id {contact_id[:40]!r} is not valid: give the GHL contact id (1-200 characters)"
            )
            return HTMLResponse(render_message_page("Bad contact id", message, token=token), status_code=400)
        try:
            timeline = contact_timeline(reader, contact_id)
        except TraceQueryError as exc:
            return HTMLResponse(
                render_message_page("Trace store unavailable", str(exc), token=token), status_code=503
            )
        return HTMLResponse(render_contact_page(contact_id, timeline, token=token))

    @router.get("/traces/{trace_id}", response_class=HTMLResponse, summary="Trace waterfall page")
    def trace_page(trace_id: str, request: Request) -> Response:
        if not authorized(request):
            return page_refusal()
        token = page_token(request)
        try:
            wanted = normalize_trace_id(trace_id)
        except TraceQueryError as exc:
            return HTMLResponse(render_message_page("Bad trace id", str(exc), token=token), status_code=400)
        try:
            spans = reader.get_trace(wanted)
        except TraceQueryError as exc:
            return HTMLResponse(
                render_message_page("Trace store unavailable", str(exc), token=token), status_code=503
            )
        if not spans:
            message = f"No trace {wanted} in the store (it may have been pruned by retention)."
            return HTMLResponse(render_message_page("Trace not found", message, token=token), status_code=404)
        return HTMLResponse(render_trace_page(spans, token=token))

    return router


def _find(reader: LocalTraceReader, search: _Search) -> list[TraceSummary]:
    return reader.find_traces(
        service=search.service,
        operation=search.operation,
        tags=search.tags,
        min_duration_ms=search.min_ms,
        max_duration_ms=search.max_ms,
        since=search.since,
        until=search.until,
        limit=search.limit,
        order=search.order,
    )
