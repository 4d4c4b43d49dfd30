"""The outbox: every outbound GHL action is written before it is sent.

Bots never call the GHL client's write methods directly; they submit an
action with an idempotency key::

    await outbox.submit(f"{event.id}:reply:1", "send_message",
                        {"contact_id": cid, "channel": "SMS", "message": text})

``submit`` stores the action (a known key returns the stored item and sends
nothing), then sends it at once (``send_now``). A failed send never raises
into the bot flow: the item stays ``pending`` with a backoff and the
background worker's :meth:`Outbox.deliver_due` retries it, honouring GHL's
``Retry-After``, until ``max_attempts`` (then ``failed``, with the error kept).

Idempotency keys are the caller's job and must be derived from what caused
the action, never from time or randomness, so a redelivered webhook or a
re-run after a crash produces the same key: ``"<webhook event id>:<purpose>:<n>"``
for actions caused by a webhook (``"42:reply:1"``, ``"42:handoff-tags:1"``),
``"followup:<followup id>:<step>"`` for scheduled steps.

Kinds and their payload (the GHL client call's arguments, JSON-safe; times as
ISO-8601 text with an offset):

* ``send_message``: ``contact_id``, ``channel`` (``SMS``/``Email``), ``message``;
  optional ``subject``, ``html``
* ``add_tags`` / ``remove_tags``: ``contact_id``, ``tags``
* ``create_task``: ``contact_id``, ``title``, ``body``, ``due_at``
* ``book_appointment``: ``calendar_id``, ``contact_id``, ``start_time``, optional ``title``

A crash between GHL accepting a call and the item being marked ``sent``
leaves it ``sending``; :meth:`Outbox.deliver_due` takes such items over after
``stale_after`` (10 minutes, far beyond any live attempt), which is the one
case that can repeat a call: without an idempotency key on GHL's side the
choice is between that and losing it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from ghl_real_estate_ai.errors import GHLError
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.storage.base import OutboxItem, Store

__all__ = ["KINDS", "Outbox", "utcnow"]

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

_REQUIRED: dict[str, tuple[str, ...]] = {
    "send_message": ("contact_id", "channel", "message"),
    "add_tags": ("contact_id", "tags"),
    "remove_tags": ("contact_id", "tags"),
    "create_task": ("contact_id", "title", "body", "due_at"),
    "book_appointment": ("calendar_id", "contact_id", "start_time"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "send_message": ("subject", "html"),
    "book_appointment": ("title",),
}
KINDS = frozenset(_REQUIRED)
"""The action kinds the outbox knows."""

# GHL refuses these for good: retrying the same request cannot succeed.
_PERMANENT_STATUSES = frozenset({400, 404, 409, 422})


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _validate(kind: str, payload: Mapping[str, Any]) -> None:
    if kind not in _REQUIRED:
        raise ValueError(f"unknown outbox kind {kind!r}: use one of {sorted(KINDS)}")
    missing = [k for k in _REQUIRED[kind] if k not in payload]
    if missing:
        raise ValueError(f"outbox {kind!r} payload lacks {missing}: it needs {list(_REQUIRED[kind])}")
    unknown = set(payload) - set(_REQUIRED[kind]) - set(_OPTIONAL.get(kind, ()))
    if unknown:
        raise ValueError(f"outbox {kind!r} payload has unknown keys {sorted(unknown)}")
    for key in ("due_at", "start_time"):
        if key in payload:
            text = payload[key]
            try:
                moment = datetime.fromisoformat(text) if isinstance(text, str) else None
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise ValueError(
                    f"outbox {kind!r} payload {key}={text!r} must be ISO-8601 text with an offset, "
                    "e.g. datetime.now(UTC).isoformat()"
                )


class Outbox:
    """Durable, idempotent delivery of GHL actions.

    Args:
        store: where items live.
        client: the GHL client.
        max_attempts: attempts before an item is ``failed`` for good.
        clock: the current time (tests pass their own).
        base_delay: first retry delay in seconds (doubles per attempt, with jitter).
        max_delay: longest retry delay.
        in_request_retries: the client's retry budget for ``send_now`` sends, kept
            small so a GHL outage does not hold the webhook request.
        stale_after: how long an item may stay ``sending`` before the worker takes it over.
    """

    def __init__(
        self,
        store: Store,
        client: GHLClient,
        *,
        max_attempts: int = 8,
        clock: Callable[[], datetime] = utcnow,
        base_delay: float = 5.0,
        max_delay: float = 3600.0,
        in_request_retries: int = 1,
        stale_after: timedelta = timedelta(minutes=10),
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.store = store
        self.client = client
        self.max_attempts = max_attempts
        self.clock = clock
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.stale_after = stale_after
        self._in_request_client = client.with_retries(in_request_retries)

    async def submit(
        self,
        idempotency_key: str,
        kind: str,
        payload: dict[str, Any],
        *,
        contact_id: str | None = None,
        send_now: bool = True,
    ) -> OutboxItem:
        """Store an action once and (by default) send it now.

        Args:
            idempotency_key: the action's identity (see the module docstring for the rule).
            kind: one of :data:`KINDS`.
            payload: the client call's arguments, JSON-safe.
            contact_id: the contact (default: ``payload["contact_id"]``).
            send_now: send in this call; False leaves it to the worker.

        Returns:
            The item as stored after this call (``sent``, or ``pending`` to retry,
            or the earlier item when the key was known).

        Raises:
            ValueError: an unknown kind or a payload that does not fit it (a bug
                in the caller, so it is raised; GHL failures never are).
        """
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        _validate(kind, payload)
        contact = contact_id if contact_id is not None else payload.get("contact_id")
        # Stored already claimed when it is sent now: nobody else can take it, one statement (issue 14).
        item, created = await self.store.enqueue_outbox(
            idempotency_key, kind, payload, contact_id=contact, claim=send_now
        )
        if not created:
            logger.info("outbox %s already known (status %s); not sent again", idempotency_key, item.status)
            return item
        if not send_now:
            return item
        return await self._deliver(item, self._in_request_client)

    async def deliver_due(self, now: datetime | None = None, limit: int = 50) -> int:
        """Send the items whose retry time has come (and take over stale ``sending`` ones).

        Args:
            now: the current time (default: the clock).
            limit: at most this many items in this call.

        Returns:
            How many were delivered.
        """
        moment = now or self.clock()
        items = await self.store.claim_due_outbox(moment, limit, stale_before=moment - self.stale_after)
        if not items:
            return 0
        delivered = 0
        with _tracer.start_as_current_span("outbox.deliver_due", attributes={"outbox.claimed": len(items)}):
            for item in items:
                if (await self._deliver(item, self.client, now=moment)).status == "sent":
                    delivered += 1
        return delivered

    async def _deliver(
        self, item: OutboxItem, client: GHLClient, *, now: datetime | None = None
    ) -> OutboxItem:
        """Make the call for a claimed item and record the outcome; returns the item as now stored."""
        try:
            response = await _CALLS[item.kind](client, item.payload)
        except Exception as exc:
            return await self._record_failure(item, exc, now or self.clock())
        await self.store.mark_outbox_sent(item.id, response)
        return replace(item, status="sent", response=dict(response), last_error=None)

    async def _record_failure(self, item: OutboxItem, exc: Exception, now: datetime) -> OutboxItem:
        error = f"{type(exc).__name__}: {exc}"
        # A refusal GHL will repeat, or a payload the client rejects, cannot succeed later.
        permanent = (isinstance(exc, GHLError) and exc.status_code in _PERMANENT_STATUSES) or isinstance(
            exc, ValueError | TypeError | KeyError
        )
        if permanent:
            next_at: datetime | None = None
        elif item.attempts >= self.max_attempts:
            next_at = None
        else:
            delay = min(self.max_delay, self.base_delay * 2 ** (item.attempts - 1))
            delay = random.uniform(delay / 2, delay)  # jitter: a recovered GHL is not hit all at once
            retry_after = exc.retry_after if isinstance(exc, GHLError) else None
            if retry_after is not None:
                delay = max(delay, retry_after)
            next_at = now + timedelta(seconds=delay)
        await self.store.mark_outbox_failed(item.id, error, next_at)
        if next_at is None:
            stored = replace(item, status="failed", last_error=error)
            logger.error(
                "outbox %s (%s) failed for good after %d attempt(s): %s",
                item.idempotency_key,
                item.kind,
                item.attempts,
                error,
            )
        else:
            stored = replace(item, status="pending", last_error=error, next_attempt_at=next_at)
            logger.warning(
                "outbox %s (%s) attempt %d failed, retry at %s: %s",
                item.idempotency_key,
                item.kind,
                item.attempts,
                next_at.isoformat(),
                error,
            )
        return stored


async def _send_message(client: GHLClient, p: Mapping[str, Any]) -> dict[str, Any]:
    return await client.send_message(
        p["contact_id"], p["channel"], p["message"], subject=p.get("subject"), html=p.get("html")
    )


async def _add_tags(client: GHLClient, p: Mapping[str, Any]) -> dict[str, Any]:
    return await client.add_tags(p["contact_id"], p["tags"])


async def _remove_tags(client: GHLClient, p: Mapping[str, Any]) -> dict[str, Any]:
    return await client.remove_tags(p["contact_id"], p["tags"])


async def _create_task(client: GHLClient, p: Mapping[str, Any]) -> dict[str, Any]:
    return await client.create_task(
        p["contact_id"], p["title"], p["body"], datetime.fromisoformat(p["due_at"])
    )


async def _book_appointment(client: GHLClient, p: Mapping[str, Any]) -> dict[str, Any]:
    return await client.book_appointment(
        p["calendar_id"], p["contact_id"], datetime.fromisoformat(p["start_time"]), p.get("title")
    )


_CALLS: dict[str, Callable[[GHLClient, Mapping[str, Any]], Awaitable[dict[str, Any]]]] = {
    "send_message": _send_message,
    "add_tags": _add_tags,
    "remove_tags": _remove_tags,
    "create_task": _create_task,
    "book_appointment": _book_appointment,
}
