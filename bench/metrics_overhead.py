"""What Prometheus scraping ``/metrics`` costs the webhooks it watches (issue 11).

The app runs under uvicorn (one worker) in a child process, in the embedded
mode (SQLite, the GHL sandbox, the local trace store). Each round sends
``--webhooks`` buyer-intent webhooks (a new contact each, ``--concurrency`` in
flight, 8 by default: the app under load) and reads the server process's CPU
time (user + system, from ``/proc/<pid>/stat``) before and after. Two kinds
of round alternate, quiet first and last (Q S Q S ... Q):

* ``quiet``: webhooks only;
* ``scraped``: the same webhooks while a scraper GETs ``/metrics`` every
  ``--scrape-interval`` seconds (default 1 s, fifteen times Prometheus' usual
  15 s, so the figure is an upper bound).

Each scraped round is set side by side with the mean of the quiet rounds just
before and just after it, so a steady drift (the database and the trace store
grow as the bench runs) cancels out. The ratio printed is the median of those
pairs, with their min-max and the pooled ratio (all scraped CPU / all quiet
CPU); the scrape's own CPU is counted in the scraped side. Budget: <= 1.02
(``/metrics`` adds at most 2 %).

The CPU of one scrape alone is printed too (200 back to back, less what the
idle server spends in the same time), with the share it predicts for the
rounds (scrapes per round x that cost / quiet CPU per round): at this load the
round-to-round noise of the webhooks themselves (a few %) is larger than the
scrapes' cost, and that prediction is the precise figure behind the ratio.
``--scrape-path /health`` scrapes the health probe instead, for comparison: what
any request at that rate costs.

Run: ``.venv/bin/python bench/metrics_overhead.py`` (``--quick`` for a short
smoke run; at least 5 round pairs either way). Exits non-zero when it measured
nothing (an answer not 200, no CPU time, a scrape without the webhook
counters), and with ``--strict`` when the budget is missed.
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


def run_round(
    client: httpx.Client,
    pid: int,
    count: int,
    concurrency: int,
    scrape: float | None,
    path: str = "/metrics",
) -> tuple[float, int]:
    """CPU seconds per webhook of one round and the scrapes made; raises if any answer is not 200."""
    stop = threading.Event()
    scrapes: list[str] = []

    def scraper() -> None:
        while not stop.wait(scrape):
            answer = client.get(path)
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
    if scrape and path == "/metrics" and not any("jorge_webhook_requests_total" in t for t in scrapes):
        raise SystemExit("no scrape returned the webhook counters: nothing was measured")
    if spent <= 0:
        raise SystemExit("the server used no CPU time: nothing was measured")
    return spent / count, len(scrapes)


def scrape_cost(client: httpx.Client, pid: int, scrapes: int = 200) -> float:
    """CPU ms of one ``/metrics`` answer: back-to-back scrapes, less the idle server's CPU meanwhile."""
    time.sleep(1.0)  # let the warm-up's outbox and span export finish
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - before) / (time.monotonic() - started)
    before, started = cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        answer = client.get("/metrics")
        answer.raise_for_status()
    spent = cpu_seconds(pid) - before - idle_rate * (time.monotonic() - started)
    if "jorge_webhook_requests_total" not in answer.text:
        raise SystemExit("the scrape lacks the webhook counters: nothing was measured")
    return max(spent, 0.0) / scrapes * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=16, help="scraped rounds (each between two quiet ones), at least 5"
    )
    parser.add_argument("--webhooks", type=int, default=100, help="webhooks per round")
    parser.add_argument("--concurrency", type=int, default=8, help="webhooks in flight (the load)")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument(
        "--scrape-path",
        default="/metrics",
        help="what the scraper GETs (/health: what any request at that rate costs, for comparison)",
    )
    parser.add_argument("--quick", action="store_true", help="5 scraped rounds of 48 webhooks")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the budget is missed")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.webhooks = 5, 48
    if args.rounds < 5 or args.webhooks < 1 or args.concurrency < 1 or args.scrape_interval <= 0:
        parser.error("need --rounds >= 5, --webhooks >= 1, --concurrency >= 1 and --scrape-interval > 0")

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
                # Warm-up: the first rounds after start cost more (caches, the intent model, the pool).
                run_round(client, server.pid, 2 * args.webhooks, args.concurrency, None)
                scrape_ms = scrape_cost(client, server.pid)
                quiet: list[float] = []
                scraped: list[float] = []
                scrapes: list[int] = []
                for index in range(2 * args.rounds + 1):
                    is_scraped = index % 2 == 1
                    cost, made = run_round(
                        client,
                        server.pid,
                        args.webhooks,
                        args.concurrency,
                        args.scrape_interval if is_scraped else None,
                        args.scrape_path,
                    )
                    (scraped if is_scraped else quiet).append(cost * 1000)
                    if is_scraped:
                        scrapes.append(made)
                    print(
                        f"round {index + 1}: {'scraped' if is_scraped else 'quiet  '} "
                        f"{cost * 1000:.2f} ms CPU/webhook" + (f" ({made} scrapes)" if is_scraped else ""),
                        flush=True,
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)

    # Each scraped round against the mean of the quiet rounds around it.
    ratios = [scraped[i] / ((quiet[i] + quiet[i + 1]) / 2) for i in range(args.rounds)]
    ratio = statistics.median(ratios)
    pooled = statistics.fmean(scraped) / statistics.fmean(
        [(quiet[i] + quiet[i + 1]) / 2 for i in range(args.rounds)]
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nwebhook CPU with {args.scrape_path} scraped every {args.scrape_interval:g} s / without: "
        f"{ratio:.3f}x median (min {min(ratios):.3f}, max {max(ratios):.3f}, pooled {pooled:.3f}; "
        f"median {statistics.median(quiet):.2f} vs {statistics.median(scraped):.2f} ms CPU/webhook; "
        f"{args.rounds} scraped rounds between {args.rounds + 1} quiet ones, {args.webhooks} webhooks each, "
        f"{args.concurrency} in flight; load average {load}) "
        f"budget <= {BUDGET:.2f}: {'met' if ratio <= BUDGET else 'MISSED'}"
    )
    quiet_round_ms = statistics.fmean(quiet) * args.webhooks
    predicted = statistics.fmean(scrapes) * scrape_ms / quiet_round_ms
    print(
        f"one scrape alone: {scrape_ms:.2f} ms CPU (the CPU of {scrape_ms / statistics.fmean(quiet):.3f} "
        f"webhooks); {statistics.fmean(scrapes):.1f} scrapes per round x {scrape_ms:.2f} ms / "
        f"{quiet_round_ms:.0f} ms quiet CPU per round = +{predicted * 100:.2f} % predicted"
    )
    return 1 if args.strict and ratio > BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
