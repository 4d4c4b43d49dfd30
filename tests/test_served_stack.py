"""`jorge serve` runs on uvloop and httptools, and the whole stack works there (issue 14).

The command runs in a child process on a free port, as a user runs it. Its banner names
the event loop and HTTP parser it asked uvicorn for; the app's ``started`` log line names
what actually runs (measured inside the server). A webhook then goes through every part
that has its own threads or sockets on that loop: SQLite (aiosqlite's thread) and the
local trace store's writer process by default; PostgreSQL (asyncpg), Redis and the
OTLP/gRPC exporter otherwise. SIGTERM must stop the server cleanly. Every wait is on a
condition; the deadlines are failure bounds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from serving import free_port

from ghl_real_estate_ai.api.serving import server_facts, server_options
from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings
from tests.observability.receivers import OTLPGrpcReceiver

BOUND = 90.0  # seconds: a failure bound on every wait, never a measurement
T = TypeVar("T")


@dataclass
class Served:
    base: str
    child: subprocess.Popen[bytes]
    out: Path
    err: Path

    def logs(self) -> str:
        return f"stdout:\n{self.out.read_text()[-2000:]}\nstderr:\n{self.err.read_text()[-3000:]}"

    def wait_for(self, what: str, probe: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + BOUND
        while True:
            found = probe()
            if found is not None:
                return found
            if self.child.poll() is not None:
                pytest.fail(
                    f"the server exited (status {self.child.returncode}) before {what}\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {BOUND:.0f} s\n{self.logs()}")
            time.sleep(0.05)

    def started_line(self) -> dict[str, Any] | None:
        for line in self.err.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("message") == "started":
                    return dict(record)
        return None


@contextmanager
def jorge_serve(tmp_path: Path, **env: str) -> Iterator[Served]:
    """``jorge serve`` on a free port with ``env`` on top of a clean environment."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATABASE_", "REDIS_"))}
    clean.update(DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="INFO", **env)
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:  # files: never a pipe nobody reads
        child = subprocess.Popen(
            [sys.executable, "-m", "ghl_real_estate_ai.cli", "serve", "--port", str(port)],
            env=clean,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    served = Served(f"http://127.0.0.1:{port}", child, out, err)
    try:
        yield served
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit after SIGTERM\n{served.logs()}")
        # uvicorn ends by re-raising the signal it handled.
        assert child.returncode in (0, -signal.SIGTERM), served.logs()
        assert "Traceback" not in err.read_text(), served.logs()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _answers(base: str) -> int | None:
    try:
        return httpx.get(f"{base}/health", timeout=5).status_code
    except httpx.TransportError:
        return None


def _webhook(base: str, n: int) -> dict[str, Any]:
    body = {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": f"uvloop-{n}",
        "body": "Hi, I am pre-approved for $650k and looking to buy a 3 bedroom home in Upland",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"uvloop-msg-{n}",
        "webhookId": f"uvloop-wh-{n}",
    }
    answer = httpx.post(f"{base}/api/v1/webhooks/ghl", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    assert result["status"] == "processed", result
    return result


def _served_on_uvloop_and_httptools(served: Served) -> dict[str, Any]:
    """Wait for the server; check what it asked for and what runs; return the started line."""
    served.wait_for("an answer on /health", lambda: _answers(served.base))
    assert "uvloop event loop, httptools HTTP parser" in served.out.read_text(), served.logs()
    started = served.wait_for("the started line", served.started_line)
    assert (started["event_loop"], started["http_parser"]) == ("uvloop", "httptools"), started
    return started


@pytest.mark.slow
def test_jorge_serve_runs_the_embedded_defaults_on_uvloop_and_httptools(tmp_path: Path) -> None:
    with jorge_serve(tmp_path, CONTACT_ORDER_WINDOW_MS="0") as served:
        assert _served_on_uvloop_and_httptools(served)["database"] == "sqlite"
        trace_ids = [_webhook(served.base, n)["trace_id"] for n in range(3)]

        # The local store's writer process received the traces: the trace API reads them back.
        def stored() -> bool | None:
            found = [httpx.get(f"{served.base}/api/traces/{t}", timeout=10).status_code for t in trace_ids]
            return True if found == [200] * len(trace_ids) else None

        served.wait_for("the webhooks' traces in the local store", stored)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_jorge_serve_on_postgresql_redis_and_otlp_grpc_runs_on_uvloop(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with (
        OTLPGrpcReceiver() as receiver,
        jorge_serve(
            tmp_path,
            DATABASE_URL=postgres_url,
            REDIS_URL=redis_url,
            OTEL_EXPORTER_TYPE="otlp",
            OTEL_ENDPOINT=receiver.endpoint,
            CONTACT_ORDER_WINDOW_MS="0",
        ) as served,
    ):
        started = _served_on_uvloop_and_httptools(served)
        assert (started["database"], started["cache"], started["tracing"]) == ("postgresql", "redis", "otlp")
        trace_ids = {_webhook(served.base, n)["trace_id"] for n in range(3)}
        # The exporter sends in the background; the receiver gets every webhook's server span.
        spans = receiver.wait_for(lambda got: trace_ids <= {s.trace_id for s in got}, timeout=BOUND)
        assert trace_ids <= {s.trace_id for s in spans}


@pytest.mark.parametrize(("loop", "http"), [("asyncio", "h11"), ("uvloop", "httptools")])
def test_the_started_line_says_which_loop_and_parser_serve_the_app(
    loop: str, http: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ghl_real_estate_ai.runtime")
    app = create_app(Settings(otel_exporter_type="none"))
    config = uvicorn.Config(app, port=free_port(), log_level="warning", loop=loop, http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + BOUND
    while not server.started:  # start-up logs "started" before uvicorn says it started
        assert thread.is_alive(), "the server stopped during start-up"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    server.should_exit = True
    thread.join(BOUND)
    (record,) = [
        r for r in caplog.records if r.name == "ghl_real_estate_ai.runtime" and r.getMessage() == "started"
    ]
    assert (getattr(record, "event_loop", None), getattr(record, "http_parser", None)) == (loop, http)


async def test_without_a_server_the_parser_is_unknown() -> None:
    assert server_facts() == {"event_loop": "asyncio", "http_parser": "unknown"}


def test_serving_falls_back_to_asyncio_and_h11_where_uvloop_and_httptools_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert server_options() == {"loop": "uvloop", "http": "httptools"}
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an import of a missing module finds
    monkeypatch.setitem(sys.modules, "httptools", None)
    assert server_options() == {"loop": "asyncio", "http": "h11"}
