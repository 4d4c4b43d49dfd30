"""Auto-instrumentation: httpx, asyncpg, Redis and FastAPI apps, bound to the switch provider.

One job: load the OpenTelemetry instrumentations when tracing is set up and remove
them at shutdown. They are given the switch provider (see :mod:`._provider`), never
an SDK one, because an instrumentation keeps its tracer for good while our set-up
may be shut down and built again.
"""

from __future__ import annotations

import inspect
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ghl_real_estate_ai.observability import _leanhttp, _provider
from ghl_real_estate_ai.observability._exporters import Problems

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__: list[str] = []

import logging

logger = logging.getLogger("ghl_real_estate_ai.observability.otel_config")

EXCLUDED_URLS = (
    r"^[a-z]+://[^/]+/(health|ready|metrics)/?$"
    r"|^[a-z]+://[^/]+/(traces|api/traces|api/services|sandbox)(/.*)?(\?.*)?$"
)
"""Requests never traced, whatever the host: the probe and scrape paths, and the tools
that look at traces or at the GHL sandbox (browsing traces must not fill the store
with traces of the browsing)."""


def fastapi_native_telemetry_off() -> dict[str, Any]:
    """Keyword arguments for ``FastAPI(...)`` that switch off FastAPI's own telemetry.

    Recent FastAPI releases trace requests natively (extra ``fastapi.*`` spans,
    and logs that can carry request bodies). We trace with the OpenTelemetry
    instrumentation instead: one SERVER span, our exclusions, our redaction.

    Returns:
        ``{"telemetry": {...all off...}}``, or ``{}`` on FastAPI releases without it.
    """
    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    switches = ("tracing", "metrics", "logs", "operation_spans", "auto_configure")
    return {"telemetry": dict.fromkeys(switches, False)}


_lock = threading.RLock()
_active = False
# Apps handed to instrument_app: instrumented whenever tracing is on, also when
# setup runs after instrument_app or again after a shutdown.
_apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()
_instrumented_apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()
_instrumentors: list[tuple[str, Any]] = []


def activate(problems: Problems) -> None:
    """Tracing is set up: instrument the libraries and every app handed to :func:`instrument_app`."""
    global _active
    with _lock:
        _active = True
        _instrumentors.extend(_instrument_libraries(problems))
        for app in list(_apps):
            _instrument_one_app(app)


def deactivate() -> None:
    """Tracing is shut down: remove every instrumentation this module added."""
    global _active
    with _lock:
        _active = False
        for app in list(_instrumented_apps):
            _uninstrument_one_app(app)
        done = list(_instrumentors)
        _instrumentors.clear()
        _leanhttp.uninstall()
    for name, instrumentor in done:
        try:
            instrumentor.uninstrument()
        except Exception:  # never let cleanup raise into the app's shutdown
            logger.exception("could not uninstrument %s", name)


def _instrumentor_factories() -> list[tuple[str, Callable[[], Any]]]:
    def httpx() -> Any:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        return HTTPXClientInstrumentor()

    def asyncpg() -> Any:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        build: Callable[[], Any] = AsyncPGInstrumentor  # its __init__ is untyped
        return build()

    def redis() -> Any:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        return RedisInstrumentor()

    return [("httpx", httpx), ("asyncpg", asyncpg), ("redis", redis)]


_CAPTURE_ENV = (
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
)
_normalize_original: Callable[..., Any] | None = None


def _no_headers(headers: object, module: object) -> dict[str, list[str]]:
    return {}


def skip_unused_header_copies() -> bool:
    """Stop the httpx instrumentation copying every request's and response's headers for nothing.

    It turns the headers into a dict of lists (``_normalize_headers``) on every call,
    only to hand them to a function that returns ``{}`` when no header is to be
    captured: about a tenth of a webhook's tracing work, sampled or not. With neither
    ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST`` nor ``..._RESPONSE``
    set, that copy is replaced by an empty dict (the spans are the same); with either
    set, the instrumentation's own function is put back. Called on every set-up.

    Returns:
        True when the copy is skipped.
    """
    global _normalize_original
    try:
        from opentelemetry.instrumentation import httpx as instrumentation
    except ImportError:
        return False
    current = getattr(instrumentation, "_normalize_headers", None)
    if current is None:
        return False
    if current is not _no_headers:
        _normalize_original = current
    if any(os.environ.get(name, "").strip() for name in _CAPTURE_ENV):
        if _normalize_original is not None:
            instrumentation._normalize_headers = _normalize_original
        return False
    instrumentation._normalize_headers = _no_headers
    return True


def _instrument_libraries(problems: Problems) -> list[tuple[str, Any]]:
    skip_unused_header_copies()
    _leanhttp.install()
    done: list[tuple[str, Any]] = []
    switch = _provider.install()
    for name, factory in _instrumentor_factories():
        try:
            instrumentor = factory()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue  # somebody else owns it; leave it to them
            # The switch provider, not the SDK one: the instrumentation keeps its
            # tracer for good, and the switch follows later set-ups and shutdowns.
            instrumentor.instrument(tracer_provider=switch)
            if instrumentor.is_instrumented_by_opentelemetry:
                done.append((name, instrumentor))
            else:
                problems.add(f"{name} instrumentation refused to load (version conflict?)")
        except Exception as exc:
            problems.add(f"{name} instrumentation unavailable ({type(exc).__name__}: {exc})")
    return done


def instrument_libraries() -> list[str]:
    """Instrument httpx, asyncpg and Redis now (setup_observability does it when tracing is on).

    Returns:
        The names of the libraries instrumented by this call.
    """
    problems = Problems()
    done = _instrument_libraries(problems)
    with _lock:
        if _active:
            _instrumentors.extend(done)
    if problems.items:
        logger.warning("tracing: %s", "; ".join(problems.items))
    return [name for name, _ in done]


def _instrument_one_app(app: FastAPI) -> None:
    if app in _instrumented_apps:
        return
    _leanhttp.install()
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.propagators import (
        TraceResponsePropagator,
        get_global_response_propagator,
        set_global_response_propagator,
    )

    # Every traced answer names its trace in the W3C `traceresponse` header (issue 12),
    # unless the host application chose its own response propagator.
    if get_global_response_propagator() is None:  # type: ignore[no-untyped-call]
        set_global_response_propagator(TraceResponsePropagator())  # type: ignore[no-untyped-call]
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider.install(),
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )
    # Starlette builds its middleware stack on the first ASGI call (the lifespan
    # one included); drop it so the next request builds one with the tracing middleware.
    app.middleware_stack = None
    _instrumented_apps.add(app)


def _uninstrument_one_app(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.uninstrument_app(app)
    app.middleware_stack = None
    _instrumented_apps.discard(app)


def instrument_app(app: FastAPI) -> None:
    """Give every request of ``app`` a SERVER span (once per app, safe to call again).

    Each traced answer carries the W3C ``traceresponse`` header
    (``00-<trace id>-<server span id>-<flags>``) so a caller can find its trace.

    ``/health``, ``/ready`` and ``/metrics`` are not traced and the ASGI
    ``receive``/``send`` spans are left out. Call it before or after
    :func:`setup_observability`: the app is instrumented while tracing is set up
    and left alone while it is not.

    Args:
        app: the FastAPI application.
    """
    with _lock:
        _apps.add(app)
        if _active:
            _instrument_one_app(app)
