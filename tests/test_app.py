"""The app's lifecycle: embedded start, readiness, and start-up errors a person can read."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings
from tests.serving import free_port

ROOT = Path(__file__).resolve().parents[1]


async def test_embedded_defaults_are_healthy_and_ready() -> None:
    app = create_app(Settings(otel_exporter_type="none"))
    async with app.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/health")).status_code == 200
            ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "cache": "ok"}
    assert Path("data/jorge.db").exists()


async def test_collector_is_kept_off_the_request_path_while_the_app_runs_and_restored_after() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    app = create_app(Settings(otel_exporter_type="none"))
    async with app.running():
        frozen, threshold = gc.get_freeze_count(), gc.get_threshold()
    assert frozen > 10_000  # modules, graphs, classifier: out of the collector's full walks
    assert threshold[0] >= 5_000 and threshold[1:] == before[1:]
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


async def test_ready_is_503_before_start_up() -> None:
    app = create_app(Settings(otel_exporter_type="none"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert (await client.get("/ready")).status_code == 503


@pytest.mark.postgres
async def test_ready_names_the_database_while_it_is_gone_and_recovers(postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    admin_url = postgres_url.rsplit("/", 1)[0] + "/test"
    app = create_app(Settings(database_url=postgres_url, otel_exporter_type="none"))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        assert (await client.get("/ready")).status_code == 200
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            down = await client.get("/ready")
            assert down.status_code == 503
            assert down.json()["down"] == ["database"]
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
        back = await client.get("/ready")
        assert back.status_code == 200, back.text


def _serve(env_overrides: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(env_overrides)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere"), ("REDIS_URL", "redis://127.0.0.1:1/0")],
)
def test_unreachable_backend_stops_uvicorn_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    result = _serve(
        {variable: value, "OTEL_EXPORTER_TYPE": "none"},
        tmp_path,
        sys.executable,
        "-m",
        "uvicorn",
        "ghl_real_estate_ai.app:app",
        "--port",
        str(free_port()),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    failures = [line for line in result.stderr.splitlines() if "start-up failed" in line]
    assert len(failures) == 1 and variable in failures[0], result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere"),
        ("REDIS_URL", "redis://127.0.0.1:1/0"),
        ("DATABASE_URL", "mysql://db/jorge"),
    ],
)
def test_jorge_serve_refuses_to_start_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    result = _serve({variable: value}, tmp_path, sys.executable, "-m", "ghl_real_estate_ai.cli", "serve")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr


def test_jorge_serve_on_a_fresh_folder_answers_health_and_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    process = subprocess.Popen(
        [sys.executable, "-m", "ghl_real_estate_ai.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5)
        assert health.status_code == 200 and ready.status_code == 200, ready.text
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/api/v1/webhooks/ghl" in out
    assert "/traces" in out


def test_malformed_webhook_key_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _serve(
        {"GHL_WEBHOOK_PUBLIC_KEY": "not a PEM key", "OTEL_EXPORTER_TYPE": "none"},
        tmp_path,
        sys.executable,
        "-m",
        "uvicorn",
        "ghl_real_estate_ai.app:app",
        "--port",
        str(free_port()),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    failures = [line for line in result.stderr.splitlines() if "start-up failed" in line]
    assert len(failures) == 1 and "GHL_WEBHOOK_PUBLIC_KEY" in failures[0], result.stderr


async def test_admin_and_viewer_endpoints_need_the_token_once_one_is_set() -> None:
    app = create_app(Settings(otel_exporter_type="none", admin_token="s3cret"))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        assert (await client.get("/traces")).status_code == 401
        assert (await client.get("/api/services")).status_code == 401
        assert (await client.post("/admin/followups/run-due")).status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/traces", headers=bearer)).status_code == 200
        assert (await client.get("/api/services", headers=bearer)).status_code == 200
        assert (await client.post("/admin/followups/run-due", headers=bearer)).status_code == 200


async def test_embedded_mode_without_a_token_leaves_the_viewer_open() -> None:
    app = create_app(Settings(otel_exporter_type="none"))
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        assert (await client.get("/traces")).status_code == 200
        assert (await client.get("/sandbox/ghl/_calls")).status_code == 200


async def test_outside_the_embedded_mode_the_sandbox_is_not_served() -> None:
    settings = Settings(
        otel_exporter_type="none", ghl_base_url="http://127.0.0.1:9/ghl", ghl_api_key="pit-123"
    )
    app = create_app(settings)
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client,
    ):
        assert (await client.get("/sandbox/ghl/_calls")).status_code == 404
        # Without the embedded sandbox the viewer is protected even with no token set.
        assert (await client.get("/traces")).status_code == 401


async def test_shutdown_flushes_tracing_off_the_event_loop() -> None:
    """Issue 13: the final flush to a collector that never answers does not freeze the event loop."""
    import socket

    from opentelemetry import trace

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts connections, never answers: every export waits for its timeout
    try:
        port = hole.getsockname()[1]
        settings = Settings(
            otel_exporter_type="otlp_http",
            otel_endpoint=f"http://127.0.0.1:{port}",
            otel_exporter_otlp_timeout=1500.0,
        )
        app = create_app(settings)
        await app.startup()
        for n in range(50):
            trace.get_tracer("tests.shutdown").start_span(f"queued {n}").end()
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        await app.shutdown()
        took = time.monotonic() - started
        stop.set()
        await ticking
    finally:
        hole.close()
    assert took > 0.5, f"nothing was waited for (shutdown took {took:.2f}s): the test proves nothing"
    assert max(gaps) < took / 2, f"the event loop stalled {max(gaps):.2f}s of a {took:.2f}s shutdown"


async def test_an_unexpected_error_answers_500_with_connection_close() -> None:
    app = create_app(Settings(otel_exporter_type="none"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    async with app.running():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.json() == {"detail": "internal error"}
