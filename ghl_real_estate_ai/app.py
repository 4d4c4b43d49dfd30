"""The FastAPI application: ``uvicorn ghl_real_estate_ai.app:app``.

:func:`create_app` builds the app; nothing connects until the ASGI lifespan
starts (or ``async with app.running():`` in tests and scripts), which reads
the settings, sets up tracing and logging, opens the database and the cache,
builds the GHL client, the bots and the background worker, and closes all of
it again at shutdown. A start-up failure caused by configuration (a wrong
``DATABASE_URL``, an unreachable ``REDIS_URL``...) is reported as one line
naming the variable and the cause.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ghl_real_estate_ai import __version__
from ghl_real_estate_ai.api import health
from ghl_real_estate_ai.api.serving import server_facts
from ghl_real_estate_ai.errors import APP_ERRORS
from ghl_real_estate_ai.logs import AccessLogMiddleware
from ghl_real_estate_ai.observability.otel_config import fastapi_native_telemetry_off, instrument_app
from ghl_real_estate_ai.settings import Settings, load_settings

__all__ = ["JorgeApp", "app", "create_app"]

logger = logging.getLogger(__name__)


class _EmbeddedOnly:
    """Serves the wrapped app only in the embedded mode (the GHL sandbox); 404 otherwise."""

    def __init__(self, owner: JorgeApp, inner: ASGIApp) -> None:
        self.owner = owner
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.owner.jorge_settings
        if scope["type"] == "http" and (settings is None or not settings.embedded):
            response = JSONResponse(
                {"detail": "the GHL sandbox is only served in the embedded mode (GHL_BASE_URL unset)"},
                status_code=404,
            )
            await response(scope, receive, send)
            return
        await self.inner(scope, receive, send)


class JorgeApp(FastAPI):
    """The service's FastAPI app, owning its own start-up and shutdown."""

    def __init__(self, settings: Settings | None = None, *, manage_observability: bool = True) -> None:
        super().__init__(
            title="Jorge real-estate bots",
            version=__version__,
            description="GoHighLevel webhook intake and the Lead, Buyer and Seller bots.",
            **fastapi_native_telemetry_off(),
        )
        self.configured_settings = settings
        self.jorge_settings: Settings | None = None
        self.manage_observability = manage_observability
        self._exit_stack: AsyncExitStack | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        # Handled here rather than by Starlette so that a configuration error reaches the
        # server as one line (the variable and the cause), not as a traceback.
        # Measured before start-up, so the "started" line says which loop and parser serve.
        self.state.server = server_facts(receive)
        await receive()  # lifespan.startup
        try:
            await self.startup()
        except APP_ERRORS as exc:
            # The server logs this message as the one line a user sees; no traceback.
            await send({"type": "lifespan.startup.failed", "message": f"start-up failed: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.shutdown()
        await send({"type": "lifespan.shutdown.complete"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[JorgeApp]:
        """Start the app's resources for the block (tests and scripts; servers use the lifespan)."""
        await self.startup()
        try:
            yield self
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Read the settings and open everything the app needs.

        Raises:
            JorgeError: a configuration or connection problem; the message names the variable.
        """
        from ghl_real_estate_ai import runtime

        settings = self.configured_settings or load_settings()
        settings.check_production_safety()
        self.jorge_settings = settings
        stack = AsyncExitStack()
        try:
            await runtime.start(self, settings, stack, manage_observability=self.manage_observability)
        except BaseException:
            await stack.aclose()
            self.jorge_settings = None
            raise
        self._exit_stack = stack

    async def shutdown(self) -> None:
        """Close everything :meth:`startup` opened, in reverse order."""
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            await stack.aclose()


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "error": err.get("msg", "")}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": "invalid request", "errors": problems}, status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Last resort: keep the 500 short and log the cause with its trace id.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # The server drops the connection after an unhandled error; say so, so clients do not reuse it.
    return JSONResponse({"detail": "internal error"}, status_code=500, headers={"Connection": "close"})


def create_app(settings: Settings | None = None, *, manage_observability: bool = True) -> JorgeApp:
    """Build the application.

    Args:
        settings: the configuration; None reads it from the environment at start-up.
        manage_observability: set tracing up at start-up and shut it down at the end.
            Tests that capture spans on their own provider pass False.

    Returns:
        The app, not yet started.
    """
    from ghl_real_estate_ai import runtime

    application = JorgeApp(settings, manage_observability=manage_observability)
    # Added before the tracing middleware, so it runs inside the request's SERVER span.
    application.add_middleware(AccessLogMiddleware)
    instrument_app(application)
    application.add_exception_handler(StarletteHTTPException, _http_error)
    application.add_exception_handler(RequestValidationError, _validation_error)
    application.add_exception_handler(Exception, _unexpected_error)
    application.include_router(health.router)
    runtime.add_routes(application, _EmbeddedOnly)
    return application


app = create_app()
