"""The outbox's reliability queries (issue 13), mixed into :class:`SQLStore`.

* owners and heartbeats: a process claiming outbox items names itself and
  beats; items a dead owner left ``sending`` are taken over as soon as its
  heartbeat is stale (and read back from GHL before any new send);
* per-location circuits: while GHL fails for a location, one probe at a time
  after a growing delay, instead of one call per item;
* final outcomes (``failed``, ``dead``, ``dropped``) with their reason, and
  re-sending ``dead`` items;
* per-contact ordering: the ``received`` events of one contact in ``dateAdded``
  order (then arrival).

Written once against ``_sql``/``_one``, like the rest of the table logic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ghl_real_estate_ai.storage.base import OutboxItem, WebhookEvent

__all__ = ["Circuit", "ReliabilityQueries"]

_FINAL_OUTBOX = frozenset({"failed", "dead", "dropped"})


def _now() -> datetime:
    return datetime.now(UTC)


class Circuit:
    """A location's outage state: consecutive failures and when the next probe may go."""

    __slots__ = ("failures", "next_probe_at")

    def __init__(self, failures: int, next_probe_at: datetime) -> None:
        self.failures = failures
        self.next_probe_at = next_probe_at


class ReliabilityQueries:
    """Outbox ownership, circuits, final outcomes and per-contact event order."""

    _skip_locked: str
    _sql: Callable[..., Awaitable[list[dict[str, Any]]]]
    _one: Callable[..., Awaitable[dict[str, Any] | None]]

    # --- owners -----------------------------------------------------------------
    async def outbox_heartbeat(self, owner: str, now: datetime | None = None) -> None:
        """Record that ``owner`` (a live process) is alive now."""
        await self._sql(
            """INSERT INTO outbox_owners (owner, heartbeat_at) VALUES (?, ?)
               ON CONFLICT (owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at""",
            (owner, now or _now()),
        )

    async def claim_outbox_work(
        self, now: datetime, limit: int, *, owner: str, dead_before: datetime, contact_ok: bool = True
    ) -> list[OutboxItem]:
        """Claim due ``pending`` items and items a dead owner left ``sending``, for ``owner``.

        An item is taken over when it has been ``sending`` since before
        ``dead_before`` and its owner has not beaten since then (or it has no
        owner); a taken-over item is marked ``check_first``: its send may have
        reached GHL.
        """
        from ghl_real_estate_ai.storage._sql import _outbox_item, utc

        at, dead = utc("now", now), utc("dead_before", dead_before)
        # Sending since before dead_before, and its owner has not beaten since then either
        # (an item claimed a moment ago by a process that has not beaten yet is left alone).
        due = """((status = 'pending' AND next_attempt_at <= ?)
                  OR (status = 'sending' AND updated_at < ? AND (
                        owner IS NULL
                        OR NOT EXISTS (
                            SELECT 1 FROM outbox_owners o
                            WHERE o.owner = outbox.owner AND o.heartbeat_at >= ?))))"""
        conditions = (at, dead, dead)
        rows = await self._sql(
            f"""UPDATE outbox SET
                    check_first = CASE WHEN status = 'sending' THEN TRUE ELSE check_first END,
                    status = 'sending', attempts = attempts + 1, owner = ?, updated_at = ?,
                    first_attempt_at = COALESCE(first_attempt_at, ?)
                WHERE id IN (SELECT id FROM outbox WHERE {due}
                             ORDER BY next_attempt_at, id LIMIT ?{self._skip_locked})
                  AND {due}
                RETURNING *""",
            (owner, _now(), at, *conditions, limit, *conditions),
            exclusive=True,
        )
        return sorted((_outbox_item(r) for r in rows), key=lambda i: (i.next_attempt_at, i.id))

    async def release_outbox_item(
        self,
        item_id: int,
        *,
        next_attempt_at: datetime,
        error: str | None,
        check_first: bool,
        count_attempt: bool = True,
    ) -> None:
        """Back to ``pending`` at ``next_attempt_at`` (no owner); ``check_first`` as the attempt left it.

        ``count_attempt=False`` gives back the attempt the claim counted (no call was made).
        """
        from ghl_real_estate_ai.storage._sql import utc

        await self._sql(
            f"""UPDATE outbox SET status = 'pending', owner = NULL, next_attempt_at = ?,
                   last_error = COALESCE(?, last_error), check_first = ?, updated_at = ?
                   {"" if count_attempt else ", attempts = attempts - 1"}
               WHERE id = ?""",
            (utc("next_attempt_at", next_attempt_at), error, check_first, _now(), item_id),
        )

    async def finish_outbox_item(self, item_id: int, status: str, reason: str) -> None:
        """A final outcome other than ``sent``: ``failed``, ``dead`` or ``dropped``, with its reason."""
        if status not in _FINAL_OUTBOX:
            raise ValueError(f"unknown final outbox status {status!r}: use one of {sorted(_FINAL_OUTBOX)}")
        await self._sql(
            "UPDATE outbox SET status = ?, owner = NULL, last_error = ?, updated_at = ? WHERE id = ?",
            (status, reason, _now(), item_id),
        )

    async def retry_outbox_items(
        self, *, deadline_at: datetime, ids: Sequence[int] | None = None, status: str = "dead"
    ) -> list[int]:
        """Make ``dead`` (or ``failed``) items ``pending`` again, due now, with a new deadline.

        Returns:
            The ids made pending again.
        """
        from ghl_real_estate_ai.storage._sql import utc

        if status not in _FINAL_OUTBOX:
            raise ValueError(f"only final items can be retried, not {status!r}")
        now = _now()
        sql = """UPDATE outbox SET status = 'pending', next_attempt_at = ?, deadline_at = ?, updated_at = ?
                 WHERE status = ?"""
        args: list[Any] = [now, utc("deadline_at", deadline_at), now, status]
        if ids is not None:
            if not ids:
                return []
            sql += f" AND id IN ({', '.join('?' for _ in ids)})"
            args.extend(int(i) for i in ids)
        rows = await self._sql(sql + " RETURNING id", tuple(args))
        return sorted(int(r["id"]) for r in rows)

    async def newer_sent_replies(self, contact_id: str, after_id: int) -> list[str]:
        """Idempotency keys of ``send_message`` items of the contact, newer than ``after_id``, sent."""
        rows = await self._sql(
            """SELECT idempotency_key FROM outbox
               WHERE contact_id = ? AND id > ? AND kind = 'send_message' AND status = 'sent'
               ORDER BY id LIMIT 50""",
            (contact_id, after_id),
        )
        return [str(r["idempotency_key"]) for r in rows]

    async def sent_message_ids(self, contact_id: str, text: str, exclude_id: int) -> set[str]:
        """GHL message ids of the contact's other sent items with the same text (not ours to claim)."""
        rows = await self._sql(
            """SELECT payload, response FROM outbox
               WHERE contact_id = ? AND kind = 'send_message' AND status = 'sent' AND id <> ?
               ORDER BY id DESC LIMIT 200""",
            (contact_id, exclude_id),
        )
        found: set[str] = set()
        for row in rows:
            if dict(row["payload"]).get("message") == text and row["response"]:
                message_id = dict(row["response"]).get("messageId")
                if message_id:
                    found.add(str(message_id))
        return found

    # --- circuits ---------------------------------------------------------------
    async def outbox_circuit(self, location_id: str) -> Circuit | None:
        """The location's outage state; None while GHL answers."""
        row = await self._one(
            "SELECT failures, next_probe_at FROM outbox_circuits WHERE location_id = ?", (location_id,)
        )
        return None if row is None else Circuit(int(row["failures"]), row["next_probe_at"])

    async def claim_outbox_probe(
        self, location_id: str, now: datetime, owner: str, hold_until: datetime
    ) -> bool:
        """Take the one probe of a failing location when its time has come; False when not ours."""
        from ghl_real_estate_ai.storage._sql import utc

        at = utc("now", now)
        row = await self._one(
            """UPDATE outbox_circuits SET probe_owner = ?, probe_expires_at = ?
               WHERE location_id = ? AND next_probe_at <= ?
                 AND (probe_expires_at IS NULL OR probe_expires_at < ?)
               RETURNING location_id""",
            (owner, utc("hold_until", hold_until), location_id, at, at),
            exclusive=True,
        )
        return row is not None

    async def outbox_circuit_failed(self, location_id: str, failures: int, next_probe_at: datetime) -> None:
        """Record the location failing: ``failures`` so far, next probe at ``next_probe_at``."""
        from ghl_real_estate_ai.storage._sql import utc

        await self._sql(
            """INSERT INTO outbox_circuits
                   (location_id, failures, next_probe_at, probe_owner, probe_expires_at)
               VALUES (?, ?, ?, NULL, NULL)
               ON CONFLICT (location_id) DO UPDATE SET failures = excluded.failures,
                   next_probe_at = excluded.next_probe_at, probe_owner = NULL, probe_expires_at = NULL""",
            (location_id, failures, utc("next_probe_at", next_probe_at)),
        )

    async def outbox_circuit_closed(self, location_id: str) -> None:
        """GHL answers again for the location."""
        await self._sql("DELETE FROM outbox_circuits WHERE location_id = ?", (location_id,))

    # --- per-contact event order ------------------------------------------------------
    async def pending_contact_events(self, contact_id: str, limit: int = 100) -> list[WebhookEvent]:
        """The contact's ``received`` events in ``dateAdded`` order, then arrival (NULL dates last)."""
        from ghl_real_estate_ai.storage._sql import _webhook_event

        rows = await self._sql(
            """SELECT * FROM webhook_events WHERE contact_id = ? AND status = 'received'
               ORDER BY CASE WHEN date_added IS NULL THEN 1 ELSE 0 END, date_added, id LIMIT ?""",
            (contact_id, limit),
        )
        return [_webhook_event(r) for r in rows]
