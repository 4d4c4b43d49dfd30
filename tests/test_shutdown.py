"""The server stops on SIGTERM after a load, on PostgreSQL + Redis as on SQLite (issue 14).

The app runs as production runs it: ``uvicorn ghl_real_estate_ai.app:app`` in a child
process, tracing to the local store (the embedded default, whose shutdown flushes it).
A burst of webhooks goes in, every answer is awaited, then SIGTERM; the child must
exit. The wait on the process is a generous failure bound, not a measurement.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving import free_port

pytestmark = [pytest.mark.slow]

WEBHOOKS = 40
EXIT_BOUND = 120.0  # seconds; a healthy shutdown takes well under one


def _payload(n: int) -> dict[str, str]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": f"stop-{n % 8}",  # several webhooks per contact: locks are contended
        "body": "We're looking to buy. Pre-approved for $550k and we need 3 bedrooms in Ontario",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"stop-msg-{n}",
        "webhookId": f"stop-wh-{n}",
    }


async def _load(base: str, child: subprocess.Popen[bytes]) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as http:
        deadline = time.monotonic() + 60
        while True:  # wait for the server to answer, not for time
            assert child.poll() is None, "the server exited during start-up"
            try:
                if (await http.get(f"{base}/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            await asyncio.sleep(0.05)
        answers = await asyncio.gather(
            *(http.post(f"{base}/api/v1/webhooks/ghl", json=_payload(n)) for n in range(WEBHOOKS))
        )
    return [a.status_code for a in answers]


def _serve_and_stop(tmp_path: Path, database_url: str, redis_url: str | None) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_", "REDIS_"))}
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=database_url,
        CONTACT_ORDER_WINDOW_MS="50",
        LOG_LEVEL="WARNING",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    log = tmp_path / "server.log"
    with log.open("wb") as out:  # a file, never a pipe nobody reads while it runs
        child = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "ghl_real_estate_ai.app:app", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            statuses = asyncio.run(_load(f"http://127.0.0.1:{port}", child))
            assert statuses == [200] * WEBHOOKS
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(EXIT_BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the server did not exit after SIGTERM; its log:\n{log.read_text()[-3000:]}")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    # uvicorn ends by re-raising the signal it handled: -SIGTERM, or 0 on older versions.
    assert child.returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()


@pytest.mark.postgres
@pytest.mark.redis
def test_the_server_on_postgresql_and_redis_exits_on_sigterm_after_a_load(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    _serve_and_stop(tmp_path, request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url"))


def test_the_server_on_sqlite_exits_on_sigterm_after_a_load(tmp_path: Path) -> None:
    _serve_and_stop(tmp_path, f"sqlite:///{tmp_path / 'j.db'}", None)
