"""The outbox: every outbound GHL action is written before it is sent.

Bots never call the GHL client's write methods directly; they submit an
action with an idempotency key::

    await outbox.submit(f"{event.id}:reply:1", "send_message",
                        {"contact_id": cid, "channel": "SMS", "message": text})

``submit`` stores the action (a known key returns the stored item and sends
nothing), then sends it at once (``send_now``). A failed send never raises
into the bot flow: the item stays ``pending`` and the background worker's
:meth:`Outbox.deliver_due` finishes it.

Nothing is sent twice, nothing is given up early (issue 13):

1. **Unknown outcomes are reconciled, not guessed.** A send that left without a
   clear answer (a timeout after sending, a 5xx: ``GHLOutcomeUnknownError``), or
   an item a dead process left ``sending``, is marked ``check_first``. Before it
   is sent again, the contact's conversation is read back from GHL
   (:meth:`GHLClient.find_sent_messages`) for an outbound message with the same
   text since the item's first attempt that is not another item's; found, the
   item is ``sent`` without a new call. The read-back waits ``settle`` after the
   unknown attempt, longer than the client's timeout, so the first request
   cannot still land after it. The client itself retries a write only when it
   provably did not take effect (no connection, or 429).
2. **Dead processes are noticed by heartbeat.** Each outbox beats
   (:meth:`Outbox.heartbeat`, the worker does it every few seconds); the items a
   process was sending are taken over once its heartbeat is older than
   ``owner_timeout``, not after a fixed delay.
3. **Outages are waited out, one probe at a time.** A GHL failure opens the
   location's circuit: capped exponential backoff with jitter (``base_delay``
   doubling up to ``max_delay``, ``Retry-After`` honoured). While it is open,
   nothing is sent but one probe item when the backoff step ends; its success
   closes the circuit and the backlog flows. An item is retried until
   ``max_age`` after its creation (``OUTBOX_MAX_AGE_HOURS``), then it is
   ``dead`` with the reason (``jorge outbox retry`` sends it again).
4. **Late replies whose conversation moved on are dropped.** A reply
   (``evt-<event id>:...``) still unsent when a reply to a newer event of the
   same contact was already sent is ``dropped`` with that reason.

Final statuses: ``sent``; ``failed`` (GHL refused it: 400/404/409/422, or a
payload the client rejects); ``dead``; ``dropped``.

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

Only ``send_message`` is read back; tags are idempotent at GHL, and a task or
an appointment whose outcome is unknown is sent again (GHL refuses a second
booking of the same slot).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry import trace

from ghl_real_estate_ai.errors import GHLError, GHLOutcomeUnknownError
from ghl_real_estate_ai.integrations.ghl.client import GHLClient
from ghl_real_estate_ai.observability.metrics import record_outbox
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
    """Durable, idempotent, reconciling delivery of GHL actions (see the module docstring).

    Args:
        store: where items live.
        client: the GHL client (its ``location_id`` names the circuit).
        clock: the current time (tests pass their own, e.g. a virtual clock).
        max_age: how long an item is retried before it is ``dead``.
        base_delay: the first backoff of a failing location, in seconds.
        max_delay: the longest backoff.
        settle: the wait before reading GHL back after an unknown outcome.
        owner_timeout: a heartbeat older than this means its process is dead.
        owner: this process's name in the outbox (default: host, pid and a random suffix).
        in_request_retries: the client's retry budget for ``send_now`` sends (connect
            errors and 429 only), kept small so an outage does not hold the request.
    """

    def __init__(
        self,
        store: Store,
        client: GHLClient,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_age: timedelta = timedelta(hours=24),
        base_delay: float = 5.0,
        max_delay: float = 300.0,
        settle: timedelta = timedelta(seconds=30),
        owner_timeout: timedelta = timedelta(seconds=20),
        owner: str | None = None,
        in_request_retries: int = 1,
    ) -> None:
        if max_age <= timedelta(0):
            raise ValueError(f"max_age must be positive, got {max_age!r}")
        self.store = store
        self.client = client
        self.clock = clock
        self.max_age = max_age
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.settle = settle
        self.owner_timeout = owner_timeout
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.location_id = client.location_id
        self._in_request_client = client.with_retries(in_request_retries)
        # The worker's sends and read-backs retry here, per location, not inside the client:
        # a retrying client would multiply the calls a failing GHL gets.
        self._worker_client = client.with_retries(0)
        # What this process last knew of the circuit, and when (monotonic): a send in a
        # request reads the database at most once a second for it.
        self._circuit_open: bool | None = None
        self._circuit_seen = 0.0

    async def heartbeat(self) -> None:
        """Tell the other processes this one is alive (its ``sending`` items are not to be taken)."""
        await self.store.outbox_heartbeat(self.owner, self.clock())

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

        While GHL is failing for this location (an open circuit) the action is
        only stored: the worker's probe finds out when GHL is back.

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
        if send_now and await self._circuit_is_open():
            send_now = False  # GHL is failing here: no call per item, the worker probes
        # Stored already claimed when it is sent now: nobody else can take it, one statement (issue 14).
        now = self.clock()
        item, created = await self.store.enqueue_outbox(
            idempotency_key,
            kind,
            payload,
            contact_id=contact,
            claim=send_now,
            owner=self.owner,
            due_at=now,
            deadline_at=now + self.max_age,
        )
        if not created:
            logger.info("outbox %s already known (status %s); not sent again", idempotency_key, item.status)
            return item
        if not send_now:
            return item
        return await self._deliver(item, self._in_request_client, now=now, probing=False)

    async def deliver_due(self, now: datetime | None = None, limit: int = 50) -> int:
        """Finish what is due: pending items, and items a dead process left ``sending``.

        While the location's circuit is open, only one probe item goes out, and
        only once its backoff step has ended; when it succeeds, the rest follow.

        Args:
            now: the current time (default: the clock).
            limit: at most this many items in this call.

        Returns:
            How many were delivered (``sent``).
        """
        moment = now or self.clock()
        await self.store.outbox_heartbeat(self.owner, moment)
        circuit = await self.store.outbox_circuit(self.location_id)
        probing = False
        if circuit is not None:
            if moment < circuit.next_probe_at:
                return 0
            hold = moment + timedelta(seconds=self.max_delay)
            if not await self.store.claim_outbox_probe(self.location_id, moment, self.owner, hold):
                return 0  # another process probes this step
            probing = True
        delivered = 0
        remaining = limit
        with _tracer.start_as_current_span("outbox.deliver_due") as span:
            while remaining > 0:
                items = await self.store.claim_outbox_work(
                    moment,
                    1 if probing else remaining,
                    owner=self.owner,
                    dead_before=moment - self.owner_timeout,
                )
                if not items:
                    if probing:  # nothing due to probe with: give the probe back, unchanged
                        assert circuit is not None
                        await self.store.outbox_circuit_failed(
                            self.location_id, circuit.failures, circuit.next_probe_at
                        )
                    break
                remaining -= len(items)
                ghl_failed = False
                for item in items:
                    result = await self._deliver(item, self._worker_client, now=moment, probing=probing)
                    delivered += result.status == "sent"
                    ghl_failed = ghl_failed or result.status in ("pending", "sending")
                if not probing or ghl_failed:
                    break
                probing = False  # the probe went through: GHL is back, the backlog follows
            span.set_attribute("outbox.delivered", delivered)
        return delivered

    async def _circuit_is_open(self) -> bool:
        if self._circuit_open is None or time.monotonic() - self._circuit_seen > _CIRCUIT_RECHECK:
            self._note_circuit(await self.store.outbox_circuit(self.location_id) is not None)
        return bool(self._circuit_open)

    def _note_circuit(self, is_open: bool) -> None:
        self._circuit_open, self._circuit_seen = is_open, time.monotonic()

    # --- one item ---------------------------------------------------------------------
    def _deadline(self, item: OutboxItem) -> datetime:
        return item.deadline_at or item.created_at + self.max_age

    async def _deliver(
        self, item: OutboxItem, client: GHLClient, *, now: datetime, probing: bool
    ) -> OutboxItem:
        """Reconcile or send a claimed item and record the outcome; returns the item as now stored."""
        if now >= self._deadline(item):
            hours = self.max_age.total_seconds() / 3600
            reason = f"gave up after {hours:g}h (OUTBOX_MAX_AGE_HOURS); last error: {item.last_error}"
            await self.store.finish_outbox_item(item.id, "dead", reason)
            record_outbox("dead")
            logger.error("outbox %s (%s) is dead: %s", item.idempotency_key, item.kind, reason)
            return replace(item, status="dead", last_error=reason)
        if item.kind == "send_message" and item.attempts > 1:
            moved_on = await self._newer_reply(item)
            if moved_on is not None:
                reason = f"conversation moved on: the reply {moved_on!r} to a newer message was sent"
                await self.store.finish_outbox_item(item.id, "dropped", reason)
                record_outbox("dropped")
                logger.warning("outbox %s dropped: %s", item.idempotency_key, reason)
                return replace(item, status="dropped", last_error=reason)
        try:
            if item.check_first and item.kind == "send_message":
                found = await self._read_back(item, client)
                if found is not None:
                    response = {**found, "reconciled": True}
                    await self._sent(item, response, probing)
                    record_outbox("reconciled")
                    logger.info("outbox %s was delivered already (read back from GHL)", item.idempotency_key)
                    return replace(item, status="sent", response=response, last_error=None)
            response = await _CALLS[item.kind](client, item.payload)
        except Exception as exc:
            return await self._record_failure(item, exc, now, probing)
        await self._sent(item, response, probing)
        record_outbox("sent")
        return replace(item, status="sent", response=dict(response), last_error=None)

    async def _sent(self, item: OutboxItem, response: dict[str, Any], probing: bool) -> None:
        await self.store.mark_outbox_sent(item.id, response)
        if probing:
            await self.store.outbox_circuit_closed(self.location_id)
            self._note_circuit(False)
            logger.info("GHL answers again for location %s: the outbox backlog resumes", self.location_id)

    async def _newer_reply(self, item: OutboxItem) -> str | None:
        """The key of a sent reply to a newer event of the same contact, if this item is a reply."""
        event = _event_number(item.idempotency_key)
        if event is None or item.contact_id is None:
            return None
        for key in await self.store.newer_sent_replies(item.contact_id, item.id):
            newer = _event_number(key)
            if newer is not None and newer > event:
                return key
        return None

    async def _read_back(self, item: OutboxItem, client: GHLClient) -> dict[str, Any] | None:
        """Our message in GHL's conversation, when an earlier attempt delivered it."""
        contact, text = item.payload["contact_id"], item.payload["message"]
        since = (item.first_attempt_at or item.created_at) - _CLOCK_SKEW
        with _tracer.start_as_current_span("outbox.read_back", attributes={"outbox.item_id": item.id}):
            matches = await client.find_sent_messages(contact, text, since)
            if not matches:
                return None
            # Another item with the same text may have been delivered in the window: not ours.
            theirs = await self.store.sent_message_ids(contact, text, item.id)
            ours = [m for m in matches if str(m.get("id")) not in theirs]
        if not ours:
            return None
        first = min(ours, key=lambda m: str(m.get("dateAdded", "")))
        return {"messageId": first.get("id"), "conversationId": first.get("conversationId")}

    async def _record_failure(
        self, item: OutboxItem, exc: Exception, now: datetime, probing: bool
    ) -> OutboxItem:
        error = f"{type(exc).__name__}: {exc}"
        # A refusal GHL will repeat, or a payload the client rejects, cannot succeed later.
        if (isinstance(exc, GHLError) and exc.status_code in _PERMANENT_STATUSES) or isinstance(
            exc, ValueError | TypeError | KeyError
        ):
            await self.store.finish_outbox_item(item.id, "failed", error)
            record_outbox("failed")
            if probing:  # GHL answered: it is up
                await self.store.outbox_circuit_closed(self.location_id)
            logger.error("outbox %s (%s) refused for good: %s", item.idempotency_key, item.kind, error)
            return replace(item, status="failed", last_error=error)
        check = item.check_first or isinstance(exc, GHLOutcomeUnknownError)
        if isinstance(exc, GHLError):
            # GHL is failing for this location: from now on one probe per backoff step.
            circuit = await self.store.outbox_circuit(self.location_id)
            failures = (circuit.failures if circuit is not None else 0) + 1
            delay = self._backoff(failures, exc.retry_after)
            next_at = now + timedelta(seconds=delay)
            await self.store.outbox_circuit_failed(self.location_id, failures, next_at)
            self._note_circuit(True)
        else:
            next_at = now + timedelta(seconds=self._backoff(max(1, item.attempts), None))
        if check:
            next_at = max(next_at, now + self.settle)
        next_at = min(next_at, self._deadline(item))
        await self.store.release_outbox_item(item.id, next_attempt_at=next_at, error=error, check_first=check)
        logger.warning(
            "outbox %s (%s) attempt %d failed%s, next at %s: %s",
            item.idempotency_key,
            item.kind,
            item.attempts,
            " (outcome unknown: GHL is read back first)" if check else "",
            next_at.isoformat(),
            error,
        )
        return replace(item, status="pending", last_error=error, next_attempt_at=next_at, check_first=check)

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        delay = min(self.max_delay, self.base_delay * 2 ** min(failures - 1, 30))
        delay = random.uniform(delay / 2, delay)  # jitter: replicas and locations do not march in step
        if retry_after is not None:  # GHL said how long: never sooner
            delay = max(delay, retry_after)
        return delay


_CIRCUIT_RECHECK = 1.0
"""Seconds a process trusts what it last saw of the circuit before reading it again."""

_CLOCK_SKEW = timedelta(seconds=5)
"""Slack on the read-back window: GHL's clock and ours differ a little."""


def _event_number(key: str) -> int | None:
    """The webhook event id of a reply key ``evt-<id>:...``; None for other keys."""
    head = key.split(":", 1)[0]
    if head.startswith("evt-") and head[4:].isdigit():
        return int(head[4:])
    return None


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
