"""What Prometheus scraping ``/metrics`` costs the webhooks it watches (issue 11).

The app runs under uvicorn (one worker) in a child process, in the embedded
mode (SQLite, the GHL sandbox, the local trace store). Each round sends
``--webhooks`` buyer-intent webhooks (a new contact each, ``--concurrency`` in
flight, 1 by default) and reads the server process's CPU time (user + system, from
``/proc/<pid>/stat``) before and after. Two kinds of round run interleaved,
the order alternating, so the drift of a shared machine hits both alike:

* ``quiet``: webhooks only;
* ``scraped``: the same webhooks while a scraper GETs ``/metrics`` every
  ``--scrape-interval`` seconds (default 1 s, fifteen times Prometheus' usual
  15 s, so the figure is an upper bound).

The ratio is the median over round pairs of (CPU per webhook, scraped) /
(CPU per webhook, quiet), printed with its min-max; the scrape's own CPU is
counted in the scraped side. Budget: <= 1.02 (``/metrics`` adds at most 2 %).
The CPU of one scrape alone (50 back to back) is printed too, as the exact
share behind that ratio.

Run: ``.venv/bin/python bench/metrics_overhead.py`` (``--quick`` for a short
smoke run). Exits non-zero when it measured nothing (an answer not 200, no CPU
time, a scrape without the webhook counters), and with ``--strict`` when the
budget is missed.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 1.02
MESSAGE = "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland. Can we see houses?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def webhook() -> dict[str, str]:
    contact = f"bench-{uuid.uuid4().hex[:12]}"
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": MESSAGE,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-{contact}",
        "webhookId": f"wh-{contact}",
    }


def run_round(client: httpx.Client, pid: int, count: int, concurrency: int, scrape: float | None) -> float:
    """CPU seconds per webhook of one round; raises if any answer is not 200."""
    stop = threading.Event()
    scrapes: list[str] = []

    def scraper() -> None:
        while not stop.wait(scrape):
            answer = client.get("/metrics")
            answer.raise_for_status()
            scrapes.append(answer.text)

    thread = threading.Thread(target=scraper, daemon=True) if scrape else None
    before = cpu_seconds(pid)
    if thread:
        thread.start()
    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda _: client.post("/api/v1/webhooks/ghl", json=webhook()), range(count)))
    stop.set()
    if thread:
        thread.join()
    spent = cpu_seconds(pid) - before
    bad = [a.status_code for a in answers if a.status_code != 200]
    if bad:
        raise SystemExit(f"webhooks answered {bad[:5]}: nothing was measured")
    if scrape and not any("jorge_webhook_requests_total" in text for text in scrapes):
        raise SystemExit("no scrape returned the webhook counters: nothing was measured")
    if spent <= 0:
        raise SystemExit("the server used no CPU time: nothing was measured")
    return spent / count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8, help="round pairs (quiet + scraped)")
    parser.add_argument("--webhooks", type=int, default=120, help="webhooks per round")
    # One at a time by default: with several in flight, the per-contact lock's polling makes the
    # CPU per webhook depend on how fast the client sends, which the scraper thread changes.
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--quick", action="store_true", help="3 pairs of 40 webhooks")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the budget is missed")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.webhooks = 3, 40

    with tempfile.TemporaryDirectory(prefix="jorge-bench-metrics-") as tmp:
        port = free_port()
        env = {
            **os.environ,
            "DATA_DIR": tmp,
            "DATABASE_URL": f"sqlite:///{tmp}/jorge.db",
            "OTEL_EXPORTER_TYPE": "local",
            "LOG_LEVEL": "WARNING",
            "FOLLOWUP_POLL_SECONDS": "3600",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "ghl_real_estate_ai.app:app",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/ready").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start")
                    time.sleep(0.2)
                run_round(client, server.pid, max(10, args.webhooks // 4), args.concurrency, None)  # warm-up
                # The scrape alone: CPU of back-to-back /metrics answers, after the warm-up filled them.
                before = cpu_seconds(server.pid)
                for _ in range(50):
                    client.get("/metrics").raise_for_status()
                scrape_ms = (cpu_seconds(server.pid) - before) / 50 * 1000
                ratios: list[float] = []
                quiet_ms: list[float] = []
                scraped_ms: list[float] = []
                for index in range(args.rounds):
                    order = [None, args.scrape_interval] if index % 2 == 0 else [args.scrape_interval, None]
                    costs = {}
                    for scrape in order:
                        costs[scrape is not None] = run_round(
                            client, server.pid, args.webhooks, args.concurrency, scrape
                        )
                    quiet_ms.append(costs[False] * 1000)
                    scraped_ms.append(costs[True] * 1000)
                    ratios.append(costs[True] / costs[False])
                    print(
                        f"round {index + 1}: quiet {costs[False] * 1000:.2f} ms CPU/webhook, "
                        f"scraped {costs[True] * 1000:.2f} ms, ratio {ratios[-1]:.3f}",
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)

    ratio = statistics.median(ratios)
    print(
        f"\nwebhook CPU with /metrics scraped every {args.scrape_interval:g} s / without: "
        f"{ratio:.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f}; "
        f"median {statistics.median(quiet_ms):.2f} vs {statistics.median(scraped_ms):.2f} ms CPU/webhook, "
        f"{args.rounds} interleaved round pairs of {args.webhooks} webhooks) "
        f"budget <= {BUDGET:.2f}: {'met' if ratio <= BUDGET else 'MISSED'}"
    )
    webhook_ms = statistics.median(quiet_ms)
    print(
        f"one scrape alone: {scrape_ms:.2f} ms CPU; at one scrape per {args.scrape_interval:g} s that is "
        f"{scrape_ms / args.scrape_interval / 10:.3f} % of one core, or the CPU of "
        f"{scrape_ms / webhook_ms:.3f} webhooks per scrape"
    )
    return 1 if args.strict and ratio > BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
