"""HandoffService: route thresholds, safeguards read from the database, tag swaps through the outbox,
escalation to a person, and the spans each produces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from conversation_kit import Harness, call_summary

from ghl_real_estate_ai.bots.state import HandoffRequest
from ghl_real_estate_ai.handoff import (
    DAILY_LIMIT,
    HOURLY_LIMIT,
    THRESHOLDS,
    HandoffService,
    handoff_tag,
)
from ghl_real_estate_ai.observability.testing import capture_spans, render_tree
from ghl_real_estate_ai.storage.base import Contact


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness


def service(h: Harness) -> HandoffService:
    return HandoffService(h.store, h.outbox, clock=h.clock)


async def contact(
    h: Harness, contact_id: str = "c-1", bot: str = "lead", tags: list[str] | None = None
) -> Contact:
    return await h.store.upsert_contact(Contact(contact_id=contact_id, current_bot=bot, tags=tags or []))


def test_handoff_tag_names_the_route() -> None:
    assert handoff_tag("lead", "buyer") == "Handoff-Lead-to-Buyer"
    assert handoff_tag("seller", "human") == "Handoff-Seller-to-Human"


def test_route_thresholds_are_the_designed_ones() -> None:
    assert THRESHOLDS == {
        ("lead", "buyer"): 0.7,
        ("lead", "seller"): 0.7,
        ("buyer", "seller"): 0.8,
        ("seller", "buyer"): 0.6,
    }


@pytest.mark.parametrize(
    ("source", "target", "confidence", "outcome"),
    [
        ("lead", "buyer", 0.7, "allowed"),
        ("lead", "buyer", 0.69, "blocked:below_threshold"),
        ("lead", "seller", 0.7, "allowed"),
        ("buyer", "seller", 0.79, "blocked:below_threshold"),
        ("buyer", "seller", 0.8, "allowed"),
        ("seller", "buyer", 0.6, "allowed"),
        ("seller", "buyer", 0.59, "blocked:below_threshold"),
        ("buyer", "lead", 1.0, "blocked:unknown_route"),
    ],
)
async def test_each_route_has_its_own_threshold(
    h: Harness, source: str, target: str, confidence: float, outcome: str
) -> None:
    decision = await service(h).evaluate_handoff("c-1", source, target, confidence)
    assert decision.outcome == outcome
    assert decision.allowed is (outcome == "allowed")


async def test_execute_swaps_tags_through_the_outbox_and_moves_the_contact(h: Harness) -> None:
    """Source tag removed (when carried), target + route tags added, handoff recorded, current_bot moved."""
    c = await contact(h, bot="buyer", tags=["Buyer-Bot", "VIP"])
    moved = await service(h).execute_handoff(
        c, "buyer", "seller", 0.85, "seller_intent_detected", key="evt-1"
    )
    assert moved.current_bot == "seller"
    assert moved.tags == ["VIP", "Seller-Bot", "Handoff-Buyer-to-Seller"]
    calls = await h.calls()
    assert call_summary(calls) == ["DELETE /contacts/c-1/tags", "POST /contacts/c-1/tags"]
    assert calls[0]["body"] == {"tags": ["Buyer-Bot"]}
    assert calls[1]["body"] == {"tags": ["Seller-Bot", "Handoff-Buyer-to-Seller"]}
    rows = await h.store.list_handoffs("c-1")
    assert [r.outcome for r in rows] == ["in_progress", "executed"]
    assert {(r.source_bot, r.target_bot, r.reason) for r in rows} == {
        ("buyer", "seller", "seller_intent_detected")
    }


async def test_a_tag_the_contact_never_had_is_not_removed(h: Harness) -> None:
    """A fresh lead was never tagged Lead-Bot: one POST of tags, no pointless DELETE."""
    c = await contact(h)
    await service(h).execute_handoff(c, "lead", "buyer", 0.9, "buyer_intent_detected", key="evt-1")
    assert call_summary(await h.calls()) == ["POST /contacts/c-1/tags"]


async def test_executing_the_same_event_twice_sends_nothing_new(h: Harness) -> None:
    """The outbox key comes from the event: a replayed webhook does not tag twice."""
    svc = service(h)
    first = await contact(h)
    await svc.execute_handoff(first, "lead", "buyer", 0.9, "buyer_intent_detected", key="evt-9")
    again = await contact(h)  # as stored before the crash
    await svc.execute_handoff(again, "lead", "buyer", 0.9, "buyer_intent_detected", key="evt-9")
    assert call_summary(await h.calls()) == ["POST /contacts/c-1/tags"]


async def test_the_same_route_is_blocked_for_30_minutes(h: Harness) -> None:
    svc = service(h)
    c = await contact(h)
    request = HandoffRequest("lead", "buyer", 0.9, "buyer_intent_detected")
    assert (await svc.hand_off(c, request, key="evt-1")).outcome == "executed"
    h.clock.advance(minutes=29)
    blocked = await svc.hand_off(c, request, key="evt-2")
    assert blocked.outcome == "blocked:repeat_within_30m"
    assert not blocked.executed
    h.clock.advance(minutes=1)
    assert (await svc.hand_off(c, request, key="evt-3")).outcome == "executed"


async def test_at_most_three_handoffs_an_hour(h: Harness) -> None:
    svc = service(h)
    c = await contact(h)
    routes = [("lead", "buyer"), ("buyer", "seller"), ("seller", "buyer"), ("lead", "seller")]
    outcomes = []
    for n, (source, target) in enumerate(routes):
        h.clock.advance(minutes=1)
        result = await svc.hand_off(c, HandoffRequest(source, target, 0.95, "intent"), key=f"evt-{n}")
        outcomes.append(result.outcome)
    assert outcomes == ["executed", "executed", "executed", "blocked:hourly_limit"]
    assert HOURLY_LIMIT == 3


async def test_at_most_ten_handoffs_a_day(h: Harness) -> None:
    """Ten handoffs spread over the day pass the hourly limit, the eleventh hits the daily one."""
    svc = service(h)
    c = await contact(h)
    routes = [("buyer", "seller"), ("seller", "buyer")]
    outcomes = []
    for n in range(DAILY_LIMIT + 1):
        h.clock.advance(minutes=35)
        source, target = routes[n % 2]
        result = await svc.hand_off(c, HandoffRequest(source, target, 0.95, "intent"), key=f"evt-{n}")
        outcomes.append(result.outcome)
    assert outcomes[:DAILY_LIMIT] == ["executed"] * DAILY_LIMIT
    assert outcomes[DAILY_LIMIT] == "blocked:daily_limit"


async def test_safeguards_come_from_the_database_not_process_memory(tmp_path: Path) -> None:
    """A new service on a new store over the same file still blocks the repeat."""
    url = f"sqlite:///{tmp_path / 'jorge.db'}"
    request = HandoffRequest("lead", "buyer", 0.9, "buyer_intent_detected")
    async with Harness.open(url) as first:
        c = await contact(first)
        assert (await service(first).hand_off(c, request, key="evt-1")).executed
        clock = first.clock
    clock.advance(minutes=5)
    async with Harness.open(url, clock=clock) as second:
        c = await second.contact("c-1")
        assert (
            await service(second).hand_off(c, request, key="evt-2")
        ).outcome == "blocked:repeat_within_30m"


async def test_a_handoff_in_flight_blocks_another(h: Harness) -> None:
    """An in_progress row with no outcome after it (another replica, or a crash) blocks for a while."""
    await h.store.record_handoff("c-1", "lead", "seller", 0.9, "x", "in_progress", created_at=h.clock())
    svc = service(h)
    decision = await svc.evaluate_handoff("c-1", "lead", "buyer", 0.9)
    assert decision.outcome == "blocked:handoff_in_progress"
    assert decision.reason == "handoff_in_progress"
    h.clock.advance(minutes=3)  # a crashed attempt must not block the contact forever
    assert (await svc.evaluate_handoff("c-1", "lead", "buyer", 0.9)).allowed


async def test_blocked_handoff_is_recorded_and_its_span_says_why(h: Harness) -> None:
    svc = service(h)
    c = await contact(h)
    with capture_spans() as capture:
        result = await svc.hand_off(c, HandoffRequest("lead", "buyer", 0.5, "weak"), key="evt-1")
    assert result.outcome == "blocked:below_threshold"
    assert c.current_bot == "lead"
    ours = [s for s in capture.spans() if "db.system" not in (s.attributes or {})]
    assert render_tree(ours, ["handoff.outcome", "handoff.decision"]) == (
        "handoff.lead_to_buyer [handoff.outcome=blocked:below_threshold]\n"
        "└─ jorge.handoff.evaluate_handoff [handoff.decision=blocked:below_threshold]"
    )
    rows = await h.store.list_handoffs("c-1")
    assert [(r.outcome, r.confidence) for r in rows] == [("blocked:below_threshold", 0.5)]
    assert await h.calls() == []


async def test_escalation_tags_creates_an_agent_task_and_notifies_once(h: Harness) -> None:
    svc = service(h)
    c = await contact(h, bot="seller", tags=["Seller-Bot"])
    with capture_spans() as capture:
        result = await svc.escalate(
            c, "seller", "red_flag:foreclosure", key="evt-1", notice="A person will call you.", channel="SMS"
        )
    assert result.executed and c.escalated
    assert "Needs-Human" in c.tags and "Handoff-Seller-to-Human" in c.tags
    calls = await h.calls()
    assert call_summary(calls) == [
        "POST /contacts/c-1/tags",
        "POST /contacts/c-1/tasks",
        "POST /conversations/messages",
    ]
    assert "red_flag:foreclosure" in calls[1]["body"]["title"]
    assert calls[2]["body"]["message"] == "A person will call you."
    (span,) = capture.by_name("handoff.seller_to_human")
    assert (span.attributes or {})["handoff.outcome"] == "executed"
    assert (span.attributes or {})["handoff.target_bot"] == "human"
    again = await svc.escalate(c, "seller", "human_requested", key="evt-2", notice="again")
    assert again.outcome == "blocked:already_escalated"
    assert len(await h.calls()) == 3


async def test_escalation_ignores_the_bot_handoff_limits(h: Harness) -> None:
    """Three handoffs this hour do not stop a contact reaching a person."""
    svc = service(h)
    c = await contact(h)
    for n, (source, target) in enumerate([("lead", "buyer"), ("buyer", "seller"), ("seller", "buyer")]):
        h.clock.advance(minutes=1)
        assert (await svc.hand_off(c, HandoffRequest(source, target, 0.95, "i"), key=f"e{n}")).executed
    h.clock.advance(minutes=1)
    assert (await svc.escalate(c, "buyer", "human_requested", key="e9", notice=None)).executed


async def test_handoff_windows_follow_the_injected_clock(h: Harness) -> None:
    """Rows are stamped with the service clock, so windows are measured on it."""
    svc = service(h)
    c = await contact(h)
    await svc.hand_off(c, HandoffRequest("lead", "buyer", 0.9, "i"), key="evt-1")
    rows = await h.store.list_handoffs("c-1", since=h.clock() - timedelta(seconds=1))
    assert rows and all(r.created_at == h.clock() for r in rows)
