"""Scripted multi-turn conversations through the real service (issue 5, acceptance 2).

Each test plays what a contact writes, turn by turn, into the conversation
service built on real parts (SQLite store, outbox, GHL client, GHL sandbox)
and asserts what a team would check in GHL afterwards: the temperature, the
tags, the questions the bot asked, the handoffs, and the API calls the sandbox
saw (``GET /_calls``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from conversation_kit import Harness, call_summary

from ghl_real_estate_ai.followups import FollowUpRunner


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness  # the Harness checks the reply rules when the block ends


async def handoffs(h: Harness, contact_id: str) -> list[tuple[str, str, str]]:
    """(source, target, outcome) of every decided handoff, in order (in_progress markers left out)."""
    rows = await h.store.list_handoffs(contact_id)
    return [(r.source_bot, r.target_bot, r.outcome) for r in rows if r.outcome != "in_progress"]


async def test_buyer_is_qualified_handed_over_and_books_a_showing(h: Harness) -> None:
    first = await h.say("c1", "Hi there")
    assert first.outcomes[0].path == "ask_qualifying_question"
    handed = await h.say(
        "c1", "We're looking to buy. Pre-approved for $550k and we need 3 bedrooms in Ontario"
    )
    assert handed.handoff_outcome == "executed"
    assert [o.bot for o in handed.outcomes] == ["lead", "buyer"]
    assert handed.outcomes[1].path == "question:timeline"
    offered = await h.say("c1", "Within 60 days")
    assert offered.outcomes[0].path == "offer_showing"
    booked = await h.say("c1", "Yes please!")
    assert booked.outcomes[0].path == "showing_booked"

    contact = await h.contact("c1")
    assert contact.current_bot == "buyer"
    assert contact.temperature == "hot"
    assert contact.tags == ["Buyer-Bot", "Handoff-Lead-to-Buyer"]
    assert contact.state["lead"]["questions_asked"] == ["intent"]
    assert contact.state["buyer"]["questions_asked"] == ["timeline"]
    assert await handoffs(h, "c1") == [("lead", "buyer", "executed")]
    calls = await h.calls()
    assert call_summary(calls) == [
        "POST /conversations/messages",
        "POST /contacts/c1/tags",
        "POST /conversations/messages",
        "POST /conversations/messages",
        "GET /calendars/sandbox-calendar/free-slots",
        "POST /calendars/events/appointments",
        "POST /conversations/messages",
    ]
    appointment = calls[5]["body"]
    assert appointment["contactId"] == "c1" and appointment["calendarId"] == "sandbox-calendar"
    assert appointment["startTime"] == contact.state["buyer"]["showing_booked"]
    texts = await h.sent_texts("c1")
    assert "buying a home, selling one, or both?" in texts[0]
    assert texts[1].startswith("Sounds like you're ready to buy")
    assert "showing" in texts[3] and "Tuesday Mar 4 at 9:00 AM" in texts[3]


async def test_seller_answers_four_questions_turns_hot_and_books_a_cma_visit(h: Harness) -> None:
    opened = await h.say(
        "s1", "We're relocating for work, so I want to sell my house in Upland and list it within 30 days"
    )
    assert opened.handoff_outcome == "executed"
    assert opened.outcomes[1].bot == "seller"
    assert opened.outcomes[1].path == "question:condition"
    assert opened.outcomes[1].temperature != "hot"
    priced = await h.say("s1", "It's in good condition")
    assert priced.outcomes[0].path == "question:price"
    assert priced.outcomes[0].temperature != "hot"
    hot = await h.say("s1", "Hoping to get $750k")
    assert hot.outcomes[0].temperature == "hot"
    assert hot.outcomes[0].path == "offer_appointment"
    booked = await h.say("s1", "Sure, sounds good")
    assert booked.outcomes[0].path == "appointment_booked"

    contact = await h.contact("s1")
    assert contact.current_bot == "seller" and contact.temperature == "hot"
    assert contact.tags == ["Seller-Bot", "Handoff-Lead-to-Seller"]
    assert contact.state["seller"]["questions_asked"] == ["condition", "price"]
    assert await handoffs(h, "s1") == [("lead", "seller", "executed")]
    summary = call_summary(await h.calls())
    assert summary.count("POST /calendars/events/appointments") == 1
    assert summary[-3:] == [
        "GET /calendars/sandbox-calendar/free-slots",
        "POST /calendars/events/appointments",
        "POST /conversations/messages",
    ]
    # A seller with a 30-day timeline is never asked about motivation or timeline: they told us.
    texts = await h.sent_texts("s1")
    assert not any("What's prompting the move" in t for t in texts)


async def test_cold_lead_goes_quiet_and_gets_the_30_day_sequence(h: Harness) -> None:
    await h.say("q1", "hello")
    await h.say("q1", "not sure yet, maybe someday")
    contact = await h.contact("q1")
    assert contact.current_bot == "lead" and contact.temperature == "cold"
    pending = [f for f in await h.store.list_followups("q1") if f.status == "pending"]
    assert [f.step for f in pending] == [
        "send_day_3_sms",
        "initiate_day_7_call",
        "send_day_14_email",
        "send_day_30_nudge",
    ]
    assert all("traceparent" in f.trace_context or f.trace_context == {} for f in pending)
    await h.clear_calls()
    runner = FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock)
    done = []
    for day in (3, 7, 14, 30):
        report = await runner.run_due(now=h.clock() + timedelta(days=day, minutes=1))
        done += [o.step for o in report.outcomes if o.outcome == "done"]
    assert done == ["send_day_3_sms", "initiate_day_7_call", "send_day_14_email", "send_day_30_nudge"]
    calls = await h.calls()
    assert call_summary(calls) == [
        "POST /conversations/messages",
        "POST /contacts/q1/tasks",
        "POST /conversations/messages",
        "POST /conversations/messages",
    ]
    assert [calls[i]["body"]["type"] for i in (0, 2, 3)] == ["SMS", "Email", "SMS"]
    assert "html" in calls[2]["body"] and "$" not in calls[2]["body"]["html"]  # no CMA, no numbers
    assert (await h.contact("q1")).state["lead"]["current_step"] == "nurture"


async def test_opt_out_in_english_tags_confirms_once_and_goes_silent(h: Harness) -> None:
    await h.say("o1", "Hi, thinking about buying")
    assert len(await h.store.list_followups("o1")) == 4
    stopped = await h.say("o1", "STOP")
    assert stopped.action == "opted_out"
    again = await h.say("o1", "stop")
    later = await h.say("o1", "Hello? Are there any 3 bedroom listings?")
    assert again.action == later.action == "ignored_opted_out"
    contact = await h.contact("o1")
    assert contact.opted_out and contact.tags == ["Opted-Out"]
    texts = await h.sent_texts("o1")
    assert len(texts) == 2 and "unsubscribed" in texts[1]
    assert call_summary(await h.calls()) == [
        "POST /conversations/messages",
        "POST /contacts/o1/tags",
        "POST /conversations/messages",
    ]
    assert {f.status for f in await h.store.list_followups("o1")} == {"cancelled"}


async def test_opt_out_in_spanish(h: Harness) -> None:
    await h.say("o2", "Hola, quiero comprar una casa")
    stopped = await h.say("o2", "No me escriba más por favor")
    assert stopped.action == "opted_out"
    assert (await h.say("o2", "para")).action == "ignored_opted_out"
    # "quiero comprar una casa" is a plain statement of intent: handed to the buyer bot first.
    assert "Opted-Out" in (await h.contact("o2")).tags
    assert len(await h.sent_texts("o2")) == 2


async def test_start_after_stop_brings_the_texts_back_as_the_confirmation_promised(h: Harness) -> None:
    await h.say("o3", "Hi, thinking about buying")
    await h.say("o3", "STOP")
    assert "Reply START" in (await h.sent_texts("o3"))[-1]
    resumed = await h.say("o3", "START")
    assert resumed.action == "opted_in"
    contact = await h.contact("o3")
    assert not contact.opted_out and "Opted-Out" not in contact.tags
    assert "Welcome back" in (await h.sent_texts("o3"))[-1]
    answered = await h.say("o3", "Pre-approved for $500k, looking for 3 bedrooms in Upland")
    assert answered.action == "answered"
    # A second STOP is confirmed again: one confirmation per opt-out.
    assert (await h.say("o3", "stop")).action == "opted_out"
    texts = await h.sent_texts("o3")
    assert sum("unsubscribed" in t for t in texts) == 2
    assert call_summary(await h.calls()).count("DELETE /contacts/o3/tags") >= 1


async def test_a_legal_red_flag_escalates_to_a_person_and_the_bot_stops(h: Harness) -> None:
    escalated = await h.say("r1", "I'm behind on payments and facing foreclosure, I need to sell fast")
    assert escalated.action == "escalated" and escalated.handoff_outcome == "executed"
    quiet = await h.say("r1", "Hello? Anyone there?")
    assert quiet.action == "ignored_escalated"
    contact = await h.contact("r1")
    assert contact.escalated
    assert contact.tags == ["Needs-Human", "Handoff-Lead-to-Human"]
    calls = await h.calls()
    assert call_summary(calls) == [
        "POST /contacts/r1/tags",
        "POST /contacts/r1/tasks",
        "POST /conversations/messages",
    ]
    assert "foreclosure" in calls[1]["body"]["title"]
    assert await handoffs(h, "r1") == [("lead", "human", "executed")]
    assert {f.status for f in await h.store.list_followups("r1")} <= {"cancelled"}


async def test_a_buyer_asking_for_a_person_is_escalated_from_the_buyer_bot(h: Harness) -> None:
    await h.say("p1", "Pre-approved for $500k, looking to buy a 3 bedroom in Upland")
    asked = await h.say("p1", "Can I talk to a real person please?")
    assert asked.action == "escalated"
    assert await handoffs(h, "p1") == [("lead", "buyer", "executed"), ("buyer", "human", "executed")]
    contact = await h.contact("p1")
    assert "Handoff-Buyer-to-Human" in contact.tags and "Needs-Human" in contact.tags
    assert "POST /contacts/p1/tasks" in call_summary(await h.calls())


async def test_buyer_who_must_sell_first_goes_to_the_seller_bot(h: Harness) -> None:
    await h.say("b2", "Pre-approved for $600k, looking to buy a 4 bedroom in Chino Hills")
    await h.clear_calls()
    moved = await h.say("b2", "Actually we need to sell our current house first, want to list it")
    assert moved.handoff_outcome == "executed"
    assert [o.bot for o in moved.outcomes] == ["buyer", "seller"]
    contact = await h.contact("b2")
    assert contact.current_bot == "seller"
    assert contact.tags == ["Handoff-Lead-to-Buyer", "Seller-Bot", "Handoff-Buyer-to-Seller"]
    calls = await h.calls()
    assert call_summary(calls) == [
        "DELETE /contacts/b2/tags",
        "POST /contacts/b2/tags",
        "POST /conversations/messages",
    ]
    assert calls[0]["body"] == {"tags": ["Buyer-Bot"]}
    assert calls[2]["body"]["message"].startswith("Since you'd sell your current home too")


async def test_a_repeat_handoff_within_30_minutes_is_blocked_and_the_bot_still_answers(h: Harness) -> None:
    await h.say("x1", "Pre-approved for $600k, looking to buy a 4 bedroom in Chino Hills")
    await h.say("x1", "Actually we need to sell our current house first, want to list it")
    back = await h.say("x1", "No wait, we're pre-approved and looking to buy first, 4 bedrooms, $600k")
    assert back.handoff_outcome == "executed"
    assert (await h.contact("x1")).current_bot == "buyer"
    await h.clear_calls()
    blocked = await h.say("x1", "Ugh, ok, we need to sell our house and list it after all")
    assert blocked.handoff_outcome == "blocked:repeat_within_30m"
    assert [o.bot for o in blocked.outcomes] == ["buyer", "buyer"]
    assert blocked.outcomes[1].handoff is None and blocked.outcomes[1].replies
    assert (await h.contact("x1")).current_bot == "buyer"
    assert await handoffs(h, "x1") == [
        ("lead", "buyer", "executed"),
        ("buyer", "seller", "executed"),
        ("seller", "buyer", "executed"),
        ("buyer", "seller", "blocked:repeat_within_30m"),
    ]
    assert call_summary(await h.calls()) == ["POST /conversations/messages"]


async def test_an_objection_is_acknowledged_once_then_the_questions_resume(h: Harness) -> None:
    await h.say("j1", "hi")
    objected = await h.say("j1", "Honestly I'm just looking right now")
    texts = await h.sent_texts("j1")
    assert "No pressure at all" in texts[1]
    assert objected.outcomes[0].memory["objections_addressed"] == ["just_looking"]
    await h.say("j1", "Maybe in 6 months")
    texts = await h.sent_texts("j1")
    assert "No pressure" not in texts[2]
    assert (await h.contact("j1")).state["lead"]["questions_asked"][:1] == ["intent"]


async def test_a_value_question_gets_a_cma_that_follows_the_house(h: Harness) -> None:
    small = await h.say("v1", "What's my home worth? It's a 3 bed, 1,400 sq ft house in Upland")
    assert small.outcomes[0].path == "generate_cma"
    cma_small = small.outcomes[0].memory["cma"]
    big = await h.say("v2", "What's my home worth? It's a 3 bed, 2,400 sq ft house in Upland")
    cma_big = big.outcomes[0].memory["cma"]
    assert cma_big["estimate"] > cma_small["estimate"]
    assert cma_small["low"] <= cma_small["estimate"] <= cma_small["high"]
    text = (await h.sent_texts("v1"))[0]
    assert f"${cma_small['estimate']:,}" in text and "Upland" in text
    # Two weeks of silence later, the e-mail carries the same CMA.
    runner = FollowUpRunner(h.store, h.service.bots.lead, clock=h.clock)
    await runner.run_due(now=h.clock() + timedelta(days=14, minutes=1))
    emails = [c["body"] for c in await h.calls() if c["body"] and c["body"].get("type") == "Email"]
    assert emails and emails[0]["contactId"] in {"v1", "v2"}
    assert all(
        f"{c['estimate']:,}" in e["html"]
        for e in emails
        for c in [cma_small if e["contactId"] == "v1" else cma_big]
    )


async def test_a_qualified_buyer_asking_to_see_homes_is_booked_in_the_same_message(h: Harness) -> None:
    result = await h.say(
        "w1",
        "Pre-approved for $650k, want to buy a 3 bedroom in Rancho Cucamonga within 60 days. "
        + "Can we see a house this week?",
    )
    assert [o.bot for o in result.outcomes] == ["lead", "buyer"]
    assert result.outcomes[1].path == "showing_booked"
    summary = call_summary(await h.calls())
    assert summary == [
        "POST /contacts/w1/tags",
        "GET /calendars/sandbox-calendar/free-slots",
        "POST /calendars/events/appointments",
        "POST /conversations/messages",
    ]


async def test_an_email_is_answered_by_email(h: Harness) -> None:
    await h.say("e1", "Hello, I saw your listing", message_type="Email")
    (call,) = await h.calls()
    assert call["body"]["type"] == "Email"
    assert call["body"]["subject"] and call["body"]["html"].startswith("<p>")


async def test_two_buyers_with_the_same_income_get_the_same_affordability_and_a_larger_income_more(
    h: Harness,
) -> None:
    await h.say("a1", "Looking to buy, pre-approved. I make $9,000 a month")
    await h.say("a2", "Looking to buy, pre-approved. I make $15,000 a month")
    low = (await h.contact("a1")).state["buyer"]["affordable_price"]
    high = (await h.contact("a2")).state["buyer"]["affordable_price"]
    assert 0 < low < high
    assert f"${low:,}" in (await h.sent_texts("a1"))[-1]
