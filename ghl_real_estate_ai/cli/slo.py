"""``jorge slo``: the guide's dashboards and alert rules as one report, with an exit status.

::

    jorge slo                      # last 24 h of the local trace store
    jorge slo --window 1h --json   # for scripts (1h, 24h or 7d, the /dashboard windows)
    jorge slo --since 30m          # any other window
    jorge slo --jaeger-url http://localhost:16686 --p95-ms 1500

Figures and rules are those of :mod:`ghl_real_estate_ai.observability.slo`,
computed by :func:`~ghl_real_estate_ai.observability.slo.slo_window`, the same
query the ``/dashboard`` page runs;
thresholds come from SLO_P95_LATENCY_MS, SLO_HANDOFF_FAILURE_RATE and
SLO_TRACE_ERROR_RATE unless a flag overrides them. Exit status 1 when any
threshold is breached, 0 otherwise, 2 on bad input.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ghl_real_estate_ai.cli.traces import JaegerOption, StoreOption, TokenOption, fail, open_reader
from ghl_real_estate_ai.errors import ConfigurationError, TraceQueryError
from ghl_real_estate_ai.observability.query import parse_since
from ghl_real_estate_ai.observability.slo import WINDOWS, SloReport, SloThresholds, slo_window

__all__ = ["slo"]


def _thresholds(p95_ms: float | None, handoff_rate: float | None, error_rate: float | None) -> SloThresholds:
    from ghl_real_estate_ai.settings import load_settings

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        fail(str(exc))
    for flag, value in (("--handoff-failure-rate", handoff_rate), ("--trace-error-rate", error_rate)):
        if value is not None and not 0 <= value <= 1:
            fail(f"{flag} {value!r} must be a share between 0 and 1 (0.05 = 5 %)")
    if p95_ms is not None and not p95_ms > 0:
        fail(f"--p95-ms {p95_ms!r} must be a positive number of milliseconds")
    return SloThresholds(
        p95_latency_ms=p95_ms if p95_ms is not None else settings.slo_p95_latency_ms,
        handoff_failure_rate=handoff_rate if handoff_rate is not None else settings.slo_handoff_failure_rate,
        trace_error_rate=error_rate if error_rate is not None else settings.slo_trace_error_rate,
    )


def _mark(breached: bool) -> Text:
    return Text("BREACH", style="bold red") if breached else Text("ok", style="green")


def _print_report(report: SloReport, since: str) -> None:
    console = Console(soft_wrap=True)
    limits = report.thresholds
    console.print(
        Text(
            f"SLO report: {report.span_count} spans, {report.trace_total} traces, since {since}", style="bold"
        )
    )
    if report.nodes:
        table = Table(title=f"P95 latency by node (limit {limits.p95_latency_ms:g} ms)")
        for column in ("bot", "node", "spans", "P95 ms", ""):
            table.add_column(column, justify="right" if column in ("spans", "P95 ms") else "left")
        for node in report.nodes:
            table.add_row(
                node.bot_type, node.node_name, str(node.count), f"{node.p95_ms:.1f}", _mark(node.breached)
            )
        console.print(table)
    if report.routes:
        table = Table(title="Handoff latency by route")
        for column in ("route", "handoffs", "failed", "avg ms", "P95 ms", ""):
            table.add_column(column, justify="left" if column in ("route", "") else "right")
        for route in report.routes:
            table.add_row(
                route.route,
                str(route.count),
                str(route.failures),
                f"{route.avg_ms:.1f}",
                f"{route.p95_ms:.1f}",
                _mark(route.breached),
            )
        console.print(table)
    if report.bots:
        table = Table(title=f"Error rate by bot (limit {limits.trace_error_rate:.2%})")
        for column in ("bot", "node spans", "failed", "rate", ""):
            table.add_column(column, justify="left" if column in ("bot", "") else "right")
        for bot in report.bots:
            table.add_row(
                bot.bot_type, str(bot.total), str(bot.errors), f"{bot.rate:.2%}", _mark(bot.breached)
            )
        console.print(table)
    handoff_line = Text(
        f"handoff failure rate: {report.handoff_failure_rate:.2%} "
        f"({report.handoff_failures}/{report.handoff_total}, limit {limits.handoff_failure_rate:.2%}) "
    )
    handoff_line.append_text(_mark(report.handoff_failure_rate > limits.handoff_failure_rate))
    console.print(handoff_line)
    trace_line = Text(
        f"trace error rate:     {report.trace_error_rate:.2%} "
        f"({report.trace_errors}/{report.trace_total}, limit {limits.trace_error_rate:.2%}) "
    )
    trace_line.append_text(_mark(report.trace_error_rate > limits.trace_error_rate))
    console.print(trace_line)
    if report.ok:
        console.print(Text("All SLOs met.", style="bold green"))
    else:
        console.print(Text(f"{len(report.breaches)} SLO breach(es):", style="bold red"))
        for line in report.breaches:
            console.print(Text(f"  - {line}", style="red"))


def slo(
    window: Annotated[
        str | None,
        typer.Option(help="The dashboard's windows: 1h, 24h or 7d (the default is 24h)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Any other window: spans started within, e.g. 30m, 2d, or an ISO time.")
    ] = None,
    p95_ms: Annotated[
        float | None, typer.Option("--p95-ms", help="P95 latency limit in ms (default SLO_P95_LATENCY_MS).")
    ] = None,
    handoff_failure_rate: Annotated[
        float | None,
        typer.Option(help="Highest share of failed handoffs, 0-1 (default SLO_HANDOFF_FAILURE_RATE)."),
    ] = None,
    trace_error_rate: Annotated[
        float | None,
        typer.Option(help="Highest share of traces with an error, 0-1 (default SLO_TRACE_ERROR_RATE)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    store: StoreOption = None,
    jaeger_url: JaegerOption = None,
    jaeger_token: TokenOption = None,
) -> None:
    """Check P95 node latency, handoff latency and failures, and error rates against the SLOs.

    Exits 1 when any threshold is breached.
    """
    if window is not None and since is not None:
        fail("give --window or --since, not both")
    if window is not None and window not in WINDOWS:
        fail(f"--window {window!r} is not one of {', '.join(WINDOWS)}; use --since for other windows")
    chosen = window or since or "24h"
    try:
        parse_since(chosen)
    except TraceQueryError as exc:
        fail(str(exc))
    thresholds = _thresholds(p95_ms, handoff_failure_rate, trace_error_rate)
    with open_reader(store, jaeger_url, jaeger_token) as reader:
        try:
            result = slo_window(reader, chosen, thresholds)
        except TraceQueryError as exc:
            fail(str(exc), 1)
    report = result.report
    if json_output:
        typer.echo(json.dumps({"since": result.since.isoformat(), **report.to_dict()}, indent=2))
    else:
        _print_report(report, chosen)
    if not report.ok:
        raise typer.Exit(1)
