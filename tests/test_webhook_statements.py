"""Issue 14 acceptance 3: at most 8 statements per webhook on SQLite and on PostgreSQL.

The real app in-process (no network), the mix of ``bench/webhook_overhead.py`` (its own
messages): every webhook a new contact, four texts in six hand the contact over to the
buyer or seller bot, two stay with the lead bot. The store counts what it sends (``store.stats``).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.webhook_overhead import TEXTS, payload
from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.settings import Settings

WEBHOOKS = 12
BUDGET = 8


async def test_a_webhook_costs_at_most_eight_statements(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        otel_exporter_type="none",
        followup_poll_seconds=3600.0,
        contact_order_window_ms=0,  # the order window waits; it sends nothing
    )
    app = create_app(settings, manage_observability=False)
    async with app.running():
        get_sandbox_state(app.state.ghl_sandbox).rate_limit = 1_000_000_000
        store = app.state.store
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://count") as http:
            for n in range(len(TEXTS)):  # each kind of turn once: SQLite teaches its connection new writes
                assert (await http.post("/api/v1/webhooks/ghl", json=payload("warm", n))).status_code == 200
            before = store.stats.snapshot()
            for n in range(WEBHOOKS):
                response = await http.post("/api/v1/webhooks/ghl", json=payload("count", n))
                assert response.json()["status"] == "processed", response.text
            after = store.stats.snapshot()
    per_webhook = (after.statements - before.statements) / WEBHOOKS
    assert per_webhook <= BUDGET, per_webhook
