"""Hostile text in spans renders as text on the trace pages: nothing it carries runs in the browser.

A span's name, service, attributes, status message and events come from webhook
payloads and GHL answers, so a contact's message can hold markup. The templates
autoescape it; these tests inject ``<script>`` and an attribute-breaking
``"><img onerror=...>`` and look at the page as Chromium builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from _browser import assert_inert, watch
from fastapi import FastAPI
from tracegen import Node, emit, make_provider, serve

from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter

if TYPE_CHECKING:
    from playwright.sync_api import Browser

SCRIPT = "<script>window.__pwned = 'script'</script>"
BREAKOUT = "'\"><img src=x onerror=\"window.__pwned='img'\">"
HOSTILE = f"hi {SCRIPT} {BREAKOUT}"


def hostile_trace() -> Node:
    return Node(
        f"lead_bot.{BREAKOUT}",
        0,
        120,
        {
            "workflow.bot_type": "lead_bot",
            "workflow.contact_id": "c-hostile",
            "message.body": HOSTILE,
            BREAKOUT: SCRIPT,
        },
        error=f"GHL said {SCRIPT}",
        children=[Node(SCRIPT, 10, 50, {"note": BREAKOUT}, events=[(BREAKOUT, {"text": SCRIPT})])],
    )


@pytest.fixture
def hostile_app(tmp_path: Path) -> tuple[FastAPI, str]:
    store = tmp_path / "traces.db"
    provider = make_provider(LocalSpanExporter(store), service=f"svc{BREAKOUT}")
    trace_id = emit(provider, hostile_trace())
    provider.shutdown()
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token=None, require_token=False))
    return app, trace_id


async def test_markup_is_escaped_in_the_html(hostile_app: tuple[FastAPI, str]) -> None:
    """The served HTML holds the hostile strings only in escaped form."""
    app, trace_id = hostile_app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        search = await client.get("/traces", params={"tags": "workflow.contact_id=c-hostile"})
        page = await client.get(f"/traces/{trace_id}")
        missing = await client.get("/traces", params={"tags": f"a={SCRIPT}", "min_duration": BREAKOUT})
    assert search.status_code == page.status_code == 200 and missing.status_code == 400
    for html in (search.text, page.text, missing.text):
        assert "<script>window" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned" in page.text
    assert "&#34;&gt;&lt;img src=x onerror=" in page.text
    assert "&#34;&gt;&lt;img src=x onerror=" in search.text  # the root span's name in the results


@pytest.mark.browser
def test_nothing_executes_in_chromium(hostile_app: tuple[FastAPI, str], chromium: Browser) -> None:
    """In Chromium the hostile text is visible as text, no element it carries exists, no script runs."""
    from playwright.sync_api import expect

    app, trace_id = hostile_app
    with serve(app) as base_url:
        context = chromium.new_context()
        page = context.new_page()
        seen = watch(page)
        page.goto(f"{base_url}/traces?tags=workflow.contact_id%3Dc-hostile")
        link = page.locator("#results a.trace-link")
        expect(link).to_have_count(1)
        expect(link).to_contain_text(f"lead_bot.{BREAKOUT}")

        link.click()
        expect(page.locator("#trace-id")).to_have_text(trace_id)
        root = page.locator(".span-row").first
        root.click()
        detail = page.locator(f"#detail-{root.get_attribute('data-span-id')}")
        expect(detail.locator("tr[data-key='message.body'] td").nth(1)).to_have_text(HOSTILE)
        expect(detail).to_contain_text(f"GHL said {SCRIPT}")
        child = page.locator(".span-row").nth(1)
        expect(child).to_contain_text(SCRIPT)
        child.click()
        expect(page.locator(".events")).to_contain_text(BREAKOUT)

        # The only script on the page is our own, and no injected image exists.
        assert_inert(page, seen, scripts=["/static/traces.js"])
        assert seen.errors == []
        context.close()
