"""``jorge traces``: find traces and print one as a tree, from the local store or Jaeger.

::

    jorge traces find --tag workflow.contact_id=abc123 --min-duration 250ms --since 1h
    jorge traces find --service enterprisehub --operation lead_bot.analyze_intent --sort time --json
    jorge traces show 1a2b3c4d --attributes     # any unique prefix of the id, as git takes
    jorge traces find --jaeger-url http://localhost:16686 --service enterprisehub

Without ``--jaeger-url`` the commands read the local trace store
(``--store``, default ``TRACE_STORE_PATH`` or ``DATA_DIR/traces.db``). Output
is for people (rich tables and a tree) unless ``--json``. Bad input prints one
line and exits 2; an unknown trace or an unreachable backend exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ghl_real_estate_ai.errors import ConfigurationError, TraceQueryError
from ghl_real_estate_ai.observability.journey import format_journey
from ghl_real_estate_ai.observability.query import (
    SpanRecord,
    TraceOrder,
    TraceQuery,
    TraceSummary,
    build_tree,
    normalize_trace_prefix,
    parse_duration_ms,
    parse_since,
    parse_tag,
    resolve_trace_id,
    unique_prefixes,
)

__all__ = ["app", "format_duration", "open_reader", "render_tree", "span_to_dict", "summary_to_dict"]

app = typer.Typer(
    help="Find traces and show one as a tree (local trace store, or Jaeger with --jaeger-url).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Local trace store file. Default: TRACE_STORE_PATH or DATA_DIR/traces.db."),
]
JaegerOption = Annotated[
    str | None,
    typer.Option("--jaeger-url", help="Read Jaeger's query API instead, e.g. http://localhost:16686."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--jaeger-token", help="Bearer token for --jaeger-url (this app's ADMIN_TOKEN)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    Console(stderr=True, soft_wrap=True).print(Text(f"error: {message}", style="red"))
    raise typer.Exit(code)


@contextmanager
def open_reader(store: Path | None, jaeger_url: str | None, token: str | None = None) -> Iterator[TraceQuery]:
    """The reader the options ask for; errors become one line and exit 2.

    Args:
        store: the local store file; ``None`` for the configured one.
        jaeger_url: a Jaeger query service; wins over ``store``.
        token: bearer token for ``jaeger_url``.
    """
    if jaeger_url is not None:
        from ghl_real_estate_ai.observability.jaeger import JaegerReader

        try:
            reader = JaegerReader(jaeger_url, token=token)
        except TraceQueryError as exc:
            fail(str(exc))
        with reader:
            yield reader
        return
    from ghl_real_estate_ai.observability.local_store import LocalTraceReader
    from ghl_real_estate_ai.settings import load_settings

    if store is None:
        try:
            store = load_settings().resolved_trace_store_path
        except ConfigurationError as exc:
            fail(str(exc))
    if store.exists() and not store.is_file():
        fail(f"--store {str(store)!r} is not a file: point it at a traces.db")
    yield LocalTraceReader(store)


def format_duration(ms: float) -> str:
    """``350ms``, ``1.5ms``, ``0.25ms``, ``12.3s``: milliseconds like the guide's trees."""
    if ms >= 10_000:
        return f"{ms / 1000:.1f}s"
    if ms >= 10:
        return f"{ms:.0f}ms"
    if ms >= 1:
        return f"{ms:.1f}ms"
    return f"{ms:.2f}ms"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_tree(spans: Sequence[SpanRecord], *, attributes: bool = False) -> list[Text]:
    """The trace as tree lines, like the guide's Example 2 (``├─ name (123ms)``, ``│  `` indents).

    Args:
        spans: one trace's spans.
        attributes: add each span's attributes (and status message) under it.
    """
    ordered = build_tree(spans)
    children: dict[str | None, list[SpanRecord]] = {}
    ids = {span.span_id for span in spans}
    for span, _depth in ordered:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[Text] = []

    def label(span: SpanRecord) -> Text:
        text = Text(span.name, style="bold red" if span.is_error else "bold")
        text.append(f" ({format_duration(span.duration_ms)})", style="cyan")
        if span.attributes.get("cache.hit") is True:
            text.append(" [cache_hit]", style="green")
        if span.is_error:
            text.append(f" [ERROR{': ' + span.status_message if span.status_message else ''}]", style="red")
        return text

    def walk(span: SpanRecord, prefix: str, last: bool) -> None:
        line = Text(prefix + ("└─ " if last else "├─ "), style="dim")
        line.append_text(label(span))
        lines.append(line)
        inner = prefix + ("   " if last else "│  ")
        kids = children.get(span.span_id, [])
        if attributes:
            pad = inner + ("│  " if kids else "   ")
            for key, value in sorted(span.attributes.items()):
                attr = Text(pad, style="dim")
                attr.append(f"{key} = {_value(value)}", style="magenta")
                lines.append(attr)
            for link in span.links:
                lines.append(Text(f"{pad}follows from {link.trace_id}/{link.span_id}", style="dim"))
        for index, child in enumerate(kids):
            walk(child, inner, index == len(kids) - 1)

    # Roots hang off an implicit trace line, as in the guide: "├─ POST ..." then "│  ├─ ...".
    for root in children.get(None, []):
        walk(root, "", False)
    return lines


def summary_to_dict(summary: TraceSummary) -> dict[str, Any]:
    """JSON form of a search result."""
    return {
        "trace_id": summary.trace_id,
        "root_name": summary.root_name,
        "root_service": summary.root_service,
        "start": summary.start.isoformat(),
        "duration_ms": round(summary.duration_ms, 3),
        "span_count": summary.span_count,
        "error_count": summary.error_count,
        "services": list(summary.services),
        "journey": summary.journey,
    }


def span_to_dict(span: SpanRecord) -> dict[str, Any]:
    """JSON form of a span."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "service": span.service_name,
        "start_ns": span.start_ns,
        "duration_ms": round(span.duration_ms, 3),
        "status": span.status_code,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": [
            {"name": e.name, "timestamp_ns": e.timestamp_ns, "attributes": e.attributes} for e in span.events
        ],
        "links": [{"trace_id": lk.trace_id, "span_id": lk.span_id} for lk in span.links],
    }


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@app.command()
def find(
    service: Annotated[str | None, typer.Option(help="Only traces with spans of this service.")] = None,
    operation: Annotated[str | None, typer.Option(help="Only traces with a span of this name.")] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(help="key=value carried by any span of the trace; repeat for more (all must match)."),
    ] = None,
    min_duration: Annotated[
        str | None,
        typer.Option(help="At least this long, e.g. 250ms, 1.5s (the operation's spans if given)."),
    ] = None,
    max_duration: Annotated[str | None, typer.Option(help="At most this long, e.g. 2s.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Started within, e.g. 30m, 1h, 2d, or an ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many traces to list.")] = 20,
    sort: Annotated[
        str, typer.Option(help="duration (longest first) or time (most recent first).")
    ] = "duration",
    json_output: JsonOption = False,
    store: StoreOption = None,
    jaeger_url: JaegerOption = None,
    jaeger_token: TokenOption = None,
) -> None:
    """Find traces by service, operation, tags, duration and time."""
    try:
        tags = dict(parse_tag(item) for item in tag or [])
        min_ms = parse_duration_ms(min_duration) if min_duration else None
        max_ms = parse_duration_ms(max_duration) if max_duration else None
        since_at = parse_since(since) if since else None
    except TraceQueryError as exc:
        fail(str(exc))
    if limit < 1:
        fail(f"--limit {limit!r} must be at least 1")
    if sort not in ("duration", "time"):
        fail(f"--sort {sort!r} is not valid: use duration or time")
    order: TraceOrder = "duration" if sort == "duration" else "time"
    with open_reader(store, jaeger_url, jaeger_token) as reader:
        try:
            found = reader.find_traces(
                service=service,
                operation=operation,
                tags=tags,
                min_duration_ms=min_ms,
                max_duration_ms=max_ms,
                since=since_at,
                limit=limit,
                order=order,
            )
        except TraceQueryError as exc:
            fail(str(exc), 1)
    if json_output:
        _print_json([summary_to_dict(s) for s in found])
        return
    console = Console()
    if not found:
        console.print("No traces match.")
        return
    with open_reader(store, jaeger_url, jaeger_token) as reader:
        try:
            short = unique_prefixes(reader, [s.trace_id for s in found])
        except TraceQueryError as exc:
            fail(str(exc), 1)
    id_width = max(len(p) for p in short.values())
    table = Table(title=f"{len(found)} trace{'s' if len(found) != 1 else ''}", show_lines=False)
    # The whole id when the terminal has room; when not, the column shrinks (the id is cut
    # at its end) but never below the longest unique prefix: what `show` needs (issue 12).
    table.add_column("trace id", no_wrap=True, min_width=id_width, overflow="crop")
    table.add_column("journey", overflow="fold")
    table.add_column("root span", overflow="fold")
    table.add_column("started (UTC)")
    for column in ("duration", "spans", "errors"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in found:
        table.add_row(
            Text(s.trace_id, style="bold"),
            format_journey(s.journey) or "-",
            s.root_name if s.services == (s.root_service,) else f"{s.root_service}: {s.root_name}",
            s.start.strftime("%m-%d %H:%M:%S"),
            format_duration(s.duration_ms),
            str(s.span_count),
            Text(str(s.error_count), style="red" if s.error_count else ""),
        )
    console.print(table)
    console.print(Text("show one: jorge traces show <trace id or a unique prefix of it>", style="dim"))


@app.command()
def show(
    trace_id: Annotated[
        str, typer.Argument(help="The trace id (hex) from `jorge traces find`, or any unique prefix of it.")
    ],
    attributes: Annotated[bool, typer.Option("--attributes", help="Show every span's attributes.")] = False,
    json_output: JsonOption = False,
    store: StoreOption = None,
    jaeger_url: JaegerOption = None,
    jaeger_token: TokenOption = None,
) -> None:
    """Print one trace as a tree with durations."""
    try:
        normalize_trace_prefix(trace_id)
    except TraceQueryError as exc:
        fail(str(exc))
    with open_reader(store, jaeger_url, jaeger_token) as reader:
        try:
            wanted = resolve_trace_id(reader, trace_id)
            spans = reader.get_trace(wanted)
        except TraceQueryError as exc:
            fail(str(exc), 1)
    if not spans:
        fail(f"no trace {wanted} found (it may have been pruned by retention, or never sampled)", 1)
    if json_output:
        _print_json({"trace_id": wanted, "spans": [span_to_dict(s) for s in spans]})
        return
    console = Console(soft_wrap=True)
    console.print(Text(f"Trace ID: {wanted}", style="bold"))
    console.print()
    for line in render_tree(spans, attributes=attributes):
        console.print(line)
