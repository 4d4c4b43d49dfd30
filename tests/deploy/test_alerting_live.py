"""Acceptance: a real Prometheus and Alertmanager on loopback, scraping the app under uvicorn.

The shipped files are used as they are, with only what a test needs changed:
1 s scrape and evaluation intervals, ``for:`` shortened to 2 s, the loopback
addresses, and Alertmanager's receivers pointed at a local webhook receiver.

1. Healthy traffic (buyer-intent webhooks): after several rule evaluations
   over it, no alert is pending or firing and the receiver got nothing.
2. Then, through real webhooks: slow nodes (the GHL sandbox's added latency),
   failing handoffs (a trigger in the real SQLite database refuses the
   handoff's outbox writes for some contacts) and erroring traces (the
   sandbox answering 503). Each of the guide's three alerts reaches
   ``firing`` in Prometheus' API and arrives at the receiver through
   Alertmanager.
3. Every recording rule and every query of the Grafana dashboard returns series.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prom_tools import tool
from serving import free_port, serve_in_thread

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GUIDE_ALERTS = {"JorgeBotP95LatencyHigh", "JorgeHandoffFailureRateHigh", "JorgeTraceErrorRateHigh"}
BUYER_MESSAGE = (
    "Hi! I'm pre-approved for $650k and want to buy a 3 bedroom home in Upland within 30 days. "
    "Can I see some houses this weekend?"
)


def webhook(contact: str) -> dict[str, Any]:
    return {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": contact,
        "body": BUYER_MESSAGE,
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": f"msg-{contact}",
        "conversationId": f"conv-{contact}",
        "webhookId": f"wh-{contact}",
        "dateAdded": "2026-02-15T09:30:00.000Z",
    }


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = 180.0, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Receiver:
    """A local HTTP server taking Alertmanager's webhook posts."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def firing(self) -> dict[str, str]:
        """alertname -> receiver path of every alert delivered as firing."""
        return {
            alert["labels"]["alertname"]: path
            for path, post in list(self.posts)
            for alert in post["alerts"]
            if alert["status"] == "firing"
        }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


def test_config(tmp_path: Path, app_port: int, am_port: int, receiver_url: str) -> Path:
    """The shipped prometheus.yml, rules and alertmanager.yml with test timings and loopback addresses."""
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    prometheus["global"].update(scrape_interval="1s", evaluation_interval="1s")
    prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    jobs = [job for job in prometheus["scrape_configs"] if job["job_name"] == "jorge"]
    jobs[0]["static_configs"][0]["targets"] = [f"127.0.0.1:{app_port}"]
    prometheus["scrape_configs"] = jobs
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
    (tmp_path / "recording.yml").write_text((DEPLOY / "prometheus" / "recording.yml").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(alerts))

    manager = yaml.safe_load((DEPLOY / "prometheus" / "alertmanager.yml").read_text())
    manager["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    for rcv in manager["receivers"]:
        for hook in rcv["webhook_configs"]:
            hook["url"] = receiver_url + "/" + hook["url"].rsplit("/", 1)[1]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(manager))
    return tmp_path


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "jorge.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_alerts_fire_on_faults_and_stay_quiet_on_healthy_traffic(tmp_path: Path, receiver: Receiver) -> None:
    prometheus_bin = tool("prometheus")
    alertmanager_bin = tool("prometheus-alertmanager", "alertmanager")
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'jorge.db'}",
        otel_exporter_type="local",
        otel_bsp_schedule_delay=100.0,
        followup_poll_seconds=3600.0,
        log_level="ERROR",
    )
    with serve_in_thread(create_app(settings)) as app_url, httpx.Client(base_url=app_url, timeout=120) as app:
        app_port = int(app_url.rsplit(":", 1)[1])
        prom_port, am_port = free_port(), free_port()
        (tmp_path / "conf").mkdir()
        config = test_config(tmp_path / "conf", app_port, am_port, receiver.url)
        manager = start(
            [
                alertmanager_bin,
                f"--config.file={config / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "alertmanager.log",
        )
        prometheus = start(
            [
                prometheus_bin,
                f"--config.file={config / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{prom_port}", timeout=30) as prom:
                run_scenario(app, prom, receiver, tmp_path, data / "jorge.db")
        except BaseException:
            for log in ("prometheus.log", "alertmanager.log"):
                print(f"--- {log}\n" + (tmp_path / log).read_text()[-4000:])
            raise
        finally:
            stop(prometheus)
            stop(manager)


def query(prom: httpx.Client, expr: str) -> list[dict[str, Any]]:
    try:
        answer = prom.get("/api/v1/query", params={"query": expr})
    except httpx.TransportError:
        return []
    if answer.status_code == 503:  # still starting up
        return []
    if answer.status_code != 200:
        raise AssertionError(f"{expr!r}: {answer.text}")
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def alert_states(prom: httpx.Client) -> dict[str, set[str]]:
    alerts = prom.get("/api/v1/alerts").json()["data"]["alerts"]
    states: dict[str, set[str]] = {}
    for alert in alerts:
        states.setdefault(alert["labels"]["alertname"], set()).add(alert["state"])
    return states


def evaluated_after(prom: httpx.Client, instant: float) -> bool:
    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
    stamps = [g["lastEvaluation"] for g in groups]
    # RFC 3339 with nanoseconds: compare as epoch seconds.
    seconds = [time.mktime(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone for s in stamps]
    return bool(seconds) and min(seconds) > instant


def post_all(app: httpx.Client, contacts: list[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=len(contacts)) as pool:
        answers = list(pool.map(lambda c: app.post("/api/v1/webhooks/ghl", json=webhook(c)), contacts))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json()["status"] for a in answers]


def run_scenario(app: httpx.Client, prom: httpx.Client, receiver: Receiver, tmp: Path, db: Path) -> None:
    wait_for("Prometheus to scrape the app", lambda: query(prom, 'up{job="jorge"} == 1'))

    # 1. Healthy traffic: nothing fires. One first webhook makes the series exist, so the
    # next ones show as an increase (rate() needs two samples of a series).
    assert post_all(app, ["healthy-first"]) == ["processed"]
    wait_for("the first trace in Prometheus", lambda: query(prom, "sum(jorge_traces_total) == 1"))
    healthy = [f"healthy-{i}" for i in range(6)]
    assert post_all(app, healthy) == ["processed"] * 6
    wait_for("the healthy traces in Prometheus", lambda: query(prom, "sum(jorge_traces_total) == 7"))
    wait_for(
        "the healthy error ratio recorded",
        lambda: query(prom, 'jorge:trace_error_ratio:rate5m{bot_type="lead_bot"} == 0'),
    )
    seen = time.time()
    wait_for("three more rule evaluations", lambda: evaluated_after(prom, seen + 3), timeout=60)
    assert alert_states(prom) == {}
    assert query(prom, 'ALERTS{alertname=~"Jorge.*"}') == []
    assert receiver.posts == []

    # 2. Faults, through real webhooks.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_handoff_outbox BEFORE INSERT ON outbox "
            "WHEN NEW.contact_id LIKE 'handoff-fail-%' "
            "BEGIN SELECT RAISE(ABORT, 'injected: outbox write refused'); END"
        )
    app.post("/sandbox/ghl/_faults", json={"latency_ms": 2100}).raise_for_status()
    assert post_all(app, [f"slow-{i}" for i in range(4)]) == ["processed"] * 4
    app.post("/sandbox/ghl/_faults", json={"latency_ms": 0, "failure_rate": 0}).raise_for_status()
    # A counter series that appears with its first failure has no earlier sample, so rate() sees
    # only the failures after it: like in production, the alert needs failures that go on.
    assert post_all(app, ["handoff-fail-first"]) == ["queued"]
    wait_for(
        "the first failed handoff in Prometheus",
        lambda: query(prom, 'jorge_handoff_count_total{outcome=~"failed.*"} == 1'),
    )
    assert post_all(app, [f"handoff-fail-{i}" for i in range(2)]) == ["queued"] * 2
    app.post("/sandbox/ghl/_faults", json={"failure_rate": 1.0}).raise_for_status()
    assert post_all(app, [f"error-{i}" for i in range(2)]) == ["queued"] * 2
    app.post("/sandbox/ghl/_faults", json={"failure_rate": 0}).raise_for_status()

    def guide_alerts_firing() -> set[str]:
        firing = {name for name, states in alert_states(prom).items() if "firing" in states}
        return GUIDE_ALERTS & firing if firing >= GUIDE_ALERTS else set()

    try:
        wait_for("the guide's three alerts firing in Prometheus", guide_alerts_firing)
    except AssertionError:
        for expr in (
            "jorge:bot_latency_ms:p95_5m",
            "jorge:handoff_failure_ratio:rate5m",
            "jorge:trace_error_ratio:rate5m",
            "jorge_traces_total",
            "jorge_handoff_count_total",
        ):
            print(expr, [(r["metric"], r["value"][1]) for r in query(prom, expr)])
        print("alerts", alert_states(prom))
        raise
    delivered = wait_for(
        "the three alerts delivered through Alertmanager",
        lambda: receiver.firing() if set(receiver.firing()) >= GUIDE_ALERTS else None,
    )
    assert {delivered[name] for name in GUIDE_ALERTS} == {"/critical"}  # routed by severity
    labels = {a["labels"]["alertname"]: a["labels"] for _, post in receiver.posts for a in post["alerts"]}
    assert labels["JorgeHandoffFailureRateHigh"]["route"] == "lead_to_buyer"
    assert labels["JorgeTraceErrorRateHigh"]["bot_type"] == "lead_bot"
    assert labels["JorgeBotP95LatencyHigh"]["bot_type"] == "buyer_bot"

    # 3. Every recording rule and every dashboard query returns series.
    recording = yaml.safe_load((DEPLOY / "prometheus" / "recording.yml").read_text())
    names = [rule["record"] for group in recording["groups"] for rule in group["rules"]]
    empty = [expr for expr in names + dashboard_queries() if not query(prom, expr)]
    assert empty == [], empty
    assert all(re.match(r"^jorge:", name) for name in names)
