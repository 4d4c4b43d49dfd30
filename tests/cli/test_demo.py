"""``jorge demo``: scripted conversations through the real app, printed as chat transcripts
with each exchange's trace id, logs out of the way, ending with the SLO report of its traces."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from ghl_real_estate_ai.cli import app
from ghl_real_estate_ai.observability.local_store import LocalTraceReader

TRACE_LINE = re.compile(r"^ +│ trace ([0-9a-f]{32})(?:  (.*))?$")


def test_demo_prints_transcripts_with_trace_ids_and_the_slo_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # No log line on the terminal (stdout or stderr): they went to data/demo.log.
    assert not any(line.startswith("{") for line in result.output.splitlines())
    log_lines = (tmp_path / "data" / "demo.log").read_text(encoding="utf-8").splitlines()
    assert any(json.loads(line)["message"] == "started" for line in log_lines)

    # A transcript: lead, bot, trace line, in order, for every exchange.
    speakers = [line.split("│")[0].strip() for line in lines if "│" in line]
    assert speakers[:3] == ["lead", "bot", ""]
    assert speakers.count("lead") == 5  # the scripted messages, one exchange each
    traces = [TRACE_LINE.match(line) for line in lines if "│ trace " in line]
    assert len(traces) == 5 and all(traces)
    reader = LocalTraceReader(tmp_path / "data" / "traces.db")
    journeys = []
    for match in traces:
        assert match is not None
        names = {s.name for s in reader.get_trace(match.group(1))}
        assert "POST /api/v1/webhooks/ghl" in names
        journeys.append(match.group(2) or "")
    assert journeys[0].startswith("lead→buyer handed_off")
    assert journeys[1].startswith("lead→seller handed_off")
    assert journeys[4].startswith("opted_out") or " opted_out" in journeys[4]
    assert "Sounds like you're ready to buy" in result.stdout
    assert "You're unsubscribed" in result.stdout

    # The SLO report of the demo's own five traces, the guide's three figures.
    report = result.stdout[result.stdout.index("SLO report of these 5 traces") :]
    assert re.search(r"P95 latency lead_bot +\d+\.\d ms +limit 2000 ms +ok", report)
    assert re.search(r"handoff failure rate +0\.00% +\(0/2, limit 5%\) +ok", report)
    assert re.search(r"trace error rate +0\.00% +\(0/5, limit 2%\) +ok", report)

    found = CliRunner().invoke(app, ["traces", "find", "--tag", "handoff.source_bot=lead", "--json"])
    assert found.exit_code == 0 and "POST /api/v1/webhooks/ghl" in found.stdout


def test_demo_trees_show_each_exchange_as_a_tree(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--trees"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for span in (
        "POST /api/v1/webhooks/ghl",
        "handoff.lead_to_buyer",
        "buyer_bot.process_buyer_conversation",
    ):
        assert span in result.stdout
