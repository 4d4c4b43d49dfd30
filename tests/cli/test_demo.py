"""``jorge demo`` runs scripted conversations through the real app and prints their traces."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ghl_real_estate_ai.cli import app


def test_demo_prints_the_handoff_traces_and_leaves_them_in_the_local_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Sounds like you're ready to buy" in result.output
    for span in (
        "POST /api/v1/webhooks/ghl",
        "handoff.lead_to_buyer",
        "buyer_bot.process_buyer_conversation",
    ):
        assert span in result.output
    assert "handoff.lead_to_seller" in result.output
    assert "You're unsubscribed" in result.output
    assert (tmp_path / "data" / "traces.db").exists()

    found = CliRunner().invoke(app, ["traces", "find", "--tag", "handoff.source_bot=lead", "--json"])
    assert found.exit_code == 0 and "POST /api/v1/webhooks/ghl" in found.output
