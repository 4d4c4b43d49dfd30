"""``jorge demo``: a few scripted conversations through the real app, then their traces.

The app runs in-process on the configured settings (the embedded defaults
unless the environment says otherwise): webhooks go through the same intake,
bots, handoffs, outbox and GHL client as in production, and the traces land in
the local trace store, where ``jorge traces`` and ``/traces`` find them later.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.text import Text

from ghl_real_estate_ai.errors import APP_ERRORS
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = ["CONVERSATIONS", "demo"]


@dataclass(frozen=True, slots=True)
class Conversation:
    """A scripted contact and what it texts, in order."""

    label: str
    messages: tuple[str, ...]


CONVERSATIONS: tuple[Conversation, ...] = (
    Conversation(
        "lead -> buyer",
        ("Hi! I am pre-approved for $550k and looking to buy a 3 bedroom home in Upland",),
    ),
    Conversation(
        "lead -> seller",
        ("We are relocating for work and want to sell our house in Ontario within 30 days",),
    ),
    Conversation(
        "lead asks what a home is worth",
        (
            "What is my home worth? It's a 4 bed, 2,100 sq ft house in Rancho Cucamonga",
            "Thanks, maybe later this year",
        ),
    ),
    Conversation("opt-out", ("STOP",)),
)


def _payload(settings: Settings, contact_id: str, body: str) -> dict[str, Any]:
    message_id = uuid.uuid4().hex
    return {
        "type": "InboundMessage",
        "locationId": settings.ghl_location_id,
        "contactId": contact_id,
        "messageId": message_id,
        "webhookId": f"demo-{message_id}",
        "messageType": "SMS",
        "direction": "inbound",
        "body": body,
    }


async def _run(settings: Settings) -> list[tuple[Conversation, str, list[str]]]:
    """Send the scripted webhooks; returns each conversation, its contact and the replies sent."""
    from ghl_real_estate_ai.app import create_app

    app = create_app(settings)
    run = uuid.uuid4().hex[:6]
    results = []
    async with app.running():
        # ASGITransport keeps the requests in-process; like GHL's, they carry no trace context,
        # so each webhook's SERVER span is the root of its trace.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://jorge") as client:
            for index, conversation in enumerate(CONVERSATIONS):
                contact_id = f"demo-{run}-{index}"
                before = len((await client.get("/sandbox/ghl/_calls")).json()["calls"])
                for body in conversation.messages:
                    response = await client.post(
                        "/api/v1/webhooks/ghl", json=_payload(settings, contact_id, body)
                    )
                    response.raise_for_status()
                calls = (await client.get("/sandbox/ghl/_calls")).json()["calls"][before:]
                replies = [c["body"]["message"] for c in calls if c["path"] == "/conversations/messages"]
                results.append((conversation, contact_id, replies))
        from ghl_real_estate_ai.observability.otel_config import flush_observability

        flush_observability()
    return results


def demo(
    attributes: Annotated[bool, typer.Option("--attributes", help="Show every span's attributes.")] = False,
) -> None:
    """Run scripted conversations through the app and print the trace of each webhook."""
    from ghl_real_estate_ai.cli.traces import render_tree
    from ghl_real_estate_ai.observability.local_store import LocalTraceReader

    try:
        settings = load_settings()
        kinds = {k.strip() for k in settings.otel_exporter_type.split(",")}
        if "local" not in kinds:
            # The demo reads its traces back from the local store, whatever else is on.
            kinds = (kinds - {"none", ""}) | {"local"}
            settings = settings.model_copy(update={"otel_exporter_type": ",".join(sorted(kinds))})
        results = asyncio.run(_run(settings))
    except APP_ERRORS as exc:
        typer.echo(f"jorge: demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    console = Console(soft_wrap=True)
    reader = LocalTraceReader(settings.resolved_trace_store_path)
    for conversation, contact_id, replies in results:
        console.rule(Text(f"{conversation.label}  (contact {contact_id})", style="bold"))
        for body in conversation.messages:
            console.print(Text(f"  contact: {body}"))
        for reply in replies:
            console.print(Text(f"  bot:     {reply}", style="green"))
        summaries = reader.find_traces(tags={"workflow.contact_id": contact_id}, order="time", limit=10)
        for summary in sorted(summaries, key=lambda s: s.start):
            console.print()
            console.print(Text(f"Trace ID: {summary.trace_id}", style="bold"))
            for line in render_tree(reader.get_trace(summary.trace_id), attributes=attributes):
                console.print(line)
        console.print()
    console.print(
        "Browse them at /traces while `make run` serves the app, or: .venv/bin/jorge traces find --limit 10"
    )
