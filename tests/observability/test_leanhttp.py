"""The shorter paths through the HTTP instrumentations (issue 14) give what the instrumentations give.

* the ASGI header getter returns the same answers as the instrumentation's own;
* an httpx call under an unsampled parent builds no attributes, yet sends the same
  propagation headers (a new span id of the same trace, not sampled) and records nothing;
* a request the sampler drops gets the same non-recording server span (the sampler's
  decision on the trace id the span gets), the same ``traceresponse`` header and no
  attribute building; a sampled one gets the instrumentation's SERVER span, its
  attributes set once and no metric attributes built;
* parity: the same requests (success, 4xx, 5xx, errors in the app and in outgoing
  calls, a caller's trace, query strings, a body) served through the instrumentations'
  own code and through the shorter paths, with counted ids, export the same spans
  (every field but times, attributes in order) and get the same answers;
* a request hook, captured headers, a meter provider, other semantic conventions or a
  configured exclusion take the instrumentation's own path;
* shutdown puts the instrumentations' own functions back.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.instrumentation import asgi as asgi_instrumentation
from opentelemetry.instrumentation import fastapi as fastapi_instrumentation
from opentelemetry.instrumentation import httpx as httpx_instrumentation
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpHistogram
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import _leanhttp, _provider
from ghl_real_estate_ai.observability._fastspan import ReservableIds, _FastSpan
from ghl_real_estate_ai.observability.otel_config import (
    fastapi_native_telemetry_off,
    flush_observability,
    instrument_app,
    setup_observability,
    shutdown_observability,
)
from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401  (autouse fixture)

HEADER_LISTS: list[list[tuple[Any, Any]]] = [
    [],
    [(b"host", b"example.com"), (b"user-agent", b"curl/8"), (b"traceparent", b"00-ab-cd-01")],
    [(b"x-dup", b"1"), (b"X-Dup", b"2"), (b"x-dup", "caf\xe9".encode())],
    [(b"x-latin", b"caf\xe9"), ("x-str", "a string value")],
    # The Kelvin sign lowercases to "k": a non-ASCII name compared the instrumentation's way.
    [("\u212aey".encode(), b"kelvin"), (b"key", b"plain")],
]
KEYS = [
    "host",
    "HOST",
    "user-agent",
    "traceparent",
    "x-dup",
    "x-latin",
    "x-str",
    "key",
    "missing",
    "\u212aey",
]


def _outcome(getter: Any, carrier: dict[str, Any], key: str) -> object:
    try:
        return getter.get(carrier, key)
    except Exception as exc:  # a str header name fails both the same way
        return type(exc)


def test_the_asgi_getter_answers_as_the_instrumentation_does() -> None:
    lean_class = _leanhttp._lean_getter_class(asgi_instrumentation)
    assert lean_class is not None
    lean, own = lean_class(), asgi_instrumentation.ASGIGetter()
    for headers in HEADER_LISTS:
        for carrier in ({"headers": headers}, {}):
            for key in KEYS:
                assert _outcome(lean, carrier, key) == _outcome(own, carrier, key), (headers, key)


def test_the_asgi_getter_reads_a_changed_header_list_again() -> None:
    lean_class = _leanhttp._lean_getter_class(asgi_instrumentation)
    assert lean_class is not None
    lean = lean_class()
    headers: list[Any] = [(b"host", b"a.example"), (b"x-n", b"1")]
    carrier = {"headers": headers}
    assert lean.get(carrier, "x-n") == ["1"]
    headers[1] = (b"x-n", b"2")  # the same list, changed in place
    assert lean.get(carrier, "x-n") == ["2"]
    headers.append((b"x-n", b"3"))
    assert lean.get(carrier, "X-N") == ["2", "3"]
    first = lean.get(carrier, "host")
    assert first is not None
    first.append("mine")  # a caller's list is its own
    assert lean.get(carrier, "host") == ["a.example"]


def test_setup_installs_the_shorter_paths_and_shutdown_removes_them() -> None:
    own_getter = asgi_instrumentation.asgi_getter
    own_wrapper = HTTPXClientInstrumentor._handle_async_request_wrapper
    own_extract = httpx_instrumentation._extract_parameters
    own_middleware = fastapi_instrumentation.OpenTelemetryMiddleware
    setup_observability(settings(), exporter_type="none")
    assert set(_leanhttp.installed()) == {
        "asgi-getter",
        "httpx-unsampled",
        "httpx-sampled",
        "httpx-url",
        "server-unsampled",
        "server-sampled",
    }
    assert type(asgi_instrumentation.asgi_getter) is not asgi_instrumentation.ASGIGetter
    assert HTTPXClientInstrumentor._handle_async_request_wrapper is _leanhttp._lean_async_request
    shutdown_observability()
    assert _leanhttp.installed() == ()
    assert asgi_instrumentation.asgi_getter is own_getter
    assert HTTPXClientInstrumentor._handle_async_request_wrapper is own_wrapper
    assert httpx_instrumentation._extract_parameters is own_extract
    assert fastapi_instrumentation.OpenTelemetryMiddleware is own_middleware


def test_a_request_s_parameters_are_read_as_the_instrumentation_reads_them() -> None:
    own = httpx_instrumentation._extract_parameters
    lean = _leanhttp._lean_extract_parameters_for(own)
    request = httpx.Request(
        "POST", "https://user:pw@Example.COM:8443/a%20b/c?q=1&r=%C3%A9#frag", json={"a": 1}
    )
    mine, theirs = lean((request,), {}, httpx), own((request,), {}, httpx)
    assert mine == theirs
    assert str(mine[1]) == str(theirs[1])
    assert mine[1] is request.url  # not parsed again
    old_style = (b"GET", (b"https", b"example.com", None, b"/"), [], None, {})
    assert lean(old_style, {}, httpx) == own(old_style, {}, httpx)


async def _echo_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    headers = {key.decode(): value.decode() for key, value in scope["headers"]}
    parent = trace.get_current_span().get_span_context()
    body = f"{headers.get('traceparent', '')} {parent.span_id:016x}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def _client(**instrument: Any) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_echo_headers), base_url="http://ghl.test")
    HTTPXClientInstrumentor.instrument_client(client, **instrument)
    return client


def _count_attribute_building(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = httpx_instrumentation._apply_request_client_attributes_to_span

    def counting(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(httpx_instrumentation, "_apply_request_client_attributes_to_span", counting)
    return calls


async def test_an_unsampled_parent_sends_the_same_headers_and_builds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", sample_rate=0.0, span_exporters=[exporter])
    built = _count_attribute_building(monkeypatch)
    async with _client() as client:
        with trace.get_tracer("tests").start_as_current_span("webhook") as root:
            response = await client.post("/contacts/c1/tags", json={"tags": ["hot"]})
            still_current = trace.get_current_span()
    flush_observability()
    assert exporter.get_finished_spans() == ()
    assert built == []
    assert still_current is root
    traceparent, seen_span_id = response.text.split()
    version, trace_id, span_id, flags = traceparent.split("-")
    parent = root.get_span_context()
    assert (version, trace_id, flags) == ("00", f"{parent.trace_id:032x}", f"{parent.trace_flags:02x}")
    assert not parent.trace_flags.sampled
    # A child of its own (as the instrumentation starts), current while the call runs.
    assert span_id != f"{parent.span_id:016x}"
    assert seen_span_id == span_id


async def test_a_sampled_parent_gets_the_client_span_without_the_metrics_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The instrumentation's CLIENT span (name, attributes in order, status code), its
    traceparent sent; none of the attributes its histograms would get are built."""
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    built = _count_attribute_building(monkeypatch)
    async with _client() as client:
        with trace.get_tracer("tests").start_as_current_span("webhook"):
            response = await client.post("/echo/c1", json={"tags": ["hot"]})
    flush_observability()
    (client_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert built == []
    assert client_span.name == "POST"
    assert list((client_span.attributes or {}).items()) == [
        ("http.method", "POST"),
        ("http.url", "http://ghl.test/echo/c1"),
        ("http.status_code", 200),
    ]
    assert response.text.split()[0].split("-")[2] == f"{client_span.context.span_id:016x}"


async def _one_traced_call(client: httpx.AsyncClient) -> None:
    async with client:
        with trace.get_tracer("tests").start_as_current_span("webhook"):
            await client.get("/contacts/c1", headers={"x-tenant": "t1"})


async def test_a_client_request_hook_takes_the_instrumentation_s_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    setup_observability(settings(), exporter_type="none")
    built = _count_attribute_building(monkeypatch)
    seen: list[bool] = []

    async def hook(span: trace.Span, request: Any) -> None:
        seen.append(span.is_recording())

    await _one_traced_call(_client(request_hook=hook))
    assert (seen, built) == ([True], [1])


async def test_captured_client_headers_take_the_instrumentation_s_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "x-tenant")
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    built = _count_attribute_building(monkeypatch)
    await _one_traced_call(_client())
    flush_observability()
    (client_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert (client_span.attributes or {})["http.request.header.x_tenant"] == ("t1",)
    assert built == [1]


async def test_a_client_meter_provider_takes_the_instrumentation_s_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a meter provider behind the histograms, every call records its duration."""
    setup_observability(settings(), exporter_type="none")
    built = _count_attribute_building(monkeypatch)
    client = _client()
    options = client._transport.handle_async_request._self_wrapper.keywords  # type: ignore[attr-defined]
    monkeypatch.setattr(options["duration_histogram_old"], "_real_instrument", NoOpHistogram("backed"))
    await _one_traced_call(client)
    assert built == [1]


async def test_a_request_hook_still_sees_every_unsampled_call(monkeypatch: pytest.MonkeyPatch) -> None:
    setup_observability(settings(), exporter_type="none", sample_rate=0.0)
    seen: list[bool] = []

    async def hook(span: trace.Span, request: Any) -> None:
        seen.append(span.is_recording())

    async with _client(request_hook=hook) as client:
        with trace.get_tracer("tests").start_as_current_span("webhook"):
            await client.get("/contacts/c1")
    assert seen == [False]


async def test_an_excluded_url_is_left_alone_under_an_unsampled_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "ghl.test/contacts")
    setup_observability(settings(), exporter_type="none", sample_rate=0.0)
    async with _client() as client:
        with trace.get_tracer("tests").start_as_current_span("webhook") as root:
            response = await client.get("/contacts/c1")
    # No traceparent and no child span, as the instrumentation does for an excluded URL.
    assert response.text == f" {root.get_span_context().span_id:016x}"


# --- the server span -----------------------------------------------------------------------------


def _server_app() -> FastAPI:
    app = FastAPI(**fastapi_native_telemetry_off())

    @app.post("/hooks/{name}")
    async def hook(name: str) -> dict[str, Any]:
        current = trace.get_current_span()
        context = current.get_span_context()
        return {
            "trace_id": f"{context.trace_id:032x}",
            "span_id": f"{context.span_id:016x}",
            "recording": current.is_recording(),
            "baggage": baggage.get_baggage("tenant"),
        }

    instrument_app(app)
    return app


def _count_request_attributes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the request attributes built, by the instrumentation's function or the shorter path's."""
    calls: list[int] = []
    builders = ((asgi_instrumentation, "collect_request_attributes"), (_leanhttp, "_request_attributes"))
    for owner, name in builders:
        real = getattr(owner, name)

        def counting(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
    return calls


async def test_a_dropped_request_gets_its_non_recording_span_and_traceresponse_without_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", sample_rate=0.0, span_exporters=[exporter])
    built = _count_request_attributes(monkeypatch)
    app = _server_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        response = await client.post("/hooks/a", headers={"baggage": "tenant=t1"})
    flush_observability()
    assert response.status_code == 200
    assert exporter.get_finished_spans() == ()
    assert built == []
    seen = response.json()
    assert seen["recording"] is False
    assert seen["baggage"] == "t1"  # the request's extracted context is current, as on the full path
    assert response.headers["traceresponse"] == f"00-{seen['trace_id']}-{seen['span_id']}-02"
    assert response.headers["access-control-expose-headers"] == "traceresponse"


async def test_an_unsampled_caller_s_trace_continues_unsampled(monkeypatch: pytest.MonkeyPatch) -> None:
    setup_observability(settings(), exporter_type="none", sample_rate=0.5)
    built = _count_request_attributes(monkeypatch)
    app = _server_app()
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        response = await client.post(
            "/hooks/a", headers={"traceparent": f"00-{caller_trace}-{caller_span}-00"}
        )
    seen = response.json()
    assert built == []
    assert (seen["trace_id"], seen["recording"]) == (caller_trace, False)
    assert seen["span_id"] != caller_span
    assert response.headers["traceresponse"] == f"00-{caller_trace}-{seen['span_id']}-00"


async def test_every_request_is_sampled_as_the_ratio_sampler_decides_on_its_trace_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", sample_rate=0.5, span_exporters=[exporter])
    built = _count_request_attributes(monkeypatch)
    ratio = TraceIdRatioBased(0.5)
    app = _server_app()
    sampled: list[str] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        for _ in range(40):
            response = await client.post("/hooks/a")
            seen = response.json()
            trace_id = int(seen["trace_id"], 16)
            expected = trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < ratio.bound
            assert seen["recording"] is expected
            assert response.headers["traceresponse"].endswith("-03" if expected else "-02")
            if expected:
                sampled.append(seen["trace_id"])
    flush_observability()
    spans = exporter.get_finished_spans()
    assert 0 < len(sampled) < 40
    assert sorted(f"{s.context.trace_id:032x}" for s in spans) == sorted(sampled)
    assert len(built) == len(sampled)  # attributes only for the requests that record
    server = spans[0]
    assert server.name == "POST /hooks/{name}"
    assert server.kind is SpanKind.SERVER
    assert (server.attributes or {})["http.route"] == "/hooks/{name}"


async def test_a_sampler_of_its_own_takes_the_full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's sampler sees each request's name and attributes, as the SDK gives them."""
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recording(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
            attributes = args[1] if len(args) > 1 else kw.get("attributes")
            seen.append((name, dict(attributes or {})))
            return ALWAYS_OFF.should_sample(parent_context, trace_id, name)

        def get_description(self) -> str:
            return "Recording"

    setup_observability(settings(), exporter_type="none", sampler=Recording())
    app = _server_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        response = await client.post("/hooks/a")
    assert response.json()["recording"] is False
    ((name, attributes),) = seen
    assert name == "POST /hooks/{name}"
    assert attributes["http.route"] == "/hooks/{name}"


async def test_a_meter_provider_set_later_gets_the_middleware_s_metrics_again() -> None:
    """The instrumentation's metrics go to the global meter provider: once one is set, every
    request takes the middleware's own path (which records them), dropped or not."""
    from opentelemetry.metrics._internal.instrument import _ProxyHistogram

    setup_observability(settings(), exporter_type="none", sample_rate=0.0)
    app = _server_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        await client.post("/hooks/a")
        middleware = app.middleware_stack.app  # type: ignore[union-attr]
        assert _leanhttp._metrics_inert(middleware)
        proxy = middleware.duration_histogram_old
        assert isinstance(proxy, _ProxyHistogram)
        proxy._real_instrument = object()  # what setting a global meter provider does to the proxy
        try:
            assert not _leanhttp._metrics_inert(middleware)
        finally:
            proxy._real_instrument = None
        assert _leanhttp._metrics_inert(middleware)


# --- parity: the shorter paths export what the instrumentations export ---------------------------

# The instrumentations' own frames (and the shorter paths' in their place) in a stack trace.
_INSTRUMENTATION_FRAMES = re.compile(
    r'  File "[^"]*(opentelemetry/instrumentation/(asgi|httpx)/__init__|observability/_leanhttp'
    r'|opentelemetry/(sdk/)?trace/__init__|contextlib)\.py", line \d+, in [^\n]*\n'
    r"(    [^\n]*\n)*?(?=  File|\w)"
)


class _CountedIds(IdGenerator):
    """Ids counted from one: two runs of the same requests get the same ids.

    A trace id's low 64 bits (what ``TraceIdRatioBased`` compares) are spread over
    their range, so a ratio sampler keeps some roots and drops others.
    """

    def __init__(self) -> None:
        self.trace_ids = 0
        self.span_ids = 0

    def generate_span_id(self) -> int:
        self.span_ids += 1
        return 0x1000 + self.span_ids

    def generate_trace_id(self) -> int:
        self.trace_ids += 1
        return 0xABC00000000000000000000000000000 | (self.trace_ids * 0x9E3779B97F4A7C15) % 2**64


def _count_ids() -> None:
    """From now on the provider hands out counted ids (a root's reserved one included)."""
    ids = _provider.current_delegate().id_generator  # type: ignore[attr-defined]
    assert isinstance(ids, ReservableIds)
    counted = _CountedIds()
    ids.inner = counted
    ids.generate_span_id = counted.generate_span_id  # type: ignore[method-assign]
    ids.is_trace_id_random = counted.is_trace_id_random  # type: ignore[method-assign]
    ids._reserved.trace_id = None


def _stack_without_instrumentation(stack: object) -> object:
    """A recorded stack trace without the frames of the code that recorded it (they differ by path)."""
    return _INSTRUMENTATION_FRAMES.sub("", stack) if isinstance(stack, str) else stack


def _exported(span: ReadableSpan) -> tuple[Any, ...]:
    """Every field an exporter reads, but times."""
    context, parent = span.context, span.parent
    assert context is not None
    return (
        span.name,
        span.kind,
        (context.trace_id, context.span_id, int(context.trace_flags), context.trace_state.to_header()),
        parent and (parent.trace_id, parent.span_id, parent.is_remote, int(parent.trace_flags)),
        list((span.attributes or {}).items()),
        span.dropped_attributes,
        [
            (
                event.name,
                [(k, _stack_without_instrumentation(v)) for k, v in (event.attributes or {}).items()],
            )
            for event in span.events
        ],
        span.dropped_events,
        (span.status.status_code, span.status.description),
        [(link.context, list((link.attributes or {}).items())) for link in span.links],
        span.instrumentation_scope,
        dict(span.resource.attributes),
    )


def _upstream(request: httpx.Request) -> httpx.Response:
    """The far side of the app's outgoing calls: it refuses /down and fails /fail."""
    if request.url.path == "/down":
        raise httpx.ConnectError("connection refused", request=request)
    if request.url.path == "/fail":
        return httpx.Response(503, json={"error": "unavailable"})
    return httpx.Response(200, json={"traceparent": request.headers.get("traceparent")})


def _parity_app(outbound: httpx.AsyncClient) -> FastAPI:
    app = FastAPI(**fastapi_native_telemetry_off())

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        response = await outbound.get(f"/contacts/{item_id}", params={"sig": "s3cret", "q": "a b"})
        return {"item": item_id, "upstream": response.json()}

    @app.post("/items", status_code=201)
    async def create(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @app.get("/missing/{item_id}")
    async def missing(item_id: str) -> None:
        raise HTTPException(404, f"no item {item_id}")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the app failed")

    @app.get("/unreachable")
    async def unreachable() -> None:
        await outbound.get("/down")

    @app.get("/upstream-error")
    async def upstream_error() -> JSONResponse:
        response = await outbound.post("/fail", json={"a": 1})
        return JSONResponse({"upstream": response.status_code}, status_code=502)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("failed mid-stream")

        return StreamingResponse(chunks())

    @app.get("/chunks")
    async def chunks_ok() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in (b"one", b"two", b"three"):
                yield chunk

        return StreamingResponse(chunks())

    @app.post("/later", status_code=202)
    async def later(tasks: BackgroundTasks) -> dict[str, str]:
        async def follow_up() -> None:
            await outbound.get("/contacts/later")

        tasks.add_task(follow_up)
        return {"queued": "yes"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    instrument_app(app)
    return app


_CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
PARITY_REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("GET", "/items/i1?q=a%20b&sig=abc", {"user-agent": "Googlebot/2.1"}, None),
    ("GET", "/items/i2", {"host": "svc.example:8443", "user-agent": "curl/8"}, None),
    ("POST", "/items", {}, {"name": "house", "rooms": 3}),
    ("POST", "/items", {"content-type": "application/json"}, b"{not json"),
    ("GET", "/missing/m1", {}, None),
    ("GET", "/nowhere?x=1", {}, None),
    ("PUT", "/boom", {}, None),
    ("GET", "/boom", {}, None),
    ("GET", "/unreachable", {}, None),
    ("GET", "/upstream-error", {}, None),
    ("GET", "/stream", {}, None),
    ("GET", "/chunks", {}, None),
    ("POST", "/later", {}, None),
    ("GET", "/items/i3", {"traceparent": f"{_CALLER}-01", "tracestate": "k=v", "baggage": "t=1"}, None),
    ("GET", "/items/i4", {"traceparent": f"{_CALLER}-00"}, None),
    ("GET", "/health", {}, None),
]


async def _serve_parity_requests(exporter: InMemorySpanExporter, lean: bool) -> tuple[list[Any], list[Any]]:
    """Serve PARITY_REQUESTS on a fresh app, through the shorter paths or the instrumentations' own."""
    _leanhttp.install() if lean else _leanhttp.uninstall()
    _count_ids()
    exporter.clear()
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(_upstream), base_url="http://ghl.test")
    HTTPXClientInstrumentor.instrument_client(upstream)
    app = _parity_app(upstream)
    _leanhttp.install() if lean else _leanhttp.uninstall()  # instrument_app installs them
    answers = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with upstream, httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for method, url, headers, body in PARITY_REQUESTS:
            if isinstance(body, bytes):
                response = await client.request(method, url, headers=headers, content=body)
            else:
                response = await client.request(method, url, headers=headers, json=body)
            answers.append((url, response.status_code, response.headers.multi_items(), response.content))
        middleware = app.middleware_stack.app  # type: ignore[union-attr]
        assert (type(middleware) is asgi_instrumentation.OpenTelemetryMiddleware) is not lean
    flush_observability()
    return [_exported(span) for span in exporter.get_finished_spans()], answers


def _count_server_metric_attributes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the server middleware's own path: it builds the active-requests metric's attributes."""
    calls: list[int] = []
    real = asgi_instrumentation._parse_active_request_count_attrs

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(asgi_instrumentation, "_parse_active_request_count_attrs", counting)
    return calls


@pytest.mark.parametrize("sample_rate", [1.0, 0.5])
async def test_the_shorter_paths_export_the_same_spans_and_answers_as_the_instrumentations(
    monkeypatch: pytest.MonkeyPatch, sample_rate: float
) -> None:
    """Success, 4xx, 5xx, errors in the app and in outgoing calls, a caller's trace, query
    strings, a request body, a streamed answer and a background task: the same spans (every
    exported field but times, attributes in order) and the same answers, headers included.
    The root sampler is always-on at 100 %, and at 50 % keeps some of the counted trace ids."""
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", sample_rate=sample_rate, span_exporters=[exporter])
    own_path = _count_server_metric_attributes(monkeypatch)
    own_client_path = _count_attribute_building(monkeypatch)
    own_spans, own_answers = await _serve_parity_requests(exporter, lean=False)
    assert len(own_path) == len(PARITY_REQUESTS) - 1  # all but the excluded health check
    assert len(own_client_path) == 7
    own_path.clear()
    own_client_path.clear()
    lean_spans, lean_answers = await _serve_parity_requests(exporter, lean=True)
    assert (own_path, own_client_path) == ([], [])  # the shorter paths were taken
    assert lean_answers == own_answers
    servers = sum(1 for span in own_spans if span[1] is SpanKind.SERVER)
    if sample_rate == 1.0:
        assert servers == len(PARITY_REQUESTS) - 2  # all but the health check and the unsampled caller
    else:
        assert 1 < servers < len(PARITY_REQUESTS) - 2, servers  # the ratio dropped some roots
    for own, lean in zip(own_spans, lean_spans, strict=True):
        assert lean == own


async def test_a_sampled_request_in_the_default_set_up_skips_the_middleware_s_second_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sampled request's SERVER span has its attributes set once, and no metric attributes
    are built while no meter provider is set (the middleware's own path does both)."""
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    metric_attributes = _count_server_metric_attributes(monkeypatch)
    set_again: list[str] = []
    real_set = _FastSpan.set_attribute

    def counting_set(self: _FastSpan, key: str, value: Any) -> None:
        set_again.append(key)
        real_set(self, key, value)

    monkeypatch.setattr(_FastSpan, "set_attribute", counting_set)
    app = _server_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        response = await client.post("/hooks/a", headers={"user-agent": "curl/8"})
    flush_observability()
    assert response.json()["recording"] is True
    (server,) = exporter.get_finished_spans()
    assert server.name == "POST /hooks/{name}"
    assert metric_attributes == []
    assert set_again == ["http.status_code"]  # set from http.response.start, nothing else again
    assert list(server.attributes or {}) == [
        "http.scheme",
        "http.host",
        "http.flavor",
        "http.target",
        "http.url",
        "http.method",
        "http.server_name",
        "http.user_agent",
        "net.peer.ip",
        "net.peer.port",
        "http.route",
        "http.status_code",
    ]


async def _one_sampled_request(app: FastAPI) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        return await client.post("/hooks/a", headers={"x-tenant": "t1"})


async def test_a_server_request_hook_takes_the_middleware_s_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    setup_observability(settings(), exporter_type="none")
    own_path = _count_server_metric_attributes(monkeypatch)
    seen: list[bool] = []
    app = FastAPI(**fastapi_native_telemetry_off())

    @app.post("/hooks/{name}")
    async def hook(name: str) -> dict[str, str]:
        return {"name": name}

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider.install(),
        exclude_spans=["receive", "send"],
        server_request_hook=lambda span, scope: seen.append(span.is_recording()),
    )
    await _one_sampled_request(app)
    assert seen == [True]
    assert own_path == [1]


async def test_captured_request_headers_take_the_middleware_s_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-tenant")
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    own_path = _count_server_metric_attributes(monkeypatch)
    await _one_sampled_request(_server_app())
    flush_observability()
    (server,) = exporter.get_finished_spans()
    assert (server.attributes or {})["http.request.header.x_tenant"] == ("t1",)
    assert own_path == [1]


async def test_a_set_meter_provider_takes_the_middleware_s_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a meter provider behind the instruments, every request records its metrics."""
    setup_observability(settings(), exporter_type="none")
    own_path = _count_server_metric_attributes(monkeypatch)
    app = _server_app()
    await _one_sampled_request(app)
    assert own_path == []
    middleware = app.middleware_stack.app  # type: ignore[union-attr]
    proxy = middleware.duration_histogram_old
    monkeypatch.setattr(proxy, "_real_instrument", NoOpHistogram("backed"))  # as a meter provider sets it
    await _one_sampled_request(app)
    assert own_path == [1]


async def test_other_semantic_conventions_take_the_middleware_s_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shorter path writes the default (old) HTTP conventions; any other mode is the middleware's."""
    from opentelemetry.instrumentation._semconv import _StabilityMode

    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    own_path = _count_server_metric_attributes(monkeypatch)
    app = _server_app()
    await _one_sampled_request(app)
    middleware = app.middleware_stack.app  # type: ignore[union-attr]
    middleware._sem_conv_opt_in_mode = _StabilityMode.HTTP_DUP
    await _one_sampled_request(app)
    flush_observability()
    assert own_path == [1]
    default, both = exporter.get_finished_spans()
    assert "http.request.method" not in (default.attributes or {})
    assert (both.attributes or {})["http.request.method"] == "POST"


# Scopes as servers give them, odd ones included (no server, a socket path, several Host
# headers, a credential in the Host, bytes or text query strings, unknown methods).
SCOPES: list[dict[str, Any]] = [
    {
        "type": "http",
        "scheme": "https",
        "server": ("10.0.0.1", 443),
        "client": ("1.2.3.4", 5678),
        "http_version": "2",
        "method": "get",
        "path": "/a b",
        "query_string": b"x=%20y&Signature=abc",
        "headers": [(b"host", b"h.example"), (b"user-agent", b"Mozilla/5.0 (compatible; Googlebot/2.1)")],
    },
    {"type": "http", "server": None, "client": None, "method": "FOO", "path": "", "query_string": b""},
    {
        "type": "http",
        "scheme": "http",
        "server": ("/tmp/app.sock", None),
        "method": "POST",
        "path": "/p",
        "query_string": "a=1",
        "headers": [(b"user-agent", b"")],
    },
    {
        "type": "http",
        "server": ("h", 80),
        "client": ("", 0),
        "method": " PATCH ",
        "path": "/x",
        "headers": [(b"host", b"a"), (b"host", b"b"), (b"user-agent", b"pytest-runner")],
    },
    {
        "type": "http",
        "server": ("h", "8080"),
        "client": ("::1", "x"),
        "http_version": "1.1",
        "method": "GET",
        "path": "/",
        "headers": [(b"host", b"user:pw@h:8080"), (b"user-agent", "caf\xe9 bot".encode("latin-1"))],
    },
]


@pytest.mark.parametrize("scope", SCOPES)
def test_a_request_s_attributes_are_the_instrumentation_s(scope: dict[str, Any]) -> None:
    setup_observability(settings(), exporter_type="none")
    assert "server-sampled" in _leanhttp.installed()
    where = _leanhttp._where(scope)
    assert where[:3] == asgi_instrumentation.get_host_port_url_tuple(scope)
    mine = _leanhttp._request_attributes(scope, where)
    assert list(mine.items()) == list(asgi_instrumentation.collect_request_attributes(scope).items())


URLS = [
    "https://services.leadconnectorhq.com/contacts/c-1/tags",
    "http://user:secret@h:8080/p",
    "https://h/p?Signature=abc&x=1",
    "https://h/p?x=1#frag",
    "https://h/p;params#frag",
    "http://[::1/broken",  # unparsable: given back as it is
    "/relative/path",
    "",
]


@given(st.one_of(st.sampled_from(URLS), st.text(alphabet="hs:/@?#;[]=&aSig.01", max_size=40)))
def test_urls_are_redacted_as_util_http_redacts_them(url: str) -> None:
    """The short cut (no ``@`` and no ``?``: nothing to redact) answers what redact_url answers."""
    from opentelemetry.util import http as http_util

    if _leanhttp._http_util is None:
        setup_observability(settings(), exporter_type="none")
    assert _leanhttp._library_redact_url is http_util.redact_url
    assert _leanhttp._redact_url(url) == http_util.redact_url(url)


def test_a_replaced_redact_url_is_always_called(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.util import http as http_util

    setup_observability(settings(), exporter_type="none")
    monkeypatch.setattr(http_util, "redact_url", lambda url: "[redacted by the app]")
    assert _leanhttp._redact_url("https://h/plain") == "[redacted by the app]"


def _routed_app() -> FastAPI:
    from starlette.routing import Host, Mount

    app = FastAPI()

    @app.post("/api/v1/webhooks/ghl")
    async def webhook() -> dict[str, str]:
        return {}

    @app.get("/traces/{trace_id}")
    async def one_trace(trace_id: str) -> dict[str, str]:
        return {}

    inner = FastAPI()

    @inner.get("/ping")
    async def ping() -> dict[str, str]:
        return {}

    app.router.routes.append(Mount("/sub", app=inner))
    admin = FastAPI()

    @admin.get("/only-on-admin")
    async def admin_only() -> dict[str, str]:
        return {}

    app.router.routes.append(Host("admin.example", app=admin))
    return app


def _scope(app: FastAPI, method: str, path: str, host: str = "h") -> dict[str, Any]:
    return {
        "type": "http",
        "app": app,
        "method": method,
        "path": path,
        "root_path": "",
        "scheme": "http",
        "server": ("h", 80),
        "headers": [(b"host", host.encode())],
    }


def test_span_details_are_remembered_with_the_instrumentation_s_own_answers() -> None:
    setup_observability(settings(), exporter_type="none")
    library = fastapi_instrumentation._get_default_span_details
    assert _leanhttp._library_span_details is library
    app = _routed_app()
    requests = [
        ("POST", "/api/v1/webhooks/ghl", "h"),
        ("GET", "/api/v1/webhooks/ghl", "h"),  # another method: a partial match
        ("GET", "/traces/abc", "h"),
        ("GET", "/traces/def", "h"),
        ("GET", "/sub/ping", "h"),
        ("GET", "/only-on-admin", "h"),
        ("GET", "/only-on-admin", "admin.example"),  # the Host header changes the answer
        ("GET", "/nowhere", "h"),
    ]
    for _ in range(2):  # the second time from what was remembered
        for method, path, host in requests:
            scope = _scope(app, method, path, host)
            answer = _leanhttp._span_details(library, scope, _leanhttp._where(scope))
            assert answer == library(scope), (method, path, host)
    scope = _scope(app, "GET", "/added-later")
    before = _leanhttp._span_details(library, scope, _leanhttp._where(scope))

    @app.get("/added-later")
    async def added() -> dict[str, str]:
        return {}

    after = _leanhttp._span_details(library, scope, _leanhttp._where(scope))
    assert before != after == library(scope) == ("GET /added-later", {"http.route": "/added-later"})
    after[1]["changed by the caller"] = "x"
    assert _leanhttp._span_details(library, scope, _leanhttp._where(scope)) == library(scope)


def test_span_details_stay_bounded_and_another_function_is_always_called() -> None:
    setup_observability(settings(), exporter_type="none")
    library = fastapi_instrumentation._get_default_span_details
    app = _routed_app()
    for n in range(_leanhttp._SPAN_DETAILS_MAX + 50):
        scope = _scope(app, "GET", f"/traces/{n}")
        _leanhttp._span_details(library, scope, _leanhttp._where(scope))
    assert len(_leanhttp._span_details_seen) == _leanhttp._SPAN_DETAILS_MAX
    calls: list[str] = []

    def own(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
        calls.append(scope["path"])
        return "mine", {}

    scope = _scope(app, "GET", "/traces/1")
    for _ in range(3):
        assert _leanhttp._span_details(own, scope, _leanhttp._where(scope)) == ("mine", {})
    assert calls == ["/traces/1"] * 3
