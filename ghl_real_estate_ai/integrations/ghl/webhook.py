"""GHL webhooks: the InboundMessage model and signature verification.

Parse a delivery with :func:`parse_webhook` (flat GHL form or the nested
``message: {type, body, direction}`` form of custom workflows, both to one
:class:`InboundMessage`), and verify it BEFORE parsing with
:class:`WebhookVerifier` over the raw request bytes::

    verifier = WebhookVerifier.from_settings(settings)   # loads the keys once
    scheme = verifier.verify(raw_body, request.headers)  # SignatureError on failure
    data = json.loads(raw_body)
    if scheme != "unsigned":
        verifier.check_fresh(data)                       # 5-minute replay window
    message = parse_webhook(data)                        # pydantic ValidationError on bad shape

Signature schemes, tried in this order; a present header whose key is configured
must verify, or the delivery is refused:

* ``X-GHL-Signature``: base64 Ed25519 over the body, GHL's key in
  ``GHL_WEBHOOK_PUBLIC_KEY`` (PEM).
* ``X-WH-Signature``: legacy base64 RSA-SHA256 (PKCS#1 v1.5), key in
  ``GHL_WEBHOOK_RSA_PUBLIC_KEY`` (PEM).
* ``X-Jorge-Signature``: HMAC-SHA256 of the body with ``GHL_WEBHOOK_HMAC_SECRET``,
  as hex or base64, optionally prefixed ``sha256=``; for GHL custom workflow
  webhooks, where you pick the header yourself.

With none of them present the delivery is accepted only when
``settings.unsigned_webhooks_allowed``. Signed deliveries must carry a body
``timestamp`` (ISO-8601 or epoch milliseconds) within five minutes of now,
either way: the signature covers it, which is what makes a captured request
useless after the window. Unsigned deliveries skip the window (nothing binds
their timestamp).

The processor that runs the bots implements :class:`EventProcessor`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from ghl_real_estate_ai.errors import ConfigurationError, SignatureError
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage.base import Store, WebhookEvent

__all__ = [
    "EARLIEST_TIMESTAMP",
    "ED25519_HEADER",
    "HMAC_HEADER",
    "LATEST_TIMESTAMP",
    "MESSAGE_EVENT_TYPES",
    "REPLAY_WINDOW",
    "RSA_HEADER",
    "EventProcessor",
    "InboundMessage",
    "ProcessOutcome",
    "SignatureScheme",
    "WebhookVerifier",
    "parse_timestamp",
    "parse_webhook",
    "process_claimed_event",
    "webhook_json_schema",
]

logger = logging.getLogger(__name__)

ED25519_HEADER = "X-GHL-Signature"
RSA_HEADER = "X-WH-Signature"
HMAC_HEADER = "X-Jorge-Signature"
REPLAY_WINDOW = timedelta(minutes=5)
MESSAGE_EVENT_TYPES = frozenset({"InboundMessage", "OutboundMessage"})
"""Event types that carry a conversation message; others are stored and ignored."""

SignatureScheme = Literal["ed25519", "rsa", "hmac", "unsigned"]

# GHL's numeric message types, as custom workflow webhooks sometimes send them
# in the nested form (`message.type: 2`).
_NUMERIC_MESSAGE_TYPES = {
    1: "Call",
    2: "SMS",
    3: "Email",
    4: "SMS",
    5: "Facebook",
    6: "Review",
    7: "Call",
    8: "Call",
    9: "Live Chat",
    10: "Email",
    11: "IG",
    12: "Email",
    13: "WhatsApp",
    14: "GMB",
}


class EventProcessor(Protocol):
    """What runs the bots for one stored webhook event (the bot layer implements it)."""

    async def process(self, event: WebhookEvent, message: InboundMessage) -> None:
        """Handle one claimed event; raise to mark the attempt failed."""


EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)


def parse_timestamp(value: Any) -> datetime:
    """Read a GHL timestamp: ISO-8601 text or epoch milliseconds (number or digits).

    Args:
        value: the raw JSON value.

    Returns:
        A timezone-aware UTC datetime (naive ISO values are taken as UTC), from
        1970 up to (not including) 2100.

    Raises:
        ValueError: the value is neither, or outside that range.
    """
    moment = _read_timestamp(value)
    if not EARLIEST_TIMESTAMP <= moment < LATEST_TIMESTAMP:
        raise ValueError(
            f"time {value!r} is outside {EARLIEST_TIMESTAMP.year}-{LATEST_TIMESTAMP.year - 1}: "
            "send the real time of the event"
        )
    return moment


def _read_timestamp(value: Any) -> datetime:
    if isinstance(value, bool):
        raise ValueError(f"expected ISO-8601 text or epoch milliseconds, got {value!r}")
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d{10,16}", value)):
        try:
            return datetime.fromtimestamp(float(value) / 1000.0, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"epoch milliseconds out of range: {value!r}") from None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except ValueError:
            raise ValueError(f"expected ISO-8601 text or epoch milliseconds, got {value!r}") from None
        except OverflowError:  # e.g. year 9999 with a negative offset: past datetime.max in UTC
            raise ValueError(f"time {value!r} is out of range") from None
    raise ValueError(f"expected ISO-8601 text or epoch milliseconds, got {value!r}")


class _NestedMessage(BaseModel):
    """The ``message`` object of the nested (custom workflow) form."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    type: str | int | None = None
    body: str | None = None
    direction: Literal["inbound", "outbound"] | None = None


class InboundMessage(BaseModel):
    """One GHL webhook delivery, flat and nested forms normalised.

    Field names are snake_case in Python and GHL's camelCase on the wire
    (``contactId``...); both are accepted. Unknown fields are kept (``extra``).
    """

    model_config = ConfigDict(
        extra="allow", alias_generator=to_camel, populate_by_name=True, str_max_length=100_000
    )

    type: str = Field(min_length=1, max_length=100)
    """Event type: ``InboundMessage``, ``OutboundMessage``, or another GHL event (ignored)."""
    location_id: str | None = Field(default=None, min_length=1, max_length=200)
    contact_id: str | None = Field(default=None, min_length=1, max_length=200)
    body: str = ""
    message_type: str | None = Field(default=None, max_length=50)
    """Channel as GHL names it: ``SMS``, ``Email``, ``Live Chat``, ``WhatsApp``..."""
    direction: Literal["inbound", "outbound"] = "inbound"
    message_id: str | None = Field(default=None, min_length=1, max_length=200)
    conversation_id: str | None = Field(default=None, max_length=200)
    date_added: datetime | None = None
    webhook_id: str | None = Field(default=None, min_length=1, max_length=200)
    timestamp: datetime | None = None
    attachments: list[str | dict[str, Any]] = Field(default_factory=list)
    content_type: str | None = Field(default=None, max_length=200)
    status: str | None = Field(default=None, max_length=100)
    subject: str | None = None
    message: _NestedMessage | None = None
    """The nested form's message object as received (its fields are copied up)."""

    @field_validator("date_added", "timestamp", mode="before")
    @classmethod
    def _ghl_time(cls, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return parse_timestamp(value)

    @property
    def is_message(self) -> bool:
        """True for conversation message events (inbound or outbound)."""
        return self.type in MESSAGE_EVENT_TYPES

    @property
    def should_process(self) -> bool:
        """True when a bot must answer it: an inbound message event."""
        return self.type == "InboundMessage" and self.direction == "inbound"

    @property
    def reply_channel(self) -> Literal["SMS", "Email"]:
        """The channel to answer on: e-mail for e-mails, SMS otherwise."""
        return "Email" if (self.message_type or "").lower() == "email" else "SMS"


def _flatten_nested(data: dict[str, Any]) -> dict[str, Any]:
    """Copy the nested ``message`` object's fields up to the flat form."""
    nested = data.get("message")
    if not isinstance(nested, dict):
        return data
    flat = dict(data)
    kind = nested.get("type")
    if "messageType" not in flat and "message_type" not in flat and kind is not None:
        if isinstance(kind, int) and not isinstance(kind, bool):
            flat["messageType"] = _NUMERIC_MESSAGE_TYPES.get(kind, str(kind))
        elif isinstance(kind, str):
            flat["messageType"] = kind
    if "body" not in flat and "body" in nested:
        flat["body"] = nested["body"]
    if "direction" not in flat and "direction" in nested:
        flat["direction"] = nested["direction"]
    if "type" not in flat:
        # Custom workflow webhooks often omit the event type: a message object
        # makes it a message event, its direction says which.
        flat["type"] = "OutboundMessage" if flat.get("direction") == "outbound" else "InboundMessage"
    return flat


def parse_webhook(data: Any) -> InboundMessage:
    """Validate a decoded webhook body into an :class:`InboundMessage`.

    Message events must name their ``locationId`` and ``contactId``; other
    event types need only ``type``.

    Args:
        data: the decoded JSON body.

    Returns:
        The normalised message.

    Raises:
        pydantic.ValidationError: the body does not fit; each error's ``loc``
            names the field in GHL's spelling.
    """
    if not isinstance(data, dict):
        raise ValidationError.from_exception_data(
            "InboundMessage",
            [{"type": "model_type", "loc": (), "input": data, "ctx": {"class_name": "InboundMessage"}}],
        )
    message = InboundMessage.model_validate(_flatten_nested(data))
    if message.is_message:
        missing = [
            {"type": "missing", "loc": (alias,), "input": data}
            for alias, value in (("locationId", message.location_id), ("contactId", message.contact_id))
            if value is None
        ]
        if missing:
            raise ValidationError.from_exception_data("InboundMessage", missing)  # type: ignore[arg-type]
    return message


def _inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@lru_cache(maxsize=1)
def webhook_json_schema() -> dict[str, Any]:
    """The JSON Schema of a webhook body in GHL's camelCase, self-contained (no ``$ref``).

    Used as the route's OpenAPI request body, since the route reads raw bytes.
    """
    schema = InboundMessage.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    inlined: dict[str, Any] = _inline_refs(schema, defs)
    inlined["description"] = (
        "A GHL InboundMessage webhook (flat form), or the nested custom-workflow form with "
        "`message: {type, body, direction}`. Message events need `locationId` and `contactId`."
    )
    return inlined


# --- signatures -------------------------------------------------------------------


def _pem(text: str) -> bytes:
    # Keys set through env files often carry literal "\n" instead of newlines.
    return text.replace("\\n", "\n").strip().encode()


@lru_cache(maxsize=8)
def _load_ed25519(pem: str) -> ed25519.Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_pem(pem))
    except ValueError as exc:
        raise ConfigurationError(
            f"GHL_WEBHOOK_PUBLIC_KEY is not a PEM public key ({exc}): paste GHL's Ed25519 key "
            "including the BEGIN/END PUBLIC KEY lines"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigurationError(
            f"GHL_WEBHOOK_PUBLIC_KEY holds a {type(key).__name__}, not an Ed25519 key: "
            "use GHL's Ed25519 key (the RSA one goes in GHL_WEBHOOK_RSA_PUBLIC_KEY)"
        )
    return key


@lru_cache(maxsize=8)
def _load_rsa(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(_pem(pem))
    except ValueError as exc:
        raise ConfigurationError(
            f"GHL_WEBHOOK_RSA_PUBLIC_KEY is not a PEM public key ({exc}): paste GHL's RSA key "
            "including the BEGIN/END PUBLIC KEY lines"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigurationError(
            f"GHL_WEBHOOK_RSA_PUBLIC_KEY holds a {type(key).__name__}, not an RSA key: "
            "use GHL's legacy RSA key (the Ed25519 one goes in GHL_WEBHOOK_PUBLIC_KEY)"
        )
    return key


def _b64(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{header} is not base64: {value[:40]!r}") from None


def _shorten(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


@dataclass(frozen=True, slots=True)
class WebhookVerifier:
    """Checks webhook signatures with the keys from settings.

    Build it once with :meth:`from_settings`: a malformed key raises
    :class:`ConfigurationError` there, at start-up, not per request.
    """

    ed25519_key: ed25519.Ed25519PublicKey | None = None
    rsa_key: rsa.RSAPublicKey | None = None
    hmac_secret: bytes | None = None
    allow_unsigned: bool = False
    window: timedelta = REPLAY_WINDOW

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookVerifier:
        """Load the keys named by ``settings``.

        Raises:
            ConfigurationError: a key is not valid PEM or of the wrong kind.
        """
        return cls(
            ed25519_key=_load_ed25519(settings.ghl_webhook_public_key)
            if settings.ghl_webhook_public_key
            else None,
            rsa_key=_load_rsa(settings.ghl_webhook_rsa_public_key)
            if settings.ghl_webhook_rsa_public_key
            else None,
            hmac_secret=settings.ghl_webhook_hmac_secret.encode()
            if settings.ghl_webhook_hmac_secret
            else None,
            allow_unsigned=settings.unsigned_webhooks_allowed,
        )

    def verify(self, body: bytes, headers: Mapping[str, str]) -> SignatureScheme:
        """Check the signature headers against the raw body.

        Args:
            body: the request body exactly as received.
            headers: the request headers (case-insensitive mapping, e.g. Starlette's).

        Returns:
            The scheme that verified, or ``"unsigned"`` when unsigned deliveries are allowed.

        Raises:
            SignatureError: a signature is wrong, malformed, or missing when required.
        """
        ed_sig = headers.get(ED25519_HEADER)
        rsa_sig = headers.get(RSA_HEADER)
        hmac_sig = headers.get(HMAC_HEADER)
        if ed_sig is not None and self.ed25519_key is not None:
            self._verify_ed25519(body, ed_sig)
            return "ed25519"
        if rsa_sig is not None and self.rsa_key is not None:
            self._verify_rsa(body, rsa_sig)
            return "rsa"
        if hmac_sig is not None and self.hmac_secret is not None:
            self._verify_hmac(body, hmac_sig)
            return "hmac"
        if self.allow_unsigned:
            return "unsigned"
        configured = [
            header
            for header, key in (
                (ED25519_HEADER, self.ed25519_key),
                (RSA_HEADER, self.rsa_key),
                (HMAC_HEADER, self.hmac_secret),
            )
            if key is not None
        ]
        if not configured:
            raise SignatureError(
                "unsigned webhooks are not allowed and no webhook key is configured: set "
                "GHL_WEBHOOK_PUBLIC_KEY (or GHL_WEBHOOK_RSA_PUBLIC_KEY / GHL_WEBHOOK_HMAC_SECRET)"
            )
        raise SignatureError(f"missing signature header: expected one of {', '.join(configured)}")

    def _verify_ed25519(self, body: bytes, value: str) -> None:
        assert self.ed25519_key is not None
        signature = _b64(value, ED25519_HEADER)
        if len(signature) != 64:
            raise SignatureError(
                f"{ED25519_HEADER} must decode to 64 bytes, got {len(signature)} from {_shorten(value)}"
            )
        try:
            self.ed25519_key.verify(signature, body)
        except InvalidSignature:
            raise SignatureError(
                f"{ED25519_HEADER} does not match the body for GHL_WEBHOOK_PUBLIC_KEY"
            ) from None

    def _verify_rsa(self, body: bytes, value: str) -> None:
        assert self.rsa_key is not None
        signature = _b64(value, RSA_HEADER)
        try:
            self.rsa_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureError(
                f"{RSA_HEADER} does not match the body for GHL_WEBHOOK_RSA_PUBLIC_KEY"
            ) from None

    def _verify_hmac(self, body: bytes, value: str) -> None:
        assert self.hmac_secret is not None
        expected = hmac.new(self.hmac_secret, body, hashlib.sha256).digest()
        text = value.strip().removeprefix("sha256=")
        candidates: list[bytes] = []
        if re.fullmatch(r"[0-9a-fA-F]{64}", text):
            candidates.append(bytes.fromhex(text))
        else:
            with contextlib.suppress(binascii.Error, ValueError):
                candidates.append(base64.b64decode(text, validate=True))
        if not candidates:
            raise SignatureError(f"{HMAC_HEADER} is neither hex nor base64 SHA-256: {_shorten(value)}")
        if not any(hmac.compare_digest(expected, c) for c in candidates):
            raise SignatureError(f"{HMAC_HEADER} does not match the body for GHL_WEBHOOK_HMAC_SECRET")

    def check_fresh(self, data: Any, *, now: datetime | None = None) -> datetime:
        """Enforce the replay window on a signed body's ``timestamp``.

        Args:
            data: the decoded JSON body.
            now: the current time (default: the clock).

        Returns:
            The parsed timestamp.

        Raises:
            SignatureError: no timestamp, an unreadable one, or one outside the window.
        """
        raw = data.get("timestamp") if isinstance(data, dict) else None
        if raw is None:
            raise SignatureError(
                "signed webhook has no `timestamp`: it is needed for the 5-minute replay window"
            )
        try:
            stamp = parse_timestamp(raw)
        except ValueError as exc:
            raise SignatureError(f"signed webhook `timestamp` is unreadable: {exc}") from None
        current = now or datetime.now(UTC)
        age = current - stamp
        if abs(age) > self.window:
            when = "old" if age > timedelta(0) else "in the future"
            raise SignatureError(
                f"webhook timestamp {stamp.isoformat()} is {abs(age).total_seconds():.0f}s {when}; "
                f"the replay window is {self.window.total_seconds():.0f}s (check the server clock)"
            )
        return stamp


# --- processing a stored event -------------------------------------------------------

ProcessOutcome = Literal["processed", "retry", "failed", "gone"]


async def process_claimed_event(
    store: Store,
    processor: EventProcessor,
    event_id: int,
    message: InboundMessage,
    *,
    max_attempts: int = 5,
    event: WebhookEvent | None = None,
) -> ProcessOutcome:
    """Run the processor on an event the caller has claimed, and record the outcome.

    The web route (in the request) and the background worker (for events left
    behind) both go through here. A processor failure is logged with its
    exception and never raised: the event goes back to ``received`` (the worker
    retries it once its ``stuck_after`` has passed) until ``max_attempts``
    claims, then ``failed``.

    Args:
        store: the store holding the event.
        processor: runs the bots.
        event_id: the claimed event.
        message: the event's parsed body.
        max_attempts: claims after which a failing event is given up.
        event: the claimed row when the caller has it already (saves reading it again).

    Returns:
        ``processed``, ``retry`` (failed, will be retried), ``failed`` (given up),
        or ``gone`` (the event row vanished).
    """
    if event is None or event.id != event_id:
        event = await store.get_webhook_event(event_id)
    if event is None:
        logger.error("webhook event %d vanished after it was claimed", event_id)
        return "gone"
    try:
        await processor.process(event, message)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        give_up = event.attempts >= max_attempts
        logger.exception(
            "webhook event %d attempt %d failed%s",
            event_id,
            event.attempts,
            "; giving up" if give_up else "; the worker will retry it",
        )
        await store.finish_webhook_event(event_id, "failed" if give_up else "received", error)
        return "failed" if give_up else "retry"
    await store.finish_webhook_event(event_id, "processed")
    return "processed"
