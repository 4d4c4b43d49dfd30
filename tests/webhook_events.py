"""Inbound messages stored as webhook events, the way the intake stores them (for the drain's tests)."""

from __future__ import annotations

from datetime import datetime

from ghl_real_estate_ai.integrations.ghl.webhook import parse_webhook
from ghl_real_estate_ai.storage import Store
from ghl_real_estate_ai.storage.base import WebhookEvent


async def store_inbound(store: Store, contact_id: str, n: int, date_added: datetime | None) -> WebhookEvent:
    """Store message ``n`` of ``contact_id`` (message id ``{contact_id}-m{n}``), written at ``date_added``."""
    data: dict[str, object] = {
        "type": "InboundMessage",
        "locationId": "loc",
        "contactId": contact_id,
        "body": f"message {n}",
        "messageId": f"{contact_id}-m{n}",
        "webhookId": f"{contact_id}-w{n}",
    }
    if date_added is not None:
        data["dateAdded"] = date_added.isoformat()
    message = parse_webhook(data)
    inserted = await store.record_webhook_event(
        webhook_id=message.webhook_id,
        message_id=message.message_id,
        event_type=message.type,
        contact_id=message.contact_id,
        payload=data,
        date_added=message.date_added,
    )
    assert inserted.event is not None
    return inserted.event
