"""The start-up line tells the truth about what runs (issue 12): `embedded` only on SQLite,
the in-process cache and the GHL sandbox; PostgreSQL and Redis say so."""

from __future__ import annotations

import logging

import pytest

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings


async def started_line(settings: Settings, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    caplog.set_level(logging.INFO, "ghl_real_estate_ai.runtime")
    async with create_app(settings).running():
        pass
    (record,) = [
        r for r in caplog.records if r.name == "ghl_real_estate_ai.runtime" and r.getMessage() == "started"
    ]
    return record


async def test_the_embedded_defaults_say_embedded(caplog: pytest.LogCaptureFixture) -> None:
    line = await started_line(Settings(otel_exporter_type="none"), caplog)
    facts = {k: getattr(line, k) for k in ("database", "cache", "ghl", "tracing", "embedded")}
    assert facts == {
        "database": "sqlite",
        "cache": "memory",
        "ghl": "sandbox",
        "tracing": "none",
        "embedded": True,
    }


@pytest.mark.postgres
@pytest.mark.redis
async def test_postgresql_and_redis_are_not_embedded(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    line = await started_line(
        Settings(database_url=postgres_url, redis_url=redis_url, otel_exporter_type="none"), caplog
    )
    facts = {k: getattr(line, k) for k in ("database", "cache", "ghl", "embedded")}
    assert facts == {"database": "postgresql", "cache": "redis", "ghl": "sandbox", "embedded": False}
