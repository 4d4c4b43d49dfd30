"""Shorter paths through the OpenTelemetry HTTP instrumentations (issue 14).

Internal. Per-request costs of the contrib instrumentations that our set-up does not need
to pay, each replaced only where the result is the same:

* **The ASGI header getter.** The server middleware looks request headers up
  about ten times per request (host, user agent, ``traceparent``, ``tracestate``,
  ``baggage``, ``content-length``...), and its getter decodes every header of the
  request on each lookup to compare names. ``_LeanASGIGetter`` indexes the names
  of a header list once (decoded and lowercased as the instrumentation compares
  them) and serves the next lookups in an equal list from that index, decoding
  only the values it returns: the same list of the same strings.
* **The request's URL parsed again.** The client instrumentation reads a request's
  URL as ``httpx.URL(str(request.url))``, a second parse of a URL httpx already
  parsed (about 15 us); the request's own (immutable) URL is used instead.
* **An httpx call under an unsampled parent.** The client instrumentation builds
  the span's and the metrics' attributes, parses the URL twice and sets status
  codes on a span that records nothing, and its metrics go to the global meter
  provider, which our set-up never sets. When the parent span is not sampled, the
  tracer is our switch (its children follow their parent: ``ParentBased`` with
  the default delegates), no hook or URL exclusion is configured and the
  instrumentation's histograms record nowhere, :func:`_lean_async_request` does
  what is left to see: the same non-recording child span (a new span id, made
  current around the call) and the same propagation headers. Anything else, and
  every sampled call, goes through the instrumentation's own wrapper.

* **The server span of a request the sampler drops.** The ASGI middleware works out
  the span's name (matching the app's routes) and attributes, and after the span
  the metrics' attributes, status codes and a ``send`` wrapper, for every request.
  With the set-up's own sampler (``ParentBased`` with the default delegates over a
  ``TraceIdRatioBased`` or always-off root) neither name nor attributes change the
  decision, so the middleware's subclass asks that sampler first, on the trace id
  the root span will get (:class:`~._fastspan.ReservableIds`), or follows an
  unsampled caller's ``traceparent``. A dropped request gets the same non-recording
  span, the same current context (baggage included) and the same ``traceresponse``
  header, and nothing else; a sampled one, or any other configuration (hooks,
  receive/send spans, live metric instruments, a sampler of the user's), takes the
  middleware's own path.

All rely on names inside the contrib packages; :func:`install` checks them and
leaves the instrumentation unchanged when one is missing. :func:`uninstall`
puts the originals back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.metrics import NoOpHistogram
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability._fastspan import ReservableIds

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger("ghl_real_estate_ai.observability.otel_config")

_get_current_span = trace_api.get_current_span
_set_span_in_context = trace_api.set_span_in_context
_attach = context_api.attach
_detach = context_api.detach

# What install() replaced, to put back: (owner, attribute name, original value).
_replaced: list[tuple[Any, str, Any]] = []
_INHERITED = object()  # the replaced attribute came from a base class: remove ours to restore it
_original_async_request: Callable[..., Awaitable[Any]] | None = None
_httpx_instrumentation: Any = None


def installed() -> tuple[str, ...]:
    """The shorter paths in place (``asgi-getter``, ``server-unsampled``, ``httpx-url``...)."""
    names = []
    for _, name, _ in _replaced:
        if name == "asgi_getter":
            names.append("asgi-getter")
        elif name == "_handle_async_request_wrapper":
            names.append("httpx-unsampled")
        elif name == "_extract_parameters":
            names.append("httpx-url")
        elif name == "OpenTelemetryMiddleware":
            names.append("server-unsampled")
    return tuple(names)


# --- the ASGI header getter ---------------------------------------------------------


def _lean_getter_class(module: Any) -> type | None:
    base = getattr(module, "ASGIGetter", None)
    found = getattr(module, "_decode_header_item", None)
    if base is None or not callable(found) or not isinstance(getattr(module, "asgi_getter", None), base):
        return None
    decode: Callable[[Any], str] = found

    class _LeanASGIGetter(base):  # type: ignore[misc, valid-type]
        """The instrumentation's ``ASGIGetter``, reading a request's header names once.

        The middleware looks up a dozen names in the same headers: the first lookup
        indexes them (by the lowercased decoded name the instrumentation compares),
        later ones on an equal header list use that index. Values are decoded when
        returned, as the instrumentation decodes only the values it returns.
        """

        _index: tuple[tuple[Any, ...], dict[str, list[Any]]] | None = None

        def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
            headers = carrier.get("headers")
            if not headers:
                return None
            snapshot = tuple(headers)
            index = self._index
            if index is None or index[0] != snapshot:
                table: dict[str, list[Any]] = {}
                for raw_key, raw_value in snapshot:
                    table.setdefault(decode(raw_key).lower(), []).append(raw_value)
                index = (snapshot, table)
                self._index = index
            found = index[1].get(key.lower())
            return [decode(raw) for raw in found] if found else None

    return _LeanASGIGetter


def _install_asgi_getter() -> None:
    try:
        from opentelemetry.instrumentation import asgi as module
    except ImportError:
        return
    if any(owner is module and name == "asgi_getter" for owner, name, _ in _replaced):
        return
    getter_class = _lean_getter_class(module)
    if getter_class is None:
        return
    _replaced.append((module, "asgi_getter", module.asgi_getter))
    module.asgi_getter = getter_class()


# --- the server span of an unsampled request ------------------------------------------


def _inert(instrument: object) -> bool:
    """True for no instrument, an API no-op one, or a global proxy that no meter provider backs."""
    if instrument is None or type(instrument).__name__.startswith("NoOp"):
        return True
    return (
        type(instrument).__name__.startswith("_Proxy") and getattr(instrument, "_real_instrument", 1) is None
    )


_backing = attrgetter("_real_instrument")


def _metrics_inert(middleware: Any) -> bool:
    """True while none of the middleware's metric instruments records anything.

    Its instruments are sorted once: no-op ones never record, a proxy records once a
    global meter provider is set (checked on every call), anything else always records.
    """
    proxies = middleware.__dict__.get("_lean_proxies")
    if proxies is None:
        found = [getattr(middleware, name, 1) for name in _SERVER_INSTRUMENTS]
        proxies = (
            tuple(i for i in found if i is not None and not type(i).__name__.startswith("NoOp"))
            if all(_inert(i) for i in found)
            else False
        )
        middleware._lean_proxies = proxies
    return proxies is not False and not any(map(_backing, proxies))


def _unsampled_server_span(
    middleware: Any, scope: dict[str, Any]
) -> tuple[trace_api.Span, context_api.Context] | None:
    """The server span and context of a request that will not be sampled, or None to take the full path.

    Only for the set-up's own configuration: our provider behind the switch, a
    ``ParentBased`` sampler with the default delegates whose root sampler decides by
    trace id alone (``TraceIdRatioBased`` or always off), no hook, no receive/send
    spans and no live metric instrument. The decision is the sampler's own, taken on
    the trace id the span will get (reserved from the provider's id generator).
    """
    if (
        scope.get("type") != "http"
        or _get_current_span() is not trace_api.INVALID_SPAN
        or middleware.server_request_hook is not None
        or middleware.client_request_hook is not None
        or middleware.client_response_hook is not None
        or not middleware.exclude_receive_span
        or not middleware.exclude_send_span
        or type(middleware.tracer) is not _provider._SwitchTracer
        or not _metrics_inert(middleware)
    ):
        return None
    tracer: Any = middleware.tracer._current()
    ids = getattr(tracer, "id_generator", None)
    root_sampler = getattr(getattr(tracer, "sampler", None), "_root", None)
    if (
        not isinstance(ids, ReservableIds)
        or getattr(tracer, "_fast_children", False) is not True
        or not (type(root_sampler) is TraceIdRatioBased or root_sampler is ALWAYS_OFF)
        or not _server_module.is_http_instrumentation_enabled()
    ):
        return None
    excluded = middleware.excluded_urls
    if excluded and excluded.url_disabled(_server_module.get_host_port_url_tuple(scope)[2]):
        return None
    ctx = extract(scope, getter=_server_module.asgi_getter)
    parent = _get_current_span(ctx).get_span_context()
    if parent.is_valid:
        if parent.trace_flags.sampled:
            return None
    else:
        result = tracer.sampler.should_sample(ctx, ids.reserve_trace_id(), "HTTP", SpanKind.SERVER)
        if result.decision is not Decision.DROP:
            return None  # the full path's root span gets the reserved id, so the same decision
    # The span name and attributes only matter to a span that records.
    span = tracer.start_span("HTTP", context=ctx, kind=SpanKind.SERVER)
    return span, ctx


_SERVER_INSTRUMENTS = (
    "duration_histogram_old",
    "duration_histogram_new",
    "server_response_size_histogram",
    "server_response_body_size_histogram",
    "server_request_size_histogram",
    "server_request_body_size_histogram",
    "active_requests_counter",
)
_server_module: Any = None


def _lean_middleware_class(module: Any) -> type | None:
    base = getattr(module, "OpenTelemetryMiddleware", None)
    needed = ("get_host_port_url_tuple", "asgi_getter", "asgi_setter", "is_http_instrumentation_enabled")
    if base is None or not all(hasattr(module, name) for name in needed):
        return None

    class _LeanServerMiddleware(base):  # type: ignore[misc, valid-type]
        """The ASGI instrumentation's middleware, with a short path for an unsampled request."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            started = _unsampled_server_span(self, scope)
            if started is None:
                await super().__call__(scope, receive, send)
                return
            span, ctx = started
            token = _attach(ctx)
            try:
                with trace_api.use_span(span, end_on_exit=False):
                    await self.app(scope, receive, _traceresponse_send(span, send))
            finally:
                _detach(token)

    # FastAPI's own telemetry stands aside for the ASGI instrumentation's middleware, which it
    # recognises by module and class name: this one is that middleware and must read as it.
    _LeanServerMiddleware.__module__ = base.__module__
    _LeanServerMiddleware.__name__ = base.__name__
    _LeanServerMiddleware.__qualname__ = base.__qualname__
    return _LeanServerMiddleware


def _traceresponse_send(span: trace_api.Span, send: Any) -> Any:
    """``send`` with the response propagator's headers, as the middleware adds them to every message."""

    async def otel_send(message: dict[str, Any]) -> None:
        propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
        if propagator:
            server_context = _set_span_in_context(span, context_api.Context())
            propagator.inject(message, context=server_context, setter=_server_module.asgi_setter)
        await send(message)

    return otel_send


def _install_server_middleware() -> None:
    global _server_module
    try:
        from opentelemetry.instrumentation import asgi as module
        from opentelemetry.instrumentation import fastapi as fastapi_module
    except ImportError:
        return
    if any(name == "OpenTelemetryMiddleware" for _, name, _ in _replaced):
        return
    if getattr(fastapi_module, "OpenTelemetryMiddleware", None) is not module.OpenTelemetryMiddleware:
        return
    lean = _lean_middleware_class(module)
    if lean is None:
        return
    _server_module = module
    _replaced.append((fastapi_module, "OpenTelemetryMiddleware", module.OpenTelemetryMiddleware))
    fastapi_module.OpenTelemetryMiddleware = lean  # type: ignore[attr-defined, assignment]


# --- httpx calls under an unsampled parent --------------------------------------------


def _records_nowhere(histogram: object) -> bool:
    """True for no histogram, the API's no-op one, or a global proxy no meter provider backs."""
    if histogram is None or isinstance(histogram, NoOpHistogram):
        return True
    return type(histogram).__name__ == "_ProxyHistogram" and getattr(histogram, "_real_instrument", 1) is None


def _excludes_some(excluded: object) -> bool:
    """True unless no URL is excluded (``OTEL_PYTHON_HTTPX_EXCLUDED_URLS`` unset gives an empty list)."""
    return excluded is not None and bool(getattr(excluded, "_excluded_urls", True))


def _lean_allowed(tracer: object, options: dict[str, Any], args: tuple[Any, ...]) -> bool:
    if (
        type(tracer) is not _provider._SwitchTracer
        or options.get("async_request_hook") is not None
        or options.get("async_response_hook") is not None
        or _excludes_some(options.get("excluded_urls"))
        or not _records_nowhere(options.get("duration_histogram_old"))
        or not _records_nowhere(options.get("duration_histogram_new"))
    ):
        return False
    module = options.get("module")
    request_class = getattr(module, "Request", None)
    return request_class is not None and bool(args) and isinstance(args[0], request_class)


async def _lean_async_request(
    wrapped: Callable[..., Awaitable[Any]],
    instance: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    **options: Any,
) -> Any:
    """The httpx instrumentation's async wrapper, shorter under an unsampled parent (module docstring)."""
    original = _original_async_request
    assert original is not None
    parent = _get_current_span().get_span_context()
    tracer = options.get("tracer")
    if (
        not parent.is_valid
        or parent.trace_flags.sampled
        or not _lean_allowed(tracer, options, args)
        or not tracer.children_follow_parent()  # type: ignore[union-attr]
        or not _httpx_instrumentation.is_http_instrumentation_enabled()
    ):
        return await original(wrapped, instance, args, kwargs, **options)
    # The same non-recording child the instrumentation would start (the name is not kept).
    span = tracer.start_span("HTTP", kind=SpanKind.CLIENT)  # type: ignore[union-attr]
    token = _attach(_set_span_in_context(span))
    try:
        module = options["module"]
        _httpx_instrumentation._inject_propagation_headers(args[0].headers, args, kwargs, module)
        return await wrapped(*args, **kwargs)
    finally:
        _detach(token)


def _lean_extract_parameters_for(original: Callable[..., Any]) -> Callable[..., Any]:
    def extract(args: tuple[Any, ...], kwargs: dict[str, Any], module: Any) -> Any:
        request = args[0] if args else None
        if request is None or not isinstance(request, module.Request):
            return original(args, kwargs, module)
        # The request's own URL, not a copy parsed again from its text (httpx URLs are immutable).
        return request.method.encode(), request.url, request.headers, request.stream, request.extensions

    extract.__wrapped__ = original  # type: ignore[attr-defined]
    return extract


def _install_httpx() -> None:
    global _original_async_request, _httpx_instrumentation
    try:
        from opentelemetry.instrumentation import httpx as module
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    except ImportError:
        return
    if any(name == "_handle_async_request_wrapper" for _, name, _ in _replaced):
        return
    current = getattr(HTTPXClientInstrumentor, "_handle_async_request_wrapper", None)
    if (
        current is None
        or not callable(getattr(module, "_inject_propagation_headers", None))
        or not callable(getattr(module, "is_http_instrumentation_enabled", None))
    ):
        return
    _httpx_instrumentation = module
    extract = getattr(module, "_extract_parameters", None)
    if callable(extract) and getattr(extract, "__wrapped__", None) is None:
        _replaced.append((module, "_extract_parameters", extract))
        module._extract_parameters = _lean_extract_parameters_for(extract)
    _original_async_request = current
    name = "_handle_async_request_wrapper"
    _replaced.append((HTTPXClientInstrumentor, name, vars(HTTPXClientInstrumentor).get(name, _INHERITED)))
    HTTPXClientInstrumentor._handle_async_request_wrapper = staticmethod(_lean_async_request)  # type: ignore[method-assign]


def install() -> None:
    """Put the shorter paths in place (idempotent); call before the instrumentations wrap anything."""
    try:
        _install_asgi_getter()
        _install_server_middleware()
        _install_httpx()
    except Exception:  # never let an optimisation break the set-up
        logger.debug("shorter HTTP instrumentation paths unavailable", exc_info=True)


def uninstall() -> None:
    """Put the instrumentations' own paths back."""
    while _replaced:
        owner, name, original = _replaced.pop()
        if original is _INHERITED:
            if name in vars(owner):
                delattr(owner, name)
        else:
            setattr(owner, name, original)
