"""A conversation harness built from the real parts, for the bot, handoff and conversation tests.

:class:`Harness` opens a real store (SQLite file or PostgreSQL), the in-process
cache, the real GHL sandbox app behind the real GHL client (``httpx.ASGITransport``),
the real outbox and the real :class:`~ghl_real_estate_ai.conversation.ConversationService`,
on a :class:`~ghl_real_estate_ai.clock.ManualClock`. :meth:`Harness.say` plays
one inbound GHL message the way the webhook route does (stored as a webhook
event first, then processed with the event's id as the idempotency base)::

    async with Harness.open(sqlite_url) as h:
        result = await h.say("c-1", "I'm pre-approved for $500k and want a 3 bed in Upland")
        assert [c["path"] for c in await h.calls()] == [...]
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from ghl_real_estate_ai.cache import open_cache
from ghl_real_estate_ai.cache.base import Cache
from ghl_real_estate_ai.clock import ManualClock
from ghl_real_estate_ai.conversation import (
    ConversationResult,
    ConversationService,
    build_conversation_service,
)
from ghl_real_estate_ai.integrations.ghl.client import GHLClient, build_ghl_client
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
from ghl_real_estate_ai.integrations.ghl.webhook import parse_webhook
from ghl_real_estate_ai.integrations.llm import ReplyWriter
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.base import Contact, Slot, Store

__all__ = ["START", "Harness", "TurnRecord", "inbound_payload", "reply_rule_violations"]

START = datetime(2025, 3, 3, 17, 0, tzinfo=UTC)
"""Monday 9:00 in Los Angeles: the sandbox calendar has slots from the next morning."""

_ids = itertools.count(1)


def inbound_payload(
    contact_id: str, body: str, *, when: datetime, message_type: str = "SMS", location_id: str = "loc-1"
) -> dict[str, Any]:
    """A flat GHL InboundMessage webhook body."""
    n = next(_ids)
    return {
        "type": "InboundMessage",
        "locationId": location_id,
        "contactId": contact_id,
        "body": body,
        "messageType": message_type,
        "direction": "inbound",
        "messageId": f"msg-{n}",
        "conversationId": f"conv-{contact_id}",
        "dateAdded": when.isoformat(),
        "webhookId": f"wh-{n}",
        "timestamp": when.isoformat(),
    }


@dataclass
class Harness:
    """The conversation service on real parts; see the module docstring."""

    settings: Settings
    clock: ManualClock
    store: Store
    cache: Cache
    sandbox: FastAPI
    ghl: GHLClient
    outbox: Outbox
    service: ConversationService
    transcripts: dict[str, list[TurnRecord]] = field(default_factory=dict)
    """Every message played per contact, with what the bots did (for :func:`reply_rule_violations`)."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        database_url: str,
        *,
        clock: ManualClock | None = None,
        sandbox: FastAPI | None = None,
        reply_writer: ReplyWriter | None = None,
        check_reply_rules: bool = True,
        **settings: Any,
    ) -> AsyncIterator[Harness]:
        """Open every part on ``database_url``; close them all at the end of the block.

        A block that ends normally also checks every conversation played in it
        against the reply rules (issue 10, acceptance 4); ``check_reply_rules=False``
        is for tests that replay or fake conversations on purpose.
        """
        clock = clock or ManualClock(START)
        config = Settings(database_url=database_url, ghl_location_id="loc-1", **settings)
        sandbox = sandbox or create_sandbox_app(location_id="loc-1", seed=7)
        async with AsyncExitStack() as stack:
            store = open_store(database_url)
            await store.open()
            stack.push_async_callback(store.close)
            cache = open_cache(None)
            await cache.open()
            stack.push_async_callback(cache.close)
            ghl = build_ghl_client(config, cache, sandbox)
            stack.push_async_callback(ghl.aclose)
            outbox = Outbox(store, ghl, clock=clock)
            service = build_conversation_service(
                store, outbox, ghl, config, clock=clock, reply_writer=reply_writer
            )
            harness = cls(config, clock, store, cache, sandbox, ghl, outbox, service)
            yield harness
            if check_reply_rules:
                await harness.check_reply_rules()

    async def say(
        self,
        contact_id: str,
        body: str,
        *,
        message_type: str = "SMS",
        after: timedelta = timedelta(minutes=2),
    ) -> ConversationResult:
        """Play one inbound message ``after`` the previous one, as the webhook route would."""
        self.clock.advance(after)
        payload = inbound_payload(contact_id, body, when=self.clock(), message_type=message_type)
        message = parse_webhook(payload)
        stored = await self.store.record_webhook_event(
            webhook_id=message.webhook_id,
            message_id=message.message_id,
            event_type=message.type,
            contact_id=message.contact_id,
            payload=payload,
        )
        before = len(await self.sent_texts(contact_id, accepted=True))
        result = await self.service.handle(message, event_key=f"evt-{stored.event_id}")
        texts = (await self.sent_texts(contact_id, accepted=True))[before:]
        slots = await self.store.list_slots(contact_id)
        self.transcripts.setdefault(contact_id, []).append(TurnRecord(body, result, texts, slots))
        return result

    async def check_reply_rules(self) -> None:
        """Fail when any conversation played so far broke a reply rule (issue 10, Build 2)."""
        problems = [p for cid, turns in self.transcripts.items() for p in reply_rule_violations(cid, turns)]
        assert not problems, "reply rules broken:\n" + "\n".join(problems)

    async def calls(self) -> list[dict[str, Any]]:
        """Every API call the GHL sandbox saw, read from its ``GET /_calls``."""
        transport = httpx.ASGITransport(app=self.sandbox)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            response = await client.get("/_calls")
            response.raise_for_status()
            calls: list[dict[str, Any]] = response.json()["calls"]
            return calls

    async def clear_calls(self) -> None:
        """Forget the calls seen so far."""
        transport = httpx.ASGITransport(app=self.sandbox)
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            (await client.delete("/_calls")).raise_for_status()

    async def sent_texts(self, contact_id: str, *, accepted: bool = False) -> list[str]:
        """The messages the sandbox received for a contact, in order (only those it accepted)."""
        return [
            c["body"]["message"]
            for c in await self.calls()
            if c["path"] == "/conversations/messages"
            and c["body"]["contactId"] == contact_id
            and (not accepted or int(c.get("status") or 0) < 300)
        ]

    async def contact(self, contact_id: str) -> Contact:
        """The stored contact (fails the test when missing)."""
        found = await self.store.get_contact(contact_id)
        assert found is not None, f"contact {contact_id!r} was not saved"
        return found


@dataclass
class TurnRecord:
    """One message played: what the contact wrote, what the service did, what was sent back.

    ``slots`` are the contact's dialogue slots after the message.
    """

    inbound: str
    result: ConversationResult
    texts: list[str]
    slots: list[Slot]


_CONFIRMATIONS = frozenset({"opted_out", "opted_in"})


def _slot_known(asked: str, slots: dict[tuple[str, str], Any]) -> bool:
    """Whether the slot a question asks for was already given (either side counts)."""

    def has(side: str, name: str) -> bool:
        value = slots.get((side, name))
        return value is not None and value != []

    if asked == "timeline":
        return any(has(side, n) for side in ("buy", "sell") for n in ("target_date", "timeline_days"))
    if asked == "motivation":
        return has("buy", "motivation") or has("sell", "motivation")
    if asked == "bedrooms_areas":
        return has("buy", "bedrooms") or has("buy", "areas")
    if asked == "preapproved":
        return has("buy", "preapproved") or slots.get(("buy", "financing")) == "cash"
    if asked == "property_details":
        return has("sell", "sqft") and has("sell", "areas")
    if asked == "sides":
        return has("contact", "sides")
    return has("buy", asked) or has("sell", asked)


def reply_rule_violations(contact_id: str, turns: list[TurnRecord]) -> list[str]:
    """The reply rules a conversation broke, one line each (empty when it kept them all).

    * no repeated reply: every text sent is new (opt-out/opt-in confirmations aside);
    * no re-asked slot: no question for a slot the contact has given (up to and
      including the message being answered);
    * the lead's question answered first: when the latest message asks something,
      the first reply of the turn answers that topic.
    """
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, turn in enumerate(turns, 1):
        where = f"{contact_id} turn {n} ({turn.inbound!r})"
        if turn.result.action not in _CONFIRMATIONS:
            for text in turn.texts:
                if text in seen:
                    problems.append(f"{where}: repeats the text of turn {seen[text]}: {text!r}")
                seen.setdefault(text, n)
        known = {(s.side, s.name): s.value for s in turn.slots}
        replied = [o for o in turn.result.outcomes if o.replies]
        for outcome in replied:
            asked = outcome.reply_marks.get("asked")
            if asked and _slot_known(asked, known):
                problems.append(f"{where}: the {outcome.bot} bot asks for {asked!r}, already given")
        topic = next((o.question_topic for o in turn.result.outcomes if o.question_topic), None)
        if topic and replied and replied[0].reply_marks.get("answered") != topic:
            problems.append(
                f"{where}: the lead asked about {topic!r} but the first reply answers "
                f"{replied[0].reply_marks.get('answered')!r}"
            )
    return problems


def call_summary(calls: list[dict[str, Any]]) -> list[str]:
    """``METHOD path`` of each call, e.g. ``POST /contacts/c-1/tags``."""
    return [f"{c['method']} {c['path']}" for c in calls]
