"""The /dashboard page: the same figures as ``jorge slo``, charts that open their traces, hostile text inert.

A scripted known mix goes into a real trace store: 20 traces, each with a
``lead_bot.analyze_intent`` node (100 ms x trace number); six of them hand the
lead to the buyer bot and two of those handoffs fail; two other traces fail in
a node. ``jorge slo --window 1h --json`` and the page read that store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from _browser import assert_inert, watch
from fastapi import FastAPI
from tracegen import Node, emit, make_provider, node_attrs, serve
from typer.testing import CliRunner

from ghl_real_estate_ai.api.dashboard import create_dashboard_router
from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.cli import app as cli
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter

if TYPE_CHECKING:
    from playwright.sync_api import Browser

HOSTILE_NODE = "<script>window.__pwned='node'</script>"
HOSTILE_BOT = '"><img src=x onerror="window.__pwned=\'bot\'">'


def known_mix(index: int) -> Node:
    """Trace ``index`` (1-20) of the mix."""
    contact = f"mix-{index}"
    children = [
        Node(
            "lead_bot.analyze_intent",
            1,
            100 * index,
            node_attrs("lead_bot", "analyze_intent", contact),
            error="LLM timed out" if index in (7, 8) else None,
        )
    ]
    if index <= 6:
        failed = index in (1, 2)
        children.append(
            Node(
                "handoff.lead_to_buyer",
                100 * index + 2,
                50 * index,
                {
                    "handoff.source_bot": "lead",
                    "handoff.target_bot": "buyer",
                    "handoff.contact_id": contact,
                    "handoff.confidence": 0.9,
                    "handoff.reason": "buyer_intent_detected",
                    "handoff.outcome": "failed:StorageError" if failed else "executed",
                },
                error="StorageError: outbox write refused" if failed else None,
            )
        )
    return Node("POST /api/v1/webhooks/ghl", 0, 100 * index + 60 * index + 5, children=children)


@pytest.fixture
def mix(tmp_path: Path) -> tuple[FastAPI, Path, dict[int, str]]:
    store = tmp_path / "traces.db"
    provider = make_provider(LocalSpanExporter(store))
    ids = {index: emit(provider, known_mix(index)) for index in range(1, 21)}
    provider.shutdown()
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token=None, require_token=False))
    app.include_router(create_dashboard_router(store, admin_token=None, require_token=False))
    return app, store, ids


def jorge_slo(store: Path) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["slo", "--window", "1h", "--json", "--store", str(store)])
    assert result.exit_code == 1, result.output  # the mix breaches the SLOs
    data: dict[str, object] = json.loads(result.output)
    return data


async def test_page_shows_the_figures_jorge_slo_prints(mix: tuple[FastAPI, Path, dict[int, str]]) -> None:
    """Server-rendered numbers equal the CLI's JSON, in the CLI's formats."""
    app, store, ids = mix
    report = jorge_slo(store)
    assert (report["handoff_failures"], report["handoff_total"]) == (2, 6)
    assert (report["trace_errors"], report["trace_total"]) == (4, 20)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        page = await client.get("/dashboard", params={"window": "1h"})
        bad = await client.get("/dashboard", params={"window": "2h"})
        bad_figure = await client.get("/dashboard/traces", params={"figure": "nope"})
        failed = await client.get("/dashboard/traces", params={"window": "1h", "figure": "handoffs"})
    assert page.status_code == 200
    html = page.text
    assert f"{report['handoff_failure_rate']:.2%}" in html and "2/6 handoffs" in html
    assert f"{report['trace_error_rate']:.2%}" in html and "4/20 traces" in html
    (node,) = report["nodes"]  # type: ignore[misc]
    assert f"{node['p95_ms']:.1f} ms" in html  # the worst node's P95, 1900.0 ms
    assert bad.status_code == 400 and "1h, 24h, 7d" in bad.text
    assert bad_figure.status_code == 400
    assert failed.status_code == 200 and failed.text.count("class=trace-row") == 2
    assert ids[1] in failed.text and ids[2] in failed.text and ids[3] not in failed.text
    assert "/static/chart.umd.min.js" in html and "https://" not in html  # no CDN


def test_jorge_slo_window_flags(mix: tuple[FastAPI, Path, dict[int, str]]) -> None:
    """--window takes 1h/24h/7d only and not together with --since; both name the fix."""
    _, store, _ = mix
    runner = CliRunner()
    wrong = runner.invoke(cli, ["slo", "--window", "2h", "--store", str(store)])
    both = runner.invoke(cli, ["slo", "--window", "1h", "--since", "1h", "--store", str(store)])
    text = runner.invoke(cli, ["slo", "--window", "24h", "--store", str(store)])
    assert wrong.exit_code == 2 and "--since" in wrong.output
    assert both.exit_code == 2 and "not both" in both.output
    assert text.exit_code == 1 and "handoff failure rate: 33.33% (2/6" in text.output


@pytest.mark.browser
def test_dashboard_in_chromium(
    mix: tuple[FastAPI, Path, dict[int, str]], chromium: Browser, tmp_path: Path
) -> None:
    """The page shows jorge slo's figures, a click on a chart bar opens its traces, a screenshot is saved."""
    from playwright.sync_api import expect

    app, store, ids = mix
    report = jorge_slo(store)
    with serve(app) as base_url:
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        seen = watch(page)
        page.goto(f"{base_url}/dashboard?window=1h")
        expect(page.locator("#slo-handoff .value")).to_have_text(f"{report['handoff_failure_rate']:.2%}")
        expect(page.locator("#slo-errors .value")).to_have_text(f"{report['trace_error_rate']:.2%}")
        expect(page.locator("#slo-errors .state")).to_have_text("BREACH")
        for route in report["routes"]:  # type: ignore[attr-defined]
            row = page.locator(f"#table-routes tr[data-key='{route['route']}']")
            expect(row.locator(".avg")).to_have_text(f"{route['avg_ms']:.1f}")
            expect(row.locator(".failures")).to_have_text(str(route["failures"]))
        for node in report["nodes"]:  # type: ignore[attr-defined]
            row = page.locator(f"#table-nodes tr[data-key='{node['bot_type']}.{node['node_name']}']")
            expect(row.locator(".p95")).to_have_text(f"{node['p95_ms']:.1f}")
        for bot in report["bots"]:  # type: ignore[attr-defined]
            expect(page.locator(f"#table-bots tr[data-key='{bot['bot_type']}'] .rate")).to_have_text(
                f"{bot['rate']:.2%}"
            )
        page.wait_for_function("window.jorgeCharts && Object.keys(window.jorgeCharts).length === 3")
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000

        # Click the P95 bar of lead_bot.analyze_intent: the page of its slowest traces opens.
        point = page.evaluate(
            "() => { const c = window.jorgeCharts['chart-nodes']; const bar = c.getDatasetMeta(0).data[0];"
            " const r = c.canvas.getBoundingClientRect(); return {x: r.left + bar.x - 4, y: r.top + bar.y}; }"
        )
        page.mouse.click(point["x"], point["y"])
        expect(page.locator("#figure-title")).to_contain_text("lead_bot.analyze_intent")
        rows = page.locator("#results tr.trace-row")
        # P95 of 20 values 100..2000 ms is 1900 ms: traces 19 and 20 are at or above it.
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text(ids[20])
        expect(rows.nth(1)).to_contain_text(ids[19])
        rows.first.locator("a.trace-link").click()
        expect(page.locator("#trace-id")).to_have_text(ids[20])

        # The handoff chart opens that route's failed handoffs.
        page.goto(f"{base_url}/dashboard?window=1h")
        page.wait_for_function("window.jorgeCharts && window.jorgeCharts['chart-routes']")
        point = page.evaluate(
            "() => { const c = window.jorgeCharts['chart-routes']; const bar = c.getDatasetMeta(0).data[0];"
            " const r = c.canvas.getBoundingClientRect(); return {x: r.left + bar.x - 4, y: r.top + bar.y}; }"
        )
        page.mouse.click(point["x"], point["y"])
        expect(page.locator("#figure-title")).to_have_text("Failed lead->buyer handoffs")
        expect(page.locator("#results tr.trace-row")).to_have_count(2)
        assert seen.errors == [] and seen.dialogs == []


@pytest.mark.browser
def test_hostile_span_text_is_inert_on_the_dashboard(chromium: Browser, tmp_path: Path) -> None:
    """A node name and a bot type carrying markup show as text in tables and charts; nothing runs."""
    from playwright.sync_api import expect

    store = tmp_path / "traces.db"
    provider = make_provider(LocalSpanExporter(store))
    emit(provider, Node(f"{HOSTILE_BOT}.x", 0, 50, node_attrs(HOSTILE_BOT, HOSTILE_NODE, "c-hostile")))
    provider.shutdown()
    app = FastAPI()
    app.include_router(create_dashboard_router(store, admin_token=None, require_token=False))
    with serve(app) as base_url:
        page = chromium.new_page()
        seen = watch(page)
        page.goto(f"{base_url}/dashboard?window=1h")
        expect(page.locator("#table-nodes tbody tr a")).to_have_text(f"{HOSTILE_BOT}.{HOSTILE_NODE}")
        expect(page.locator("#table-bots tbody tr a")).to_have_text(HOSTILE_BOT)
        page.wait_for_function("window.jorgeCharts && window.jorgeCharts['chart-nodes']")
        labels = page.evaluate("() => window.jorgeCharts['chart-nodes'].data.labels")
        assert labels == [f"{HOSTILE_BOT}.{HOSTILE_NODE}"]
        assert_inert(page, seen, scripts=["/static/chart.umd.min.js", "/static/dashboard.js"])
        assert seen.errors == []
