"""Scripted conversations for the dialogue state (issue 10, Build 2 and 3), through the real service.

Every test's conversations are checked against the reply rules at teardown
(no repeated reply, no re-asked slot, the lead's question answered first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conversation_kit import Harness

from ghl_real_estate_ai.observability.testing import SpanCapture


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness  # the Harness checks the reply rules when the block ends


async def routes(h: Harness, contact_id: str) -> list[tuple[str, str, str]]:
    rows = await h.store.list_handoffs(contact_id)
    return [(r.source_bot, r.target_bot, r.outcome) for r in rows if r.outcome != "in_progress"]


async def test_a_buyer_who_must_sell_first_sells_then_comes_back_to_buying(h: Harness) -> None:
    await h.say("t1", "Pre-approved for $600k, looking to buy a 4 bedroom in Chino Hills")
    await h.say("t1", "Actually we need to sell our current house first, want to list it")
    assert (await h.contact("t1")).current_bot == "seller"
    for answer in (
        "relocating for work",
        "asap, within 30 days",
        "it's in good condition",
        "hoping to get 750k",
    ):
        await h.say("t1", answer)
    booked = await h.say("t1", "yes")
    assert [o.bot for o in booked.outcomes] == ["seller", "buyer"]
    assert booked.handoff_outcome == "executed"
    assert await routes(h, "t1") == [
        ("lead", "buyer", "executed"),
        ("buyer", "seller", "executed"),
        ("seller", "buyer", "executed"),
    ]
    contact = await h.contact("t1")
    assert contact.current_bot == "buyer" and contact.state["seller"]["appointment_booked"]
    slots = {(s.side, s.name): s.value for s in await h.store.list_slots("t1")}
    # Both slot sets kept, each amount on its own side.
    assert slots[("buy", "budget")] == 600_000 and slots[("sell", "price_expectation")] == 750_000
    assert ("sell", "budget") not in slots and ("buy", "price_expectation") not in slots
    assert set(slots[("contact", "sides")]) == {"buy", "sell"} and slots[("contact", "listing_booked")]
    texts = h.transcripts["t1"][-1].texts
    assert "booked" in texts[0] and texts[1].startswith("With the listing visit booked")


async def test_the_slots_survive_beyond_the_messages_the_bots_read(h: Harness) -> None:
    """The database remembers what the conversation history no longer shows."""
    await h.say("m1", "Pre-approved for $500k, looking to buy a 3 bedroom in Upland")
    for _ in range(26):  # 52 more messages: the budget message leaves the 50 the bots read
        await h.store.add_message("m1", "inbound", "ok", "SMS", created_at=h.clock())
        await h.store.add_message("m1", "outbound", "noted", "SMS", created_at=h.clock())
    await h.say("m1", "within 60 days")
    slots = {(s.side, s.name): s.value for s in await h.store.list_slots("m1")}
    assert slots[("buy", "budget")] == 500_000
    assert h.transcripts["m1"][-1].result.outcomes[0].reply_marks["asked"] != "budget"


async def test_a_vague_lead_never_gets_the_same_text_twice(h: Harness) -> None:
    for body in ("hi", "ok", "hmm", "ok", "idk", "ok", "sure"):
        await h.say("v1", body)
    texts = await h.sent_texts("v1")
    assert len(texts) == 7 and len(set(texts)) == 7


async def test_analyze_spans_carry_confidences_and_filled_slot_names_never_personal_values(
    h: Harness, span_capture: SpanCapture
) -> None:
    await h.say("s1", "Pre-approved for $600k, looking to buy a 4 bedroom in Chino Hills")
    (analyze,) = span_capture.by_name("buyer_bot.analyze_buyer_intent")
    attributes = dict(analyze.attributes or {})
    assert attributes["intent.buyer_confidence"] > 0.7
    assert "intent.seller_confidence" in attributes and attributes["intent.classifier_version"]
    filled = set(attributes["dialogue.slots_filled"])
    assert {"buy.budget", "buy.bedrooms", "buy.areas", "buy.preapproved", "contact.sides"} <= filled
    events = {
        e.attributes["slot.name"]: dict(e.attributes or {}) for e in analyze.events if e.name == "slot_filled"
    }
    assert set(events) == {name.split(".", 1)[1] for name in filled}
    assert events["bedrooms"]["slot.value"] == 4  # a count is no personal value
    assert "slot.value" not in events["budget"] and "slot.value" not in events["areas"]
    flat = repr([dict(e.attributes or {}) for e in analyze.events]) + repr(attributes)
    assert "600000" not in flat and "Chino" not in flat
    (lead,) = span_capture.by_name("lead_bot.analyze_intent")
    assert "dialogue.slots_filled" in (lead.attributes or {})
    (reply,) = span_capture.by_name("buyer_bot.generate_buyer_response")
    assert reply.attributes is not None and reply.attributes["reply.asked_slot"] == "timeline"
    # The pre-approval fills the financing slot too (issue 10 understanding), acknowledged first.
    assert list(reply.attributes["reply.acknowledged"]) == ["financing", "budget", "bedrooms"]


async def test_not_a_prospect_gets_one_polite_closing_a_tag_no_follow_ups_and_silence(h: Harness) -> None:
    for contact_id, body, tag in (
        ("n1", "im just looking for an apartment to rent, like 2k a month", "Not-Prospect-Renter"),
        ("n2", "we already have a realtor thx", "Not-Prospect-Has-Agent"),
        ("n3", "who is this? wrong number", "Not-Prospect-Wrong-Number"),
    ):
        await h.say(contact_id, "hi")
        closed = await h.say(contact_id, body)
        assert closed.action == "closed", (body, closed.action)
        after = await h.say(contact_id, "ok thanks")
        assert after.action in ("ignored_closed", "ignored_opted_out")
        contact = await h.contact(contact_id)
        assert tag in contact.tags
        assert {f.status for f in await h.store.list_followups(contact_id)} <= {"cancelled"}
        texts = await h.sent_texts(contact_id)
        assert len(texts) == 2 and "?" not in texts[1]  # the closing asks nothing
        assert not texts[1].startswith("Great")


async def test_a_closed_contact_who_comes_back_to_buy_is_a_prospect_again(h: Harness) -> None:
    await h.say("n4", "not interested")
    assert (await h.contact("n4")).state["closed"] == "not_interested"
    back = await h.say("n4", "actually we do want to buy a house now, preapproved for 500k")
    assert back.action == "answered" and "closed" not in (await h.contact("n4")).state


async def test_a_cash_buyer_is_never_asked_about_a_lender(h: Harness) -> None:
    await h.say("k1", "looking to buy a condo, paying cash")
    await h.say("k1", "around 400k")
    await h.say("k1", "claremont or upland, 2 br is fine")
    asked = [o.reply_marks.get("asked") for t in h.transcripts["k1"] for o in t.result.outcomes]
    assert "preapproved" not in asked
    assert not any("lender" in text or "pre-approved" in text for text in await h.sent_texts("k1"))
