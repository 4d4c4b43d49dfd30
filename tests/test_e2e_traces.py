"""Acceptance 1: webhooks into the real app, their traces found by the CLI, the JSON API and the page.

The whole app runs under a real uvicorn server in the embedded mode (SQLite,
GHL sandbox, the local trace store as the only exporter). Webhooks drive the
Lead bot into a handoff to the Buyer bot; their traces are then found by
``workflow.contact_id``, ``workflow.bot_type``, ``handoff.source_bot`` and
``workflow.temperature`` through ``jorge traces``, ``/api/traces`` and ``/traces``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from serving import serve_in_thread
from typer.testing import CliRunner

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.cli import traces as traces_cli
from ghl_real_estate_ai.settings import Settings

pytestmark = pytest.mark.slow

BUYER_MESSAGE = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days. "
    "Can I see some houses this weekend?"
)


def _webhook(contact: str, body: str, n: int) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": body,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-e2e-{contact}-{n}",
        "conversationId": f"conv-{contact}",
        "webhookId": f"wh-e2e-{contact}-{n}",
        "dateAdded": "2026-02-15T09:30:00.000Z",
    }


def _traces(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/traces", params={"limit": "50", **params})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def _wait_for(client: httpx.Client, contact: str) -> list[dict[str, Any]]:
    # Spans reach the store through the batch processor (100 ms schedule here), and the
    # request's SERVER span ends last, so it can come in a later batch than the bots'
    # spans: poll (with a generous deadline) until the trace holds it, never sleep a
    # fixed time.
    tags = json.dumps({"workflow.contact_id": contact})
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = _traces(client, tags=tags)
        if found and all(_has_server_span(trace) for trace in found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"the trace of {contact} did not reach the store whole: {found!r:.2000}")


def _has_server_span(trace: dict[str, Any]) -> bool:
    return any(
        span["operationName"] == "POST /api/v1/webhooks/ghl"
        and any(tag["key"] == "span.kind" and tag["value"] == "server" for tag in span["tags"])
        for span in trace["spans"]
    )


def _tags(trace: dict[str, Any]) -> set[tuple[str, object]]:
    return {(tag["key"], tag["value"]) for span in trace["spans"] for tag in span["tags"]}


def test_webhook_traces_are_found_by_cli_api_and_page(tmp_path: Path) -> None:
    """A buyer-intent SMS yields one trace with lead and buyer nodes and the handoff, findable everywhere."""
    store = tmp_path / "data" / "traces.db"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
        otel_exporter_type="local",
        otel_bsp_schedule_delay=100.0,
        followup_poll_seconds=3600.0,
    )
    contact = "e2e-contact-1"
    with (
        serve_in_thread(create_app(settings)) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        response = client.post("/api/v1/webhooks/ghl", json=_webhook(contact, BUYER_MESSAGE, 1))
        assert response.status_code < 300, response.text
        (trace,) = _wait_for(client, contact)
        trace_id = trace["traceID"]
        names = {span["operationName"] for span in trace["spans"]}
        assert any(name.startswith("lead_bot.") for name in names), names
        assert any(name.startswith("handoff.") for name in names), names
        assert any(name.startswith("buyer_bot.") for name in names), names
        tags = _tags(trace)
        temperature = next(value for key, value in tags if key == "workflow.temperature")
        assert ("handoff.source_bot", "lead") in tags and ("workflow.bot_type", "buyer_bot") in tags

        # The JSON API, by each of the guide's tags.
        queries = {
            "workflow.contact_id": contact,
            "workflow.bot_type": "lead_bot",
            "handoff.source_bot": "lead",
            "workflow.temperature": str(temperature),
        }
        for key, value in queries.items():
            found = {t["traceID"] for t in _traces(client, tags=json.dumps({key: value}))}
            assert trace_id in found, (key, value)
        assert {t["traceID"] for t in _traces(client, tags=json.dumps(queries))} == {trace_id}

        # The page.
        page = client.get("/traces", params={"tags": " ".join(f"{k}={v}" for k, v in queries.items())})
        assert page.status_code == 200 and f"/traces/{trace_id}" in page.text
        waterfall = client.get(f"/traces/{trace_id}")
        assert waterfall.status_code == 200 and "handoff.source_bot" in waterfall.text

        # The CLI, on the store file and through the app's Jaeger API.
        cli = typer.Typer()

        @cli.callback()
        def _root() -> None:
            """jorge"""

        cli.add_typer(traces_cli.app, name="traces")
        runner = CliRunner()
        args = [arg for key, value in queries.items() for arg in ("--tag", f"{key}={value}")]
        for source in (["--store", str(store)], ["--jaeger-url", base_url]):
            result = runner.invoke(cli, ["traces", "find", "--json", *source, *args])
            assert result.exit_code == 0, result.output
            assert [row["trace_id"] for row in json.loads(result.stdout)] == [trace_id]
        shown = runner.invoke(cli, ["traces", "show", trace_id, "--store", str(store)])
        assert shown.exit_code == 0
        lines = shown.stdout.splitlines()  # stdout only: the server thread logs to stderr meanwhile
        assert lines[0] == f"Trace ID: {trace_id}"
        # The test's own httpx client is instrumented too (same process), so the
        # SERVER span may sit one level under a CLIENT "POST" root.
        server = next(i for i, line in enumerate(lines) if "─ POST /api/v1/webhooks/ghl (" in line)
        indent = lines[server].index("─ POST") - 1
        handoff = [line for line in lines if "─ handoff.lead_to_buyer (" in line]
        assert len(handoff) == 1 and handoff[0].index("─ handoff") - 1 == indent + 3, shown.output
