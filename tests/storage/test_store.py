"""The Store behaviour suite: every test runs unchanged against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from ghl_real_estate_ai.errors import LockTimeoutError, StorageUnavailableError
from ghl_real_estate_ai.storage import Contact, Store, open_store
from ghl_real_estate_ai.storage.schema import LATEST_VERSION, MIGRATIONS, Migration

OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def open_another(database_url: str) -> AsyncIterator[OpenStore]:
    """Open more stores on the same database (another process would do the same)."""
    stores: list[Store] = []

    async def make(**kwargs: object) -> Store:
        store = open_store(database_url, pool_size=4, **kwargs)  # type: ignore[arg-type]
        stores.append(store)  # before open(): a store still opening when the test fails is closed too
        await store.open()
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(open_another: OpenStore) -> Store:
    return await open_another()


def now() -> datetime:
    return datetime.now(UTC)


# --- schema ---------------------------------------------------------------------


async def test_schema_is_at_the_latest_version_after_open(store: Store) -> None:
    assert await store.schema_version() == LATEST_VERSION


async def test_reopening_an_existing_database_applies_only_new_migrations(open_another: OpenStore) -> None:
    """A second open of the same file/database must not re-run migration 1 (it would fail on
    CREATE TABLE), and a newer migration is applied exactly once."""
    first = await open_another()
    await first.upsert_contact(Contact("c-keep"))
    await first.close()

    probe = Migration(
        version=LATEST_VERSION + 1,
        description="test probe",
        sqlite=("CREATE TABLE probe (x INTEGER)",),
        postgresql=("CREATE TABLE probe (x INTEGER)",),
    )
    upgraded = await open_another(migrations=(*MIGRATIONS, probe))
    assert await upgraded.schema_version() == LATEST_VERSION + 1
    await upgraded.close()

    again = await open_another(migrations=(*MIGRATIONS, probe))
    assert await again.schema_version() == LATEST_VERSION + 1
    assert await again.get_contact("c-keep") is not None


async def test_a_version_1_database_upgrades_to_keep_trace_contexts(open_another: OpenStore) -> None:
    """A database deployed before webhook events kept a trace context gains the column."""
    old = await open_another(migrations=MIGRATIONS[:1])
    assert await old.schema_version() == 1
    await old.upsert_contact(Contact("c-old"))
    await old.close()
    upgraded = await open_another()
    assert await upgraded.schema_version() == LATEST_VERSION
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    stored = await upgraded.record_webhook_event(
        webhook_id="wh-new",
        message_id="m-new",
        event_type="InboundMessage",
        contact_id="c-old",
        payload={},
        trace_context=carrier,
    )
    event = await upgraded.get_webhook_event(stored.event_id)
    assert event is not None and event.trace_context == carrier
    assert await upgraded.get_contact("c-old") is not None


async def test_two_stores_opening_a_fresh_database_at_once_both_succeed(open_another: OpenStore) -> None:
    a, b = await asyncio.gather(open_another(), open_another())
    assert await a.schema_version() == await b.schema_version() == LATEST_VERSION


# --- contacts and messages ----------------------------------------------------------


async def test_contact_upsert_and_get_round_trip_json_and_flags(store: Store) -> None:
    assert await store.get_contact("c1") is None
    stored = await store.upsert_contact(
        Contact(
            "c1",
            location_id="loc-1",
            current_bot="buyer",
            temperature="warm",
            tags=["Buyer-Lead", "Hot"],
            opted_out=True,
            escalated=False,
            state={"budget": 450000, "areas": ["Rancho"], "nested": {"ok": True}},
        )
    )
    got = await store.get_contact("c1")
    assert got == stored
    assert got.tags == ["Buyer-Lead", "Hot"]
    assert got.state == {"budget": 450000, "areas": ["Rancho"], "nested": {"ok": True}}
    assert got.opted_out is True and got.escalated is False
    assert got.created_at is not None and got.created_at.tzinfo is not None


async def test_contact_update_replaces_fields_and_keeps_created_at(store: Store) -> None:
    first = await store.upsert_contact(Contact("c1", tags=["a"], state={"step": 1}))
    second = await store.upsert_contact(Contact("c1", current_bot="seller", tags=[], state={"step": 2}))
    assert second.created_at == first.created_at
    assert second.updated_at is not None and first.updated_at is not None
    assert second.updated_at >= first.updated_at
    got = await store.get_contact("c1")
    assert got is not None
    assert (got.current_bot, got.tags, got.state) == ("seller", [], {"step": 2})


async def test_messages_come_back_oldest_first_limited_to_the_latest(store: Store) -> None:
    base = now()
    for i in range(5):
        await store.add_message(
            "c1",
            "inbound" if i % 2 else "outbound",
            f"m{i}",
            "SMS",
            created_at=base + timedelta(seconds=i),
            message_id=f"id{i}",
        )
    await store.add_message("other", "inbound", "not mine", "SMS")
    last_three = await store.list_messages("c1", limit=3)
    assert [m.body for m in last_three] == ["m2", "m3", "m4"]
    assert [m.message_id for m in last_three] == ["id2", "id3", "id4"]
    assert last_three[0].created_at == base + timedelta(seconds=2)


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.schedule_followup("c1", "day_3", datetime(2030, 1, 1), {})


# --- webhook events -------------------------------------------------------------


async def test_a_webhook_event_keeps_the_trace_context_it_was_stored_with(store: Store) -> None:
    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    stored = await store.record_webhook_event(
        webhook_id="wh-tc",
        message_id="m-tc",
        event_type="InboundMessage",
        contact_id="c1",
        payload={"body": "hi"},
        trace_context=carrier,
    )
    plain = await store.record_webhook_event(
        webhook_id="wh-tc2", message_id="m-tc2", event_type="InboundMessage", contact_id="c1", payload={}
    )
    event = await store.get_webhook_event(stored.event_id)
    other = await store.get_webhook_event(plain.event_id)
    assert event is not None and event.trace_context == carrier
    assert other is not None and other.trace_context == {}


async def test_duplicate_webhook_id_is_reported_with_the_first_event_id(store: Store) -> None:
    first = await store.record_webhook_event(
        webhook_id="wh-1", message_id="msg-1", event_type="InboundMessage", contact_id="c1", payload={"a": 1}
    )
    again = await store.record_webhook_event(
        webhook_id="wh-1", message_id="msg-1", event_type="InboundMessage", contact_id="c1", payload={"a": 1}
    )
    assert not first.duplicate
    assert again.duplicate and again.event_id == first.event_id


async def test_same_message_id_under_another_webhook_id_is_a_duplicate(store: Store) -> None:
    first = await store.record_webhook_event(
        webhook_id="wh-1", message_id="msg-1", event_type="InboundMessage", contact_id="c1", payload={}
    )
    other = await store.record_webhook_event(
        webhook_id="wh-2", message_id="msg-1", event_type="InboundMessage", contact_id="c1", payload={}
    )
    assert other.duplicate and other.event_id == first.event_id


async def test_events_without_ids_never_collide(store: Store) -> None:
    a = await store.record_webhook_event(
        webhook_id=None, message_id=None, event_type="ContactCreate", contact_id=None, payload={}
    )
    b = await store.record_webhook_event(
        webhook_id=None, message_id=None, event_type="ContactCreate", contact_id=None, payload={}
    )
    assert not a.duplicate and not b.duplicate and a.event_id != b.event_id


async def test_webhook_event_claim_is_won_once_and_finish_records_status(store: Store) -> None:
    inserted = await store.record_webhook_event(
        webhook_id="wh-1",
        message_id=None,
        event_type="InboundMessage",
        contact_id="c1",
        payload={"body": "hi"},
    )
    assert await store.claim_webhook_event(inserted.event_id) is True
    assert await store.claim_webhook_event(inserted.event_id) is False
    await store.finish_webhook_event(inserted.event_id, "failed", "GHL down")
    assert await store.claim_webhook_event(inserted.event_id) is True  # failed may be retried
    await store.finish_webhook_event(inserted.event_id, "processed")
    event = await store.get_webhook_event(inserted.event_id)
    assert event is not None
    assert (event.status, event.attempts, event.payload, event.error) == (
        "processed",
        2,
        {"body": "hi"},
        None,
    )
    assert await store.get_webhook_event(inserted.event_id + 999) is None


async def test_unprocessed_events_are_listed_for_recovery(store: Store) -> None:
    waiting = await store.record_webhook_event(
        webhook_id="wh-1", message_id=None, event_type="InboundMessage", contact_id="c1", payload={}
    )
    stuck = await store.record_webhook_event(
        webhook_id="wh-2", message_id=None, event_type="InboundMessage", contact_id="c1", payload={}
    )
    done = await store.record_webhook_event(
        webhook_id="wh-3", message_id=None, event_type="InboundMessage", contact_id="c1", payload={}
    )
    await store.claim_webhook_event(stuck.event_id)
    await store.finish_webhook_event(done.event_id, "processed")
    listed = await store.list_unprocessed_webhook_events(now() + timedelta(seconds=1))
    assert [e.id for e in listed] == [waiting.event_id, stuck.event_id]
    assert await store.list_unprocessed_webhook_events(now() - timedelta(hours=1)) == []
    # A stuck "processing" event can be taken over once it is stale.
    assert await store.claim_webhook_event(stuck.event_id) is False
    assert await store.claim_webhook_event(stuck.event_id, stale_before=now() + timedelta(seconds=1))


# --- outbox ---------------------------------------------------------------------


async def test_enqueue_twice_with_one_key_keeps_one_item(store: Store) -> None:
    item, created = await store.enqueue_outbox("send:c1:abc", "sms", {"message": "hi"}, contact_id="c1")
    same, created_again = await store.enqueue_outbox("send:c1:abc", "sms", {"message": "other"})
    assert created and not created_again
    assert same.id == item.id and same.payload == {"message": "hi"}
    assert [i.id for i in await store.list_outbox()] == [item.id]
    assert (item.status, item.attempts, item.contact_id) == ("pending", 0, "c1")


async def test_outbox_claim_send_and_retry_transitions(store: Store) -> None:
    item, _ = await store.enqueue_outbox("k1", "sms", {"m": 1})
    claimed = await store.claim_outbox_item(item.id)
    assert claimed is not None and (claimed.status, claimed.attempts) == ("sending", 1)
    assert await store.claim_outbox_item(item.id) is None  # not pending any more

    retry_at = now() + timedelta(minutes=5)
    await store.mark_outbox_failed(item.id, "503 from GHL", retry_at)
    failed_once = await store.get_outbox_item(item.id)
    assert failed_once is not None
    assert (failed_once.status, failed_once.last_error) == ("pending", "503 from GHL")
    assert failed_once.next_attempt_at == retry_at

    assert await store.claim_outbox_item(item.id) is not None
    await store.mark_outbox_sent(item.id, {"messageId": "ghl-1"})
    sent = await store.get_outbox_item(item.id)
    assert sent is not None
    assert (sent.status, sent.response, sent.last_error, sent.attempts) == (
        "sent",
        {"messageId": "ghl-1"},
        None,
        2,
    )
    assert [i.id for i in await store.list_outbox("sent")] == [item.id]
    assert await store.list_outbox("pending") == []


async def test_outbox_failed_for_good_is_never_claimed_again(store: Store) -> None:
    item, _ = await store.enqueue_outbox("k1", "sms", {})
    await store.claim_outbox_item(item.id)
    await store.mark_outbox_failed(item.id, "400 invalid phone", None)
    stored = await store.get_outbox_item(item.id)
    assert stored is not None and stored.status == "failed"
    assert await store.claim_due_outbox(now() + timedelta(days=365)) == []


async def test_claim_due_outbox_respects_next_attempt_at(store: Store) -> None:
    due, _ = await store.enqueue_outbox("due", "sms", {})
    later, _ = await store.enqueue_outbox("later", "sms", {})
    await store.claim_outbox_item(later.id)
    await store.mark_outbox_failed(later.id, "429", now() + timedelta(minutes=10))

    first = await store.claim_due_outbox(now())
    assert [i.id for i in first] == [due.id]
    assert first[0].status == "sending"
    assert await store.claim_due_outbox(now()) == []  # already claimed
    assert [i.id for i in await store.claim_due_outbox(now() + timedelta(minutes=11))] == [later.id]


async def test_stuck_sending_items_are_reclaimed_only_when_stale(store: Store) -> None:
    item, _ = await store.enqueue_outbox("k1", "sms", {})
    await store.claim_due_outbox(now())
    assert await store.claim_due_outbox(now(), stale_before=now() - timedelta(minutes=5)) == []
    reclaimed = await store.claim_due_outbox(now(), stale_before=now() + timedelta(seconds=1))
    assert [(i.id, i.attempts) for i in reclaimed] == [(item.id, 2)]


async def test_concurrent_due_outbox_claims_split_the_items(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    ids = {(await a.enqueue_outbox(f"k{i}", "sms", {}))[0].id for i in range(30)}
    got_a, got_b = await asyncio.gather(a.claim_due_outbox(now(), 30), b.claim_due_outbox(now(), 30))
    ids_a, ids_b = {i.id for i in got_a}, {i.id for i in got_b}
    assert not ids_a & ids_b
    assert ids_a | ids_b == ids


# --- follow-ups -------------------------------------------------------------------


async def test_two_concurrent_claims_of_one_due_followup_exactly_one_wins(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    step = await a.schedule_followup("c1", "day_3", now() - timedelta(seconds=1), {"traceparent": "00-x"})
    for _ in range(5):  # several rounds, so a lucky interleaving cannot pass by chance
        got_a, got_b = await asyncio.gather(a.claim_due_followups(now()), b.claim_due_followups(now()))
        assert len(got_a) + len(got_b) == 1
        winner = (got_a or got_b)[0]
        assert (winner.id, winner.status, winner.trace_context) == (
            step.id,
            "running",
            {"traceparent": "00-x"},
        )
        await a.fail_followup(step.id, "retry", now() - timedelta(seconds=1))


async def test_many_due_followups_are_split_between_claimers_without_overlap(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    ids = {(await a.schedule_followup(f"c{i}", "day_7", now(), {})).id for i in range(25)}
    results = await asyncio.gather(*(s.claim_due_followups(now(), 10) for s in (a, b, a, b)))
    claimed = [f.id for batch in results for f in batch]
    assert len(claimed) == len(set(claimed)) == 25
    assert set(claimed) == ids


async def test_followup_lifecycle_claim_fail_retry_dead_done(store: Store) -> None:
    future = await store.schedule_followup("c1", "day_14", now() + timedelta(days=14), {})
    step = await store.schedule_followup("c1", "day_3", now(), {})
    assert [f.id for f in await store.claim_due_followups(now())] == [step.id]
    retry_at = now() + timedelta(minutes=1)
    await store.fail_followup(step.id, "GHL 503", retry_at)
    assert await store.claim_due_followups(now()) == []
    again = await store.claim_due_followups(retry_at)
    assert [(f.id, f.attempts, f.last_error) for f in again] == [(step.id, 2, "GHL 503")]
    await store.fail_followup(step.id, "GHL 400", None)
    await store.complete_followup(future.id)
    statuses = {f.id: f.status for f in await store.list_followups("c1")}
    assert statuses == {step.id: "dead", future.id: "done"}


async def test_cancel_followups_cancels_only_waiting_steps_of_that_contact(store: Store) -> None:
    pending = await store.schedule_followup("c1", "day_3", now() + timedelta(days=3), {})
    failed = await store.schedule_followup("c1", "day_7", now(), {})
    await store.claim_due_followups(now())
    await store.fail_followup(failed.id, "x", now() + timedelta(hours=1))
    done = await store.schedule_followup("c1", "day_1", now(), {})
    await store.claim_due_followups(now())
    await store.complete_followup(done.id)
    other = await store.schedule_followup("c2", "day_3", now() + timedelta(days=3), {})

    assert await store.cancel_followups("c1") == 2
    statuses = {f.id: f.status for f in await store.list_followups()}
    assert statuses == {pending.id: "cancelled", failed.id: "cancelled", done.id: "done", other.id: "pending"}
    assert await store.cancel_followups("c1") == 0


# --- handoffs ---------------------------------------------------------------------


async def test_handoffs_since_returns_only_recent_ones_oldest_first(store: Store) -> None:
    t0 = now()
    old = await store.record_handoff(
        "c1", "lead", "buyer", 0.8, "pre-approved", "executed", created_at=t0 - timedelta(hours=2)
    )
    recent = await store.record_handoff(
        "c1",
        "buyer",
        "seller",
        0.85,
        "wants to sell",
        "blocked:rate_limit",
        created_at=t0 - timedelta(minutes=10),
    )
    await store.record_handoff("c2", "lead", "seller", 0.9, "listing", "executed")
    assert [h.id for h in await store.list_handoffs("c1")] == [old.id, recent.id]
    since = await store.list_handoffs("c1", since=t0 - timedelta(hours=1))
    assert [(h.id, h.source_bot, h.target_bot, h.confidence, h.outcome) for h in since] == [
        (recent.id, "buyer", "seller", 0.85, "blocked:rate_limit")
    ]


# --- transactions -----------------------------------------------------------------


async def test_transaction_commits_together_and_rolls_back_together(store: Store) -> None:
    async with store.transaction():
        await store.upsert_contact(Contact("c1"))
        async with store.transaction():  # nested: joins the outer one
            await store.add_message("c1", "inbound", "hello", "SMS")
    assert await store.get_contact("c1") is not None

    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction():
            await store.upsert_contact(Contact("c2"))
            await store.add_message("c2", "inbound", "hello", "SMS")
            raise RuntimeError("boom")
    assert await store.get_contact("c2") is None
    assert await store.list_messages("c2") == []


async def test_uncommitted_writes_are_invisible_to_another_store(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    inside = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with a.transaction():
            await a.upsert_contact(Contact("c1"))
            inside.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await inside.wait()
    assert await b.get_contact("c1") is None
    release.set()
    await task
    assert await b.get_contact("c1") is not None


# --- per-contact lock -----------------------------------------------------------------


async def test_contact_lock_serialises_holders_across_stores_and_tasks(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    log: list[tuple[str, int]] = []

    async def hold(store: Store, n: int) -> None:
        async with store.contact_lock("c1", timeout=10):
            log.append(("enter", n))
            await asyncio.sleep(0.02)
            log.append(("exit", n))

    await asyncio.gather(*(hold(s, n) for n, s in enumerate([a, b, a, b, a, b])))
    assert len(log) == 12
    for i in range(0, 12, 2):
        assert log[i][0] == "enter" and log[i + 1] == ("exit", log[i][1]), log


async def test_contact_lock_times_out_while_another_store_holds_it(open_another: OpenStore) -> None:
    a, b = await open_another(), await open_another()
    async with a.contact_lock("c1"):
        with pytest.raises(LockTimeoutError, match="'c1'"):
            async with b.contact_lock("c1", timeout=0.2):
                pytest.fail("the lock was taken twice")
        async with b.contact_lock("c2", timeout=1):  # another contact is free
            pass
    async with b.contact_lock("c1", timeout=1):  # released on exit
        pass


async def test_contact_lock_is_released_when_the_block_raises(store: Store) -> None:
    with pytest.raises(KeyError):
        async with store.contact_lock("c1"):
            raise KeyError("x")
    async with store.contact_lock("c1", timeout=0.5):
        pass


# --- availability -------------------------------------------------------------------


async def test_ping_on_a_closed_store_raises_storage_unavailable(store: Store) -> None:
    await store.ping()
    await store.close()
    with pytest.raises(StorageUnavailableError, match="DATABASE_URL"):
        await store.ping()


async def test_unreachable_postgres_names_database_url_without_the_password() -> None:
    store = open_store("postgresql://postgres:s3cret@127.0.0.1:1/x")
    with pytest.raises(StorageUnavailableError) as caught:
        await store.open()
    message = str(caught.value)
    assert "DATABASE_URL='postgresql://postgres@127.0.0.1:1/x'" in message
    assert "connection refused" in message
    assert "s3cret" not in message
    with pytest.raises(StorageUnavailableError, match="DATABASE_URL"):
        await store.ping()
