"""``suppressed()`` switches instrumentation off exactly as the contrib's ``suppress_instrumentation()``."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry import context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ghl_real_estate_ai.observability._suppress import suppressed


def test_the_context_inside_is_the_contrib_helpers_and_the_outer_one_comes_back() -> None:
    token = context.attach(context.set_value("caller", "kept"))
    try:
        outer = context.get_current()
        with suppress_instrumentation():
            theirs = dict(context.get_current())
        with suppressed():
            ours = dict(context.get_current())
            assert not is_instrumentation_enabled()
            with suppressed():  # nested: still off, and the outer block's context after
                assert not is_instrumentation_enabled()
            assert dict(context.get_current()) == ours
        assert ours == theirs and ours["caller"] == "kept"
        assert context.get_current() is outer and is_instrumentation_enabled()
    finally:
        context.detach(token)


def test_an_error_inside_still_restores_the_context() -> None:
    outer = context.get_current()
    with pytest.raises(ValueError, match="boom"), suppressed():
        raise ValueError("boom")
    assert context.get_current() is outer and is_instrumentation_enabled()


async def test_an_instrumented_call_inside_makes_no_span_and_one_outside_does() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    try:
        with suppressed():
            await client.get("http://ghl.test/quiet")
            await asyncio.sleep(0)  # across a suspension the block is still quiet
            await client.get("http://ghl.test/quiet-again")
        await client.get("http://ghl.test/heard")
    finally:
        HTTPXClientInstrumentor.uninstrument_client(client)
        await client.aclose()
        provider.shutdown()
    assert [s.attributes["http.url"] for s in exporter.get_finished_spans()] == ["http://ghl.test/heard"]
