"""Round trips and spans of the store (issue 14), against SQLite and PostgreSQL alike.

A contact lock is a unit of work: its reads are served once, its writes that
nobody waits for are deferred and written in one transaction with the lock's
release. Spans: one per store operation, ``{operation} {table}`` or ``BATCH``;
per-statement spans only when asked for; the pool's housekeeping never.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from ghl_real_estate_ai.storage import Contact, Store, open_store


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def traced_store(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[Store]:
    store = open_store(database_url, pool_size=3, tracer_provider=spans[0])
    await store.open()
    spans[1].clear()
    yield store
    await store.close()


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def asyncpg_instrumented(provider: TracerProvider) -> Iterator[None]:
    """The asyncpg auto-instrumentation on ``provider`` for the block (as setup_observability does)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def db_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if "db.system" in (s.attributes or {})]


async def a_turn(store: Store, contact_id: str) -> None:
    """What a webhook does under the contact's lock, in the bots' order."""
    async with store.contact_lock(contact_id):
        contact = await store.get_contact(contact_id) or Contact(contact_id)
        await store.list_messages(contact_id, 50)
        await store.add_message(contact_id, "inbound", "hello", "SMS", message_id="m1", defer=True)
        await store.list_handoffs(contact_id, since=now() - timedelta(days=1))
        await store.record_handoff(contact_id, "lead", "buyer", 0.9, "buyer_intent_detected", "in_progress")
        item, _ = await store.enqueue_outbox(
            f"{contact_id}:k1",
            "add_tags",
            {"contact_id": contact_id, "tags": ["x"]},
            contact_id=contact_id,
            claim=True,
        )
        await store.mark_outbox_sent(item.id, {"ok": True})
        await store.record_handoff(contact_id, "lead", "buyer", 0.9, "buyer_intent_detected", "executed")
        await store.list_messages(contact_id, 20)
        await store.add_message(contact_id, "outbound", "hi!", "SMS", message_id="k2", defer=True)
        contact.current_bot = "buyer"
        await store.upsert_contact(contact)
        await store.replace_followups(contact_id, [], {})


# --- round trips ------------------------------------------------------------------------------


async def test_a_locked_turn_costs_a_few_statements_and_keeps_every_write(store_url_store: Store) -> None:
    store = store_url_store
    await a_turn(store, "c0")  # SQLite teaches its connection each new kind of write once
    before = store.stats.snapshot()
    await a_turn(store, "c1")
    spent = store.stats
    # the lock and its one read (contact, messages, slots, handoffs, events, circuits), the
    # outbox row before its send, then ONE statement for the deferred writes and the release
    # (PostgreSQL: the advisory unlock is one more, on the lock's own connection)
    sqlite = store.backend == "sqlite"
    assert spent.statements - before.statements == (4 if sqlite else 5)
    assert spent.round_trips - before.round_trips <= (3 if sqlite else 5)
    contact = await store.get_contact("c1")
    assert contact is not None and contact.current_bot == "buyer"
    assert [(m.direction, m.body) for m in await store.list_messages("c1")] == [
        ("inbound", "hello"),
        ("outbound", "hi!"),
    ]
    assert [h.outcome for h in await store.list_handoffs("c1")] == ["in_progress", "executed"]
    (item,) = [i for i in await store.list_outbox() if i.contact_id == "c1"]
    assert item.status == "sent" and item.attempts == 1 and item.response == {"ok": True}


@pytest.fixture
async def store_url_store(database_url: str) -> AsyncIterator[Store]:
    store = open_store(database_url, pool_size=3)
    await store.open()
    yield store
    await store.close()


async def test_reads_inside_a_unit_of_work_see_its_deferred_writes(store_url_store: Store) -> None:
    store = store_url_store
    async with store.unit_of_work():
        await store.upsert_contact(Contact("c2", current_bot="seller"))
        await store.record_handoff("c2", "lead", "seller", 0.8, "r", "executed")
        assert [h.target_bot for h in await store.list_handoffs("c2")] == ["seller"]
        contact = await store.get_contact("c2")
        assert contact is not None and contact.current_bot == "seller"


async def test_a_failing_block_keeps_what_it_wrote(store_url_store: Store) -> None:
    """A handoff that failed records its failure, then raises: the record must survive."""
    store = store_url_store
    with pytest.raises(RuntimeError):
        async with store.contact_lock("c3"):
            await store.record_handoff("c3", "lead", "buyer", 0.9, "r", "failed:RuntimeError")
            raise RuntimeError("GHL refused")
    assert [h.outcome for h in await store.list_handoffs("c3")] == ["failed:RuntimeError"]
    async with store.contact_lock("c3", timeout=1.0):  # and the lock was released
        pass


async def test_a_lock_inside_a_longer_unit_of_work_is_held_until_it_is_written(
    store_url_store: Store,
) -> None:
    store = store_url_store
    async with store.unit_of_work():
        async with store.contact_lock("c4"):
            await store.upsert_contact(Contact("c4"))
        await store.finish_webhook_event(1, "processed")
        # Still ours: a second holder times out.
        other = open_store(store.database_url, pool_size=1)
        await other.open()
        try:
            from ghl_real_estate_ai.errors import LockTimeoutError

            with pytest.raises(LockTimeoutError):
                async with other.contact_lock("c4", timeout=0.2):
                    pass
        finally:
            await other.close()
    assert await store.get_contact("c4") is not None
    async with store.contact_lock("c4", timeout=1.0):
        pass


# --- spans ------------------------------------------------------------------------------------


async def test_one_span_per_store_operation_named_by_operation_and_table(
    traced_store: Store, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("lead_bot.analyze_intent") as outer:
        await traced_store.upsert_contact(Contact("c-555-0100", state={"phone": "+15550100"}))
        await traced_store.get_contact("c-555-0100")
    finished = db_spans(exporter)
    assert [s.name for s in finished] == ["INSERT contacts", "SELECT contacts"]
    for span in finished:
        assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
        assert span.kind.name == "CLIENT"
    select = finished[1]
    assert dict(select.attributes or {}) == {
        "db.system": traced_store.backend,
        "db.operation.name": "SELECT",
        "db.collection.name": "contacts",
        "db.query.summary": "SELECT contacts",
    }
    values = [str(v) for s in finished for v in (s.attributes or {}).values()]
    assert not any("555" in v for v in values)


async def test_a_locked_turn_is_a_handful_of_spans_with_a_batch_at_the_end(
    traced_store: Store, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("webhook"):
        await a_turn(traced_store, "c5")
    names = [s.name for s in db_spans(exporter)]
    # The handoff history is read with the lock (one statement with the contact's other rows).
    assert names == ["BATCH", "INSERT outbox", "BATCH"], names
    release = db_spans(exporter)[-1].attributes or {}
    summary = str(release["db.query.summary"])
    for statement in ("INSERT contacts", "INSERT handoffs", "UPDATE outbox", "INSERT messages"):
        assert statement in summary
    assert int(release["db.operation.batch.size"]) >= 5  # type: ignore[arg-type]


async def test_statement_spans_are_opt_in_and_carry_placeholders_only(
    database_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    store = open_store(database_url, pool_size=2, tracer_provider=provider, trace_statements=True)
    await store.open()
    exporter.clear()
    try:
        # PostgreSQL statement spans come from the asyncpg instrumentation.
        with asyncpg_instrumented(provider), provider.get_tracer("test").start_as_current_span("webhook"):
            await a_turn(store, "c-555-0101")
    finally:
        await store.close()
    finished = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    statements = [s for s in finished if "db.statement" in (s.attributes or {})]
    assert len(statements) > len(db_spans(exporter)) - len(statements)
    for span in statements:
        assert span.parent is not None
        assert by_id[span.parent.span_id].attributes.get("db.query.summary")  # under its operation
        # No bound value: the contact id is not in any attribute (the database's random name may hold "555").
        assert not any("555-0101" in str(value) for value in (span.attributes or {}).values())


async def test_nothing_is_traced_outside_a_trace_or_when_unsampled(database_url: str) -> None:
    exporter = InMemorySpanExporter()
    for sampler_off in (False, True):
        provider = TracerProvider(sampler=ALWAYS_OFF) if sampler_off else TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        store = open_store(database_url, pool_size=2, tracer_provider=provider)
        await store.open()
        try:
            if sampler_off:
                with provider.get_tracer("test").start_as_current_span("webhook"):
                    await a_turn(store, f"c6-{sampler_off}")
            else:
                await a_turn(store, f"c6-{sampler_off}")  # the worker's polling runs like this
                await store.claim_due_followups(now())
        finally:
            await store.close()
            provider.shutdown()
    assert exporter.get_finished_spans() == ()


@pytest.mark.postgres
async def test_the_pool_housekeeping_is_never_traced(
    postgres_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """No connection reset, type introspection or BEGIN/COMMIT spans, even with statement spans on."""
    provider, exporter = spans
    with asyncpg_instrumented(provider):
        for statements in (False, True):
            store = open_store(
                postgres_url, pool_size=2, tracer_provider=provider, trace_statements=statements
            )
            await store.open()
            try:
                with provider.get_tracer("test").start_as_current_span("webhook"):
                    for n in range(3):
                        await a_turn(store, f"c7-{statements}-{n}")
            finally:
                await store.close()
    texts = " ".join(
        f"{s.name} {(s.attributes or {}).get('db.statement', '')}" for s in exporter.get_finished_spans()
    )
    for housekeeping in ("pg_advisory_unlock_all", "RESET ALL", "UNLISTEN", "pg_type", "BEGIN", "COMMIT"):
        assert housekeeping not in texts


async def test_slots_are_read_with_the_lock_and_reads_see_the_deferred_save(store_url_store: Store) -> None:
    from ghl_real_estate_ai.storage.base import Slot

    store = store_url_store
    await store.save_slots("c8", [Slot("buy", "budget", 500_000), Slot("buy", "bedrooms", 3)])
    async with store.contact_lock("c8"):
        before = store.stats.snapshot()
        assert [(s.name, s.value) for s in await store.list_slots("c8")] == [
            ("bedrooms", 3),
            ("budget", 500_000),
        ]
        await store.save_slots(
            "c8", [Slot("buy", "budget", 650_000), Slot("sell", "motivation", "relocating")]
        )
        assert [(s.side, s.name, s.value) for s in await store.list_slots("c8")] == [
            ("buy", "bedrooms", 3),
            ("buy", "budget", 650_000),
            ("sell", "motivation", "relocating"),
        ]
        assert store.stats.statements == before.statements  # served from the lock's reads
    assert [(s.name, s.value) for s in await store.list_slots("c8")] == [
        ("bedrooms", 3),
        ("budget", 650_000),
        ("motivation", "relocating"),
    ]


async def test_the_locks_one_read_gives_the_same_rows_as_reading_each_table(database_url: str) -> None:
    """The contact, messages, slots, handoffs and pending events come back from the lock's single
    statement exactly as the per-table reads return them (types, times, JSON), with no statement more."""
    from ghl_real_estate_ai.storage import Slot

    store = open_store(database_url, pool_size=2)
    await store.open()
    try:
        at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
        await store.upsert_contact(
            Contact("c9", "loc", "buyer", "hot", ["a", "b"], opted_out=True, state={"n": 1, "x": [1.5]})
        )
        for n in range(3):
            await store.add_message("c9", "inbound", f"m{n} é", "SMS", message_id=f"mid{n}", created_at=at)
        await store.save_slots(
            "c9", [Slot("buy", "budget", {"max": 650000}), Slot("contact", "sides", ["buy"])]
        )
        await store.record_handoff("c9", "lead", "buyer", 0.875, "intent", "executed")
        for n, date in enumerate((at, None, at - timedelta(minutes=1))):
            await store.record_webhook_event(
                webhook_id=f"w{n}",
                message_id=f"e{n}",
                event_type="InboundMessage",
                contact_id="c9",
                payload={"body": f"{n}", "nested": {"k": [n]}},
                trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
                date_added=date,
            )
        since = now() - timedelta(hours=1)
        expected = (
            await store.get_contact("c9"),
            await store.list_messages("c9", 50),
            await store.list_slots("c9"),
            await store.list_handoffs("c9", since=since),
            await store.pending_contact_events("c9", 20),
        )
        assert expected[0] is not None and [e.message_id for e in expected[4]] == ["e2", "e0", "e1"]
        async with store.contact_lock("c9"):
            before = store.stats.snapshot()
            served = (
                await store.get_contact("c9"),
                await store.list_messages("c9", 50),
                await store.list_slots("c9"),
                await store.list_handoffs("c9", since=since),
                await store.pending_contact_events("c9", 20),
            )
            assert store.stats.statements == before.statements  # all from the lock's read
        assert served == expected
    finally:
        await store.close()


async def test_deferred_writes_sent_as_one_statement_leave_what_they_would_one_by_one(
    database_url: str,
) -> None:
    """The unit of work's writes go as one statement (PostgreSQL CTEs, SQLite view triggers); the
    rows they leave are those the same calls leave outside a unit of work, one statement each."""
    from ghl_real_estate_ai.storage import Slot

    async def turn(store: Store, contact_id: str) -> None:
        item, _ = await store.enqueue_outbox(
            f"{contact_id}:k", "add_tags", {"contact_id": contact_id, "tags": ["x"]}, claim=True
        )
        other, _ = await store.enqueue_outbox(
            f"{contact_id}:k2", "add_tags", {"contact_id": contact_id, "tags": ["y"]}, claim=True
        )
        await store.replace_followups(contact_id, [("day_1", now())], {"traceparent": "t"})
        async with store.unit_of_work():
            contact = Contact(contact_id, "loc", tags=["é", 'a"b'], state={"f": 0.1, "n": None, "t": True})
            await store.upsert_contact(contact)
            contact.current_bot = "buyer"
            await store.upsert_contact(contact)  # the later write of one key wins
            await store.add_message(contact_id, "inbound", "hi \u2603 ?", "SMS", message_id=None, defer=True)
            await store.add_message(contact_id, "outbound", "yo", "SMS", message_id="m", defer=True)
            await store.record_handoff(contact_id, "lead", "buyer", 0.875, "r", "executed")
            await store.mark_outbox_sent(item.id, {"ok": [1, 2.5]})
            await store.mark_outbox_sent(other.id, None)
            await store.save_slots(contact_id, [Slot("buy", "budget", 650000.5), Slot("buy", "beds", 3)])
            # Cancels day_1 (stored before) but not the steps stored after it.
            await store.replace_followups(contact_id, [("day_2", now()), ("day_3", now())], {}, defer=True)

    def rows(store_rows: list[dict[str, object]]) -> list[dict[str, object]]:
        skip = {
            "id",
            "contact_id",
            "created_at",
            "updated_at",
            "idempotency_key",
            "next_attempt_at",
            "due_at",
        }
        return [{k: v for k, v in r.items() if k not in skip} for r in store_rows]

    store = open_store(database_url, pool_size=2)
    await store.open()
    try:
        await turn(store, "batched")
        before = store.stats.snapshot()
        # The same calls, outside a unit of work: each write is its own statement.
        original = store.unit_of_work
        store.unit_of_work = _no_unit_of_work  # type: ignore[method-assign]
        try:
            await turn(store, "single")
        finally:
            store.unit_of_work = original  # type: ignore[method-assign]
        assert store.stats.statements - before.statements >= 10
        for table, order in (
            ("contacts", ""),
            ("messages", " ORDER BY id"),
            ("handoffs", " ORDER BY id"),
            ("outbox", " ORDER BY id"),
            ("dialogue_slots", " ORDER BY side, name"),
            ("followups", " ORDER BY id"),
        ):
            got = {
                contact: rows(
                    await store._sql(f"SELECT * FROM {table} WHERE contact_id = ?{order}", (contact,))
                )  # type: ignore[attr-defined]
                for contact in ("batched", "single")
            }
            assert got["batched"] == got["single"], table
        steps = await store.list_followups("batched")
        assert [(f.step, f.status) for f in steps] == [
            ("day_1", "cancelled"),
            ("day_2", "pending"),
            ("day_3", "pending"),
        ]
    finally:
        await store.close()


@asynccontextmanager
async def _no_unit_of_work() -> AsyncIterator[None]:
    yield


async def test_sqlite_sends_a_write_with_a_question_mark_in_a_literal_on_its_own(sqlite_url: str) -> None:
    """A ``?`` inside a string literal is no argument: such a write never goes through the
    triggers of the one-statement batch, and the batch still leaves every write done."""
    from ghl_real_estate_ai.storage._sql import Step

    store = open_store(sqlite_url)
    await store.open()
    try:
        await store.upsert_contact(Contact("q"))
        await store._run_steps(  # type: ignore[attr-defined]
            [
                Step("UPDATE contacts SET temperature = '?' WHERE contact_id = ?", (("q",),)),
                Step("UPDATE contacts SET location_id = ? WHERE contact_id = ?", (("L", "q"),)),
                Step("UPDATE contacts SET current_bot = ? WHERE contact_id = ?", (("seller", "q"),)),
            ]
        )
        contact = await store.get_contact("q")
        assert contact is not None
        assert (contact.temperature, contact.location_id, contact.current_bot) == ("?", "L", "seller")
        assert store._triggers["UPDATE contacts SET temperature = '?' WHERE contact_id = ?"] == 0  # type: ignore[attr-defined]
    finally:
        await store.close()
