"""Liveness and readiness.

``GET /health`` answers 200 while the process serves requests. ``GET /ready``
checks the database and the cache and answers 503 naming each part that is
down, so a load balancer stops sending webhooks to a replica that could not
store them; it recovers by itself when the part comes back.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

__all__ = ["READY_CHECK_TIMEOUT_SECONDS", "router"]

READY_CHECK_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


async def _check(name: str, ping: Any) -> tuple[str, str | None]:
    try:
        await asyncio.wait_for(ping(), READY_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return name, f"no answer within {READY_CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # any failure means "not ready"; the reason is reported, not raised
        return name, str(exc) or type(exc).__name__
    return name, None


@router.get("/ready", responses={503: {"description": "a dependency is down"}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database and the cache answer."""
    state = request.app.state
    store = getattr(state, "store", None)
    cache = getattr(state, "cache", None)
    if store is None or cache is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    results = await asyncio.gather(_check("database", store.ping), _check("cache", cache.ping))
    checks = {name: ("ok" if error is None else "down") for name, error in results}
    errors = {name: error for name, error in results if error is not None}
    body: dict[str, Any] = {"status": "ok" if not errors else "unavailable", "checks": checks}
    if errors:
        body["errors"] = errors
        body["down"] = sorted(errors)
    return JSONResponse(body, status_code=503 if errors else 200)
