"""Admin endpoints: operations a person or a cron job triggers by hand.

``POST /admin/followups/run-due`` runs every follow-up step that is due, like
``jorge followups run-due``. Its optional JSON body ``{"now": "<ISO-8601>"}``
runs what is due at another instant (a naive time is UTC); the answer is the
run's report (counts and one entry per claimed step).

``GET /admin/outbox`` shows the outbox: counts per status and the items of
``?status=`` (default: ``dead`` and ``failed``, with their reasons), at most
``?limit=`` (1-1000, default 100); ``POST /admin/outbox/retry`` with an optional
body ``{"ids": [12, 15]}`` makes dead items pending again, like ``jorge outbox
retry`` (``app.state.outbox`` gives the new deadline).

Mount it with the settings' token policy::

    app.include_router(create_admin_router(
        admin_token=settings.admin_token, require_token=settings.protect_admin_endpoints
    ))

and set ``app.state.followups`` to a :class:`~ghl_real_estate_ai.followups.FollowUpRunner`.
Requests then need ``Authorization: Bearer <ADMIN_TOKEN>`` whenever a token is
configured, and are refused when one is required but ``ADMIN_TOKEN`` is unset.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ghl_real_estate_ai.cli.outbox import item_summary
from ghl_real_estate_ai.clock import parse_instant
from ghl_real_estate_ai.errors import StorageError
from ghl_real_estate_ai.followups import FollowUpRunner
from ghl_real_estate_ai.payloads import JSONDepthError, loads

__all__ = ["create_admin_router"]

logger = logging.getLogger(__name__)

_OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "dead", "dropped")

_MAX_BODY_BYTES = 4096
"""The run-due body is one small object; anything bigger is refused with 413."""

_EARLIEST_NOW = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST_NOW = datetime(2100, 1, 1, tzinfo=UTC)

_RUN_DUE_BODY_SCHEMA: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "now": {
                        "type": "string",
                        "format": "date-time",
                        "description": "Run what is due at this instant (ISO-8601; naive means UTC).",
                    }
                },
                "additionalProperties": False,
            }
        }
    },
}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _check_token(request: Request, admin_token: str | None, require_token: bool) -> JSONResponse | None:
    """None when the request may pass, else the 401 answer."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if admin_token is None:
        if require_token:
            return _error(
                401,
                "admin endpoints need a token here and ADMIN_TOKEN is not set: set ADMIN_TOKEN "
                "and send 'Authorization: Bearer <token>'",
                challenge,
            )
        return None
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied:
        return _error(401, "missing admin token: send 'Authorization: Bearer <ADMIN_TOKEN>'", challenge)
    if not hmac.compare_digest(supplied.strip().encode(), admin_token.encode()):
        return _error(401, "wrong admin token: send the value of ADMIN_TOKEN", challenge)
    return None


async def _read_now(request: Request) -> tuple[Any, JSONResponse | None]:
    """The parsed ``now`` (or None) from the optional JSON body, or an error answer."""
    body = await request.body()
    if len(body) > _MAX_BODY_BYTES:
        return None, _error(413, f"body too large: {len(body)} bytes, at most {_MAX_BODY_BYTES}")
    if not body.strip():
        return None, None
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        return None, _error(415, f"send JSON (Content-Type: application/json), got {content_type!r}")
    try:
        payload = loads(body)
    except JSONDepthError as exc:
        return None, _error(400, str(exc))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, _error(400, f"malformed JSON body: {exc}")
    if payload is None:
        return None, None
    if not isinstance(payload, dict):
        return None, _error(422, f'the body must be a JSON object like {{"now": "..."}}, got {payload!r}')
    unknown = sorted(set(payload) - {"now"})
    if unknown:
        return None, _error(422, f"unknown field(s) {unknown!r}: the only field is 'now'")
    raw = payload.get("now")
    if raw is None:
        return None, None
    if not isinstance(raw, str):
        return None, _error(422, f"now must be ISO-8601 text such as '2025-01-04T09:00:00Z', got {raw!r}")
    try:
        now = parse_instant(raw, name="now")
    except (ValueError, OverflowError) as exc:
        return None, _error(422, f"now {raw!r} is not a usable time: {exc}")
    if not _EARLIEST_NOW <= now < _LATEST_NOW:
        return None, _error(
            422, f"now {raw!r} is outside {_EARLIEST_NOW.year}-{_LATEST_NOW.year - 1}: send a real time"
        )
    return now, None


def create_admin_router(*, admin_token: str | None, require_token: bool) -> APIRouter:
    """Build the admin routes.

    Args:
        admin_token: the expected bearer token (``ADMIN_TOKEN``); when set, every request must send it.
        require_token: refuse every request when no token is configured (outside the embedded mode).

    Returns:
        A router with ``POST /admin/followups/run-due``.
    """
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.post(
        "/followups/run-due",
        summary="Run the follow-up steps that are due",
        openapi_extra={"requestBody": _RUN_DUE_BODY_SCHEMA},
        responses={
            401: {"description": "missing or wrong admin token"},
            422: {"description": "bad 'now'"},
            503: {"description": "no follow-up runner, or the database is unavailable"},
        },
    )
    async def run_due_followups(request: Request) -> JSONResponse:
        refused = _check_token(request, admin_token, require_token)
        if refused is not None:
            return refused
        now, bad = await _read_now(request)
        if bad is not None:
            return bad
        runner = getattr(request.app.state, "followups", None)
        if not isinstance(runner, FollowUpRunner):
            return _error(503, "the follow-up runner is not configured (app.state.followups is unset)")
        try:
            report = await runner.run_all_due(now)
        except StorageError as exc:
            logger.warning("admin run-due failed: %s", exc)
            return _error(503, f"the database is unavailable: {exc}", {"Retry-After": "30"})
        return JSONResponse(report.to_dict())

    @router.get(
        "/outbox",
        summary="Outbox items: counts per status, dead and failed ones with their reasons",
        responses={
            401: {"description": "missing or wrong admin token"},
            400: {"description": "bad parameter"},
        },
    )
    async def list_outbox(request: Request, status: str | None = None, limit: str = "100") -> JSONResponse:
        refused = _check_token(request, admin_token, require_token)
        if refused is not None:
            return refused
        if status is not None and status not in _OUTBOX_STATUSES:
            return _error(
                400, f"status {status!r} is not an outbox status: use one of {list(_OUTBOX_STATUSES)}"
            )
        if not re.fullmatch(r"[0-9]{1,6}", limit.strip()) or not 1 <= int(limit.strip()) <= 1000:
            return _error(400, f"limit {limit[:40]!r} is out of bounds: use 1 to 1000")
        store = getattr(request.app.state, "store", None)
        if store is None:
            return _error(503, "the store is not open yet")
        try:
            everything = await store.list_outbox(limit=1_000_000)
        except StorageError as exc:
            return _error(503, f"the database is unavailable: {exc}", {"Retry-After": "30"})
        counts = Counter(i.status for i in everything)
        wanted = {status} if status else {"dead", "failed"}
        items = [item_summary(i) for i in everything if i.status in wanted][-int(limit.strip()) :]
        return JSONResponse({"counts": {s: counts.get(s, 0) for s in _OUTBOX_STATUSES}, "items": items})

    @router.post(
        "/outbox/retry",
        summary="Send dead outbox items again",
        responses={401: {"description": "missing or wrong admin token"}, 422: {"description": "bad body"}},
    )
    async def retry_outbox(request: Request) -> JSONResponse:
        refused = _check_token(request, admin_token, require_token)
        if refused is not None:
            return refused
        body = await request.body()
        ids: list[int] | None = None
        if len(body) > _MAX_BODY_BYTES:
            return _error(413, f"body too large: {len(body)} bytes, at most {_MAX_BODY_BYTES}")
        if body.strip():
            try:
                payload = loads(body)
            except JSONDepthError as exc:
                return _error(400, str(exc))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return _error(400, f"malformed JSON body: {exc}")
            raw_ids = payload.get("ids") if isinstance(payload, dict) else None
            if not isinstance(raw_ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**62 for i in raw_ids
            ):
                return _error(422, 'the body must be {"ids": [<item id>, ...]} with positive whole numbers')
            ids = raw_ids
        outbox = getattr(request.app.state, "outbox", None)
        if outbox is None:
            return _error(503, "the outbox is not running yet")
        try:
            done = await outbox.store.retry_outbox_items(
                deadline_at=outbox.clock() + outbox.max_age, ids=ids, status="dead"
            )
        except StorageError as exc:
            return _error(503, f"the database is unavailable: {exc}", {"Retry-After": "30"})
        return JSONResponse({"retried": done})

    return router
