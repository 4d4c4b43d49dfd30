"""The /traces page in headless Chromium: search, open a trace, click a span, see its attributes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tracegen import Node, emit, handoff_journey, make_provider, serve

from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter


@pytest.fixture
def traced_app(tmp_path: Path) -> tuple[FastAPI, dict[str, str]]:
    store = tmp_path / "traces.db"
    provider = make_provider(LocalSpanExporter(store))
    ids = {
        "hot": emit(provider, handoff_journey("c-hot", temperature="hot")),
        "warm": emit(provider, handoff_journey("c-warm", temperature="warm")),
        "failed": emit(provider, Node("lead_bot.send_day_3_sms", 0, 30, error="GHL answered 503")),
    }
    provider.shutdown()
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token=None, require_token=False))
    return app, ids


async def test_page_renders_without_a_browser(traced_app: tuple[FastAPI, dict[str, str]]) -> None:
    """Server-rendered: the search results and the waterfall are in the HTML itself."""
    app, ids = traced_app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        search = await client.get("/traces", params={"tags": "workflow.contact_id=c-warm"})
        assert search.status_code == 200 and search.headers["content-type"].startswith("text/html")
        assert f"/traces/{ids['warm']}" in search.text and ids["hot"] not in search.text
        page = (await client.get(f"/traces/{ids['hot']}")).text
        assert page.count("class=span-row") == 10
        assert "data-depth='3'" in page  # POST under execute_handoff under handoff under the root
        assert "handoff.source_bot" in page
        assert (await client.get("/traces", params={"min_duration": "soon"})).status_code == 400
        assert (await client.get("/traces", params={"tags": 'a="b'})).status_code == 400
        assert (await client.get("/traces/zz")).status_code == 400
        missing = await client.get(f"/traces/{'e' * 32}")
        assert missing.status_code == 404 and "Trace not found" in missing.text
        failed = (await client.get(f"/traces/{ids['failed']}")).text
        assert "error-bar" in failed and "GHL answered 503" in failed


@pytest.mark.browser
def test_search_open_click_and_screenshot(
    traced_app: tuple[FastAPI, dict[str, str]], chromium: object, tmp_path: Path
) -> None:
    """Search by tag, open the trace, click a span: its attributes show; the waterfall is screenshotted."""
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    app, ids = traced_app
    with serve(app) as base_url:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base_url}/traces")
        page.fill("input[name=tags]", "workflow.temperature=warm handoff.source_bot=lead")
        page.select_option("select[name=sort]", "time")
        page.click("button[type=submit]")
        rows = page.locator("#results tr.trace-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(ids["warm"])
        rows.first.locator("a.trace-link").click()
        expect(page.locator("#trace-id")).to_have_text(ids["warm"])
        expect(page.locator(".span-row")).to_have_count(10)

        handoff_row = page.locator(".span-row", has_text="handoff.lead_to_buyer")
        detail = page.locator(f"#detail-{handoff_row.get_attribute('data-span-id')}")
        expect(detail).to_be_hidden()
        handoff_row.click()
        expect(detail).to_be_visible()
        expect(detail.locator("tr[data-key='handoff.source_bot']")).to_contain_text("lead")
        expect(detail.locator("tr[data-key='handoff.confidence']")).to_contain_text("0.85")

        # Bars are placed by start time and sized by duration: the handoff starts
        # 110 ms into a 350 ms trace and lasts 150 ms.
        lane = handoff_row.locator(".lane").bounding_box()
        bar = handoff_row.locator(".bar").bounding_box()
        assert lane is not None and bar is not None
        assert (bar["x"] - lane["x"]) / lane["width"] == pytest.approx(110 / 350, abs=0.01)
        assert bar["width"] / lane["width"] == pytest.approx(150 / 350, abs=0.01)

        shot = tmp_path / "waterfall.png"
        page.locator("#waterfall").screenshot(path=str(shot))
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        assert width > 600 and height > 200 and len(data) > 10_000, (width, height, len(data))
        handoff_row.click()
        expect(detail).to_be_hidden()
