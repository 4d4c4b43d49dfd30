"""The Store protocol and the rows it returns.

One interface, two implementations: :mod:`.sqlite` (aiosqlite, embedded) and
:mod:`.postgres` (asyncpg pool, production). :func:`ghl_real_estate_ai.storage.open_store`
picks one from ``DATABASE_URL``. The store knows rows and keys, not
conversations or HTTP. Times are timezone-aware UTC ``datetime`` values;
JSON columns come back as ``dict``.

Outbox statuses: ``pending`` -> ``sending`` -> ``sent``; a failed send goes
back to ``pending`` with a later ``next_attempt_at``; final: ``failed`` (GHL
refused it), ``dead`` (given up past its deadline; re-sendable) and ``dropped``
(a late reply whose conversation moved on). Follow-up statuses: ``pending`` -> ``running`` -> ``done``;
``cancelled``; ``failed`` (retry later) and ``dead`` (gave up). Webhook event
statuses: ``received`` -> ``processing`` -> ``processed``; ``ignored``
(outbound direction, unknown type); ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "Contact",
    "FollowUp",
    "Handoff",
    "Message",
    "OutboxItem",
    "Slot",
    "Store",
    "WebhookEvent",
    "WebhookInsert",
]


@dataclass(slots=True)
class Contact:
    """A GHL contact as the bots see it."""

    contact_id: str
    location_id: str = ""
    current_bot: str = "lead"
    temperature: str | None = None
    tags: list[str] = field(default_factory=list)
    opted_out: bool = False
    escalated: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    """The conversation state of the contact's bots (JSON), kept across restarts."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(slots=True)
class Message:
    """One inbound or outbound message."""

    id: int
    contact_id: str
    direction: str  # "inbound" | "outbound"
    body: str
    channel: str
    created_at: datetime
    message_id: str | None = None


@dataclass(slots=True)
class WebhookEvent:
    """A stored webhook delivery."""

    id: int
    webhook_id: str | None
    message_id: str | None
    event_type: str
    contact_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    received_at: datetime
    error: str | None = None
    trace_context: dict[str, str] = field(default_factory=dict)
    """W3C ``traceparent``/``tracestate`` of the request that stored it (a later re-run links to it)."""
    date_added: datetime | None = None
    """GHL's time of the message (``dateAdded``), when the delivery had one; orders a contact's events."""


@dataclass(slots=True, frozen=True)
class WebhookInsert:
    """The answer to :meth:`Store.record_webhook_event`."""

    event_id: int
    duplicate: bool
    """True when an event with the same webhookId or messageId was already stored."""
    event: WebhookEvent | None = None
    """The row just stored (None for a duplicate)."""


@dataclass(slots=True)
class OutboxItem:
    """An outbound GHL action written before it is sent."""

    id: int
    idempotency_key: str
    kind: str
    contact_id: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    response: dict[str, Any] | None = None
    owner: str | None = None
    """The process sending it (while ``sending``); a dead owner's items are taken over."""
    first_attempt_at: datetime | None = None
    """When the first send began: the start of the window GHL is read back in."""
    deadline_at: datetime | None = None
    """When it is given up (``dead``); None means ``created_at`` + the outbox's max age."""
    check_first: bool = False
    """The last attempt's outcome is unknown: read GHL back before sending again."""


@dataclass(slots=True)
class Handoff:
    """One evaluated or executed handoff between bots."""

    id: int
    contact_id: str
    source_bot: str
    target_bot: str
    confidence: float
    reason: str
    outcome: str  # "executed" | "blocked:<reason>" | "in_progress"
    created_at: datetime


@dataclass(slots=True)
class FollowUp:
    """A scheduled follow-up step."""

    id: int
    contact_id: str
    step: str
    due_at: datetime
    status: str
    attempts: int
    trace_context: dict[str, str]
    created_at: datetime
    last_error: str | None = None


@dataclass(slots=True, frozen=True)
class Slot:
    """One fact of the dialogue state: what a contact told the bots about one side.

    ``side`` is ``buy`` or ``sell`` for the facts of that side of a deal (a
    two-sided lead has both sets), ``contact`` for facts about the person
    (the sides they are on, agent status). ``value`` is plain JSON.
    """

    side: str
    name: str
    value: Any
    updated_at: datetime | None = None


class Store(Protocol):
    """Durable state of the service. Every method is safe to call concurrently."""

    backend: str
    """``"sqlite"`` or ``"postgresql"``."""

    stats: Any
    """Round trips, statements and executions sent so far (``StoreStats``)."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release every connection."""

    async def ping(self) -> None:
        """Run a trivial query; raise StorageUnavailableError when the database is down."""

    async def schema_version(self) -> int:
        """The applied schema version."""

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Run the calls made inside the block in one transaction (same task)."""

    def unit_of_work(self) -> AbstractAsyncContextManager[Any]:
        """Defer the block's writes nobody waits for; write them in one transaction at the end.

        Yields the unit of work: setting its ``recheck`` to a contact whose lock is held
        inside has that contact's ``received`` events read in the lock's release batch,
        into ``rechecked`` (None until then). Setting its ``claim`` to an event has the
        next contact lock claim it in the round trip that takes the lock, when it is then
        the contact's only ``received`` event; ``claim_webhook_event`` answers for it then.
        """

    def contact_lock(self, contact_id: str, timeout: float = 30.0) -> AbstractAsyncContextManager[None]:
        """Serialise holders for one contact, across tasks and processes (one unit of work inside)."""

    # contacts
    async def get_contact(self, contact_id: str) -> Contact | None: ...
    async def upsert_contact(self, contact: Contact) -> Contact: ...

    # messages
    async def add_message(
        self,
        contact_id: str,
        direction: str,
        body: str,
        channel: str,
        *,
        message_id: str | None = None,
        created_at: datetime | None = None,
        defer: bool = False,
    ) -> Message:
        """Store a message; ``defer`` lets a unit of work write it later (the id is then 0)."""

    async def list_messages(self, contact_id: str, limit: int = 50) -> list[Message]:
        """Oldest first, the last ``limit`` messages."""

    # webhook events
    async def record_webhook_event(
        self,
        *,
        webhook_id: str | None,
        message_id: str | None,
        event_type: str,
        contact_id: str | None,
        payload: dict[str, Any],
        status: str = "received",
        trace_context: dict[str, str] | None = None,
        date_added: datetime | None = None,
    ) -> WebhookInsert:
        """Store a delivery; a duplicate webhookId or messageId is reported, not raised."""

    async def claim_webhook_event(self, event_id: int, *, stale_before: datetime | None = None) -> bool:
        """Move ``received``/``failed`` to ``processing``; False when someone else has it.

        ``stale_before`` also takes over an event stuck in ``processing`` since before it.
        """

    async def finish_webhook_event(self, event_id: int, status: str, error: str | None = None) -> None: ...
    async def get_webhook_event(self, event_id: int) -> WebhookEvent | None: ...
    async def list_unprocessed_webhook_events(
        self, older_than: datetime, limit: int = 100
    ) -> list[WebhookEvent]:
        """Events still ``received`` or stuck ``processing`` since before ``older_than``."""

    # outbox
    async def enqueue_outbox(
        self,
        idempotency_key: str,
        kind: str,
        payload: dict[str, Any],
        *,
        contact_id: str | None = None,
        claim: bool = False,
        owner: str | None = None,
        due_at: datetime | None = None,
        deadline_at: datetime | None = None,
    ) -> tuple[OutboxItem, bool]:
        """Write an item once; returns (item, created). A known key returns the stored item.

        ``claim`` stores a new item already ``sending`` by ``owner`` (the caller sends it now).
        """

    async def claim_outbox_item(self, item_id: int) -> OutboxItem | None:
        """``pending`` -> ``sending`` for one item; None when it is not pending."""

    async def claim_due_outbox(
        self, now: datetime, limit: int = 50, *, stale_before: datetime | None = None
    ) -> list[OutboxItem]:
        """Claim due ``pending`` items (``sending``), each by exactly one caller.

        ``stale_before`` also takes over items stuck in ``sending`` since before it.
        """

    async def mark_outbox_sent(self, item_id: int, response: dict[str, Any] | None = None) -> None: ...
    async def mark_outbox_failed(self, item_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """Back to ``pending`` at ``next_attempt_at``; ``failed`` for good when it is None."""

    async def get_outbox_item(self, item_id: int) -> OutboxItem | None: ...
    async def list_outbox(self, status: str | None = None, limit: int = 1000) -> list[OutboxItem]: ...

    # outbox reliability (issue 13; see storage/_reliability.py)
    async def outbox_heartbeat(self, owner: str, now: datetime | None = None) -> None: ...
    async def claim_outbox_work(
        self, now: datetime, limit: int, *, owner: str, dead_before: datetime, contact_ok: bool = True
    ) -> list[OutboxItem]: ...
    async def release_outbox_item(
        self,
        item_id: int,
        *,
        next_attempt_at: datetime,
        error: str | None,
        check_first: bool,
        count_attempt: bool = True,
    ) -> None: ...
    async def finish_outbox_item(self, item_id: int, status: str, reason: str) -> None: ...
    async def retry_outbox_items(
        self, *, deadline_at: datetime, ids: Sequence[int] | None = None, status: str = "dead"
    ) -> list[int]: ...
    async def newer_sent_replies(self, contact_id: str, after_id: int) -> list[str]: ...
    async def sent_message_ids(self, contact_id: str, text: str, exclude_id: int) -> set[str]: ...
    async def outbox_circuit(self, location_id: str) -> Any: ...
    async def claim_outbox_probe(
        self, location_id: str, now: datetime, owner: str, hold_until: datetime
    ) -> bool: ...
    async def outbox_circuit_failed(
        self, location_id: str, failures: int, next_probe_at: datetime
    ) -> None: ...
    async def outbox_circuit_closed(self, location_id: str) -> None: ...
    async def pending_contact_events(self, contact_id: str, limit: int = 100) -> list[WebhookEvent]: ...

    # handoffs
    async def record_handoff(
        self,
        contact_id: str,
        source_bot: str,
        target_bot: str,
        confidence: float,
        reason: str,
        outcome: str,
        created_at: datetime | None = None,
    ) -> Handoff: ...
    async def list_handoffs(self, contact_id: str, since: datetime | None = None) -> list[Handoff]: ...

    # follow-ups
    async def schedule_followup(
        self, contact_id: str, step: str, due_at: datetime, trace_context: dict[str, str]
    ) -> FollowUp: ...
    async def replace_followups(
        self,
        contact_id: str,
        steps: Sequence[tuple[str, datetime]],
        trace_context: dict[str, str],
        *,
        defer: bool = False,
    ) -> list[FollowUp]:
        """Cancel a contact's waiting steps and store ``(step, due_at)`` pairs instead, in one transaction.

        ``defer`` lets a unit of work write them with its other writes (the returned ids are then 0).
        """

    async def cancel_followups(self, contact_id: str) -> int:
        """Cancel every pending step of a contact; returns how many."""

    async def claim_due_followups(
        self, now: datetime, limit: int = 20, *, stale_before: datetime | None = None
    ) -> list[FollowUp]:
        """Claim due ``pending``/``failed`` steps (``running``), each by exactly one caller.

        ``stale_before`` also takes over steps stuck in ``running`` since before it.
        """

    async def complete_followup(self, followup_id: int) -> None: ...
    async def fail_followup(self, followup_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """``failed`` to retry at ``next_attempt_at``; ``dead`` when it is None."""

    async def list_followups(self, contact_id: str | None = None) -> list[FollowUp]: ...

    # dialogue slots (issue 10)
    async def list_slots(self, contact_id: str) -> list[Slot]:
        """Every stored slot of a contact, ordered by side and name."""

    async def save_slots(self, contact_id: str, slots: list[Slot]) -> None:
        """Insert or replace the given slots of a contact in one statement (others are kept)."""

    # operational gauges (issue 11)
    async def backlog_counts(self, now: datetime) -> dict[str, int]:
        """``outbox_pending`` (pending or sending), ``outbox_failed`` (failed or dead), ``followups_due``
        (pending or failed, due at ``now``) and ``followups_dead``, in one statement."""
