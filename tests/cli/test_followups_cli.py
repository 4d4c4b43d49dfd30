"""``jorge followups run-due`` on a real SQLite database seeded by a real conversation."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from ghl_real_estate_ai.cli import followups
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.base import FollowUp
from tests.conversation_kit import START, Harness

runner = CliRunner()


def _cli() -> typer.Typer:
    """The root command as the lead registers it."""
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """jorge"""

    root.add_typer(followups.app, name="followups")
    return root


def _seed(database_url: str) -> datetime:
    """A lead writes once and goes quiet; returns when the message arrived."""

    async def play() -> datetime:
        async with Harness.open(database_url) as h:
            await h.say("c-1", "Hi, who is this?")
            return h.clock()

    return asyncio.run(play())


def _rows(database_url: str) -> list[FollowUp]:
    async def read() -> list[FollowUp]:
        store = open_store(database_url)
        await store.open()
        try:
            return await store.list_followups()
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.fixture
def seeded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> datetime:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    return _seed(sqlite_url)


def test_run_due_json_runs_what_is_due_at_now_once(seeded: datetime, sqlite_url: str) -> None:
    when = (seeded + timedelta(days=3, hours=1)).isoformat()
    result = runner.invoke(_cli(), ["followups", "run-due", "--now", when, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["claimed"], report["done"], report["dead"]) == (1, 1, 0)
    assert report["now"] == when
    [step] = report["steps"]
    assert (step["step"], step["outcome"], step["attempt"]) == ("send_day_3_sms", "done", 1)
    assert len(step["trace_id"]) == 32
    assert [r.status for r in _rows(sqlite_url)] == ["done", "pending", "pending", "pending"]

    again = runner.invoke(_cli(), ["followups", "run-due", "--now", when, "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["claimed"] == 0


def test_run_due_prints_a_summary_and_a_table(seeded: datetime) -> None:
    when = (seeded + timedelta(days=8)).isoformat()
    result = runner.invoke(_cli(), ["followups", "run-due", "--now", when])
    assert result.exit_code == 0, result.output
    assert "2 follow-up step(s) due at" in result.stdout
    assert "2 done, 0 skipped, 0 to retry, 0 dead" in result.stdout
    assert result.stdout.index("send_day_3_sms") < result.stdout.index("initiate_day_7_call")


def test_nothing_due_yet_is_a_quiet_success(seeded: datetime) -> None:
    result = runner.invoke(
        _cli(), ["followups", "run-due", "--now", (seeded + timedelta(days=1)).isoformat()]
    )
    assert result.exit_code == 0
    assert "0 follow-up step(s) due" in result.stdout


@pytest.mark.parametrize("bad", ["tomorrow", "2025-02-30T10:00:00", "17:00"])
def test_a_bad_now_is_one_clear_line_and_exit_2(
    bad: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    result = runner.invoke(_cli(), ["followups", "run-due", "--now", bad])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--now must be an ISO-8601 time" in lines[0]
    assert repr(bad) in lines[0]
    assert result.stdout == ""


def test_an_unreachable_database_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/jorge")
    result = runner.invoke(_cli(), ["followups", "run-due", "--now", START.isoformat()])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DATABASE_URL" in lines[0]


def test_a_step_that_fails_for_the_last_time_exits_1(seeded: datetime, sqlite_url: str) -> None:
    """A step the lead bot does not know keeps failing: retried with backoff, then dead, visibly."""

    async def add_bad_step() -> None:
        store = open_store(sqlite_url)
        await store.open()
        try:
            await store.schedule_followup("c-1", "send_day_99_fax", seeded + timedelta(hours=1), {})
        finally:
            await store.close()

    asyncio.run(add_bad_step())
    when = seeded + timedelta(hours=1)
    outcomes = []
    for _ in range(5):
        result = runner.invoke(_cli(), ["followups", "run-due", "--now", when.isoformat(), "--json"])
        [step] = json.loads(result.stdout)["steps"]
        outcomes.append((result.exit_code, step["outcome"], step["attempt"]))
        when += timedelta(hours=6)  # past the longest backoff
    assert outcomes == [(0, "retry", 1), (0, "retry", 2), (0, "retry", 3), (0, "retry", 4), (1, "dead", 5)]
    assert "unknown follow-up step 'send_day_99_fax'" in step["error"]
    bad = [r for r in _rows(sqlite_url) if r.step == "send_day_99_fax"]
    assert [(r.status, r.attempts) for r in bad] == [("dead", 5)]
