"""GET /metrics: the Prometheus text of one app, exact whatever the trace sampler keeps.

The real app (SQLite, GHL sandbox, the bots) runs in process; webhooks go in
through its ASGI interface, and the exposition is parsed with prometheus_client's
own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings

BUYER_MESSAGE = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days. "
    "Can I see some houses this weekend?"
)


def webhook(contact: str, n: int, body: str = BUYER_MESSAGE) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": body,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-{contact}-{n}",
        "conversationId": f"conv-{contact}",
        "webhookId": f"wh-{contact}-{n}",
        "dateAdded": "2026-02-15T09:30:00.000Z",
    }


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
        "otel_exporter_type": "local",
        "otel_bsp_schedule_delay": 50.0,
        "followup_poll_seconds": 3600.0,
    }
    values.update(overrides)
    return Settings(**values)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_are_exact_with_no_trace_sampled(tmp_path: Path) -> None:
    """With the sampler keeping 0 % of traces, every node, handoff, trace and webhook is still counted."""
    app = create_app(settings(tmp_path, otel_traces_sampler="traceidratio", otel_traces_sampler_arg=0.0))
    contacts = [f"metrics-contact-{i}" for i in range(3)]
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client,
    ):
        before = parse((await client.get("/metrics")).text)
        for contact in contacts:
            answer = await client.post("/api/v1/webhooks/ghl", json=webhook(contact, 1))
            assert answer.json()["status"] == "processed", answer.text
        duplicate = await client.post("/api/v1/webhooks/ghl", json=webhook(contacts[0], 1))
        assert duplicate.json()["status"] == "duplicate"
        bad = await client.post(
            "/api/v1/webhooks/ghl", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.text)

    assert value(samples, "jorge_traces_total", bot_type="lead_bot", error="false") == 3
    assert value(samples, "jorge_handoff_count_total", route="lead_to_buyer", outcome="executed") == 3
    assert value(samples, "jorge_handoff_duration_milliseconds_count", route="lead_to_buyer") == 3
    node = {"bot_type": "lead_bot", "node_name": "analyze_intent", "success": "true"}
    assert value(samples, "jorge_workflow_node_duration_milliseconds_count", **node) == 3
    assert value(samples, "jorge_workflow_node_duration_milliseconds_bucket", le="+Inf", **node) == 3
    assert value(samples, "jorge_webhook_requests_total", outcome="processed", status_code="200") == 3
    assert value(samples, "jorge_webhook_requests_total", outcome="duplicate", status_code="200") == 1
    assert value(samples, "jorge_webhook_requests_total", outcome="rejected", status_code="400") == 1
    # Nothing was sampled, so nothing was exported: the counts above come from the calls, not the spans.
    # (The export counts are the process's, so compare with the scrape before the webhooks.)
    assert value(samples, "jorge_spans_exported_total") == value(before, "jorge_spans_exported_total")
    assert value(samples, "jorge_metrics_database_up") == 1
    assert value(samples, "jorge_outbox_backlog") == 0
    assert (("jorge_followups_due", frozenset()) in samples) and (
        ("jorge_followups_dead", frozenset()) in samples
    )

    # Bounded labels only: no contact id anywhere, and the 2000 ms alert threshold is a bucket bound.
    label_values = {v for _, labels in samples for _, v in labels}
    assert not any("metrics-contact" in v for v in label_values)
    assert "2000.0" in label_values


async def test_one_registry_per_app_not_the_global_one(tmp_path: Path) -> None:
    """The app's metrics live in its own registry; prometheus_client's global registry stays clean."""
    app = create_app(settings(tmp_path))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client,
    ):
        await client.post("/api/v1/webhooks/ghl", json=webhook("one-registry", 1))
        text = (await client.get("/metrics")).text
    assert "jorge_traces_total" in text
    assert b"jorge_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    other = create_app(settings(tmp_path / "other"))
    assert other.state.metrics is not app.state.metrics
    assert other.state.metrics.bridge is not app.state.metrics.bridge


async def test_token_and_unreadable_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """METRICS_TOKEN guards the route (401 names the fix); a closed database leaves its gauges out
    (and says so in the log once, not at every read)."""
    app = create_app(settings(tmp_path, metrics_token="scrape-me"))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        refused = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert refused.status_code == wrong.status_code == 401
        assert "METRICS_TOKEN" in refused.text and refused.headers["www-authenticate"] == "Bearer"
        assert ok.status_code == 200 and value(parse(ok.text), "jorge_metrics_database_up") == 1

        await app.state.store.close()
        with caplog.at_level(logging.WARNING, logger="ghl_real_estate_ai.api.metrics"):
            await app.state.metrics.gauges.refresh()  # what the background task does every interval
            await app.state.metrics.gauges.refresh()
        warnings = [r for r in caplog.records if "gauges could not be read" in r.getMessage()]
        assert len(warnings) == 1
        down = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        await app.state.store.open()
        await app.state.metrics.gauges.refresh()
        back = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert down.status_code == 200
    samples = parse(down.text)
    assert value(samples, "jorge_metrics_database_up") == 0
    assert ("jorge_outbox_backlog", frozenset()) not in samples
    assert ("jorge_spans_exported_total", frozenset()) in samples  # the rest is still there
    assert value(parse(back.text), "jorge_metrics_database_up") == 1
    assert ("jorge_outbox_backlog", frozenset()) in parse(back.text)


class StatementCounter:
    """An execute hook: counts the statements sent by the code run inside :meth:`counting`.

    It wraps the two methods every row method of the SQL store goes through
    (``_query`` and ``_run_steps``); the real ones still run. Only statements
    sent from the counting block's context (and any task it starts) count, so
    the app's own background work at the same time does not.
    """

    def __init__(self, store: Any) -> None:
        self._active: contextvars.ContextVar[bool] = contextvars.ContextVar("counting", default=False)
        self.statements = 0
        query, run_steps = store._query, store._run_steps

        async def counted_query(sql: str, args: Any = (), **kwargs: Any) -> Any:
            if self._active.get():
                self.statements += 1
            return await query(sql, args, **kwargs)

        async def counted_steps(steps: Any) -> Any:
            if self._active.get():
                self.statements += len(steps)
            return await run_steps(steps)

        store._query, store._run_steps = counted_query, counted_steps

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        token = self._active.set(True)
        try:
            yield
        finally:
            self._active.reset(token)


async def test_a_scrape_sends_no_statement_to_the_database(tmp_path: Path) -> None:
    """Scrapes read the database gauges from memory: however often Prometheus comes, no SQL (issue 11)."""
    app = create_app(settings(tmp_path))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client,
    ):
        await client.post("/api/v1/webhooks/ghl", json=webhook("no-sql-scrape", 1))
        counter = StatementCounter(app.state.store)
        with counter.counting():
            # The hook sees the gauges' statement when it runs in the counted context ...
            await app.state.store.backlog_counts(datetime.now(UTC))
        assert counter.statements == 1
        counter.statements = 0
        with counter.counting():
            answers = [await client.get("/metrics") for _ in range(5)]
    assert all(answer.status_code == 200 for answer in answers)
    assert value(parse(answers[-1].text), "jorge_outbox_backlog") == 0  # ... but no scrape sent one
    assert counter.statements == 0


async def test_the_database_gauges_follow_the_database_on_their_own(tmp_path: Path) -> None:
    """The background task re-reads the gauges every interval: a dead outbox item shows with no other call."""
    app = create_app(settings(tmp_path))
    app.state.metrics.gauges.interval = 0.05
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client,
    ):
        first = parse((await client.get("/metrics")).text)
        assert value(first, "jorge_metrics_database_up") == 1 and value(first, "jorge_outbox_failed") == 0
        store = app.state.store
        item, _ = await store.enqueue_outbox(
            "gauge-test-item", "send_message", {"message": "hi"}, contact_id="gauge", claim=True, owner="test"
        )
        await store.finish_outbox_item(item.id, "dead", "given up by the test")
        reads = app.state.metrics.gauges.reads
        deadline = asyncio.get_running_loop().time() + 30
        while value(parse((await client.get("/metrics")).text), "jorge_outbox_failed") != 1:
            assert asyncio.get_running_loop().time() < deadline, "the gauges were never read again"
            await asyncio.sleep(0.02)
        assert app.state.metrics.gauges.reads > reads
