"""``jorge outbox``: see what the outbox holds and send ``dead`` items again.

::

    jorge outbox list                    # counts per status, then the dead and failed items
    jorge outbox list --status pending   # the items of one status
    jorge outbox retry                   # every dead item: pending again, due now
    jorge outbox retry --id 12 --id 15   # only these
    jorge outbox retry --status failed   # items GHL refused, after the cause was fixed

A retried item gets a new deadline (``OUTBOX_MAX_AGE_HOURS`` from now) and is
sent by the running app's worker on its next pass, reconciled with GHL first
when its last outcome was unknown. Exit status: 0; 2 on bad input or an
unreachable database, with one line on stderr.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from ghl_real_estate_ai.cli.traces import fail
from ghl_real_estate_ai.errors import JorgeError
from ghl_real_estate_ai.settings import Settings, load_settings
from ghl_real_estate_ai.storage.base import OutboxItem

__all__ = ["app", "item_summary"]

app = typer.Typer(
    help="Inspect the outbox and send dead items again.", no_args_is_help=True, pretty_exceptions_enable=False
)

_STATUSES = ("pending", "sending", "sent", "failed", "dead", "dropped")


def item_summary(item: OutboxItem) -> dict[str, Any]:
    """One item as JSON-safe fields (no payload: it may hold personal data)."""
    return {
        "id": item.id,
        "key": item.idempotency_key,
        "kind": item.kind,
        "contact_id": item.contact_id,
        "status": item.status,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at.isoformat(),
        "created_at": item.created_at.isoformat(),
        "reason": item.last_error,
        "check_first": item.check_first,
    }


async def _with_store(settings: Settings, work: Any) -> Any:
    from ghl_real_estate_ai.storage import open_store

    store = open_store(settings.database_url, pool_size=2)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _settings() -> Settings:
    try:
        return load_settings()
    except JorgeError as exc:
        fail(str(exc))


@app.command("list")
def list_items(
    status: Annotated[str | None, typer.Option(help=f"Only this status: {', '.join(_STATUSES)}.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many items.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per status, then the items (dead and failed ones by default)."""
    if status is not None and status not in _STATUSES:
        fail(f"--status {status!r} is not an outbox status: use one of {', '.join(_STATUSES)}")
    settings = _settings()

    async def work(store: Any) -> tuple[Counter[str], list[OutboxItem]]:
        everything = await store.list_outbox(limit=1_000_000)
        counts = Counter(i.status for i in everything)
        wanted = {status} if status else {"dead", "failed"}
        return counts, [i for i in everything if i.status in wanted][-limit:]

    try:
        counts, items = asyncio.run(_with_store(settings, work))
    except JorgeError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"counts": dict(counts), "items": [item_summary(i) for i in items]}, indent=2))
        return
    typer.echo("  ".join(f"{name}={counts.get(name, 0)}" for name in _STATUSES))
    for item in items:
        typer.echo(f"#{item.id} {item.status} {item.kind} {item.idempotency_key} contact={item.contact_id}")
        if item.last_error:
            typer.echo(f"    {item.last_error}")


@app.command("retry")
def retry(
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only this item (repeatable).")] = None,
    status: Annotated[str, typer.Option(help="Retry items of this status: dead or failed.")] = "dead",
) -> None:
    """Make dead (or failed) items pending again, due now, with a new deadline."""
    if status not in ("dead", "failed", "dropped"):
        fail(f"--status {status!r} cannot be retried: use dead, failed or dropped")
    settings = _settings()
    deadline = datetime.now(UTC) + timedelta(hours=settings.outbox_max_age_hours)

    async def work(store: Any) -> list[int]:
        result: list[int] = await store.retry_outbox_items(deadline_at=deadline, ids=ids, status=status)
        return result

    try:
        done = asyncio.run(_with_store(settings, work))
    except JorgeError as exc:
        fail(str(exc))
    if not done:
        typer.echo(f"no {status} item to retry" + (f" among ids {ids}" if ids else ""))
        return
    typer.echo(
        f"{len(done)} item(s) pending again, the worker sends them: {', '.join(f'#{i}' for i in done)}"
    )
