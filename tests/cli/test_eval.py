"""``jorge eval`` plays labelled conversations through the real app and grades them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from ghl_real_estate_ai.cli import app


def write(path: Path, conversations: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"conversations": conversations}), encoding="utf-8")
    return path


def test_a_conversation_that_goes_as_labelled_passes_and_a_mislabelled_one_fails_with_reasons(
    tmp_path: Path,
) -> None:
    turns = ["Pre-approved for $600k, looking to buy a 4 bedroom in Chino Hills", "within 60 days"]
    path = write(
        tmp_path / "set.json",
        [
            {
                "id": "right",
                "turns": turns,
                "expect": {
                    "final_bot": "buyer",
                    "handoffs": ["lead->buyer"],
                    "escalated": False,
                    "never_ask": [{"slot": "budget", "from_turn": 1}],
                },
            },
            {
                "id": "wrong",
                "turns": turns,
                "expect": {
                    "final_bot": "seller",
                    "handoffs": ["lead->seller"],
                    "escalated": True,
                    "silent_after_opt_out": True,
                    "never_ask": [{"slot": "timeline", "from_turn": 1}],
                    "answers": [{"turn": 2, "topic": "market"}],
                    "tags": ["Not-Prospect-Renter"],
                },
            },
            {
                "id": "stop",
                "language": "es",
                "turns": ["hola quiero comprar", "STOP", "hola?"],
                "expect": {"silent_after_opt_out": True},
            },
        ],
    )
    result = CliRunner().invoke(app, ["eval", str(path), "--min-pass", "0.6"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "PASS  right  (en, 2 turn(s))" in lines
    assert "PASS  stop  (es, 3 turn(s))" in lines
    (wrong,) = [line for line in lines if line.startswith("FAIL  wrong")]
    for reason in (
        "final bot 'buyer', expected 'seller'",
        "handoffs ['lead->buyer'], expected ['lead->seller']",
        "escalated False, expected True",
        "never opted out, expected an opt-out",
        "turn 1 asks for 'timeline', which must never be asked",
        "turn 2 answers None first, expected 'market'",
        "tags ['Not-Prospect-Renter'] never sent to GHL",
    ):
        assert reason in wrong, reason
    assert lines[-1] == "TOTAL 2/3 passed (66.7%); 3 multi-turn; languages: en, es"

    below = CliRunner().invoke(app, ["eval", str(path), "--quiet"])
    assert below.exit_code == 1  # 66.7 % is under the default 95 %
    assert not any(line.startswith("PASS") for line in below.output.splitlines())


def test_bad_files_get_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", str(broken)])
    assert result.exit_code == 2 and "is not valid JSON" in result.output

    unknown = write(tmp_path / "unknown.json", [{"id": "x", "turns": ["hi"], "expect": {"mood": "happy"}}])
    result = CliRunner().invoke(app, ["eval", str(unknown)])
    assert result.exit_code == 2 and "unknown label(s) ['mood']" in result.output

    no_turns = write(tmp_path / "empty.json", [{"id": "x", "turns": []}])
    result = CliRunner().invoke(app, ["eval", str(no_turns)])
    assert result.exit_code == 2 and '"turns" must be a non-empty list' in result.output

    missing = CliRunner().invoke(app, ["eval", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "cannot read" in missing.output
