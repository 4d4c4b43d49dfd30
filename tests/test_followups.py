"""The follow-up sequence on real parts: scheduling rules, exactly-once runs, restarts, retries.

Every test plays real inbound messages through the conversation service
(:class:`tests.conversation_kit.Harness`: real store, real GHL sandbox behind
the real client, real outbox) on a :class:`ManualClock`, then drives
:class:`FollowUpRunner` day by day and checks what GHL saw (``GET /_calls``).
The database-level tests run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from ghl_real_estate_ai.clock import ManualClock
from ghl_real_estate_ai.errors import GHLError
from ghl_real_estate_ai.followups import (
    FOLLOWUP_STEPS,
    FollowUpRunner,
    RunReport,
    exponential_backoff,
    restart_sequence,
    schedule_sequence,
)
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
from ghl_real_estate_ai.storage.base import Contact
from tests.conversation_kit import START, Harness

STEP_NAMES = [step for step, _ in FOLLOWUP_STEPS]
QUIET_LEAD = "Hi, who is this?"
"""A first message that keeps the contact with the lead bot (no handoff, no opt-out)."""


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    async with Harness.open(database_url) as h:
        yield h


def runner_for(h: Harness, **options: Any) -> FollowUpRunner:
    return FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock, **options)


def followup_calls(calls: list[dict[str, Any]], contact_id: str) -> list[str]:
    """The GHL actions of the sequence, as ``SMS``, ``Email`` or ``task``."""
    kinds = []
    for call in calls:
        if call["path"] == "/conversations/messages" and call["body"]["contactId"] == contact_id:
            kinds.append(call["body"]["type"])
        elif call["path"] == f"/contacts/{contact_id}/tasks":
            kinds.append("task")
    return kinds


async def run_days(h: Harness, runner: FollowUpRunner, days: int) -> list[tuple[int, str, str]]:
    """Advance the clock one day at a time and run what is due: (day, step, outcome) of each step."""
    seen = []
    for day in range(1, days + 1):
        h.clock.advance(days=1)
        report = await runner.run_due()
        seen += [(day, o.step, o.outcome) for o in report.outcomes]
    return seen


async def test_a_31_day_silence_runs_the_four_steps_in_order_once_each(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.clear_calls()

    seen = await run_days(h, runner_for(h), 31)

    assert seen == [
        (3, "send_day_3_sms", "done"),
        (7, "initiate_day_7_call", "done"),
        (14, "send_day_14_email", "done"),
        (30, "send_day_30_nudge", "done"),
    ]
    assert followup_calls(await h.calls(), "c-1") == ["SMS", "task", "Email", "SMS"]
    rows = await h.store.list_followups("c-1")
    assert [(r.step, r.status, r.attempts) for r in rows] == [(s, "done", 1) for s in STEP_NAMES]
    # Day 30 moves the lead to nurture, once: nothing more is due or sent afterwards.
    contact = await h.contact("c-1")
    assert contact.state["lead"]["current_step"] == "nurture"
    assert await run_days(h, runner_for(h), 30) == []
    assert len(followup_calls(await h.calls(), "c-1")) == 4


async def test_steps_are_due_3_7_14_and_30_days_after_the_last_message(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    rows = await h.store.list_followups("c-1")
    assert [(r.step, r.due_at - h.clock(), r.status) for r in rows] == [
        ("send_day_3_sms", timedelta(days=3), "pending"),
        ("initiate_day_7_call", timedelta(days=7), "pending"),
        ("send_day_14_email", timedelta(days=14), "pending"),
        ("send_day_30_nudge", timedelta(days=30), "pending"),
    ]


async def test_a_reply_cancels_pending_steps_and_restarts_the_count(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    runner = runner_for(h)
    assert await run_days(h, runner, 4) == [(3, "send_day_3_sms", "done")]

    await h.say("c-1", "Sorry, busy week. Still thinking about it", after=timedelta(0))
    statuses = Counter((r.step, r.status) for r in await h.store.list_followups("c-1"))
    assert statuses == Counter(
        {
            ("send_day_3_sms", "done"): 1,
            ("initiate_day_7_call", "cancelled"): 1,
            ("send_day_14_email", "cancelled"): 1,
            ("send_day_30_nudge", "cancelled"): 1,
            **{(step, "pending"): 1 for step in STEP_NAMES},
        }
    )
    await h.clear_calls()
    # The old day 7 (3 days after the reply) no longer fires; the new day 3 does.
    assert await run_days(h, runner, 8) == [(3, "send_day_3_sms", "done"), (7, "initiate_day_7_call", "done")]
    assert followup_calls(await h.calls(), "c-1") == ["SMS", "task"]


async def test_a_reply_while_a_claimed_step_waits_for_the_contact_lock_skips_it(harness: Harness) -> None:
    """The race: the runner claimed day 3 while the contact's reply held the lock."""
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.clear_calls()
    h.clock.advance(days=3)
    runner = runner_for(h)
    async with h.store.contact_lock("c-1"):
        pending = asyncio.create_task(runner.run_due())
        # Let the runner claim the step; it then waits for the lock we hold.
        for _ in range(200):
            if any(r.status == "running" for r in await h.store.list_followups("c-1")):
                break
            await asyncio.sleep(0.01)
        # What the reply's processing does under the lock.
        await restart_sequence(h.store, "c-1", now=h.clock(), trace_context={})
    report = await pending
    assert [(o.step, o.outcome, o.reason) for o in report.outcomes] == [
        ("send_day_3_sms", "skipped", "replied")
    ]
    assert followup_calls(await h.calls(), "c-1") == []


async def test_opted_out_contacts_get_nothing(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.say("c-1", "STOP")
    assert (await h.contact("c-1")).opted_out
    await h.clear_calls()

    assert await run_days(h, runner_for(h), 31) == []
    assert await h.calls() == []
    assert await schedule_sequence(h.store, "c-1", now=h.clock(), trace_context={}) == []
    assert {r.status for r in await h.store.list_followups("c-1")} == {"cancelled"}


async def test_escalated_contacts_get_nothing(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.say("c-1", "I want to talk to a real person please")
    assert (await h.contact("c-1")).escalated
    await h.clear_calls()

    assert await run_days(h, runner_for(h), 31) == []
    assert followup_calls(await h.calls(), "c-1") == []
    assert await restart_sequence(h.store, "c-1", now=h.clock(), trace_context={}) == []


@pytest.mark.parametrize("flag", ["opted_out", "escalated"])
async def test_a_step_due_after_the_contact_opted_out_or_escalated_is_skipped(
    harness: Harness, flag: str
) -> None:
    """A contact flagged without a conversation (e.g. an agent in GHL) still gets no step."""
    h = harness
    await h.say("c-1", QUIET_LEAD)
    contact = await h.contact("c-1")
    setattr(contact, flag, True)
    await h.store.upsert_contact(contact)
    await h.clear_calls()

    seen = await run_days(h, runner_for(h), 31)

    assert seen == [(3, "send_day_3_sms", "skipped")]
    assert followup_calls(await h.calls(), "c-1") == []
    rows = await h.store.list_followups("c-1")
    assert [r.status for r in rows] == ["done", "cancelled", "cancelled", "cancelled"]


class FlakyLeadBot:
    """The real lead bot behind a GHL outage that lasts ``failures`` runs (the edge, faked)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def run_followup(self, step: str, contact: Contact) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise GHLError(f"GHL answered 503 for {step} (outage {self.calls})", status_code=503)
        return await self.inner.run_followup(step, contact)


async def test_a_failing_step_is_retried_with_backoff_then_succeeds_once(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.clear_calls()
    bot = FlakyLeadBot(h.service.bots.lead, failures=2)
    runner = FollowUpRunner(
        h.store, bot, clock=h.clock, backoff=exponential_backoff(timedelta(minutes=5)), max_attempts=5
    )
    h.clock.advance(days=3)

    first = await runner.run_due()
    assert [(o.outcome, o.attempt) for o in first.outcomes] == [("retry", 1)]
    assert first.outcomes[0].next_attempt_at == h.clock() + timedelta(minutes=5)
    assert "outage 1" in (first.outcomes[0].error or "")
    # Not due again before the backoff has passed.
    h.clock.advance(minutes=4)
    assert (await runner.run_due()).claimed == 0
    h.clock.advance(minutes=1)
    assert [(o.outcome, o.attempt) for o in (await runner.run_due()).outcomes] == [("retry", 2)]
    h.clock.advance(minutes=10)  # the second delay doubles
    assert [(o.outcome, o.attempt) for o in (await runner.run_due()).outcomes] == [("done", 3)]

    assert followup_calls(await h.calls(), "c-1") == ["SMS"]
    day_3 = (await h.store.list_followups("c-1"))[0]
    assert (day_3.status, day_3.attempts, day_3.last_error) == ("done", 3, None)


async def test_a_step_that_keeps_failing_is_dead_after_max_attempts_visibly(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.clear_calls()
    runner = FollowUpRunner(
        h.store, FlakyLeadBot(h.service.bots.lead, failures=100), clock=h.clock, max_attempts=3
    )
    h.clock.advance(days=3)
    reports: list[RunReport] = []
    with caplog.at_level(logging.WARNING, logger="ghl_real_estate_ai.followups"):
        for _ in range(6):
            reports.append(await runner.run_due())
            h.clock.advance(hours=1)

    outcomes = [(o.step, o.outcome, o.attempt) for r in reports for o in r.outcomes]
    assert outcomes == [
        ("send_day_3_sms", "retry", 1),
        ("send_day_3_sms", "retry", 2),
        ("send_day_3_sms", "dead", 3),
    ]
    assert sum(r.dead for r in reports) == 1
    day_3 = (await h.store.list_followups("c-1"))[0]
    assert day_3.status == "dead"
    assert "outage 3" in (day_3.last_error or "")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "dead after 3 attempts" in errors[0].getMessage()
    assert followup_calls(await h.calls(), "c-1") == []
    # The later steps of the sequence are unaffected.
    h.clock.advance(days=4)
    assert [o.step for o in (await runner.run_due()).outcomes] == ["initiate_day_7_call"]


async def test_a_step_that_fell_due_while_the_app_was_down_runs_once_after_restart(database_url: str) -> None:
    clock = ManualClock(START)
    async with Harness.open(database_url, clock=clock) as first:
        await first.say("c-1", QUIET_LEAD)
        sandbox = first.sandbox
        await first.clear_calls()
    # Down for ten days: day 3 and day 7 fall due while nothing runs.
    clock.advance(days=10)
    async with Harness.open(database_url, clock=clock, sandbox=sandbox) as second:
        runner = runner_for(second)
        report = await runner.run_due()
        assert [(o.step, o.outcome) for o in report.outcomes] == [
            ("send_day_3_sms", "done"),
            ("initiate_day_7_call", "done"),
        ]
        assert (await runner.run_due()).claimed == 0
        assert followup_calls(await second.calls(), "c-1") == ["SMS", "task"]
        remaining = [(r.step, r.status) for r in await second.store.list_followups("c-1")]
        assert remaining[2:] == [("send_day_14_email", "pending"), ("send_day_30_nudge", "pending")]


async def test_a_step_left_running_by_a_dead_worker_is_taken_over(harness: Harness) -> None:
    h = harness
    await h.say("c-1", QUIET_LEAD)
    await h.clear_calls()
    h.clock.advance(days=3)
    # A worker claims the step and dies before finishing it.
    [orphan] = await h.store.claim_due_followups(h.clock(), 10)
    patient = runner_for(h, stale_after=timedelta(hours=1))
    assert (await patient.run_due()).claimed == 0
    await asyncio.sleep(0.01)
    rescuer = runner_for(h, stale_after=timedelta(0))
    report = await rescuer.run_due()
    assert [(o.followup_id, o.outcome, o.attempt) for o in report.outcomes] == [(orphan.id, "done", 2)]
    assert followup_calls(await h.calls(), "c-1") == ["SMS"]


async def test_two_runners_on_two_stores_never_run_a_step_twice(database_url: str) -> None:
    """Acceptance 2: replicas claiming concurrently on one database."""
    clock = ManualClock(START)
    contacts = [f"c-{n}" for n in range(12)]
    sandbox = create_sandbox_app(location_id="loc-1", seed=7)
    async with (
        Harness.open(database_url, clock=clock, sandbox=sandbox) as a,
        Harness.open(database_url, clock=clock, sandbox=sandbox) as b,
    ):
        for contact_id in contacts:
            await a.say(contact_id, QUIET_LEAD, after=timedelta(0))
        await a.clear_calls()
        runners = [runner_for(a), runner_for(b)]
        by_runner: list[list[int]] = [[], []]
        for _ in range(31):
            clock.advance(days=1)
            while True:
                reports = await asyncio.gather(*(r.run_due(limit=3) for r in runners))
                for i, report in enumerate(reports):
                    assert report.retried == report.dead == report.skipped == 0
                    by_runner[i] += [o.followup_id for o in report.outcomes]
                if not any(r.claimed for r in reports):
                    break

        run_ids = by_runner[0] + by_runner[1]
        assert len(run_ids) == len(set(run_ids)) == 4 * len(contacts)
        assert by_runner[0] and by_runner[1], "both replicas should have taken a share"
        calls = await a.calls()
        for contact_id in contacts:
            assert followup_calls(calls, contact_id) == ["SMS", "task", "Email", "SMS"]
        rows = await a.store.list_followups()
        assert Counter(r.status for r in rows) == Counter({"done": 4 * len(contacts)})
        assert {r.attempts for r in rows} == {1}


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    delay = exponential_backoff(timedelta(minutes=5), cap=timedelta(minutes=30))
    assert [delay(n) for n in range(1, 6)] == [
        timedelta(minutes=5),
        timedelta(minutes=10),
        timedelta(minutes=20),
        timedelta(minutes=30),
        timedelta(minutes=30),
    ]
    with pytest.raises(ValueError, match="base > 0"):
        exponential_backoff(timedelta(0))


async def test_runner_refuses_a_max_attempts_below_one(harness: Harness) -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1, got 0"):
        runner_for(harness, max_attempts=0)


async def test_the_report_is_json_safe(harness: Harness) -> None:
    import json

    h = harness
    await h.say("c-1", QUIET_LEAD)
    h.clock.advance(days=3)
    report = await runner_for(h).run_due()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["claimed"] == data["done"] == 1
    assert data["now"] == h.clock().isoformat()
    assert data["steps"][0]["step"] == "send_day_3_sms"
    assert data["steps"][0]["due_at"] == (h.clock()).isoformat()


def test_exponential_backoff_survives_huge_attempt_numbers() -> None:
    assert exponential_backoff()(10_000) == timedelta(hours=6)
