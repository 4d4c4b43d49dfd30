"""Buyer bot: affordability (DTI 43 %, 20 % down, the configured rate), qualification order,
showing bookings from GHL free slots, and the buyer->seller handoff decision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conversation_kit import Harness, call_summary

from ghl_real_estate_ai.bots.buyer import BUYER_QUESTIONS, affordable_price
from ghl_real_estate_ai.bots.outbound import format_slot
from ghl_real_estate_ai.integrations.ghl.sandbox import get_sandbox_state
from ghl_real_estate_ai.storage.base import Contact


def monthly_payment(loan: float, annual_rate: float, years: int = 30) -> float:
    """The standard amortised payment, to check affordable_price from the other side."""
    r = annual_rate / 12
    n = years * 12
    return loan * r / (1 - (1 + r) ** -n)


@pytest.mark.parametrize("income", [4_000, 9_000, 15_000, 40_000])
@pytest.mark.parametrize("rate", [0.04, 0.07, 0.095])
def test_affordable_price_spends_43_percent_of_income_with_20_percent_down(income: int, rate: float) -> None:
    price = affordable_price(income, None, rate)
    assert price is not None
    assert monthly_payment(price * 0.8, rate) == pytest.approx(income * 0.43, abs=1.0)


def test_a_higher_rate_buys_less_house() -> None:
    prices = [affordable_price(10_000, None, rate) for rate in (0.05, 0.06, 0.07, 0.08)]
    assert prices == sorted(prices, reverse=True)  # type: ignore[type-var]


def test_a_known_down_payment_caps_the_price_at_five_times_itself() -> None:
    assert affordable_price(20_000, 50_000, 0.07) == 250_000
    rich = affordable_price(8_000, 1_000_000, 0.07)
    assert rich is not None
    # Plenty of cash: the loan the income carries plus the cash.
    loan = rich - 1_000_000
    assert monthly_payment(loan, 0.07) == pytest.approx(8_000 * 0.43, abs=1.0)


def test_no_income_no_affordability() -> None:
    assert affordable_price(None, 100_000, 0.07) is None
    assert affordable_price(0, None, 0.07) is None


@pytest.mark.parametrize("rate", [0.0, 1.0, 7.0, -0.1])
def test_a_rate_out_of_range_is_refused_with_a_clear_message(rate: float) -> None:
    with pytest.raises(ValueError, match=r"annual_rate must be between 0 and 1 \(0.07 = 7 %\)"):
        affordable_price(10_000, None, rate)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}", mortgage_rate=0.06) as harness:
        yield harness


async def buyer(h: Harness, contact_id: str) -> None:
    await h.store.upsert_contact(Contact(contact_id=contact_id, current_bot="buyer", tags=["Buyer-Bot"]))


async def test_questions_come_in_order_and_skip_what_was_said(h: Harness) -> None:
    await buyer(h, "b1")
    asked = []
    for body in ["Hi, I want to buy", "$450k", "Not pre-approved yet", "3 bedrooms in Fontana"]:
        result = await h.say("b1", body)
        asked.append(result.outcomes[0].path)
    assert asked == [
        "question:budget",
        "question:preapproval",
        "question:bedrooms_areas",
        "question:timeline",
    ]
    assert BUYER_QUESTIONS == ("budget", "preapproval", "bedrooms_areas", "timeline")


async def test_affordability_uses_the_configured_mortgage_rate(h: Harness) -> None:
    await buyer(h, "b2")
    await h.say("b2", "Looking to buy. We make $10,000 a month")
    price = (await h.contact("b2")).state["buyer"]["affordable_price"]
    assert price == affordable_price(10_000, None, 0.06)
    assert f"${price:,}" in (await h.sent_texts("b2"))[0]


async def test_an_unqualified_buyer_asking_for_a_showing_is_asked_to_qualify_first(h: Harness) -> None:
    await buyer(h, "b3")
    result = await h.say("b3", "Can I see a house this week?")
    assert result.outcomes[0].path == "question:budget"
    assert "POST /calendars/events/appointments" not in call_summary(await h.calls())


async def test_a_booked_slot_is_not_offered_to_the_next_buyer(h: Harness) -> None:
    ready = "Pre-approved for $600k, want 3 bedrooms in Ontario within 60 days. Can I see a house?"
    for contact_id in ("b4", "b5"):
        await buyer(h, contact_id)
        await h.say(contact_id, ready, after=timedelta(seconds=1))
    first = (await h.contact("b4")).state["buyer"]["showing_booked"]
    second = (await h.contact("b5")).state["buyer"]["showing_booked"]
    assert first != second
    assert second > first


READY_TO_SEE = "Pre-approved for $600k, want 3 bedrooms in Ontario within 60 days. Can I see a house?"


def _someone_books_first(h: Harness, monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """Another agent books the first free slot right after the bot reads the calendar."""
    taken: list[datetime] = []
    read_slots = h.ghl.get_free_slots

    async def racing(*args: Any, **kwargs: Any) -> list[datetime]:
        slots = await read_slots(*args, **kwargs)
        first = min(s for s in slots if s > h.clock())
        await h.ghl.book_appointment(h.settings.ghl_calendar_id, "another-contact", first)
        taken.append(first)
        return slots

    monkeypatch.setattr(h.ghl, "get_free_slots", racing)
    return taken


async def test_a_slot_taken_meanwhile_is_not_confirmed_and_the_next_one_is_booked(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await buyer(h, "b7")
    taken = _someone_books_first(h, monkeypatch)
    await h.say("b7", READY_TO_SEE)
    booked = datetime.fromisoformat((await h.contact("b7")).state["buyer"]["showing_booked"])
    assert taken and booked > taken[0]
    ours = [a for a in get_sandbox_state(h.sandbox).appointments if a["contactId"] == "b7"]
    assert [datetime.fromisoformat(a["startTime"]) for a in ours] == [booked]
    (text,) = await h.sent_texts("b7")
    assert format_slot(booked, "America/Los_Angeles") in text
    assert format_slot(taken[0], "America/Los_Angeles") not in text


async def test_with_ghl_down_the_showing_is_reserved_not_confirmed_and_booked_on_recovery(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await buyer(h, "b8")
    faults = get_sandbox_state(h.sandbox)
    read_slots = h.ghl.get_free_slots

    async def then_ghl_goes_down(*args: Any, **kwargs: Any) -> list[datetime]:
        slots = await read_slots(*args, **kwargs)
        faults.failure_rate = 1.0
        return slots

    monkeypatch.setattr(h.ghl, "get_free_slots", then_ghl_goes_down)
    await h.say("b8", READY_TO_SEE)
    memory = (await h.contact("b8")).state["buyer"]
    assert "showing_booked" not in memory and "showing_pending" in memory
    pending = await h.store.list_outbox(status="pending")
    replies = [i.payload["message"] for i in pending if i.kind == "send_message"]
    assert len(replies) == 1 and "reserving" in replies[0] and "booked" not in replies[0]

    faults.failure_rate = 0.0
    h.clock.advance(timedelta(hours=1))
    await h.outbox.deliver_due()
    ours = [a for a in faults.appointments if a["contactId"] == "b8"]
    starts = [datetime.fromisoformat(a["startTime"]) for a in ours]
    assert starts == [datetime.fromisoformat(memory["showing_pending"])]
    assert "reserving" in (await h.sent_texts("b8"))[0]


async def test_a_buyer_talking_about_selling_is_handed_to_the_seller_bot(h: Harness) -> None:
    await buyer(h, "b6")
    await h.say("b6", "Pre-approved for $500k, looking in Upland")
    result = await h.say("b6", "We'd have to sell our house and list it first")
    assert result.outcomes[0].handoff is not None
    assert result.outcomes[0].handoff.target_bot == "seller"
    assert result.outcomes[0].handoff.confidence >= 0.8
    assert result.outcomes[0].replies == []  # the buyer bot did not answer; the seller bot did
    assert [o.bot for o in result.outcomes] == ["buyer", "seller"]


async def test_a_passing_mention_of_a_house_does_not_hand_the_buyer_over(h: Harness) -> None:
    await buyer(h, "b7")
    result = await h.say("b7", "Pre-approved for $500k, we want 3 bedrooms in Upland")
    assert result.outcomes[0].handoff is None
