#!/usr/bin/env python3
"""Crash the service mid-stream and check that nothing is lost or sent twice (issue 13).

The GHL sandbox runs in its own process, answering after ``--latency-ms``, so
its log of calls survives the service's deaths. The service (uvicorn, the real
app) stores into SQLite (or ``--database-url``). The driver posts
``--webhooks`` inbound messages, one contact each, ``--concurrency`` at a time;
after each ``--kill-every`` acknowledged webhooks the service gets ``kill -9``
and is restarted at once. A webhook that got no answer (the service was dying)
is sent again, as GHL would. Then it waits for:

* every acknowledged webhook stored once and ``processed``;
* exactly one SMS per contact in the sandbox's log (none twice, none missing);

and prints how long that took after the last restart. Exit status 0 when all
of it holds within ``--deadline`` seconds of the last restart, 1 otherwise::

    .venv/bin/python scripts/resilience.py                       # 600 webhooks, 300 ms, two kills
    .venv/bin/python scripts/resilience.py --webhooks 60 --kills 1 --latency-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

PYTHON = sys.executable
_UVICORN = (PYTHON, "-m", "uvicorn", "ghl_real_estate_ai.app:app")
SANDBOX = """
import uvicorn
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
app = create_sandbox_app(latency_ms={latency}, rate_limit=1_000_000, max_records=1_000_000)
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not come up at {url} within {timeout:.0f}s")


@dataclass
class Service:
    """The app in a uvicorn process that can be killed and restarted."""

    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*_UVICORN, "--port", str(self.port), "--log-level", "warning"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for(f"{self.url}/health", "the service")

    def kill_and_restart(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.restarts.append(time.monotonic())
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _webhook(n: int, run: str) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": f"res-{run}-{n}",
        "body": "Hi, I'm looking to buy a 3 bedroom home in Upland",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"res-msg-{run}-{n}",
        "webhookId": f"res-wh-{run}-{n}",
        "dateAdded": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


async def _drive(service: Service, args: argparse.Namespace, run: str) -> dict[int, int]:
    """Post every webhook until it is acknowledged; kill the service at the planned points."""
    acked: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.webhooks):
        queue.put_nowait(n)
    kill_points = [args.kill_every * (k + 1) for k in range(args.kills)]
    killing = asyncio.Lock()

    async with httpx.AsyncClient(timeout=30) as http:

        async def worker() -> None:
            while True:
                try:
                    n = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    response = await http.post(f"{service.url}/api/v1/webhooks/ghl", json=_webhook(n, run))
                except httpx.HTTPError:
                    response = None
                if response is None or response.status_code >= 300:
                    await asyncio.sleep(0.2)  # GHL retries a delivery that got no final answer
                    queue.put_nowait(n)
                    continue
                acked[n] = response.status_code
                if kill_points and len(acked) >= kill_points[0]:
                    async with killing:
                        if kill_points and len(acked) >= kill_points[0]:
                            kill_points.pop(0)
                            print(f"kill -9 after {len(acked)} acknowledged webhooks", flush=True)
                            await asyncio.to_thread(service.kill_and_restart)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return acked


def _events(database: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT message_id, status, attempts FROM webhook_events").fetchall()
    return [(str(m), str(s), int(a)) for m, s, a in rows]


def _sms_per_contact(sandbox_url: str) -> dict[str, int]:
    calls = httpx.get(f"{sandbox_url}/_calls", timeout=30).json()["calls"]
    counts: dict[str, int] = {}
    for call in calls:
        if call["method"] == "POST" and call["path"] == "/conversations/messages" and call["status"] == 200:
            contact = call["body"]["contactId"]
            counts[contact] = counts.get(contact, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--webhooks", type=int, default=600)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--kill-every", type=int, default=0, help="default: webhooks / (kills + 1)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds after the last restart")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.kill_every <= 0:
        args.kill_every = max(1, args.webhooks // (args.kills + 1))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="jorge-resilience-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "jorge.db"
    sandbox_port, service_port = _free_port(), _free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    sandbox = subprocess.Popen(
        [PYTHON, "-c", SANDBOX.format(latency=args.latency_ms, port=sandbox_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DATA_DIR": str(workdir / "data"),
        "GHL_BASE_URL": sandbox_url,
        "GHL_API_KEY": "resilience-run",
        "GHL_RATE_LIMIT_PER_10S": "100000",
        "OTEL_EXPORTER_TYPE": "none",
        "FOLLOWUP_POLL_SECONDS": "1",
        "ADMIN_TOKEN": "resilience",
    }
    service = Service(env, service_port, workdir / "service.log")
    run = f"{int(time.time())}"
    started = time.monotonic()
    try:
        _wait_for(f"{sandbox_url}/", "the GHL sandbox")
        service.start()
        acked = asyncio.run(_drive(service, args, run))
        sent_at = time.monotonic()
        last_restart = service.restarts[-1] if service.restarts else sent_at
        expected = {f"res-{run}-{n}" for n in acked}
        deadline = last_restart + args.deadline
        while True:
            events = _events(database)
            sms = _sms_per_contact(sandbox_url)
            processed = {m for m, s, _ in events if s == "processed"}
            done = len(processed) == len(acked) and set(sms) == expected and set(sms.values()) == {1}
            if done or time.monotonic() > deadline or any(v > 1 for v in sms.values()):
                break
            time.sleep(0.5)
        finished = time.monotonic()
    finally:
        service.stop()
        sandbox.terminate()
        sandbox.wait(20)

    stored = [m for m, _, _ in events]
    twice = {c: k for c, k in sms.items() if k > 1}
    missing = sorted(expected - set(sms))
    summary = {
        "webhooks": args.webhooks,
        "ghl_latency_ms": args.latency_ms,
        "kills": len(service.restarts),
        "acknowledged": len(acked),
        "events_stored": len(stored),
        "events_stored_twice": len(stored) - len(set(stored)),
        "events_processed": len(processed),
        "contacts_with_one_sms": sum(1 for k in sms.values() if k == 1),
        "contacts_with_two_or_more_sms": len(twice),
        "contacts_without_sms": len(missing),
        "sms_total": sum(sms.values()),
        "seconds_sending": round(sent_at - started, 1),
        "seconds_after_last_restart": round(finished - last_restart, 1),
        "deadline_seconds": args.deadline,
    }
    ok = (
        len(acked) == args.webhooks
        and summary["events_stored_twice"] == 0
        and len(processed) == len(acked)
        and not twice
        and not missing
        and finished <= deadline
    )
    summary["result"] = "PASS" if ok else "FAIL"
    print(json.dumps(summary, indent=2))
    if not ok:
        print(f"service log: {service.log}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
