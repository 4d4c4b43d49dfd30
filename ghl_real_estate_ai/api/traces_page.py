"""Server-rendered HTML of the ``/traces`` viewer: a search page and a trace waterfall.

Pure functions from query results to HTML text; :mod:`.traces` serves them.
No JavaScript framework: the pages work without scripts, and a few lines of
inline JavaScript show a span's attributes when its row is clicked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from ghl_real_estate_ai.observability.query import SpanRecord, TraceSummary, build_tree

__all__ = ["SearchForm", "render_message_page", "render_search_page", "render_trace_page"]


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


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none}
main{padding:16px 20px}form.search{display:flex;flex-wrap:wrap;gap:10px;align-items:end;background:#fff;
padding:12px;border:1px solid #dde1e7;border-radius:6px}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select{font:inherit;padding:4px 6px;border:1px solid #c4cad3;border-radius:4px}
button{font:inherit;padding:5px 14px;background:#2f6fde;color:#fff;border:0;border-radius:4px;cursor:pointer}
table{border-collapse:collapse;width:100%;background:#fff;margin-top:14px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6e9ee;vertical-align:top}
.error{color:#b3261e;background:#fdecea;padding:8px 12px;border-radius:4px;margin:10px 0}
.dur{font-variant-numeric:tabular-nums;white-space:nowrap}.err{color:#b3261e;font-weight:600}
.minibar{background:#d9e4fb;height:6px;border-radius:3px}.minibar>div{background:#2f6fde;height:6px;border-radius:3px}
.waterfall{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin-top:12px}
.axis,.span-row{display:grid;grid-template-columns:minmax(260px,38%) 1fr}
.axis{font-size:11px;color:#666;border-bottom:1px solid #dde1e7}
.axis .ticks{position:relative;height:18px}.axis .ticks span{position:absolute;top:2px}
.span-row{cursor:pointer;border-bottom:1px solid #f0f2f5}.span-row:hover{background:#f2f6ff}
.span-row.selected{background:#e4edff}
.name{padding:4px 8px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.name small{color:#777}.lane{position:relative;height:26px;margin-right:12px}
.bar{position:absolute;top:7px;height:12px;min-width:2px;border-radius:2px;background:#2f6fde}
.bar.error-bar{background:#d93025}.bar-label{position:absolute;top:5px;font-size:11px;color:#444;
white-space:nowrap;padding-left:4px}
.detail{padding:6px 12px 12px 24px;background:#fafbfc;border-bottom:1px solid #dde1e7}
.detail table{margin-top:4px}.detail td:first-child{font-family:monospace;color:#555;width:32%}
.detail td{font-family:monospace;font-size:12px}
"""

_SCRIPT = """
document.querySelectorAll('.span-row').forEach(function (row) {
  function toggle() {
    var detail = document.getElementById('detail-' + row.dataset.spanId);
    detail.hidden = !detail.hidden;
    row.classList.toggle('selected', !detail.hidden);
    row.setAttribute('aria-expanded', String(!detail.hidden));
  }
  row.addEventListener('click', toggle);
  row.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); }
  });
});
"""


def _page(title: str, body: str, *, script: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<header><a href='/traces'><strong>Jorge traces</strong></a></header>"
        f"<main>{body}</main>" + (f"<script>{script}</script>" if script else "") + "</body></html>"
    )


def _with_token(url: str, token: str | None) -> str:
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
    service_options = "".join(
        f"<option value='{escape(s, True)}'{' selected' if s == form.service else ''}>{escape(s)}</option>"
        for s in services
    )
    operation_options = "".join(f"<option value='{escape(op, True)}'>" for op in operations)
    sort_options = "".join(
        f"<option value='{value}'{' selected' if value == form.sort else ''}>{label}</option>"
        for value, label in (("duration", "Longest first"), ("time", "Most recent"))
    )
    hidden_token = f"<input type=hidden name=token value='{escape(token, True)}'>" if token else ""

    def field(name: str, label: str, value: str, placeholder: str, size: int, extra: str = "") -> str:
        return (
            f"<label>{label}<input name={name} value='{escape(value, True)}' "
            f"placeholder='{escape(placeholder, True)}' size={size}{extra}></label>"
        )

    body = [
        "<h1>Find traces</h1>",
        "<form class=search method=get action='/traces' id=search-form>",
        f"<label>Service<select name=service><option value=''>all services</option>{service_options}</select>"
        "</label>",
        field("operation", "Operation", form.operation, "lead_bot.analyze_intent", 28, " list=operations"),
        f"<datalist id=operations>{operation_options}</datalist>",
        field(
            "tags",
            "Tags (key=value ...)",
            form.tags,
            "workflow.contact_id=abc123 workflow.temperature=hot",
            44,
        ),
        field("min_duration", "Min duration", form.min_duration, "250ms", 8),
        field("max_duration", "Max duration", form.max_duration, "2s", 8),
        field("since", "Since", form.since, "1h", 6),
        field("limit", "Limit", form.limit, "20", 4),
        f"<label>Sort<select name=sort>{sort_options}</select></label>",
        hidden_token,
        "<input type=hidden name=search value=1><button type=submit>Find traces</button></form>",
    ]
    if error:
        body.append(f"<p class=error role=alert>{escape(error)}</p>")
    if results is not None:
        body.append(_results_table(results, token))
    return _page("Jorge traces", "".join(body))


def _results_table(results: Sequence[TraceSummary], token: str | None) -> str:
    if not results:
        return "<p id=no-results>No traces match.</p>"
    longest = max(r.duration_ns for r in results) or 1
    rows = []
    for r in results:
        href = _with_token(f"/traces/{quote(r.trace_id)}", token)
        width = 100 * r.duration_ns / longest
        errors = f"<span class=err>{r.error_count}</span>" if r.error_count else "0"
        rows.append(
            f"<tr class=trace-row><td><a class=trace-link href='{escape(href, True)}'>"
            f"{escape(r.root_service)}: {escape(r.root_name)}</a><br>"
            f"<small><code>{r.trace_id}</code></small></td>"
            f"<td>{_time(r.start_ns)}</td>"
            f"<td class=dur>{format_ms(r.duration_ms)}<div class=minibar><div style='width:{width:.2f}%'>"
            "</div></div></td>"
            f"<td>{r.span_count}</td><td>{errors}</td><td>{escape(', '.join(r.services))}</td></tr>"
        )
    return (
        f"<p>{len(results)} trace{'s' if len(results) != 1 else ''}</p><table id=results><thead><tr>"
        "<th>Trace</th><th>Started</th><th>Duration</th><th>Spans</th><th>Errors</th><th>Services</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _value_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _detail(span: SpanRecord, token: str | None) -> str:
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
    table = "".join(
        f"<tr class=attr data-key='{escape(k, True)}'><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
        for k, v in rows
    )
    parts = [f"<table class=attributes>{table}</table>"]
    if span.events:
        items = "".join(
            f"<li><strong>{escape(e.name)}</strong> at {_time(e.timestamp_ns)} "
            f"{escape(', '.join(f'{k}={_value_text(v)}' for k, v in e.attributes.items()))}</li>"
            for e in span.events
        )
        parts.append(f"<p>Events</p><ul class=events>{items}</ul>")
    if span.links:
        items = "".join(
            f"<li><a href='{escape(_with_token('/traces/' + link.trace_id, token), True)}'>"
            f"{link.trace_id}</a> span {link.span_id}</li>"
            for link in span.links
        )
        parts.append(f"<p>Links (follows from)</p><ul class=links>{items}</ul>")
    return "".join(parts)


def render_trace_page(spans: Sequence[SpanRecord], *, token: str | None = None) -> str:
    """The waterfall of one trace: bars placed by start and duration, indented by depth."""
    ordered = build_tree(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    trace_id = spans[0].trace_id
    errors = sum(1 for s in spans if s.is_error)
    ticks = "".join(
        f"<span style='left:{pct}%;{'transform:translateX(-100%)' if pct == 100 else ''}'>"
        f"{format_ms(total * pct / 100 / 1e6)}</span>"
        for pct in (0, 25, 50, 75, 100)
    )
    rows = [f"<div class=axis><div class=name>Span</div><div class='lane ticks'>{ticks}</div></div>"]
    for span, depth in ordered:
        left = 100 * (span.start_ns - start) / total
        width = 100 * span.duration_ns / total
        # Near the right edge the label goes inside the bar's end, in white.
        inside = left + width > 88.0
        label_style = (
            f"left:{left + width:.3f}%;transform:translateX(-100%);color:#fff;padding-right:4px"
            if inside
            else f"left:{left + width:.3f}%"
        )
        bar_class = "bar error-bar" if span.is_error else "bar"
        service = f" <small>{escape(span.service_name)}</small>" if span.service_name else ""
        rows.append(
            f"<div class=span-row role=button tabindex=0 aria-expanded=false data-span-id='{span.span_id}' "
            f"data-depth='{depth}'><div class=name style='padding-left:{8 + depth * 16}px' "
            f"title='{escape(span.name, True)}'>{'⚠ ' if span.is_error else ''}{escape(span.name)}{service}"
            f"</div><div class=lane><div class='{bar_class}' style='left:{left:.3f}%;width:{width:.3f}%'>"
            f"</div><span class=bar-label style='{label_style}'>{format_ms(span.duration_ms)}</span>"
            f"</div></div><div class=detail id='detail-{span.span_id}' hidden>{_detail(span, token)}</div>"
        )
    back = escape(_with_token("/traces", token), True)
    body = (
        f"<p><a href='{back}'>&larr; search</a></p>"
        f"<h1>{escape(ordered[0][0].name if ordered else spans[0].name)}</h1>"
        f"<p>Trace <code id=trace-id>{trace_id}</code> &middot; started {_time(start)} &middot; "
        f"<span class=dur>{format_ms(total / 1e6)}</span> &middot; {len(spans)} spans"
        f"{f' &middot; <span class=err>{errors} errors</span>' if errors else ''} &middot; "
        f"services: {escape(', '.join(sorted({s.service_name for s in spans})))}</p>"
        "<p><small>Click a span to show its attributes.</small></p>"
        f"<div class=waterfall id=waterfall>{''.join(rows)}</div>"
    )
    return _page(f"Trace {trace_id}", body, script=_SCRIPT)


def render_message_page(title: str, message: str, *, token: str | None = None) -> str:
    """A plain page for errors such as an unknown trace."""
    back = escape(_with_token("/traces", token), True)
    return _page(
        title, f"<h1>{escape(title)}</h1><p class=error>{escape(message)}</p><a href='{back}'>search</a>"
    )
