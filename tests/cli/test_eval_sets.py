"""The team's labelled conversation sets (issue 10, acceptance 1): enough of them, the right kinds,
and the app passing them."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from ghl_real_estate_ai.cli import app
from ghl_real_estate_ai.cli.eval import EVAL_SETS_DIR, load_conversations


def test_the_shipped_sets_have_80_conversations_30_multi_turn_in_english_and_spanish() -> None:
    conversations = [c for path in sorted(EVAL_SETS_DIR.glob("*.json")) for c in load_conversations(path)]
    assert len(conversations) >= 80
    assert sum(len(c.turns) > 1 for c in conversations) >= 30
    languages = {c.language for c in conversations}
    assert {"en", "es"} <= languages
    assert sum(c.language == "es" for c in conversations) >= 15
    ids = [c.id for c in conversations]
    assert len(ids) == len(set(ids))
    labels = {key for c in conversations for key in c.expect}
    # Every kind of outcome the issue names is labelled somewhere.
    assert {"final_bot", "handoffs", "temperature", "escalated", "silent_after_opt_out"} <= labels
    assert {"never_ask", "closed", "answers"} <= labels


def test_the_shipped_sets_pass_at_95_percent_through_the_real_app() -> None:
    """Acceptance 1: every shipped conversation played as webhooks; 95 % or more must pass."""
    result = CliRunner().invoke(app, ["eval", "--quiet"])
    total = re.search(r"^TOTAL (\d+)/(\d+) passed", result.output, re.MULTILINE)
    assert total is not None, result.output
    passed, played = int(total.group(1)), int(total.group(2))
    assert played >= 80
    assert passed / played >= 0.95, result.output
    assert result.exit_code == 0, result.output
