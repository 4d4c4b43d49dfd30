"""``POST /api/v1/webhooks/ghl``: durable intake of GHL webhooks, then the bots, in the request.

GHL retries a webhook only when it gets 429 and treats every other answer as
final, so this route answers 2xx only once the event is stored, and 429 when
it cannot be stored. Checks run cheapest and safest first, and nothing is
stored before the signature verifies:

====  =============================================================
413   ``Content-Length`` or the bytes read exceed WEBHOOK_MAX_BODY_BYTES
415   the content type is not JSON
401   the signature is missing, wrong, or its timestamp is stale (5 min)
400   the body is not UTF-8 JSON, or nests deeper than MAX_JSON_DEPTH (64)
422   the body does not fit the schema (a date outside 1970-2100 too);
      ``errors`` name the fields
429   the event could not be stored (database down...); ``Retry-After``
200   ``duplicate``: a known ``webhookId``/``messageId``, not processed again
200   ``ignored``: outbound direction or another event type, stored only
200   ``processed``; or ``queued`` when processing failed or another worker
      holds it: the event is stored and the background worker retries it
====  =============================================================

Every answer names the request's trace, so a user can find it (issue 12): the W3C
``traceresponse`` header (set for every traced request, see ``instrument_app``) and
``trace_id`` in the JSON body; ``jorge traces show <trace_id>`` prints it. The
request's SERVER span also starts the contact's session (``session.id``), which every
span below it carries.

Processing runs inside the request so the request's trace holds the whole bot
flow. A processing failure still answers 200: the event is durably stored, and
answering anything else would either lose it (GHL does not retry a 500) or
make GHL redeliver what we already hold (a 429).

Text the database cannot hold (NUL, lone UTF-16 surrogates) is cleaned before
the event is parsed and stored (NUL removed, a surrogate replaced by U+FFFD);
the stored payload names the fields changed under ``"_sanitized"`` and the
request span under ``webhook.sanitized``. Such a delivery gets a final answer
like any other: 429 stays reserved for our own outages.

The app provides ``app.state.settings``, ``app.state.store`` and
``app.state.processor`` (an :class:`EventProcessor`); ``app.state.webhook_verifier``
is optional (built from the settings on first use otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from opentelemetry import trace
from pydantic import ValidationError

from ghl_real_estate_ai.dispatch import drain_contact, settles_at
from ghl_real_estate_ai.errors import ConfigurationError, SignatureError, StorageError
from ghl_real_estate_ai.integrations.ghl.webhook import (
    ED25519_HEADER,
    HMAC_HEADER,
    RSA_HEADER,
    EventProcessor,
    InboundMessage,
    WebhookVerifier,
    parse_webhook,
    process_claimed_event,
    webhook_json_schema,
)
from ghl_real_estate_ai.observability.journey import start_session
from ghl_real_estate_ai.observability.workflow_tracing import get_trace_id, propagate_trace_context
from ghl_real_estate_ai.payloads import JSONDepthError, loads, make_storable
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage.base import Store

__all__ = ["RETRY_AFTER_SECONDS", "WEBHOOK_PATH", "EventProcessor", "router"]

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/webhooks/ghl"
RETRY_AFTER_SECONDS = 60
"""What a 429 asks GHL to wait (GHL itself waits about ten minutes between retries)."""


class _RawRequestRoute(APIRoute):
    """A route whose endpoint takes the raw :class:`Request` and builds its own answer.

    FastAPI's own handler solves dependencies, reads and validates a body and serialises
    a return value on every request: about 50 µs of work the webhook does not use, since
    it reads, checks and parses the raw body itself to answer the precise codes above.
    This handler awaits the endpoint and nothing else. It is still an ``APIRoute``, so the
    OpenAPI document describes the route as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        d = self.dependant
        wanted = (
            d.path_params,
            d.query_params,
            d.header_params,
            d.cookie_params,
            d.body_params,
            d.dependencies,
        )
        if any(wanted) or d.background_tasks_param_name or d.response_param_name:
            # This handler would silently skip them: such an endpoint needs FastAPI's handler.
            raise TypeError(f"{self.path}: the endpoint of a raw-request route takes the Request only")
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request)
            return response

        return handle


router = APIRouter(route_class=_RawRequestRoute)

_TRACE_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "the request's trace"}
_STATUS_BODY = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "event_id": {"type": "integer"}, "trace_id": _TRACE_ID},
    "required": ["status"],
}
_ERROR_BODY = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "trace_id": _TRACE_ID,
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "error": {"type": "string"}},
            },
        },
    },
    "required": ["detail"],
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "stored (and processed, ignored or a duplicate)",
        "content": _json_content(_STATUS_BODY),
    },
    400: {
        "description": "the body is not UTF-8 JSON, or nests too deep",
        "content": _json_content(_ERROR_BODY),
    },
    401: {"description": "bad, missing or stale signature", "content": _json_content(_ERROR_BODY)},
    413: {"description": "body larger than WEBHOOK_MAX_BODY_BYTES", "content": _json_content(_ERROR_BODY)},
    415: {"description": "content type is not JSON", "content": _json_content(_ERROR_BODY)},
    422: {"description": "the body does not fit the schema", "content": _json_content(_ERROR_BODY)},
    429: {"description": "could not store the event; retry later", "content": _json_content(_ERROR_BODY)},
}


def _answer(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON answer carrying ``trace_id`` when the request is traced."""
    trace_id = get_trace_id()
    if trace_id is not None:
        body["trace_id"] = trace_id
    return JSONResponse(body, status_code=status, headers=headers)


def _refuse(status: int, detail: str, **extra: Any) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 429 else None
    return _answer({"detail": detail, **extra}, status, headers)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past ``limit`` (nothing more is read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _verifier(request: Request, settings: Settings) -> WebhookVerifier:
    state = request.app.state
    verifier = getattr(state, "webhook_verifier", None)
    if not isinstance(verifier, WebhookVerifier):
        verifier = WebhookVerifier.from_settings(settings)
        state.webhook_verifier = verifier
    return verifier


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "error": err["msg"]} for err in exc.errors()
    ]


@router.post(
    WEBHOOK_PATH,
    summary="Receive a GHL InboundMessage webhook",
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {"required": True, "content": _json_content(webhook_json_schema())},
        "parameters": [
            {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
            for h in (ED25519_HEADER, RSA_HEADER, HMAC_HEADER)
        ],
    },
)
async def receive_ghl_webhook(request: Request) -> JSONResponse:
    """Store a GHL webhook durably, then run the bots on it (see the module docstring)."""
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    span = trace.get_current_span()
    limit = settings.webhook_max_body_bytes

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            return _refuse(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            return _refuse(413, f"body of {int(declared)} bytes exceeds WEBHOOK_MAX_BODY_BYTES={limit}")
    if not _is_json(request.headers.get("content-type")):
        return _refuse(
            415, f"content type {request.headers.get('content-type')!r} is not JSON: send application/json"
        )
    raw = await _read_limited(request, limit)
    if raw is None:
        return _refuse(413, f"body exceeds WEBHOOK_MAX_BODY_BYTES={limit}")

    try:
        verifier = _verifier(request, settings)
    except ConfigurationError as exc:
        # Our key is broken, not the sender's request: 429 keeps GHL retrying while it is fixed.
        logger.error("webhook refused, the verifier cannot be built: %s", exc)
        return _refuse(429, "webhook verification is misconfigured on this server; retry later")
    try:
        scheme = verifier.verify(raw, request.headers)
    except SignatureError as exc:
        logger.warning("webhook refused: %s", exc)
        return _refuse(401, str(exc))

    try:
        data = loads(raw)
    except JSONDepthError as exc:
        return _refuse(400, str(exc))
    except (UnicodeDecodeError, ValueError) as exc:
        return _refuse(400, f"body is not valid JSON: {exc}")
    data, sanitized = make_storable(data)
    if sanitized:
        # Recorded with the event, so what was changed is known; the bots read the cleaned text.
        logger.warning("webhook text cleaned of unstorable characters in %s", sanitized)
        span.set_attribute("webhook.sanitized", sanitized)
        if isinstance(data, dict):
            data = {**data, "_sanitized": sanitized}

    if scheme != "unsigned":
        try:
            verifier.check_fresh(data)
        except SignatureError as exc:
            logger.warning("webhook refused: %s", exc)
            return _refuse(401, str(exc))

    try:
        message = parse_webhook(data)
    except ValidationError as exc:
        errors = _field_errors(exc)
        names = ", ".join(e["field"] for e in errors)
        return _refuse(422, f"webhook body does not fit the InboundMessage schema: {names}", errors=errors)

    span.set_attribute("webhook.signature", scheme)
    span.set_attribute("webhook.event_type", message.type)
    if message.contact_id:
        span.set_attribute("workflow.contact_id", message.contact_id)
        start_session(span, message.contact_id)
    return await _store_and_process(request, store, message, data)


async def _store_and_process(
    request: Request, store: Store, message: InboundMessage, data: dict[str, Any]
) -> JSONResponse:
    span = trace.get_current_span()
    # Stored unclaimed: whoever holds the contact's lock processes the contact's events
    # in dateAdded order (issue 13), which may be another request or replica.
    status = "received" if message.should_process else "ignored"
    try:
        inserted = await store.record_webhook_event(
            webhook_id=message.webhook_id,
            message_id=message.message_id,
            event_type=message.type,
            contact_id=message.contact_id,
            payload=data,
            status=status,
            # A re-run by the worker (after a crash or a failure) links back to this request's trace.
            trace_context=dict(propagate_trace_context({})),
            date_added=message.date_added,
        )
    except StorageError as exc:
        logger.error("webhook not stored, answering 429 so GHL retries: %s", exc)
        return _refuse(429, "the event could not be stored; retry later")
    span.set_attribute("webhook.event_id", inserted.event_id)
    if inserted.duplicate:
        span.set_attribute("webhook.outcome", "duplicate")
        return _answer({"status": "duplicate", "event_id": inserted.event_id})
    if status == "ignored":
        span.set_attribute("webhook.outcome", "ignored")
        return _answer({"status": "ignored", "event_id": inserted.event_id})

    processor: EventProcessor = request.app.state.processor
    try:
        if message.contact_id:
            # The contact's lock holder drains its events in order; this may be us.
            # It waits to settle (dateAdded + the order window) before asking for the lock.
            window = timedelta(milliseconds=request.app.state.settings.contact_order_window_ms)
            settled = settles_at(inserted.event, window) if inserted.event is not None else None
            outcomes = await drain_contact(
                store,
                processor,
                message.contact_id,
                order_window=window,
                not_before=settled,
                claim=inserted.event_id if settled is not None else None,
            )
            outcome = outcomes.get(inserted.event_id, "queued")
        elif await store.claim_webhook_event(inserted.event_id):
            async with store.unit_of_work():
                outcome = await process_claimed_event(store, processor, inserted.event_id, message)
        else:
            outcome = "queued"
    except StorageError as exc:
        # Stored already: the worker picks it up once the database answers again.
        logger.error("webhook event %d stored but not processed: %s", inserted.event_id, exc)
        outcome = "retry"
    span.set_attribute("webhook.outcome", outcome)
    answer = {"processed": "processed", "failed": "failed"}.get(outcome, "queued")
    return _answer({"status": answer, "event_id": inserted.event_id})
