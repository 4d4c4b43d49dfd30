"""Shorter paths through the OpenTelemetry HTTP instrumentations (issue 14).

Internal. Two per-request costs of the contrib instrumentations that our set-up
does not need to pay, each replaced only where the result is the same:

* **The ASGI header getter.** The server middleware looks request headers up
  about ten times per request (host, user agent, ``traceparent``, ``tracestate``,
  ``baggage``, ``content-length``...), and its getter decodes every header of the
  request on each lookup to compare names. :class:`_LeanASGIGetter` compares the
  raw ASCII names instead (ASGI gives them lowercased) and decodes only what it
  returns; a name that is not ASCII is compared the instrumentation's own way, so
  the answers are the same list of the same strings.
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

Both rely on names inside the contrib packages; :func:`install` checks them and
leaves the instrumentation unchanged when one is missing. :func:`uninstall`
puts the originals back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import NoOpHistogram
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import _provider

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
    """Which shorter paths are in place (``"asgi-getter"``, ``"httpx-url"``, ``"httpx-unsampled"``)."""
    names = []
    for _, name, _ in _replaced:
        if name == "asgi_getter":
            names.append("asgi-getter")
        elif name == "_handle_async_request_wrapper":
            names.append("httpx-unsampled")
        elif name == "_extract_parameters":
            names.append("httpx-url")
    return tuple(names)


# --- the ASGI header getter ---------------------------------------------------------


def _lean_getter_class(module: Any) -> type | None:
    base = getattr(module, "ASGIGetter", None)
    found = getattr(module, "_decode_header_item", None)
    if base is None or not callable(found) or not isinstance(getattr(module, "asgi_getter", None), base):
        return None
    decode: Callable[[Any], str] = found

    class _LeanASGIGetter(base):  # type: ignore[misc, valid-type]
        """The instrumentation's ``ASGIGetter``, decoding only the headers it returns."""

        def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
            headers = carrier.get("headers")
            if not headers:
                return None
            lowered = key.lower()
            if not lowered.isascii():
                return super().get(carrier, key)  # type: ignore[no-any-return]
            wanted = lowered.encode()
            decoded: list[str] = []
            for raw_key, raw_value in headers:
                if type(raw_key) is bytes and raw_key.isascii():
                    # ASCII bytes lower and decode to what the instrumentation compares.
                    if raw_key.lower() != wanted:
                        continue
                elif decode(raw_key).lower() != lowered:
                    continue
                decoded.append(decode(raw_value))
            return decoded or None

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
