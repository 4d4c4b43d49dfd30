"""``jorge followups``: run the lead follow-up steps that are due, from a shell or a cron job.

::

    jorge followups run-due                              # what is due now
    jorge followups run-due --now 2025-04-02T17:00:00Z   # what is due at another instant
    jorge followups run-due --json                       # the report as JSON, for scripts

It opens what the app opens from the settings (the database, the cache, the
GHL client and the lead bot), runs every due step in its own trace linked to
the one that scheduled it, prints what happened and closes everything. In the
embedded mode (no GHL_BASE_URL) GHL is an in-process sandbox that lives only
for the command. With ``--now``, the bots' clock is frozen at that instant too
(a day-7 call task is then due four hours after it).

Exit status: 0 when every step ran, was skipped or will be retried; 1 when a
step failed for the last time (``dead``); 2 on bad input or an unreachable
database, with one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from ghl_real_estate_ai.cli.traces import fail
from ghl_real_estate_ai.clock import Clock, ManualClock, SystemClock, parse_instant
from ghl_real_estate_ai.errors import JorgeError
from ghl_real_estate_ai.followups import FollowUpRunner, RunReport
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = ["app", "run_due"]

app = typer.Typer(
    help="Run the lead follow-up sequence (day 3 SMS, day 7 call task, day 14 e-mail, day 30 nudge).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_STYLES = {"done": "green", "skipped": "yellow", "retry": "magenta", "dead": "bold red"}


async def _run(settings: Settings, now: datetime | None, batch: int) -> RunReport:
    """Open the parts the runner needs, run everything due, close them."""
    from ghl_real_estate_ai.cache import open_cache
    from ghl_real_estate_ai.conversation import build_conversation_service
    from ghl_real_estate_ai.integrations.ghl.client import build_ghl_client
    from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
    from ghl_real_estate_ai.observability.otel_config import setup_observability, shutdown_observability
    from ghl_real_estate_ai.outbox import Outbox
    from ghl_real_estate_ai.storage import open_store

    clock: Clock = ManualClock(now) if now is not None else SystemClock()
    async with AsyncExitStack() as stack:
        setup_observability(settings)
        # Registered first, so it runs last: the run's spans are flushed after everything closed.
        stack.callback(shutdown_observability)
        store = open_store(settings.database_url, pool_size=2)
        await store.open()
        stack.push_async_callback(store.close)
        cache = open_cache(settings.redis_url)
        await cache.open()
        stack.push_async_callback(cache.close)
        sandbox = create_sandbox_app(location_id=settings.ghl_location_id) if settings.embedded else None
        ghl = build_ghl_client(settings, cache, sandbox_app=sandbox)
        stack.push_async_callback(ghl.aclose)
        outbox = Outbox(store, ghl, clock=clock)
        service = build_conversation_service(store, outbox, ghl, settings, clock=clock)
        runner = FollowUpRunner(store, service.bots.lead, clock=clock)
        return await runner.run_all_due(now, batch=batch)


def _detail(outcome: str, reason: str | None, error: str | None, next_at: datetime | None) -> str:
    if outcome == "skipped":
        return reason or ""
    if outcome == "retry" and next_at is not None:
        return f"next try {next_at.isoformat()}: {error}"
    return error or ""


def _print(report: RunReport) -> None:
    console = Console(soft_wrap=True)
    summary = (
        f"{report.claimed} follow-up step(s) due at {report.now.isoformat()}: "
        f"{report.done} done, {report.skipped} skipped, {report.retried} to retry, {report.dead} dead"
    )
    console.print(Text(summary, style="bold red" if report.dead else "bold"))
    if not report.outcomes:
        return
    # One line per step rather than a table: ids and step names stay whole at any
    # terminal width (people paste the trace id into `jorge traces show`).
    for o in report.outcomes:
        due = f"{o.due_at:%Y-%m-%d %H:%M}"
        line = Text(f"  #{o.followup_id} {o.contact_id} {o.step} (due {due}, attempt {o.attempt}) ")
        line.append(o.outcome, style=_STYLES.get(o.outcome, ""))
        detail = _detail(o.outcome, o.reason, o.error, o.next_attempt_at)
        if detail:
            line.append(f" {detail}")
        if o.trace_id:
            line.append(f"  trace {o.trace_id}", style="dim")
        console.print(line)


@app.command("run-due")
def run_due(
    now: Annotated[
        str | None,
        typer.Option(help="Run what is due at this ISO-8601 instant (naive means UTC); default: now."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Steps claimed per batch.")] = 20,
) -> None:
    """Run every follow-up step that is due, each exactly once, and report what happened."""
    when = None
    if now is not None:
        try:
            when = parse_instant(now, name="--now")
        except ValueError as exc:
            fail(str(exc))
    try:
        settings = load_settings()
        report = asyncio.run(_run(settings, when, batch))
    except JorgeError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report)
    if report.dead:
        raise typer.Exit(1)
