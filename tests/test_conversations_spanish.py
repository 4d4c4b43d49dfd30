"""Contacts who write in Spanish get their replies in Spanish (issue 10: bots that understand how leads text).

Played through the real conversation service (SQLite store, outbox, GHL client,
GHL sandbox); the Harness also checks the reply rules of every conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conversation_kit import Harness

from ghl_real_estate_ai.understanding.language import language_of


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with Harness.open(f"sqlite:///{tmp_path / 'jorge.db'}") as harness:
        yield harness


async def replies(h: Harness, contact_id: str, *messages: str) -> list[list[str]]:
    """The texts sent after each message, one list per message."""
    per_turn: list[list[str]] = []
    for body in messages:
        before = len(await h.sent_texts(contact_id, accepted=True))
        await h.say(contact_id, body)
        per_turn.append((await h.sent_texts(contact_id, accepted=True))[before:])
    return per_turn


def spanish(text: str) -> bool:
    return language_of(text) == "es"


async def test_a_spanish_seller_is_answered_in_spanish_from_the_first_reply_to_the_last(h: Harness) -> None:
    turns = await replies(
        h,
        "c-es-1",
        "hola, estamos pensando vender la casa de mi suegra",
        "se jubila y la casa le queda muy grande",
        "en unos 3 meses",
        "necesita algunos arreglos en la cocina",
    )
    texts = [t for turn in turns for t in turn]
    assert texts, "the bots answered nothing"
    assert all(spanish(t) for t in texts), texts
    slots = {(s.side, s.name): s.value for s in await h.store.list_slots("c-es-1")}
    assert slots[("contact", "language")] == "es"


async def test_a_spanish_conversation_stays_spanish_through_a_spanglish_line_and_a_thumbs_up(
    h: Harness,
) -> None:
    turns = await replies(
        h,
        "c-es-2",
        "buscamos casa para mis suegros en riverside",
        "tenemos FHA loan, budget like 480k",
        "👍",
    )
    texts = [t for turn in turns for t in turn]
    assert all(spanish(t) for t in texts), texts


async def test_an_english_lead_naming_spanish_place_names_is_answered_in_english(h: Harness) -> None:
    turns = await replies(h, "c-en-1", "want to buy in rancho cucamonga or san bernardino", "like 650k, 3 bd")
    texts = [t for turn in turns for t in turn]
    assert texts
    assert not any(spanish(t) for t in texts), texts


async def test_a_spanish_wrong_number_gets_a_spanish_closing(h: Harness) -> None:
    (texts,) = await replies(h, "c-es-3", "creo que tiene el numero equivocado")
    assert len(texts) == 1 and spanish(texts[0]), texts


async def test_a_spanish_buyer_who_must_sell_first_goes_to_the_seller_bot_first(h: Harness) -> None:
    (texts,) = await replies(h, "c-es-4", "quiero comprar casa pero primero tengo que vender la mia")
    assert (await h.contact("c-es-4")).current_bot == "seller"
    assert texts and all(spanish(t) for t in texts)
