"""ConversationService: routing, persistence across restarts, replays, locking, follow-up scheduling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from conversation_kit import START, Harness, call_summary, inbound_payload
from opentelemetry import trace

from ghl_real_estate_ai.clock import ManualClock
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
from ghl_real_estate_ai.integrations.ghl.webhook import parse_webhook
from ghl_real_estate_ai.observability.testing import capture_spans
from ghl_real_estate_ai.storage.base import Contact


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness


async def _continue_after_restart(database_url: str) -> None:
    """Half a seller conversation, a full restart (new store, service, bots), then the rest."""
    clock = ManualClock(START)
    sandbox = create_sandbox_app(location_id="loc-1", seed=3)
    async with Harness.open(database_url, clock=clock, sandbox=sandbox) as before:
        opened = await before.say(
            "s1", "We're relocating for work, so I want to sell my house in Upland and list it within 30 days"
        )
        assert opened.outcomes[-1].path == "question:condition"
        await before.say("s1", "It's in good condition")
    async with Harness.open(database_url, clock=clock, sandbox=sandbox) as after:
        contact = await after.contact("s1")
        assert contact.current_bot == "seller"
        assert contact.state["seller"]["questions_asked"] == ["condition", "price"]
        hot = await after.say("s1", "Hoping to get $750k")
        assert [o.bot for o in hot.outcomes] == ["seller"]  # routed by the stored current bot
        assert hot.outcomes[0].temperature == "hot"
        assert hot.outcomes[0].path == "offer_appointment"
        booked = await after.say("s1", "yes")  # accepts the appointment offer
        assert booked.outcomes[0].path == "appointment_booked"
        texts = await after.sent_texts("s1")
        assert sum("condition" in t for t in texts) == 1  # never asked again after the restart
        assert len(await after.store.list_handoffs("s1")) == 2  # in_progress + executed, nothing new
        assert call_summary(await after.calls()).count("POST /calendars/events/appointments") == 1


async def test_a_conversation_continues_after_a_restart_on_sqlite(tmp_path: Path) -> None:
    await _continue_after_restart(f"sqlite:///{tmp_path / 'jorge.db'}")


@pytest.mark.postgres
async def test_a_conversation_continues_after_a_restart_on_postgresql(postgres_url: str) -> None:
    await _continue_after_restart(postgres_url)


async def test_unknown_contacts_start_with_the_lead_bot_and_are_saved(h: Harness) -> None:
    result = await h.say("new-1", "hello")
    assert [o.bot for o in result.outcomes] == ["lead"]
    contact = await h.contact("new-1")
    assert contact.current_bot == "lead" and contact.location_id == "loc-1"
    messages = await h.store.list_messages("new-1")
    assert [m.direction for m in messages] == ["inbound", "outbound"]


async def test_a_stored_bot_name_the_service_does_not_know_falls_back_to_the_lead_bot(h: Harness) -> None:
    await h.store.upsert_contact(Contact(contact_id="odd", current_bot="retired_bot"))
    result = await h.say("odd", "hello")
    assert [o.bot for o in result.outcomes] == ["lead"]
    assert (await h.contact("odd")).current_bot == "lead"


async def test_the_contacts_current_bot_takes_the_message(h: Harness) -> None:
    await h.store.upsert_contact(Contact(contact_id="sel", current_bot="seller"))
    result = await h.say("sel", "It needs some work honestly")
    assert [o.bot for o in result.outcomes] == ["seller"]


async def test_processing_the_same_event_twice_sends_and_records_nothing_new(h: Harness) -> None:
    """A worker re-run of a stored event (after a crash) neither re-sends nor duplicates messages."""
    payload = inbound_payload("r1", "Pre-approved for $500k, looking to buy a 3 bed in Upland", when=START)
    message = parse_webhook(payload)
    stored = await h.store.record_webhook_event(
        webhook_id=message.webhook_id,
        message_id=message.message_id,
        event_type=message.type,
        contact_id="r1",
        payload=payload,
    )
    event = await h.store.get_webhook_event(stored.event_id)
    assert event is not None
    await h.service.process(event, message)
    calls = await h.calls()
    messages = await h.store.list_messages("r1")
    await h.service.process(event, message)
    assert await h.calls() == calls
    assert len(await h.store.list_messages("r1")) == len(messages) == 2
    assert call_summary(calls) == ["POST /contacts/r1/tags", "POST /conversations/messages"]


async def test_concurrent_messages_of_one_contact_are_handled_one_at_a_time(h: Harness) -> None:
    """Two messages at once for one contact: each bot run sees the other's finished state."""
    first = parse_webhook(inbound_payload("cc", "hello", when=START))
    second = parse_webhook(inbound_payload("cc", "hello again", when=START))
    await asyncio.gather(
        h.service.handle(first, event_key="evt-a"),
        h.service.handle(second, event_key="evt-b"),
    )
    contact = await h.contact("cc")
    # Serialised: the second run saw the first's question and asked the next one.
    assert contact.state["lead"]["questions_asked"] == ["intent", "timeline"]
    assert len(await h.sent_texts("cc")) == 2


async def test_a_reply_cancels_pending_follow_ups_and_schedules_new_ones(h: Harness) -> None:
    await h.say("f1", "hello")
    first = await h.store.list_followups("f1")
    await h.say("f1", "maybe next year")
    rows = await h.store.list_followups("f1")
    assert {r.status for r in rows if r.id in {f.id for f in first}} == {"cancelled"}
    pending = [r for r in rows if r.status == "pending"]
    assert len(pending) == 4 and min(r.due_at for r in pending) == h.clock() + timedelta(days=3)


async def test_follow_ups_carry_the_trace_context_of_the_message(h: Harness) -> None:
    """Each stored step holds the W3C context of the request that scheduled it (for a span link)."""
    with capture_spans() as capture, trace.get_tracer("tests").start_as_current_span("webhook"):
        await h.say("t1", "hello")
    (root,) = capture.by_name("webhook")
    pending = await h.store.list_followups("t1")
    trace_id = f"{root.context.trace_id:032x}"
    assert pending and all(f.trace_context["traceparent"].split("-")[1] == trace_id for f in pending)


async def test_a_handed_off_contact_gets_no_lead_follow_ups(h: Harness) -> None:
    await h.say("b1", "hello")
    await h.say("b1", "Pre-approved for $500k, looking to buy a 3 bed in Upland")
    assert {r.status for r in await h.store.list_followups("b1")} == {"cancelled"}
