"""The shipped Prometheus and Alertmanager files pass their own tools, and every alert is tested both ways."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prom_tools import tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
OPERATIONS = ROOT / "docs" / "operations.md"


def run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_config_and_rules() -> None:
    """promtool accepts prometheus.yml (with both rule files) and each rule file."""
    promtool = tool("promtool")
    out = run(promtool, "check", "config", "prometheus.yml")
    assert "2 rule files found" in out
    out = run(promtool, "check", "rules", "recording.yml", "alerts.yml")
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_promtool_test_rules() -> None:
    """alerts.test.yml passes: every alert fires on its bad series and stays quiet on good ones."""
    out = run(tool("promtool"), "test", "rules", "alerts.test.yml")
    assert "SUCCESS" in out


def test_alertmanager_config() -> None:
    """amtool accepts alertmanager.yml; critical and warning alerts go to two webhook receivers."""
    out = run(tool("amtool"), "check-config", "alertmanager.yml")
    assert "SUCCESS" in out and "2 receivers" in out
    config = yaml.safe_load((PROMETHEUS / "alertmanager.yml").read_text())
    routes = {route["matchers"][0]: route["receiver"] for route in config["route"]["routes"]}
    assert routes == {'severity="critical"': "pager", 'severity="warning"': "tickets"}
    receivers = {r["name"]: r for r in config["receivers"]}
    assert all(receivers[name]["webhook_configs"] for name in ("pager", "tickets"))


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """Each alert of alerts.yml appears in alerts.test.yml once expected to fire and once expected quiet."""
    data = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in data["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names == firing and names <= quiet, (names - firing, names - quiet)


def test_alerts_carry_severity_summary_and_a_runbook_anchor_that_exists() -> None:
    """Every alert has a severity label, a summary, a ``for:`` where it needs one, and a runbook
    link to a heading of docs/operations.md."""
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    guide = {"JorgeBotP95LatencyHigh", "JorgeHandoffFailureRateHigh", "JorgeTraceErrorRateHigh"}
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/operations.md" and anchor in headings, (rule["alert"], anchor)
        if rule["alert"] in guide:
            assert rule["labels"]["severity"] == "critical" and rule.get("for"), rule["alert"]
    assert guide <= {rule["alert"] for rule in alerts()}
