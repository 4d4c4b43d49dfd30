"""The root ``jorge`` command wires every sub-command and answers bad input without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ghl_real_estate_ai.cli import app


def test_every_sub_command_is_registered() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "traces", "slo", "followups"):
        assert command in result.output


def test_bad_option_is_one_message_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ghl_real_estate_ai.cli", "followups", "run-due", "--now", "yesterday"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--now" in result.stderr


def test_slo_on_an_empty_store_passes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "--store", str(tmp_path / "traces.db")])
    assert result.exit_code == 0, result.output
