"""The journey of each trace (issue 12) in the /traces search results and as Jaeger-API tags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tracegen import emit, handoff_journey

from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter


async def test_the_page_and_the_api_show_the_journey(tmp_path: Path) -> None:
    store = tmp_path / "traces.db"
    # The processor the set-up installs, ahead of the exporter.
    provider = TracerProvider(resource=Resource.create({"service.name": "enterprisehub"}))
    provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(LocalSpanExporter(store)))
    handed = emit(provider, handoff_journey("c-hot", temperature="hot"))
    blocked = emit(provider, handoff_journey("c-warm", temperature="warm", outcome="blocked:cooldown"))
    provider.shutdown()
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token=None, require_token=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        page = (await client.get("/traces", params={"service": "enterprisehub"})).text
        assert "<th>Journey</th>" in page
        cells = dict(re.findall(r"/traces/([0-9a-f]{32}).*?<td class=journey>([^<]*)</td>", page, re.S))
        assert cells == {handed: "lead→buyer handed_off hot", blocked: "buyer blocked:cooldown warm"}

        data = (await client.get(f"/api/traces/{handed}")).json()["data"][0]
        root = next(s for s in data["spans"] if not s["references"])
        tags = {t["key"]: t["value"] for t in root["tags"]}
        assert tags["journey.handoff_route"] == "lead_to_buyer" and tags["journey.final_bot"] == "buyer_bot"
        found = await client.get(
            "/api/traces",
            params={"service": "enterprisehub", "tags": json.dumps({"journey.outcome": "blocked:cooldown"})},
        )
        assert [t["traceID"] for t in found.json()["data"]] == [blocked]
