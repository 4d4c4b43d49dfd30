"""The dialogue-slot block of the Store (issue 10): the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ghl_real_estate_ai.storage import Slot, Store, open_store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = open_store(database_url, pool_size=2)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_contact_without_slots_has_none(store: Store) -> None:
    assert await store.list_slots("nobody") == []


async def test_slots_keep_their_side_and_any_json_value(store: Store) -> None:
    await store.save_slots(
        "c1",
        [
            Slot("buy", "budget", 650_000),
            Slot("sell", "price_expectation", 480_000),
            Slot("buy", "areas", ["Upland", "Claremont"]),
            Slot("contact", "sides", ["buy", "sell"]),
            Slot("buy", "target_date", "2026-06-01"),
            Slot("contact", "must_sell_first", True),
        ],
    )
    got = {(s.side, s.name): s.value for s in await store.list_slots("c1")}
    assert got == {
        ("buy", "budget"): 650_000,
        ("sell", "price_expectation"): 480_000,
        ("buy", "areas"): ["Upland", "Claremont"],
        ("contact", "sides"): ["buy", "sell"],
        ("buy", "target_date"): "2026-06-01",
        ("contact", "must_sell_first"): True,
    }
    assert all(
        s.updated_at is not None and s.updated_at.tzinfo is not None for s in await store.list_slots("c1")
    )


async def test_saving_again_replaces_only_the_slots_given_and_only_for_that_contact(store: Store) -> None:
    await store.save_slots("c1", [Slot("buy", "budget", 500_000), Slot("buy", "bedrooms", 3)])
    await store.save_slots("c2", [Slot("buy", "budget", 900_000)])
    await store.save_slots("c1", [Slot("buy", "budget", 550_000)])
    c1 = {s.name: s.value for s in await store.list_slots("c1")}
    assert c1 == {"budget": 550_000, "bedrooms": 3}
    assert [s.value for s in await store.list_slots("c2")] == [900_000]


async def test_saving_nothing_is_a_no_op_and_a_duplicate_pair_is_refused(store: Store) -> None:
    await store.save_slots("c1", [])
    assert await store.list_slots("c1") == []
    with pytest.raises(ValueError, match="twice"):
        await store.save_slots("c1", [Slot("buy", "budget", 1), Slot("buy", "budget", 2)])
