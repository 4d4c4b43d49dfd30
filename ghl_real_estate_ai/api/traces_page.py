"""The HTML of the ``/traces`` viewer, rendered from Jinja2 templates.

Pure functions from query results to HTML text; :mod:`.traces` serves them. The
markup lives in ``api/templates/`` (autoescaped: span names and attribute values
are text, whatever they contain) and the style and the few lines of JavaScript
that open a span's attributes in ``api/static/``, served by :func:`static_file`.
The pages work without scripts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from jinja2 import Environment, PackageLoader

from ghl_real_estate_ai.observability.journey import format_journey
from ghl_real_estate_ai.observability.query import SpanRecord, TraceSummary, build_tree
from ghl_real_estate_ai.observability.timeline import TimelineTrace

__all__ = [
    "SearchForm",
    "add_static_route",
    "format_ms",
    "render_contact_page",
    "render_message_page",
    "render_search_page",
    "render_template",
    "render_trace_page",
    "static_file",
    "with_token",
]


@dataclass(frozen=True)
class SearchForm:
    """The search form's fields, as typed by the user (re-shown after a search)."""

    service: str = ""
    operation: str = ""
    tags: str = ""
    min_duration: str = ""
    max_duration: str = ""
    since: str = ""
    limit: str = "20"
    sort: str = "duration"


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``token=`` appended when the pages run behind the admin token."""
    if not token:
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"token": token})


def format_ms(ms: float) -> str:
    """A short duration label: ``0.42ms``, ``12ms``, ``1.25s``."""
    if ms >= 10_000:
        return f"{ms / 1000:.1f}s"
    if ms >= 1000:
        return f"{ms / 1000:.2f}s"
    if ms >= 10:
        return f"{ms:.0f}ms"
    if ms >= 1:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _value_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _attr_pairs(attributes: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in attributes.items())


@cache
def _environment() -> Environment:
    # Autoescape everything: every value a template prints is text unless marked safe.
    env = Environment(
        loader=PackageLoader("ghl_real_estate_ai.api", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["ms"] = format_ms
    env.filters["utc_time"] = _time
    env.filters["with_token"] = with_token
    env.filters["attr_pairs"] = _attr_pairs
    env.filters["journey"] = format_journey
    return env


def render_template(name: str, **context: Any) -> str:
    """Render the template ``name`` of ``api/templates/`` (autoescaped) with ``context``."""
    return _environment().get_template(name).render(**context)


_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


def static_file(name: str) -> tuple[Path, str] | None:
    """The file ``name`` of ``api/static/`` and its media type, or None if there is no such file.

    Only plain ``.css`` and ``.js`` file names of the static folder are served
    (no sub-paths, no dot files).
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    media_type = _STATIC_TYPES.get(Path(name).suffix)
    if media_type is None:
        return None
    path = Path(str(resources.files("ghl_real_estate_ai.api") / "static" / name))
    return (path, media_type) if path.is_file() else None


def add_static_route(router: APIRouter) -> None:
    """Serve ``GET /static/{name}`` (the pages' CSS and JavaScript) on ``router``.

    Both page routers add it so each works on its own; in one app the first wins.
    The files are public like any page asset: they hold no trace data.
    """

    @router.get("/static/{name}", summary="The pages' style sheets and scripts", include_in_schema=False)
    def static(name: str) -> Response:
        found = static_file(name)
        if found is None:
            return Response(f"no static file {name!r}", status_code=404, media_type="text/plain")
        path, media_type = found
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})


def render_search_page(
    *,
    form: SearchForm,
    services: Sequence[str],
    operations: Sequence[str],
    results: Sequence[TraceSummary] | None,
    error: str | None = None,
    token: str | None = None,
) -> str:
    """The search form and, after a search, the matching traces."""
    return render_template(
        "traces_search.html",
        form=form,
        services=services,
        operations=operations,
        results=results,
        error=error,
        token=token,
    )


@dataclass(frozen=True)
class _Row:
    span: SpanRecord
    depth: int
    left: float
    width: float
    fields: list[tuple[str, str]]


def _fields(span: SpanRecord) -> list[tuple[str, str]]:
    rows = [
        ("span.id", span.span_id),
        ("parent.id", span.parent_span_id or "(root)"),
        ("service", span.service_name),
        ("kind", span.kind),
        ("status", span.status_code + (f": {span.status_message}" if span.status_message else "")),
        ("start", _time(span.start_ns)),
        ("duration", format_ms(span.duration_ms)),
    ]
    rows.extend((key, _value_text(value)) for key, value in sorted(span.attributes.items()))
    return rows


def render_trace_page(spans: Sequence[SpanRecord], *, token: str | None = None) -> str:
    """The waterfall of one trace: bars placed by start and duration, indented by depth."""
    ordered = build_tree(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    rows = [
        _Row(
            span=span,
            depth=depth,
            left=100 * (span.start_ns - start) / total,
            width=100 * span.duration_ns / total,
            fields=_fields(span),
        )
        for span, depth in ordered
    ]
    return render_template(
        "trace.html",
        title=ordered[0][0].name if ordered else spans[0].name,
        trace_id=spans[0].trace_id,
        start_ns=start,
        total_ns=total,
        span_count=len(spans),
        error_count=sum(1 for s in spans if s.is_error),
        services=sorted({s.service_name for s in spans}),
        contact=next((str(s.attributes["session.id"]) for s in spans if "session.id" in s.attributes), None),
        rows=rows,
        token=token,
    )


def render_contact_page(contact_id: str, traces: Sequence[TimelineTrace], *, token: str | None = None) -> str:
    """A contact's timeline: each trace of its session with what happened in it, oldest first."""
    return render_template("contact.html", contact_id=contact_id, traces=traces, token=token)


def render_message_page(title: str, message: str, *, token: str | None = None) -> str:
    """A plain page for errors such as an unknown trace."""
    return render_template("message.html", title=title, message=message, token=token)
