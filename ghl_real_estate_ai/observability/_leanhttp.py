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
  current around the call) and the same propagation headers. Anything else goes
  through the instrumentation's own wrapper.
* **An httpx call under a sampled parent.** In the same configuration, plus the
  default semantic conventions and no captured header, :func:`_sampled_async_request`
  builds the instrumentation's CLIENT span (name, ``http.method``, ``http.url``,
  status code and status, exception events) without the metrics' attributes and
  durations, and sets the status code once where the instrumentation sets it twice.

* **The server span of a request the sampler drops.** The ASGI middleware works out
  the span's name (matching the app's routes) and attributes, and after the span
  the metrics' attributes, status codes and a ``send`` wrapper, for every request.
  With the set-up's own sampler (``ParentBased`` with the default delegates over a
  ``TraceIdRatioBased``, always-on or always-off root) neither name nor attributes
  change the decision, so the middleware's subclass asks that sampler first, on the
  trace id the root span will get (:class:`~._fastspan.ReservableIds`), or follows
  the caller's ``traceparent``. A dropped request gets the same non-recording span,
  the same current context (baggage included) and the same ``traceresponse``
  header, and nothing else. Any other configuration (hooks, receive/send spans,
  live metric instruments, a sampler of the user's) takes the middleware's own path.
* **The server span of a sampled request.** The middleware sets the span's dozen
  attributes twice (at the start, then again one by one: the same attributes in the
  same order), reads the Host header three times, and builds the attributes of
  metrics that, with no meter provider set, record nowhere. In the default
  configuration (the above, plus no captured headers and the default semantic
  conventions) :func:`_serve_sampled` does what the middleware does once: the same
  SERVER span (name, parent, attributes in order, status, exception events), the
  same current context and ``traceresponse`` header, the span ended at the same point.

All rely on names inside the contrib packages; :func:`install` checks them and
leaves the instrumentation unchanged when one is missing. :func:`uninstall`
puts the originals back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from operator import attrgetter
from typing import Any, Final
from urllib.parse import unquote

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.metrics import NoOpHistogram
from opentelemetry.propagate import extract
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, TraceIdRatioBased
from opentelemetry.semconv._incubating.attributes.http_attributes import (
    HTTP_FLAVOR,
    HTTP_HOST,
    HTTP_METHOD,
    HTTP_SCHEME,
    HTTP_SERVER_NAME,
    HTTP_STATUS_CODE,
    HTTP_TARGET,
    HTTP_URL,
    HTTP_USER_AGENT,
)
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_HOST_PORT,
    NET_PEER_IP,
    NET_PEER_PORT,
)
from opentelemetry.semconv._incubating.attributes.user_agent_attributes import USER_AGENT_SYNTHETIC_TYPE
from opentelemetry.trace import SpanKind, Status, StatusCode

from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability._fastspan import (
    ReservableIds,
    attach_span,
    attributes_of,
    current_sampling,
    current_span,
    detach,
)

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger("ghl_real_estate_ai.observability.otel_config")

_get_current_span = current_span
_set_span_in_context = trace_api.set_span_in_context
_attach = context_api.attach
_detach = detach

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
            if _client_mode is not None:
                names.append("httpx-sampled")
        elif name == "_extract_parameters":
            names.append("httpx-url")
        elif name == "OpenTelemetryMiddleware":
            names.append("server-unsampled")
            if _server_mode is not None:
                names.append("server-sampled")
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


# --- the server span ----------------------------------------------------------------------


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


# (server host, port, URL, the Host header's values) as the middleware works them out.
_Where = tuple[str, Any, str, list[str] | None]


def _where(scope: dict[str, Any]) -> _Where:
    """``get_host_port_url_tuple(scope)`` of the ASGI instrumentation, and the Host header it read.

    The middleware reads the Host header again for the span's attributes; one read serves both.
    """
    server = scope.get("server") or ["0.0.0.0", 80]
    port = server[1]
    suffix = ":" + str(port) if str(port) != "80" else ""
    host_header: list[str] | None = _server_module.asgi_getter.get(scope, "host")
    if host_header:
        url_host = host_header[0]
        if isinstance(url_host, bytes):
            url_host = _server_module._decode_header_item(url_host)
    else:
        url_host = server[0] + suffix
    url = scope.get("scheme", "http") + "://" + url_host + scope.get("path", "")
    return server[0] + suffix, port, url, host_header


# The FastAPI instrumentation's default span name and route for a request, by what its route
# matching reads: the app and its route list (as it stands), the scope's type, method, path,
# root path and Host header. Bounded: the oldest entry goes first.
_SPAN_DETAILS_MAX: Final = 512
_span_details_seen: dict[tuple[Any, ...], tuple[str, dict[str, str]]] = {}


def _span_details(
    details: Callable[[dict[str, Any]], tuple[str, dict[str, str]]], scope: dict[str, Any], where: _Where
) -> tuple[str, dict[str, str]]:
    """``details(scope)``, remembered when it is the FastAPI instrumentation's own.

    That function walks the app's routes, matching each against the scope, for every
    request: the same request line always gets the same answer while the routes stay.
    """
    app = scope.get("app")
    routes = getattr(app, "routes", None)
    if details is not _library_span_details or type(routes) is not list:
        return details(scope)
    host = where[3]
    key = (
        app,
        id(routes),
        len(routes),
        scope.get("type"),
        scope.get("method"),
        scope.get("path"),
        scope.get("root_path"),
        tuple(host) if host else None,
    )
    found = _span_details_seen.get(key)
    if found is None:
        name, attributes = details(scope)
        if len(_span_details_seen) >= _SPAN_DETAILS_MAX:
            del _span_details_seen[next(iter(_span_details_seen))]
        _span_details_seen[key] = (name, dict(attributes))
        return name, attributes
    return found[0], dict(found[1])  # the caller's own attributes dict, as details() gives


def _server_decision(
    middleware: Any, scope: dict[str, Any]
) -> tuple[Any, context_api.Context, bool, _Where | None] | None:
    """The SDK tracer, the request's extracted context, whether it is sampled (and where it
    goes, when worked out), or None to take the middleware's own path.

    Only for the set-up's own configuration: our provider behind the switch, a
    ``ParentBased`` sampler with the default delegates whose root sampler decides by
    trace id alone (``TraceIdRatioBased``, always on or always off), no hook, no
    receive/send spans and no live metric instrument. The decision is the sampler's
    own, taken on the trace id the span will get (reserved from the provider's id
    generator).
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
        or not (
            type(root_sampler) is TraceIdRatioBased or root_sampler is ALWAYS_OFF or root_sampler is ALWAYS_ON
        )
        or not _server_module.is_http_instrumentation_enabled()
    ):
        return None
    where = None
    excluded = middleware.excluded_urls
    if excluded:
        where = _where(scope)
        if excluded.url_disabled(where[2]):
            return None
    ctx = extract(scope, getter=_server_module.asgi_getter)
    parent = _get_current_span(ctx).get_span_context()
    if parent.is_valid:
        sampled = bool(parent.trace_flags.sampled)
    elif root_sampler is ALWAYS_ON:
        sampled = True
    else:
        # The root span started next on this thread gets the reserved id, so the same decision.
        result = tracer.sampler.should_sample(ctx, ids.reserve_trace_id(), "HTTP", SpanKind.SERVER)
        sampled = result.decision is not Decision.DROP
    return tracer, ctx, sampled, where


def _sampled_path_allowed(middleware: Any) -> bool:
    """No hook, no captured header and the semantic conventions the shorter path writes."""
    return (
        _server_mode is not None
        and middleware._sem_conv_opt_in_mode is _server_mode
        and middleware.http_capture_headers_server_request is None
        and middleware.http_capture_headers_server_response is None
        and getattr(middleware, "server_response_hook", None) is None
    )


def _request_attributes(scope: dict[str, Any], where: _Where) -> dict[str, Any]:
    """``collect_request_attributes(scope)`` of the ASGI instrumentation, in its default
    (old) semantic conventions: the same keys in the same order with the same values.

    Every value it keeps is truthy (its setters skip the others), so its final
    ``None`` filter has nothing to remove.
    """
    server_host, port, http_url, host_header = where
    query_string = scope.get("query_string")
    if query_string and http_url:
        if isinstance(query_string, bytes):
            query_string = query_string.decode("utf8")
        http_url += "?" + unquote(query_string)
    result: dict[str, Any] = {}
    scheme = scope.get("scheme")
    if scheme:
        result[HTTP_SCHEME] = scheme
    if server_host:
        result[HTTP_HOST] = server_host
    number = _as_int(port) if port else None
    if number is not None:
        result[NET_HOST_PORT] = number
    flavor = scope.get("http_version")
    if flavor:
        result[HTTP_FLAVOR] = flavor
    path = scope.get("path")
    if path:
        result[HTTP_TARGET] = path
    if http_url:
        url = _redact_url(http_url)
        if url:
            result[HTTP_URL] = url
    method = scope.get("method", "")
    if method:
        method = _http_util.sanitize_method(method).strip()
        if method:
            result[HTTP_METHOD] = method
    if host_header:
        result[HTTP_SERVER_NAME] = ",".join(host_header)
    user_agent = _server_module.asgi_getter.get(scope, "user-agent")
    if user_agent:
        agent = _http_util.normalize_user_agent(user_agent[0])
        if agent:
            result[HTTP_USER_AGENT] = agent
        synthetic = _http_util.detect_synthetic_user_agent(agent)
        if synthetic:
            result[USER_AGENT_SYNTHETIC_TYPE] = synthetic
    if "client" in scope and scope["client"] is not None:
        client = scope["client"]
        if client[0]:
            result[NET_PEER_IP] = client[0]
        number = _as_int(client[1]) if client[1] else None
        if number is not None:
            result[NET_PEER_PORT] = number
    return result


def _record_escaping(span: trace_api.Span, exc: Exception) -> None:
    """Record an exception leaving a span's block as ``trace.use_span`` records it."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _as_int(value: Any) -> int | None:
    """``int(value)``, or None where the instrumentation's ``set_int_attribute`` leaves the value out."""
    try:
        return int(value)
    except (ValueError, TypeError):
        return None


async def _serve_sampled(
    middleware: Any,
    tracer: Any,
    ctx: context_api.Context,
    where: _Where | None,
    scope: dict[str, Any],
    receive: Any,
    send: Any,
) -> None:
    """The middleware's ``__call__`` for a sampled HTTP request in the default configuration.

    Mirrors it step by step: the span's name and extra attributes from the middleware's
    ``default_span_details``, the request's attributes, the extracted context attached
    and the SERVER span started under it with those attributes, the span made current
    (an exception escaping the app while the span records is recorded and sets ERROR,
    as ``trace.use_span`` does), status code and ``traceresponse`` on the way out, the
    span ended after the last body message or after the app returns. Left out: the
    second setting of every attribute (it leaves the same attributes in the same order,
    and is still done when a processor or a limit changed them at the start) and the
    metrics' attributes, durations and sizes (no instrument records).
    """
    where = where or _where(scope)
    span_name, additional = _span_details(middleware.default_span_details, scope, where)
    attributes = _request_attributes(scope, where)
    attributes.update(additional)
    token = _attach(ctx)
    span = tracer.start_span(name=span_name, context=ctx, kind=SpanKind.SERVER, attributes=attributes)
    try:
        if span.is_recording() and list(attributes_of(span).items()) != list(attributes.items()):
            for key, value in attributes.items():  # the middleware sets them again: same result then
                span.set_attribute(key, value)
        try:
            span_token = attach_span(span)
            try:
                await middleware.app(scope, receive, _sampled_send(middleware, span, send))
            finally:
                _detach(span_token)
        except Exception as exc:
            _record_escaping(span, exc)
            raise
    finally:
        _detach(token)
        if span.is_recording():
            span.end()


def _sampled_send(middleware: Any, span: trace_api.Span, send: Any) -> Any:
    """The middleware's ``otel_send`` without send spans: status, response propagator, end."""
    mode = middleware._sem_conv_opt_in_mode
    set_status_code = _server_module.set_status_code
    setter = _server_module.asgi_setter

    async def otel_send(message: dict[str, Any]) -> None:
        kind = message["type"]
        status_code = None
        if kind == "http.response.start":
            status_code = message["status"]
        elif kind == "websocket.send":
            status_code = 200
        if status_code:
            set_status_code(span, status_code, None, mode)
        propagator = get_global_response_propagator()  # type: ignore[no-untyped-call]
        if propagator:
            server_context = _set_span_in_context(span, context_api.Context())
            propagator.inject(message, context=server_context, setter=setter)
        await send(message)
        if kind == "http.response.body" and not message.get("more_body", False):
            span.end()

    return otel_send


_SERVER_INSTRUMENTS = (
    "duration_histogram_old",
    "duration_histogram_new",
    "server_response_size_histogram",
    "server_response_body_size_histogram",
    "server_request_size_histogram",
    "server_request_body_size_histogram",
    "active_requests_counter",
)
# What the middleware's __init__ sets that the shorter paths read.
_MIDDLEWARE_FIELDS = (
    "tracer",
    "app",
    "excluded_urls",
    "default_span_details",
    "server_request_hook",
    "client_request_hook",
    "client_response_hook",
    "_sem_conv_opt_in_mode",
    "http_capture_headers_server_request",
    "http_capture_headers_server_response",
    "exclude_receive_span",
    "exclude_send_span",
    *_SERVER_INSTRUMENTS,
)
_HTTP_UTIL_NAMES = ("redact_url", "sanitize_method", "normalize_user_agent", "detect_synthetic_user_agent")
_server_module: Any = None
_http_util: Any = None
_library_redact_url: Any = None  # util.http's redact_url as installed, to know it was not replaced since
_library_span_details: Any = None  # the FastAPI instrumentation's default_span_details, as installed
_server_mode: Any = None  # the instrumentation's default semantic conventions, when the sampled path is on


def _lean_middleware_class(module: Any) -> type | None:
    base = getattr(module, "OpenTelemetryMiddleware", None)
    needed = ("asgi_getter", "asgi_setter", "is_http_instrumentation_enabled", "_decode_header_item")
    if base is None or not all(hasattr(module, name) for name in needed):
        return None
    init = getattr(base.__init__, "__code__", None)
    if init is None or not all(name in init.co_names for name in _MIDDLEWARE_FIELDS):
        return None

    class _LeanServerMiddleware(base):  # type: ignore[misc, valid-type]
        """The ASGI instrumentation's middleware, with short paths for the default configuration."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            decided = _server_decision(self, scope)
            if decided is None:
                await super().__call__(scope, receive, send)
                return
            tracer, ctx, sampled, where = decided
            if sampled:
                if _sampled_path_allowed(self):
                    await _serve_sampled(self, tracer, ctx, where, scope, receive, send)
                else:
                    await super().__call__(scope, receive, send)
                return
            # The span name and attributes only matter to a span that records.
            span = tracer.start_span("HTTP", context=ctx, kind=SpanKind.SERVER)
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


def _redact_url(url: str) -> str:
    """util.http's ``redact_url(url)``, without parsing a URL that has nothing to redact.

    It replaces credentials (only possible with an ``@``) and signature parameters of
    the query (only possible with a ``?``); a URL with neither comes back as it is.
    """
    if "@" in url or "?" in url or _http_util.redact_url is not _library_redact_url:
        return _http_util.redact_url(url)  # type: ignore[no-any-return]
    return url


def _default_mode(module: Any, needed: tuple[str, ...]) -> Any:
    """The instrumentations' default semantic-conventions mode, when it, the ``util.http``
    functions the sampled paths call and ``needed`` names of ``module`` are all there."""
    try:
        from opentelemetry.instrumentation import _semconv
        from opentelemetry.util import http as http_util
    except ImportError:
        return None
    if not all(callable(getattr(module, name, None)) for name in needed) or not all(
        callable(getattr(http_util, name, None)) for name in _HTTP_UTIL_NAMES
    ):
        return None
    global _http_util, _library_redact_url
    _http_util = http_util
    _library_redact_url = http_util.redact_url
    return getattr(getattr(_semconv, "_StabilityMode", None), "DEFAULT", None)


def _install_server_middleware() -> None:
    global _server_module, _server_mode, _library_span_details
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
    _server_mode = _default_mode(module, ("set_status_code",))
    _library_span_details = getattr(fastapi_module, "_get_default_span_details", None)
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
    """The httpx instrumentation's async wrapper, shorter under a parent span (module docstring)."""
    original = _original_async_request
    assert original is not None
    sampled = current_sampling()  # None: no parent span
    tracer = options.get("tracer")
    if (
        sampled is None
        or not _lean_allowed(tracer, options, args)
        or not tracer.children_follow_parent()  # type: ignore[union-attr]
        or not _httpx_instrumentation.is_http_instrumentation_enabled()
    ):
        return await original(wrapped, instance, args, kwargs, **options)
    if sampled:
        if _client_sampled_allowed(options):
            return await _sampled_async_request(wrapped, args, kwargs, tracer, options)
        return await original(wrapped, instance, args, kwargs, **options)
    # The same non-recording child the instrumentation would start (the name is not kept).
    span = tracer.start_span("HTTP", kind=SpanKind.CLIENT)  # type: ignore[union-attr]
    token = attach_span(span)
    try:
        module = options["module"]
        _httpx_instrumentation._inject_propagation_headers(args[0].headers, args, kwargs, module)
        return await wrapped(*args, **kwargs)
    finally:
        _detach(token)


def _client_sampled_allowed(options: dict[str, Any]) -> bool:
    """The default semantic conventions and no captured header (hooks, exclusions and
    live histograms are ruled out for both paths)."""
    return (
        _client_mode is not None
        and options.get("sem_conv_opt_in_mode") is _client_mode
        and not options.get("captured_request_headers")
        and not options.get("captured_response_headers")
    )


async def _sampled_async_request(
    wrapped: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    tracer: Any,
    options: dict[str, Any],
) -> Any:
    """The instrumentation's async wrapper for a call under a sampled parent, default configuration.

    Mirrors it step by step: the span named by the sanitised method (``HTTP`` for
    others) with ``http.method`` and the redacted ``http.url``, started as the current
    CLIENT span; the propagation headers injected; the response's status code set as
    attribute and status; an exception re-raised from the call, recorded and setting
    ERROR on its way out (``use_span``), the span ended last. Left out: the metrics'
    attributes and durations (no histogram records), the request and response infos
    (no hook) and the status set a second time (``set_status`` keeps the same status).
    """
    module = options["module"]
    request = args[0]
    method: str = request.method
    name = _http_util.sanitize_method(method.strip())
    attributes: dict[str, Any] = {}
    normalized = _http_util.sanitize_method(method).strip()
    if normalized:
        attributes[HTTP_METHOD] = normalized
    url = _redact_url(str(request.url))
    if url:
        attributes[HTTP_URL] = url
    if name == "_OTHER":
        name = "HTTP"
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
    try:
        token = attach_span(span)
        try:
            _httpx_instrumentation._inject_propagation_headers(request.headers, args, kwargs, module)
            exception = None
            try:
                response = await wrapped(*args, **kwargs)
            except Exception as exc:
                exception = exc
                response = getattr(exc, "response", None)
            if isinstance(response, (module.Response, tuple)):
                _client_response_status(span, response, options)
            if exception:
                raise exception.with_traceback(exception.__traceback__)
        finally:
            _detach(token)
    except Exception as exc:
        _record_escaping(span, exc)
        raise
    finally:
        span.end()
    return response


def _client_response_status(span: trace_api.Span, response: Any, options: dict[str, Any]) -> None:
    """What the instrumentation sets on the span from a response, in the default semantic conventions.

    It sets ``http.status_code`` and the status twice over (through the metrics'
    attributes, then the span's): once is the same. Anything but an ``int`` status
    code goes through its own functions.
    """
    code = getattr(response, "status_code", None)
    if type(code) is int and code >= 0:
        if span.is_recording():
            span.set_attribute(HTTP_STATUS_CODE, code)
            status = _httpx_instrumentation.http_status_to_status_code(code)
            if status is not StatusCode.UNSET:
                span.set_status(Status(status))
        return
    instrumentation = _httpx_instrumentation
    mode = options["sem_conv_opt_in_mode"]
    status_code, headers, _, _, http_version = instrumentation._extract_response(response)
    instrumentation._apply_response_client_attributes_to_metrics(span, {}, status_code, http_version, mode)
    if span.is_recording():
        instrumentation._apply_response_client_attributes_to_span(
            span,
            status_code,
            http_version,
            mode,
            options["module"],
            headers,
            options.get("captured_response_headers"),
            options.get("sensitive_headers"),
        )


def _lean_extract_parameters_for(original: Callable[..., Any]) -> Callable[..., Any]:
    def extract(args: tuple[Any, ...], kwargs: dict[str, Any], module: Any) -> Any:
        request = args[0] if args else None
        if request is None or not isinstance(request, module.Request):
            return original(args, kwargs, module)
        # The request's own URL, not a copy parsed again from its text (httpx URLs are immutable).
        return request.method.encode(), request.url, request.headers, request.stream, request.extensions

    extract.__wrapped__ = original  # type: ignore[attr-defined]
    return extract


_CLIENT_NEEDS = (
    "http_status_to_status_code",
    "_extract_response",
    "_apply_response_client_attributes_to_metrics",
    "_apply_response_client_attributes_to_span",
)
_client_mode: Any = None  # the instrumentation's default semantic conventions, when the sampled path is on


def _install_httpx() -> None:
    global _original_async_request, _httpx_instrumentation, _client_mode
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
    _client_mode = _default_mode(module, _CLIENT_NEEDS)
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
