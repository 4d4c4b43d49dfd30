"""Seller bot: the four questions, hot only when all are answered within the 30-45 day window,
CMA appointments from GHL free slots, and the seller->buyer handoff decision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conversation_kit import Harness, call_summary

from ghl_real_estate_ai.bots.seller import SELLER_QUESTIONS, TIMELINE_WINDOW_DAYS
from ghl_real_estate_ai.storage.base import Contact


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness


async def seller(h: Harness, contact_id: str) -> None:
    await h.store.upsert_contact(Contact(contact_id=contact_id, current_bot="seller", tags=["Seller-Bot"]))


async def test_the_four_questions_in_order(h: Harness) -> None:
    await seller(h, "s1")
    paths = [
        (await h.say("s1", body)).outcomes[0].path for body in ["I want to sell my house", "We're downsizing"]
    ]
    assert paths == ["question:motivation", "question:timeline"]
    assert SELLER_QUESTIONS == ("motivation", "timeline", "condition", "price")


async def test_hot_needs_all_four_answers_and_a_timeline_within_45_days(h: Harness) -> None:
    await seller(h, "s2")
    answers = ["We need to sell our house, we're downsizing", "Within 30 days", "Good condition"]
    temps = [(await h.say("s2", body)).outcomes[0].temperature for body in answers]
    assert "hot" not in temps  # three of four answered
    hot = await h.say("s2", "Hoping to get $700k")
    assert hot.outcomes[0].temperature == "hot"
    assert TIMELINE_WINDOW_DAYS == 45


async def test_a_long_timeline_is_never_hot_and_gets_a_cma_instead_of_a_visit(h: Harness) -> None:
    await seller(h, "s3")
    for body in [
        "We need to sell our 3 bed, 1,600 sq ft house in Claremont, we're downsizing",
        "Probably next year",
        "It's in good condition",
    ]:
        await h.say("s3", body)
    last = await h.say("s3", "Hoping to get $700k")
    assert last.outcomes[0].temperature != "hot"
    assert last.outcomes[0].path == "cma"
    assert last.outcomes[0].memory["cma"]["area"] == "Claremont"
    assert "POST /calendars/events/appointments" not in call_summary(await h.calls())


async def test_a_hot_seller_asking_for_a_visit_is_booked_at_once(h: Harness) -> None:
    await seller(h, "s4")
    for body in ["We need to sell our house, we're downsizing", "Within 30 days", "Good condition"]:
        await h.say("s4", body)
    booked = await h.say("s4", "Hoping to get $700k. Can we set up an appointment?")
    assert booked.outcomes[0].path == "appointment_booked"
    calls = await h.calls()
    (appointment,) = [c for c in calls if c["path"] == "/calendars/events/appointments"]
    assert appointment["body"]["title"] == "CMA appointment"
    assert appointment["body"]["startTime"] == booked.outcomes[0].memory["appointment_booked"]


async def test_a_seller_now_talking_about_buying_is_handed_to_the_buyer_bot(h: Harness) -> None:
    await seller(h, "s5")
    await h.say("s5", "We need to sell our house")
    result = await h.say("s5", "Also we're pre-approved and looking to buy a bigger place")
    assert result.outcomes[0].handoff is not None
    assert result.outcomes[0].handoff.target_bot == "buyer"
    assert result.outcomes[0].handoff.confidence >= 0.6
    assert [o.bot for o in result.outcomes] == ["seller", "buyer"]
