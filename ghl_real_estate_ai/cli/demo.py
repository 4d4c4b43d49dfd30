"""``jorge demo``: a few scripted conversations through the real app, as chat transcripts.

The app runs in-process on the configured settings (the embedded defaults
unless the environment says otherwise): webhooks go through the same intake,
bots, handoffs, outbox and GHL client as in production, and the traces land in
the local trace store, where ``jorge traces`` and ``/traces`` find them later.

Each scene prints as a transcript (lead, bot, lead, bot); under each exchange, the
trace id the webhook answered with and the trace's journey. The app's log lines go
to ``DATA_DIR/demo.log``, out of the way. The run ends with the SLO report of the
demo's own traces: the guide's three figures against their thresholds. The demo
needs no port, so it may run while ``make run`` serves the same ``DATA_DIR``; its
traces then show in that app's ``/traces`` page too.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.text import Text

from ghl_real_estate_ai.errors import APP_ERRORS
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = ["CONVERSATIONS", "Exchange", "demo"]


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


@dataclass
class Exchange:
    """One inbound message, what the bots sent back, and the trace the webhook answered with."""

    said: str
    status: str
    trace_id: str | None
    replies: list[str] = field(default_factory=list)


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


async def _run(settings: Settings) -> list[tuple[Conversation, str, list[Exchange]]]:
    """Send the scripted webhooks; returns each conversation, its contact and its exchanges."""
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
                exchanges = []
                for body in conversation.messages:
                    before = len((await client.get("/sandbox/ghl/_calls")).json()["calls"])
                    response = await client.post(
                        "/api/v1/webhooks/ghl", json=_payload(settings, contact_id, body)
                    )
                    response.raise_for_status()
                    answer = response.json()
                    calls = (await client.get("/sandbox/ghl/_calls")).json()["calls"][before:]
                    replies = [c["body"]["message"] for c in calls if c["path"] == "/conversations/messages"]
                    exchanges.append(Exchange(body, answer["status"], answer.get("trace_id"), replies))
                results.append((conversation, contact_id, exchanges))
        from ghl_real_estate_ai.observability.otel_config import flush_observability

        flush_observability()
    return results


def _with_local_store(settings: Settings) -> Settings:
    kinds = {k.strip() for k in settings.otel_exporter_type.split(",")}
    if "local" in kinds and settings.otel_enabled:
        return settings
    # The demo reads its traces back from the local store, whatever else is on.
    kinds = (kinds - {"none", ""}) | {"local"}
    return settings.model_copy(update={"otel_exporter_type": ",".join(sorted(kinds)), "otel_enabled": True})


def demo(
    trees: Annotated[bool, typer.Option("--trees", help="Print each exchange's trace as a tree.")] = False,
    attributes: Annotated[
        bool, typer.Option("--attributes", help="With --trees: every span's attributes.")
    ] = False,
) -> None:
    """Run scripted conversations through the app: transcripts, trace ids, then the SLO report."""
    from ghl_real_estate_ai.logs import send_logs_to

    try:
        settings = _with_local_store(load_settings())
    except APP_ERRORS as exc:
        typer.echo(f"jorge: demo failed: {exc}", err=True)
        raise typer.Exit(1) from None
    log_file = settings.data_dir / "demo.log"
    send_logs_to(log_file)
    try:
        results = asyncio.run(_run(settings))
    except APP_ERRORS as exc:
        typer.echo(f"jorge: demo failed: {exc} (details in {log_file})", err=True)
        raise typer.Exit(1) from None
    finally:
        send_logs_to(None)
    _print(results, settings, log_file, trees=trees or attributes, attributes=attributes)


def _print(
    results: list[tuple[Conversation, str, list[Exchange]]],
    settings: Settings,
    log_file: Path,
    *,
    trees: bool,
    attributes: bool,
) -> None:
    from ghl_real_estate_ai.cli.traces import render_tree
    from ghl_real_estate_ai.observability.journey import format_journey
    from ghl_real_estate_ai.observability.local_store import LocalTraceReader
    from ghl_real_estate_ai.observability.query import SpanRecord, summarize_trace

    console = Console(soft_wrap=True)
    reader = LocalTraceReader(settings.resolved_trace_store_path)
    demo_spans: list[SpanRecord] = []
    for conversation, contact_id, exchanges in results:
        console.rule(Text(f"{conversation.label}  (contact {contact_id})", style="bold"))
        for exchange in exchanges:
            console.print(Text.assemble(("  lead │ ", "bold"), exchange.said))
            for reply in exchange.replies or ["(no reply)"]:
                console.print(Text.assemble(("  bot  │ ", "bold green"), (reply, "green")))
            spans = reader.get_trace(exchange.trace_id) if exchange.trace_id else []
            demo_spans.extend(spans)
            journey = format_journey(summarize_trace(spans).journey) if spans else ""
            trace_text = exchange.trace_id or "not traced"
            console.print(Text(f"       │ trace {trace_text}  {journey}".rstrip(), style="dim"))
            if trees and spans:
                for line in render_tree(spans, attributes=attributes):
                    console.print(Text("         ").append_text(line))
        console.print()
    _print_slo(console, demo_spans, settings)
    console.print(
        Text(
            f"App logs: {log_file}. Browse the traces at /traces while `make run` serves the app, "
            "or: .venv/bin/jorge traces show <trace id or a unique prefix>",
            style="dim",
        )
    )


def _print_slo(console: Console, spans: list[Any], settings: Settings) -> None:
    """The guide's three alert figures over the demo's own traces, against their thresholds."""
    from ghl_real_estate_ai.observability.slo import SloThresholds, compute_slo, percentile

    limits = SloThresholds(
        p95_latency_ms=settings.slo_p95_latency_ms,
        handoff_failure_rate=settings.slo_handoff_failure_rate,
        trace_error_rate=settings.slo_trace_error_rate,
    )
    report = compute_slo(spans, limits)
    console.rule(Text(f"SLO report of these {report.trace_total} traces", style="bold"))

    def mark(breached: bool) -> Text:
        return Text("BREACH", style="bold red") if breached else Text("ok", style="green")

    by_bot: dict[str, list[float]] = {}
    for span in spans:
        bot = span.attributes.get("workflow.bot_type")
        if isinstance(bot, str) and "workflow.node_name" in span.attributes:
            by_bot.setdefault(bot, []).append(span.duration_ms)
    for bot, durations in sorted(by_bot.items()):
        p95 = percentile(durations, 95)
        console.print(
            Text(f"  P95 latency {bot:<14} {p95:8.1f} ms   limit {limits.p95_latency_ms:g} ms  ").append_text(
                mark(p95 > limits.p95_latency_ms)
            )
        )
    console.print(
        Text(
            f"  handoff failure rate     {report.handoff_failure_rate:8.2%}      "
            f"({report.handoff_failures}/{report.handoff_total}, limit {limits.handoff_failure_rate:.0%})  "
        ).append_text(mark(report.handoff_failure_rate > limits.handoff_failure_rate))
    )
    console.print(
        Text(
            f"  trace error rate         {report.trace_error_rate:8.2%}      "
            f"({report.trace_errors}/{report.trace_total}, limit {limits.trace_error_rate:.0%})  "
        ).append_text(mark(report.trace_error_rate > limits.trace_error_rate))
    )
    console.print()
