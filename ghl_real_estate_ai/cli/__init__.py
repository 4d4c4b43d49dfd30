"""The ``jorge`` command: serve the app, look at traces, check SLOs, run follow-ups.

Every sub-command answers bad input with one clear line and exit status 2
(1 for a failed check), never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys

import typer

from ghl_real_estate_ai.errors import APP_ERRORS
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="jorge",
    help="Jorge real-estate bots for GoHighLevel, traced with OpenTelemetry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Jorge real-estate bots for GoHighLevel, traced with OpenTelemetry."""


async def _preflight(settings: Settings) -> None:
    """Open and close the database and the cache, so a bad URL stops us before serving."""
    from ghl_real_estate_ai.cache import open_cache
    from ghl_real_estate_ai.storage import open_store

    store = open_store(settings.database_url, pool_size=1)
    await store.open()
    await store.close()
    cache = open_cache(settings.redis_url)
    await cache.open()
    await cache.close()


def _where_to_look(settings: Settings, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    sample = {
        "type": "InboundMessage",
        "locationId": settings.ghl_location_id,
        "contactId": "demo-contact-1",
        "messageId": "demo-message-1",
        "webhookId": "demo-webhook-1",
        "messageType": "SMS",
        "direction": "inbound",
        "body": "Hi, I am pre-approved for $650k and looking to buy a 3 bedroom home in Upland",
    }
    lines = [
        f"Jorge is serving on {base}",
        f"  webhook:   POST {base}/api/v1/webhooks/ghl",
        f"  try it:    curl -sS -X POST {base}/api/v1/webhooks/ghl -H 'Content-Type: application/json' \\",
        f"               -d '{json.dumps(sample)}'",
        f"  traces:    {base}/traces   (or: .venv/bin/jorge traces find --limit 5)",
        f"  GHL calls: {base}/sandbox/ghl/_calls"
        if settings.embedded
        else "  GHL:       " + str(settings.ghl_base_url),
        f"  health:    {base}/health   ready: {base}/ready",
    ]
    return "\n".join(lines)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the app with uvicorn after checking the database and the cache are reachable."""
    import uvicorn

    try:
        settings = load_settings()
        settings.check_production_safety()
        asyncio.run(_preflight(settings))
    except APP_ERRORS as exc:
        typer.echo(f"jorge: cannot start: {exc}", err=True)
        raise typer.Exit(1) from None
    from ghl_real_estate_ai.api.serving import server_options

    options = server_options()
    typer.echo(_where_to_look(settings, host, port))
    typer.echo(
        f"  server:    uvicorn, one worker, {options['loop']} event loop, {options['http']} HTTP parser"
    )
    uvicorn.run(
        "ghl_real_estate_ai.app:app",
        host=host,
        port=port,
        log_level="warning",
        loop=options["loop"],
        http=options["http"],
    )


def _register() -> None:
    """Attach the sub-commands that live in their own modules."""
    from ghl_real_estate_ai.cli import demo, eval, followups, outbox, slo, traces

    app.add_typer(traces.app, name="traces", help="Find and show traces (local store or Jaeger).")
    app.add_typer(followups.app, name="followups", help="Run the follow-up steps that are due.")
    app.add_typer(outbox.app, name="outbox", help="Inspect the outbox; send dead items again.")
    app.command("slo")(slo.slo)
    app.command("demo")(demo.demo)
    app.command("eval")(eval.eval_command)


_register()


def main() -> None:
    """Entry point of the ``jorge`` console script."""
    try:
        app()
    except APP_ERRORS as exc:
        typer.echo(f"jorge: {exc}", err=True)
        sys.exit(2)
