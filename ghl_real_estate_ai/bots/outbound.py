"""How the bots talk to GHL: replies, agent tasks and bookings, all through the outbox.

Every outbound action gets an idempotency key built from the webhook event
(``evt-<id>``) and a step name, so a replayed event or a retried follow-up
never sends twice. Replies are also written to the messages table (direction
``outbound``, ``message_id`` = the key), which is what later turns and the PCS
response-velocity measure read.

Usage::

    outbound = Outbound(store, outbox, reply_writer, clock=clock)
    key = await outbound.reply(contact_id, "SMS", key="evt-7:buyer:reply",
                               purpose="buyer_question", context={...}, fallback=text)
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from ghl_real_estate_ai.bots.intent_decoder import Turn
from ghl_real_estate_ai.bots.templates import render, reply_language
from ghl_real_estate_ai.clock import SystemClock
from ghl_real_estate_ai.integrations.llm import ReplyWriter
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.storage.base import OutboxItem, Store

__all__ = [
    "AFFIRMATIVE",
    "OBJECTION_TEMPLATES",
    "Outbound",
    "format_slot",
    "is_affirmative",
    "last_inbound_text",
    "objection_text",
    "upcoming_slots",
]

AFFIRMATIVE = re.compile(
    r"^\s*(yes|yeah|yep|yup|sure|ok|okay|sounds good|let'?s do it|perfect|please|"
    r"that works|works for me|s[ií]|claro|dale|de acuerdo)\b",
    re.IGNORECASE,
)
"""A reply that accepts what the bot just offered (English and Spanish)."""


OBJECTION_TEMPLATES: dict[str, str] = {
    "price_too_high": "objection_price_too_high",
    "rates_too_high": "objection_price_too_high",
    "just_looking": "objection_just_looking",
    "not_interested": "objection_just_looking",
    "not_ready": "objection_not_ready",
    "need_to_think": "objection_not_ready",
    "market_timing": "objection_not_ready",
    "has_agent": "objection_has_agent",
    "commission": "objection_commission",
}
"""The reply template that answers each objection the decoder names."""


def objection_text(objection: str) -> str:
    """The reply that acknowledges an objection (``price_too_high``, ``not_ready``...).

    Args:
        objection: an objection name from the intent decoder.

    Returns:
        The rendered text (the ``not_ready`` answer for a name without its own template).
    """
    return render(OBJECTION_TEMPLATES.get(objection, "objection_not_ready"))


def is_affirmative(text: str) -> bool:
    """True when ``text`` starts by accepting an offer ("yes", "sure", "sí"...).

    Args:
        text: the contact's message.

    Returns:
        Whether it reads as a yes.
    """
    return bool(AFFIRMATIVE.match(text))


class Outbound:
    """Sends the bots' replies, tasks and bookings through the outbox."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        writer: ReplyWriter,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Build the sender.

        Args:
            store: where outbound messages are recorded.
            outbox: the idempotent, retried way to GHL.
            writer: turns a template text into the final reply (templates or an LLM).
            clock: the current time (UTC).
        """
        self.store = store
        self.outbox = outbox
        self.writer = writer
        self.clock: Callable[[], datetime] = clock or SystemClock()

    async def reply(
        self,
        contact_id: str,
        channel: str,
        *,
        key: str,
        purpose: str,
        context: Mapping[str, Any],
        fallback: str,
        subject: str | None = None,
        html_body: str | None = None,
    ) -> str:
        """Write and send one message to a contact.

        Args:
            contact_id: the GHL contact.
            channel: ``SMS`` or ``Email``.
            key: idempotency key of this message.
            purpose: what the message is for (the LLM writer's instruction).
            context: facts the writer may use.
            fallback: the template text, used as is without an LLM.
            subject: e-mail subject (``Email`` only).
            html_body: e-mail HTML (``Email`` only); the text as paragraphs when None.

        Returns:
            The idempotency key.
        """
        text = await self.writer.write(purpose, dict(context), fallback)
        payload: dict[str, Any] = {"contact_id": contact_id, "channel": channel, "message": text}
        if channel == "Email":
            payload["subject"] = subject or "Following up"
            payload["html"] = html_body or _as_html(text)
        await self.outbox.submit(key, "send_message", payload, contact_id=contact_id)
        await self._remember(contact_id, channel, text, key)
        return key

    async def create_task(self, contact_id: str, *, key: str, title: str, body: str, due_at: datetime) -> str:
        """Create a GHL task for the agent.

        Returns:
            The idempotency key.
        """
        payload = {"contact_id": contact_id, "title": title, "body": body, "due_at": due_at.isoformat()}
        await self.outbox.submit(key, "create_task", payload, contact_id=contact_id)
        return key

    async def book(
        self, contact_id: str, *, key: str, calendar_id: str, start_time: datetime, title: str
    ) -> OutboxItem:
        """Book an appointment on a GHL calendar.

        Returns:
            The outbox item: ``sent`` when GHL booked it, ``failed`` when GHL refused
            it for good (the slot was taken meanwhile), ``pending`` when GHL could not
            be reached and the worker will retry.
        """
        payload = {
            "calendar_id": calendar_id,
            "contact_id": contact_id,
            "start_time": start_time.isoformat(),
            "title": title,
        }
        return await self.outbox.submit(key, "book_appointment", payload, contact_id=contact_id)

    async def _remember(self, contact_id: str, channel: str, text: str, key: str) -> None:
        # A replayed event reaches here again with the same key: record the message once.
        recent = await self.store.list_messages(contact_id, limit=20)
        if any(m.message_id == key for m in recent):
            return
        # Deferred: written with the turn's other writes, in one round trip (issue 14).
        await self.store.add_message(
            contact_id, "outbound", text, channel, message_id=key, created_at=self.clock(), defer=True
        )


def last_inbound_text(turns: Iterable[Turn]) -> str:
    """The body of the newest inbound message of a conversation ("" when there is none)."""
    for turn in reversed(list(turns)):
        if turn.direction == "inbound":
            return turn.body
    return ""


def upcoming_slots(slots: Iterable[datetime], now: datetime) -> list[datetime]:
    """The free slots after ``now``, earliest first."""
    return sorted(s for s in slots if s > now)


def format_slot(slot: datetime, timezone: str) -> str:
    """A slot as a person reads it in the calendar's zone, in the reply language.

    ``Tuesday Mar 4 at 10:00 AM``; in Spanish ``el martes 4 de mar a las 10:00 a. m.``
    (Babel's CLDR names).
    """
    local = slot.astimezone(ZoneInfo(timezone))
    if reply_language() == "es":
        return "el " + format_datetime(local, "EEEE d 'de' MMM 'a las' h:mm a", locale="es")
    return f"{local:%A %b} {local.day} at {local:%I:%M %p}".replace(" 0", " ")


def _as_html(text: str) -> str:
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
