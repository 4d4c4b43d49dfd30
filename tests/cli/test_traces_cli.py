"""`jorge traces find/show` and `jorge slo` on the local store and through --jaeger-url."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from fastapi import FastAPI
from tracegen import Node, emit, handoff_journey, make_provider, serve, slo_traces
from typer.testing import CliRunner

from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.cli import slo as slo_cli
from ghl_real_estate_ai.cli import traces as traces_cli
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter


@pytest.fixture
def cli() -> typer.Typer:
    """The two commands mounted the way the root `jorge` app mounts them."""
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """jorge"""

    root.add_typer(traces_cli.app, name="traces")
    root.command("slo")(slo_cli.slo)
    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "traces.db"


@pytest.fixture
def ids(store: Path) -> dict[str, str]:
    provider = make_provider(LocalSpanExporter(store))
    out = {
        "hot": emit(provider, handoff_journey("c-hot", temperature="hot")),
        "warm": emit(provider, handoff_journey("c-warm", temperature="warm")),
        "quick": emit(provider, Node("GET /health", 0, 2)),
    }
    provider.shutdown()
    return out


EXAMPLE_2 = """\
├─ POST /api/v1/webhooks/ghl (350ms)
│  ├─ lead_bot.analyze_intent (100ms)
│  │  └─ intent_decoder.analyze_lead (80ms)
│  ├─ handoff.lead_to_buyer (150ms)
│  │  ├─ jorge.handoff.evaluate_handoff (50ms)
│  │  └─ jorge.handoff.execute_handoff (100ms)
│  │     └─ POST (90ms)
│  └─ buyer_bot.process_buyer_conversation (100ms)
│     ├─ buyer_bot.analyze_buyer_intent (40ms)
│     └─ buyer_bot.generate_buyer_response (58ms)
"""


def test_show_prints_the_handoff_tree_like_example_2(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str]
) -> None:
    """Acceptance 2: the handoff trace prints as the guide's Example 2 tree."""
    result = runner.invoke(cli, ["traces", "show", ids["hot"], "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Trace ID: {ids['hot']}\n\n" + EXAMPLE_2


def test_show_with_attributes_and_json(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str]
) -> None:
    """--attributes lists each span's attributes under it; --json gives every span."""
    result = runner.invoke(cli, ["traces", "show", ids["hot"], "--store", str(store), "--attributes"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    handoff = lines.index("│  ├─ handoff.lead_to_buyer (150ms)")
    assert "│  │  │  handoff.source_bot = lead" in lines[handoff:]
    assert "│  │  │  workflow.temperature = hot" in lines
    as_json = runner.invoke(cli, ["traces", "show", ids["hot"], "--store", str(store), "--json"])
    data = json.loads(as_json.output)
    assert data["trace_id"] == ids["hot"] and len(data["spans"]) == 10
    assert {s["name"] for s in data["spans"]} >= {"handoff.lead_to_buyer", "POST"}


def test_find_by_tags_duration_and_sort(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str]
) -> None:
    """--tag (repeatable), --min-duration, --since, --sort and --limit filter; --json for scripts."""

    def found(*args: str) -> list[str]:
        result = runner.invoke(cli, ["traces", "find", "--store", str(store), "--json", *args])
        assert result.exit_code == 0, result.output
        return [row["trace_id"] for row in json.loads(result.output)]

    assert found("--tag", "workflow.contact_id=c-warm") == [ids["warm"]]
    assert found("--tag", "handoff.source_bot=lead", "--tag", "workflow.temperature=hot") == [ids["hot"]]
    assert set(found("--min-duration", "300ms")) == {ids["hot"], ids["warm"]}
    assert found("--max-duration", "0.01s") == [ids["quick"]]
    assert found("--sort", "time", "--limit", "1") == [ids["quick"]]
    assert len(found("--since", "1h")) == 3
    assert found("--operation", "handoff.lead_to_buyer", "--min-duration", "1s") == []
    row = json.loads(
        runner.invoke(
            cli, ["traces", "find", "--store", str(store), "--json", "--tag", "workflow.contact_id=c-hot"]
        ).output
    )[0]
    assert (
        row["root_name"] == "POST /api/v1/webhooks/ghl"
        and row["duration_ms"] == 350.0
        and row["span_count"] == 10
    )


def test_find_prints_a_table_for_people(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str]
) -> None:
    """Without --json a table lists the traces, longest first."""
    result = runner.invoke(cli, ["traces", "find", "--store", str(store)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "3 traces" in result.output and ids["hot"] in result.output and "350ms" in result.output
    empty = runner.invoke(cli, ["traces", "find", "--store", str(store), "--tag", "nobody=here"])
    assert empty.exit_code == 0 and "No traces match." in empty.output


def test_default_store_comes_from_settings(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --store the command reads TRACE_STORE_PATH (or DATA_DIR/traces.db)."""
    monkeypatch.setenv("TRACE_STORE_PATH", str(store))
    result = runner.invoke(cli, ["traces", "find", "--json", "--tag", "workflow.contact_id=c-hot"])
    assert [row["trace_id"] for row in json.loads(result.output)] == [ids["hot"]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["traces", "find", "--min-duration", "fast"], "duration 'fast' is not valid"),
        (["traces", "find", "--since", "last week"], "time 'last week' is not valid"),
        (["traces", "find", "--tag", "novalue"], "use key=value"),
        (["traces", "find", "--sort", "size"], "--sort 'size'"),
        (["traces", "find", "--limit", "0"], "--limit 0"),
        (["traces", "find", "--jaeger-url", "localhost"], "Jaeger URL 'localhost'"),
        (["traces", "show", "not-hex"], "trace id 'not-hex' is not valid"),
        (["slo", "--since", "yesterday"], "time 'yesterday' is not valid"),
        (["slo", "--handoff-failure-rate", "5"], "between 0 and 1"),
        (["slo", "--p95-ms", "-1"], "positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: typer.Typer, runner: CliRunner, store: Path, args: list[str], fragment: str
) -> None:
    """Bad values print one clear line on stderr and exit 2, no traceback."""
    result = runner.invoke(cli, [*args, "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output + result.stderr


def test_unknown_trace_and_unreachable_jaeger_exit_1(
    cli: typer.Typer, runner: CliRunner, store: Path
) -> None:
    """A trace that is not there, or a Jaeger that does not answer, is one line and exit 1."""
    missing = runner.invoke(cli, ["traces", "show", "ab" * 16, "--store", str(store)])
    assert missing.exit_code == 1 and "no trace" in missing.stderr
    down = runner.invoke(cli, ["traces", "find", "--jaeger-url", "http://127.0.0.1:9"])
    assert down.exit_code == 1 and "cannot reach Jaeger" in down.stderr


def test_commands_read_the_app_through_jaeger_url(
    cli: typer.Typer, runner: CliRunner, store: Path, ids: dict[str, str]
) -> None:
    """Acceptance 3: find/show/slo with --jaeger-url at the app's Jaeger API give the local answers."""
    app = FastAPI()
    app.include_router(create_traces_router(store, admin_token="tok", require_token=True))
    with serve(app) as base_url:
        remote = ["--jaeger-url", base_url, "--jaeger-token", "tok"]
        for args in (["--tag", "workflow.temperature=warm"], ["--sort", "time"], ["--min-duration", "300ms"]):
            local = runner.invoke(cli, ["traces", "find", "--json", "--store", str(store), *args])
            via_api = runner.invoke(cli, ["traces", "find", "--json", *remote, *args])
            assert via_api.exit_code == 0, via_api.output
            assert json.loads(via_api.output) == json.loads(local.output)
        shown = runner.invoke(cli, ["traces", "show", ids["hot"], *remote])
        assert shown.output == f"Trace ID: {ids['hot']}\n\n" + EXAMPLE_2
        refused = runner.invoke(cli, ["traces", "find", "--jaeger-url", base_url])
        assert refused.exit_code == 1 and "401" in refused.stderr


def test_slo_reports_and_exits_1_on_breach(cli: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    """Acceptance 4: the fixed span set breaches the default SLOs (exit 1); lenient flags pass (exit 0)."""
    store = tmp_path / "slo.db"
    provider = make_provider(LocalSpanExporter(store))
    for root in slo_traces():
        emit(provider, root)
    provider.shutdown()

    breached = runner.invoke(cli, ["slo", "--store", str(store), "--json"])
    assert breached.exit_code == 1, breached.output
    report = json.loads(breached.output)
    assert report["ok"] is False and report["trace_errors"] == 2 and report["handoff_failures"] == 2
    assert {(n["node_name"], n["p95_ms"]) for n in report["nodes"]} == {
        ("analyze_intent", 1900.0),
        ("qualify_buyer", 2500.0),
    }
    human = runner.invoke(cli, ["slo", "--store", str(store)], env={"COLUMNS": "200"})
    assert human.exit_code == 1
    assert "4 SLO breach(es)" in human.output and "handoff failure rate: 33.33% (2/6" in human.output

    passed = runner.invoke(
        cli,
        [
            "slo",
            "--store",
            str(store),
            "--p95-ms",
            "3000",
            "--handoff-failure-rate",
            "0.5",
            "--trace-error-rate",
            "0.2",
        ],
    )
    assert passed.exit_code == 0, passed.output
    assert "All SLOs met." in passed.output


def test_slo_thresholds_come_from_settings(
    cli: typer.Typer, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLO_* variables set the thresholds when no flag is given."""
    store = tmp_path / "slo.db"
    provider = make_provider(LocalSpanExporter(store))
    for root in slo_traces():
        emit(provider, root)
    provider.shutdown()
    monkeypatch.setenv("SLO_P95_LATENCY_MS", "3000")
    monkeypatch.setenv("SLO_HANDOFF_FAILURE_RATE", "0.5")
    monkeypatch.setenv("SLO_TRACE_ERROR_RATE", "0.2")
    assert runner.invoke(cli, ["slo", "--store", str(store)]).exit_code == 0
