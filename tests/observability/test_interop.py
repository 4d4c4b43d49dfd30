"""The global provider is a drop-in for the SDK's, as other OpenTelemetry tools use it (issue 12).

Langfuse, Arize Phoenix, Sentry and Logfire take ``trace.get_tracer_provider()`` and call
``add_span_processor()``, ``force_flush()``, ``shutdown()`` and ``resource`` on it. Each
test makes those calls the way such a tool does, after our set-up. The set-up orders
with a provider another tool installed first run in a subprocess, because
OpenTelemetry lets a process set its global provider only once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ghl_real_estate_ai.observability.otel_config import (
    get_sdk_tracer_provider,
    setup_observability,
)
from ghl_real_estate_ai.observability.workflow_tracing import trace_workflow_node
from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401  (autouse fixture)

PHONE_NOTE = "call me at +1 512 555 0147 or jo@example.com"


def tool_provider() -> TracerProvider:
    """What a tool gets: the global provider, typed as the SDK's (as their code assumes)."""
    provider = trace.get_tracer_provider()
    assert hasattr(provider, "add_span_processor"), type(provider)
    return provider  # type: ignore[return-value]


def one_span(name: str = "probe", **attributes: str) -> None:
    with trace.get_tracer("tests").start_as_current_span(name, attributes=attributes):
        pass


def test_add_span_processor_gets_every_span_redacted() -> None:
    """Langfuse/Phoenix style: a BatchSpanProcessor added to the global provider receives our spans
    (the node decorator's too), with phone numbers and e-mails already redacted."""
    ours = InMemorySpanExporter()
    assert setup_observability(
        settings(otel_capture_content=False), exporter_type="none", span_exporters=[ours]
    )
    theirs = InMemorySpanExporter()
    tool_provider().add_span_processor(BatchSpanProcessor(theirs, schedule_delay_millis=50))

    @trace_workflow_node("lead_bot", "analyze_intent")
    def analyze(state: dict[str, str]) -> dict[str, str]:
        return state

    with trace.get_tracer("tests").start_as_current_span("root", attributes={"note": PHONE_NOTE}):
        analyze({"contact_id": "c-1"})
    assert tool_provider().force_flush()
    spans = {s.name: s for s in theirs.get_finished_spans()}
    assert set(spans) == {"root", "lead_bot.analyze_intent"}
    assert spans["lead_bot.analyze_intent"].parent is not None
    assert spans["lead_bot.analyze_intent"].parent.span_id == spans["root"].context.span_id
    note = str(spans["root"].attributes["note"])
    assert "555" not in note and "example.com" not in note


def test_add_span_processor_keeps_content_when_capture_is_on() -> None:
    """With OTEL_CAPTURE_CONTENT=true the added processor sees the text as written."""
    setup_observability(settings(otel_capture_content=True), exporter_type="none")
    theirs = InMemorySpanExporter()
    tool_provider().add_span_processor(SimpleSpanProcessor(theirs))
    one_span(note=PHONE_NOTE)
    (span,) = theirs.get_finished_spans()
    assert span.attributes["note"] == PHONE_NOTE


def test_force_flush_delivers_queued_spans_before_returning() -> None:
    """OTel docs/Sentry style: provider.force_flush() returns True once our exporters hold every span."""
    ours = InMemorySpanExporter()
    # A long schedule delay: without the flush nothing would be exported for a minute.
    assert setup_observability(
        settings(otel_bsp_schedule_delay=60_000.0), exporter_type="none", span_exporters=[ours]
    )
    for index in range(3):
        one_span(f"span-{index}")
    assert ours.get_finished_spans() == ()
    assert tool_provider().force_flush(timeout_millis=5000) is True
    assert sorted(s.name for s in ours.get_finished_spans()) == ["span-0", "span-1", "span-2"]


def test_resource_is_the_one_spans_carry() -> None:
    """Logfire/Phoenix style: provider.resource.attributes names the service and version."""
    ours = InMemorySpanExporter()
    assert setup_observability(
        settings(), exporter_type="none", span_exporters=[ours], service_name="bots", service_version="9.9.9"
    )
    resource = tool_provider().resource
    assert resource.attributes["service.name"] == "bots"
    assert resource.attributes["service.version"] == "9.9.9"
    one_span()
    assert tool_provider().force_flush()
    assert ours.get_finished_spans()[0].resource == resource


def test_shutdown_flushes_stops_and_shuts_the_added_processor_down() -> None:
    """atexit style: provider.shutdown() flushes what is queued, stops tracing and the tool's processor."""

    class Recorder(SpanProcessor):
        def __init__(self) -> None:
            self.ended: list[str] = []
            self.shut = False

        def on_start(self, span: Span, parent_context: object = None) -> None:
            pass

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span.name)

        def shutdown(self) -> None:
            self.shut = True

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    ours = InMemorySpanExporter()
    assert setup_observability(
        settings(otel_bsp_schedule_delay=60_000.0), exporter_type="none", span_exporters=[ours]
    )
    recorder = Recorder()
    tool_provider().add_span_processor(recorder)
    one_span("before")
    tool_provider().shutdown()
    assert [s.name for s in ours.get_finished_spans()] == ["before"]
    assert recorder.ended == ["before"] and recorder.shut
    assert get_sdk_tracer_provider() is None
    one_span("after")
    assert recorder.ended == ["before"]
    assert not trace.get_current_span().get_span_context().is_valid


# --- a provider another tool set: both orders, in a fresh interpreter --------------------------


def run_python(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


_PRELUDE = """
    import json, logging
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from ghl_real_estate_ai.observability.config import TracingConfig
    from ghl_real_estate_ai.observability.otel_config import flush_observability, setup_observability
    from ghl_real_estate_ai.observability.workflow_tracing import trace_workflow_node

    logging.basicConfig(level=logging.INFO)

    @trace_workflow_node("lead_bot", "analyze_intent")
    def analyze(state):
        return state

    def work():
        with trace.get_tracer("host.app").start_as_current_span("host.request"):
            analyze({"contact_id": "c-1"})
"""


def test_a_foreign_sdk_provider_set_first_is_joined() -> None:
    """Tool first, then us: our exporters get the host's and our spans (one trace); True is returned
    and the log says we joined; the host's own processor still gets them too."""
    result = run_python(
        _PRELUDE
        + """
    theirs = InMemorySpanExporter()
    host = TracerProvider(resource=Resource.create({"service.name": "host-app"}))
    host.add_span_processor(SimpleSpanProcessor(theirs))
    trace.set_tracer_provider(host)

    ours = InMemorySpanExporter()
    exporting = setup_observability(
        TracingConfig(exporter_type="none", bsp_schedule_delay_ms=20), span_exporters=[ours]
    )
    work()
    flush_observability()
    spans = ours.get_finished_spans()
    print(json.dumps({
        "exporting": exporting,
        "ours": sorted(s.name for s in spans),
        "theirs": sorted(s.name for s in theirs.get_finished_spans()),
        "traces": len({s.context.trace_id for s in spans}),
        "service": spans[0].resource.attributes["service.name"] if spans else None,
        "global_is_host": trace.get_tracer_provider() is host,
    }))
    """
    )
    assert result["exporting"] is True
    assert result["ours"] == ["host.request", "lead_bot.analyze_intent"]
    assert result["theirs"] == ["host.request", "lead_bot.analyze_intent"]
    assert result["traces"] == 1
    assert result["service"] == "host-app"
    assert result["global_is_host"] is True
    assert "joined the provider another tool set first (TracerProvider)" in str(result["stderr"])


def test_a_tool_set_up_after_us_adds_its_processor_instead() -> None:
    """Us first, then the tool: OpenTelemetry refuses its set_tracer_provider (set once), so the tool
    falls back to add_span_processor on ours; both it and our exporters get every span."""
    result = run_python(
        _PRELUDE
        + """
    ours = InMemorySpanExporter()
    exporting = setup_observability(
        TracingConfig(exporter_type="none", bsp_schedule_delay_ms=20, capture_content=True),
        span_exporters=[ours],
    )
    theirs = InMemorySpanExporter()
    trace.set_tracer_provider(TracerProvider())  # refused by OpenTelemetry, with a warning
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(theirs))
    work()
    flush_observability()
    print(json.dumps({
        "exporting": exporting,
        "ours": sorted(s.name for s in ours.get_finished_spans()),
        "theirs": sorted(s.name for s in theirs.get_finished_spans()),
    }))
    """
    )
    assert result["exporting"] is True
    assert result["ours"] == result["theirs"] == ["host.request", "lead_bot.analyze_intent"]


def test_a_foreign_provider_that_takes_no_processor_is_refused_with_a_warning() -> None:
    """A global provider without add_span_processor: False, and one WARNING says why and the fix."""
    result = run_python(
        _PRELUDE
        + """
    from opentelemetry.trace import NoOpTracerProvider

    class Vendor(NoOpTracerProvider):
        pass

    trace.set_tracer_provider(Vendor())
    ours = InMemorySpanExporter()
    exporting = setup_observability(TracingConfig(exporter_type="none"), span_exporters=[ours])
    again = setup_observability(TracingConfig(exporter_type="none"), span_exporters=[ours])
    work()
    print(json.dumps({"exporting": exporting, "again": again, "ours": len(ours.get_finished_spans())}))
    """
    )
    assert result == result | {"exporting": False, "again": False, "ours": 0}
    stderr = str(result["stderr"])
    assert stderr.count("WARNING") == 1
    assert "(Vendor) and it cannot take span processors" in stderr
    assert "Call setup_observability() before that tool" in stderr


def test_the_library_imports_nothing_from_the_app() -> None:
    """workflow_tracing + setup_observability() (local store on) load only the tracing library,
    and an ENVIRONMENT the app would refuse (qa) does not matter to it."""
    result = run_python(
        """
    import json, os, sys, tempfile
    os.environ["ENVIRONMENT"] = "qa"
    os.environ["TRACE_STORE_PATH"] = os.path.join(tempfile.mkdtemp(), "traces.db")
    import ghl_real_estate_ai.observability.workflow_tracing
    from ghl_real_estate_ai.observability.otel_config import setup_observability, shutdown_observability
    exporting = setup_observability()
    shutdown_observability()
    ours = sorted(
        name for name in sys.modules
        if name.startswith("ghl_real_estate_ai")
        and name != "ghl_real_estate_ai"
        and not name.startswith("ghl_real_estate_ai.observability")
    )
    print(json.dumps({"exporting": exporting, "app_modules": ours}))
    """
    )
    assert result["exporting"] is True
    assert result["app_modules"] == []
