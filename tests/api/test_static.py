"""The pages' static files: served from the package itself (no CDN), nothing else reachable."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from ghl_real_estate_ai.api.traces import create_traces_router


def _client(tmp_path: Path, *, require_token: bool = False) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(
        create_traces_router(tmp_path / "t.db", admin_token="s3cret", require_token=require_token)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_style_script_and_chart_library_are_served(tmp_path: Path) -> None:
    """CSS and JS come with their media types, without the admin token (they hold no trace data)."""
    async with _client(tmp_path, require_token=True) as client:
        css = await client.get("/static/traces.css")
        js = await client.get("/static/traces.js")
        chart = await client.get("/static/chart.umd.min.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".span-row" in css.text
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "addEventListener" in js.text
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]


async def test_only_plain_static_names_are_served(tmp_path: Path) -> None:
    """Unknown names, other suffixes and paths out of the folder answer 404."""
    async with _client(tmp_path) as client:
        for path in (
            "/static/nope.js",
            "/static/chart.js-LICENSE.md",
            "/static/..%2Ftraces.py",
            "/static/%2E%2E%2Fapi%2Ftraces.py",
            "/static/.hidden.css",
        ):
            response = await client.get(path)
            assert response.status_code == 404, path


async def test_pages_link_their_static_files(tmp_path: Path) -> None:
    """The rendered page loads the style sheet from /static (no inline style block, no CDN)."""
    async with _client(tmp_path) as client:
        page = await client.get("/traces")
    assert "<link rel=stylesheet href='/static/traces.css'>" in page.text
    assert "<style>" not in page.text and "//" not in page.text.split("<body>")[0]
