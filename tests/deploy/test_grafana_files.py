"""The Grafana dashboard agrees with the app, the Prometheus rules and the compose file.

Data source names and ports, the services they point at, and every metric a
panel queries are checked against the real sources: the compose file, the
provisioning files and the ``/metrics`` text of the running app.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ghl_real_estate_ai.app import create_app
from ghl_real_estate_ai.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS = ROOT / "deploy" / "prometheus"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.observability.yml").read_text())
    return data


def published(service: str) -> set[int]:
    """Container ports of a compose service's port mappings."""
    return {int(str(p).split(":")[-1]) for p in compose()["services"][service].get("ports", [])}


def datasources() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "jorge.yml").read_text())
    return {ds["uid"]: ds for ds in data["datasources"]}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "dashboards" / "jorge.json").read_text())
    return data


def test_data_sources_point_at_the_compose_services() -> None:
    """Prometheus at prometheus:9090 and the Jaeger data source at the app's own port in compose."""
    sources = datasources()
    prom = sources["jorge-prometheus"]
    assert prom["type"] == "prometheus" and prom["name"] == "Prometheus"
    url = urlsplit(prom["url"])
    assert url.hostname in compose()["services"] and url.port in published(str(url.hostname))

    traces = sources["jorge-traces"]
    assert traces["type"] == "jaeger"
    url = urlsplit(traces["url"])
    assert url.hostname == "app" and url.port in published("app")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'"--port", "{url.port}"' in dockerfile and f"EXPOSE {url.port}" in dockerfile

    # Prometheus scrapes the same app port and alerts the compose Alertmanager.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["jorge"]["static_configs"][0]["targets"] == [f"app:{url.port}"]
    (manager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = manager.split(":")
    assert host in compose()["services"] and int(port) in published(host)

    # Compose mounts the files this test reads.
    volumes = {v.split(":")[0] for s in compose()["services"].values() for v in s.get("volumes", [])}
    assert {"./deploy/prometheus", "./deploy/grafana/provisioning", "./deploy/grafana/dashboards"} <= volumes
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "jorge.yml").read_text())
    grafana_volumes = [v.split(":") for v in compose()["services"]["grafana"]["volumes"]]
    mounted = {inside for outside, inside, *_ in grafana_volumes if "dashboards" in outside}
    assert provider["providers"][0]["options"]["path"] in mounted


def test_every_panel_uses_a_provisioned_data_source() -> None:
    """Each panel and target names a data source uid that provisioning creates."""
    uids = set(datasources())
    board = dashboard()
    assert board["panels"], "the dashboard has no panels"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
    titles = {panel["title"] for panel in board["panels"]}
    assert {
        "Average handoff latency by route",
        "P95 latency by workflow node",
        "Error rate by bot type",
        "Webhook throughput and outcomes",
    } <= titles
    assert any("Spans" in t for t in titles) and any("Outbox" in t for t in titles)


async def test_every_metric_queried_exists_in_the_app_or_the_rules(tmp_path: Path) -> None:
    """Metric names in panel queries are recording rules or series the running app exposes."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'data' / 'jorge.db'}",
        otel_exporter_type="none",
        followup_poll_seconds=3600.0,
    )
    app = create_app(settings)
    message = {
        "type": "InboundMessage",
        "locationId": "sandbox-location",
        "contactId": "grafana-check",
        "body": "I want to buy a 3 bedroom home in Upland, pre-approved for $650k",
        "messageType": "SMS",
        "direction": "inbound",
        "messageId": "msg-grafana-check",
        "webhookId": "wh-grafana-check",
    }
    async with (
        app.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=60) as client,
    ):
        assert (await client.post("/api/v1/webhooks/ghl", json=message)).status_code == 200
        text = (await client.get("/metrics")).text
    exposed = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    rules = yaml.safe_load((PROMETHEUS / "recording.yml").read_text())
    recorded = {rule["record"] for group in rules["groups"] for rule in group["rules"]}
    rule_exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    names = {name for expr in exprs + rule_exprs for name in re.findall(r"\bjorge[a-z0-9_:]*", expr)}
    unknown = {name for name in names if name not in exposed | recorded}
    assert unknown == set(), unknown
    assert any(":" in name for name in names) and any(name in exposed for name in names)
