"""A global tracer and meter provider whose SDK delegate can be swapped.

OpenTelemetry lets a process set its global ``TracerProvider`` once, and
tracers handed out before or after that stay bound to whatever provider was
current then. Our set-up must be idempotent, restartable (shutdown, then set up
again with other exporters) and testable on a fresh provider per test, and the
auto-instrumentations grab their tracers early. So the global provider is a
thin switch: every tracer it hands out asks the switch for the current SDK
provider when a span starts (one identity check when nothing changed).

Use :func:`install` once (idempotent), then :func:`set_delegate` to point the
switch at an SDK ``TracerProvider`` (or ``None`` for no-op), and
:func:`set_meter_delegate` likewise for metrics.

The switch is also a drop-in for the SDK's provider as other tools use it
(Langfuse, Arize Phoenix, Sentry, Logfire and OpenTelemetry's own docs call
``force_flush()``, ``shutdown()``, ``add_span_processor()`` and ``resource`` on
whatever ``trace.get_tracer_provider()`` returns): those calls go to the
:class:`ProviderOwner` registered with :func:`set_owner` (the set-up), or, with no
owner, straight to the current SDK delegate.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util.types import Attributes

__all__ = [
    "ProviderOwner",
    "SwitchTracerProvider",
    "current_delegate",
    "current_meter_delegate",
    "generation",
    "install",
    "set_delegate",
    "set_meter_delegate",
    "set_owner",
]

_NOOP_PROVIDER = trace_api.NoOpTracerProvider()
_lock = threading.Lock()
_delegate: TracerProvider = _NOOP_PROVIDER
_meter_delegate: metrics_api.MeterProvider | None = None
_generation = 0
_installed: SwitchTracerProvider | None = None
_owner: ProviderOwner | None = None


class ProviderOwner(Protocol):
    """Who answers the SDK-style calls made on the switch (the set-up's lifecycle)."""

    def force_flush(self, timeout_millis: int) -> bool: ...

    def shutdown(self) -> None: ...

    def add_span_processor(self, processor: SpanProcessor) -> None: ...

    @property
    def resource(self) -> Resource: ...


def set_owner(owner: ProviderOwner | None) -> None:
    """Send the switch's ``force_flush``/``shutdown``/``add_span_processor``/``resource`` to ``owner``."""
    global _owner
    _owner = owner


def generation() -> int:
    """A number that changes every time a delegate is swapped."""
    return _generation


def current_delegate() -> TracerProvider:
    """The SDK provider spans currently go to (a no-op provider when tracing is off)."""
    return _delegate


def current_meter_delegate() -> metrics_api.MeterProvider | None:
    """The SDK meter provider metrics currently go to, if any."""
    return _meter_delegate


def set_delegate(provider: TracerProvider | None) -> None:
    """Send spans to ``provider`` from now on (``None``: drop them)."""
    global _delegate, _generation
    with _lock:
        _delegate = provider if provider is not None else _NOOP_PROVIDER
        _generation += 1


def set_meter_delegate(provider: metrics_api.MeterProvider | None) -> None:
    """Record metrics on ``provider`` from now on (``None``: nowhere)."""
    global _meter_delegate, _generation
    with _lock:
        _meter_delegate = provider
        _generation += 1


def install() -> SwitchTracerProvider:
    """Make the switch the process's global tracer provider; safe to call again."""
    global _installed
    with _lock:
        if _installed is None:
            _installed = SwitchTracerProvider()
            current = trace_api.get_tracer_provider()
            if isinstance(current, trace_api.ProxyTracerProvider):
                trace_api.set_tracer_provider(_installed)
            # Somebody set a provider before us: it stays global (the set-up joins or refuses it).
        return _installed


class _SwitchTracer(Tracer):
    """A tracer that resolves the current delegate's tracer when a span starts."""

    __slots__ = ("_args", "_generation", "_tracer")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self._args = args
        self._generation = -1
        self._tracer: Tracer = trace_api.NoOpTracer()

    def _current(self) -> Tracer:
        if self._generation != _generation:
            self._tracer = _delegate.get_tracer(*self._args)
            self._generation = _generation
        return self._tracer

    def children_follow_parent(self) -> bool:
        """True when the current SDK tracer samples a child as its parent is (default ``ParentBased``)."""
        return getattr(self._current(), "_fast_children", False) is True

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._current().start_span(
            name, context, kind, attributes, links, start_time, record_exception, set_status_on_exception
        )

    def start_as_current_span(  # type: ignore[override]  # the API declares its own CM type
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> AbstractContextManager[Span]:
        # The delegate's own context manager, not one wrapped around it: the auto-instrumentations
        # start every SERVER and CLIENT span here, and a second generator layer per span costs.
        return self._current().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        )


class SwitchTracerProvider(TracerProvider):
    """The global provider: hands out tracers that follow the current delegate."""

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes | None = None,
    ) -> Tracer:
        args = (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        return _SwitchTracer(args)

    # --- the SDK TracerProvider calls other tools make (see the module docstring) ---

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every finished span now; True when all went out within ``timeout_millis``."""
        if _owner is not None:
            return _owner.force_flush(timeout_millis)
        flush = getattr(_delegate, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True

    def shutdown(self) -> None:
        """Flush and stop tracing (bounded); later spans are not recorded."""
        if _owner is not None:
            _owner.shutdown()
            return
        stop = getattr(_delegate, "shutdown", None)
        if stop is not None:
            stop()

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        """Hand every span to ``span_processor`` too (redacted unless content capture is on)."""
        if _owner is not None:
            _owner.add_span_processor(span_processor)
            return
        add = getattr(_delegate, "add_span_processor", None)
        if add is None:
            raise RuntimeError(
                "tracing is not set up, so there is no provider to add a span processor to: "
                "call setup_observability() first"
            )
        add(span_processor)

    @property
    def resource(self) -> Resource:
        """The resource every span carries (empty while tracing is off)."""
        if _owner is not None:
            return _owner.resource
        resource = getattr(_delegate, "resource", None)
        return resource if isinstance(resource, Resource) else Resource.get_empty()
