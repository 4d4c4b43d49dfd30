"""Finding a trace by id (issue 12): unique prefixes as git takes them, ids never cut below
one in an 80-column `find`, and the journey column, on a real local trace store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from tracegen import Node, emit, handoff_journey
from typer.testing import CliRunner

from ghl_real_estate_ai.cli import traces as traces_cli
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.local_store import LocalSpanExporter

# Two ids that share their first 13 digits, and one alone.
TWIN_A = "1234abcd56789" + "0" * 18 + "1"
TWIN_B = "1234abcd5678a" + "0" * 18 + "2"
LONER = "99ff" + "0" * 27 + "3"


class _FixedIds(RandomIdGenerator):
    def __init__(self, trace_ids: list[str]) -> None:
        self.pending = [int(t, 16) for t in trace_ids]

    def generate_trace_id(self) -> int:
        return self.pending.pop(0)


@pytest.fixture
def cli() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """jorge"""

    root.add_typer(traces_cli.app, name="traces")
    return root


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "traces.db"
    provider = TracerProvider(
        resource=Resource.create({"service.name": "enterprisehub"}),
        id_generator=_FixedIds([TWIN_A, TWIN_B, LONER]),
    )
    provider.add_span_processor(ConversationSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(LocalSpanExporter(path)))
    assert emit(provider, handoff_journey("c-twin-a", temperature="hot")) == TWIN_A
    assert (
        emit(provider, handoff_journey("c-twin-b", temperature="warm", outcome="blocked:cooldown")) == TWIN_B
    )
    assert emit(provider, Node("GET /health", 0, 2)) == LONER
    provider.shutdown()
    return path


def run(cli: typer.Typer, *args: str, columns: int = 80) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["traces", *args], env={"COLUMNS": str(columns)})
    return result.exit_code, result.output


def test_show_takes_a_unique_prefix(cli: typer.Typer, store: Path) -> None:
    code, output = run(cli, "show", "99f", "--store", str(store))
    assert code == 0, output
    assert output.splitlines()[0] == f"Trace ID: {LONER}"
    code, output = run(cli, "show", TWIN_A[:14].upper(), "--store", str(store))
    assert code == 0 and output.splitlines()[0] == f"Trace ID: {TWIN_A}"


def test_an_ambiguous_prefix_names_the_candidates(cli: typer.Typer, store: Path) -> None:
    code, output = run(cli, "show", "1234abcd", "--store", str(store), columns=200)
    assert code == 1
    assert "'1234abcd' is ambiguous: 2 traces start with it" in output
    assert TWIN_A in output and TWIN_B in output and "give more digits" in output


def test_an_unknown_prefix_is_said_precisely(cli: typer.Typer, store: Path) -> None:
    """No zero padding, no "pruned or never sampled" guess for a prefix: it says what was looked for."""
    code, output = run(cli, "show", "1234abce", "--store", str(store), columns=200)
    assert (code, output.strip()) == (1, "error: no trace starts with '1234abce'")
    code, output = run(cli, "show", "12-34", "--store", str(store), columns=200)
    assert code == 2 and "'12-34' is not valid" in output


def test_find_in_80_columns_keeps_each_unique_prefix(cli: typer.Typer, store: Path) -> None:
    """The twins need 13 digits to tell apart; an 80-column table still shows them whole enough."""
    code, output = run(cli, "find", "--store", str(store), columns=80)
    assert code == 0, output
    assert max(len(line) for line in output.splitlines()) <= 80
    for trace_id in (TWIN_A, TWIN_B):
        assert trace_id[:13] in output, output
    assert LONER[:8] in output
    # What the table shows is enough for `show`.
    shown = [line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│ 1234")]
    assert len(shown) == 2
    for prefix in shown:
        code, _ = run(cli, "show", prefix, "--store", str(store))
        assert code == 0, prefix


def test_find_shows_the_journey_column(cli: typer.Typer, store: Path) -> None:
    code, output = run(cli, "find", "--store", str(store), columns=160)
    assert code == 0, output
    rows = {line.split("│")[1].strip()[:4]: line for line in output.splitlines() if line.startswith("│ ")}
    assert "journey" in output
    lines = [line for line in output.splitlines() if TWIN_A[:16] in line]
    assert len(lines) == 1 and "lead→buyer handed_off hot" in lines[0], output
    lines = [line for line in output.splitlines() if TWIN_B[:16] in line]
    assert len(lines) == 1 and "buyer blocked:cooldown warm" in lines[0], output
    assert rows
    code, output = run(cli, "find", "--json", "--store", str(store))
    journeys = {row["trace_id"]: row["journey"] for row in json.loads(output)}
    assert journeys[TWIN_A] == {
        "final_bot": "buyer_bot",
        "handoff_route": "lead_to_buyer",
        "outcome": "handed_off",
        "temperature": "hot",
    }
    assert journeys[LONER] == {}
