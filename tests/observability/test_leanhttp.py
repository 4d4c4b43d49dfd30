"""The shorter paths through the HTTP instrumentations (issue 14) give what the instrumentations give.

* the ASGI header getter returns the same answers as the instrumentation's own;
* an httpx call under an unsampled parent builds no attributes, yet sends the same
  propagation headers (a new span id of the same trace, not sampled) and records nothing;
* a request the sampler drops gets the same non-recording server span (the sampler's
  decision on the trace id the span gets), the same ``traceresponse`` header and no
  attribute building; a sampled one gets the instrumentation's SERVER span;
* a sampled call, a request hook or a configured exclusion take the instrumentation's own path;
* shutdown puts the instrumentations' own functions back.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import baggage, trace
from opentelemetry.instrumentation import asgi as asgi_instrumentation
from opentelemetry.instrumentation import fastapi as fastapi_instrumentation
from opentelemetry.instrumentation import httpx as httpx_instrumentation
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from ghl_real_estate_ai.observability import _leanhttp
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
    assert set(_leanhttp.installed()) == {"asgi-getter", "httpx-unsampled", "httpx-url", "server-unsampled"}
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


async def test_a_sampled_parent_gets_the_instrumentation_s_client_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    built = _count_attribute_building(monkeypatch)
    async with _client() as client:
        with trace.get_tracer("tests").start_as_current_span("webhook"):
            response = await client.post("/echo/c1", json={"tags": ["hot"]})
    flush_observability()
    (client_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert built == [1]
    assert client_span.name == "POST"
    assert dict(client_span.attributes or {}) == {
        "http.method": "POST",
        "http.url": "http://ghl.test/echo/c1",
        "http.status_code": 200,
    }
    assert response.text.split()[0].split("-")[2] == f"{client_span.context.span_id:016x}"


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
    calls: list[int] = []
    real = asgi_instrumentation.collect_request_attributes

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(asgi_instrumentation, "collect_request_attributes", counting)
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
