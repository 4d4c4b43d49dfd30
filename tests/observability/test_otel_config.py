"""setup_observability: configuration precedence, resource, headers, sampler, idempotence, switches.

Spans go through the real OTLP receivers of ``tests/observability/receivers.py``.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

import ghl_real_estate_ai
from ghl_real_estate_ai.observability import _provider, otel_config
from ghl_real_estate_ai.observability.errors import ObservabilityConfigError
from ghl_real_estate_ai.observability.otel_config import (
    flush_observability,
    get_sdk_tracer_provider,
    setup_observability,
    shutdown_observability,
)
from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401  (autouse fixture)
from tests.observability.receivers import OTLPGrpcReceiver, OTLPHttpReceiver, self_signed_localhost

LOGGER = "ghl_real_estate_ai.observability.otel_config"


def one_span(name: str = "probe", **attributes: object) -> None:
    with trace.get_tracer("tests").start_as_current_span(name) as span:
        for key, value in attributes.items():
            span.set_attribute(key, value)  # type: ignore[arg-type]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_public_names_are_exported() -> None:
    """Every name in __all__ exists, and the guide's entry point is among them."""
    assert "setup_observability" in otel_config.__all__
    for name in otel_config.__all__:
        assert hasattr(otel_config, name), name


# --- resource -------------------------------------------------------------------------


def test_resource_reaches_the_receiver(monkeypatch: pytest.MonkeyPatch) -> None:
    """service name/version, deployment.environment, a uuid instance id, OTEL_RESOURCE_ATTRIBUTES arrive."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=jorge,service.name=ignored-by-explicit")
    with OTLPGrpcReceiver() as receiver:
        assert setup_observability(
            settings(environment="staging"),
            exporter_type="otlp",
            endpoint=receiver.endpoint,
            service_name="bots",
        )
        one_span()
        assert flush_observability()
        (span,) = receiver.wait_for(lambda spans: len(spans) >= 1)
    assert span.resource["service.name"] == "bots"
    assert span.resource["service.version"] == ghl_real_estate_ai.__version__
    assert span.resource["deployment.environment"] == "staging"
    assert span.resource["team"] == "jorge"
    assert uuid.UUID(span.resource["service.instance.id"])


def test_service_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES, which beats the `enterprisehub` default."""
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    one_span()
    flush_observability()
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "enterprisehub"
    shutdown_observability()

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource-attrs")
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    one_span()
    flush_observability()
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "from-resource-attrs"
    shutdown_observability()

    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    one_span()
    flush_observability()
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "from-env"


def test_the_resource_hashes_and_compares_like_a_plain_one() -> None:
    """Spans carry a resource that hashes once (for the OTLP encoder) yet equals a plain Resource."""
    from opentelemetry.sdk.resources import Resource

    exporter = InMemorySpanExporter()
    setup_observability(settings(), exporter_type="none", span_exporters=[exporter])
    one_span()
    flush_observability()
    resource = exporter.get_finished_spans()[0].resource
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and hash(resource) == hash(plain)
    assert {resource: 1}[plain] == 1
    assert resource.merge(Resource({"team": "jorge"})).attributes["team"] == "jorge"


# --- headers and endpoints --------------------------------------------------------------


@pytest.mark.parametrize("receiver_type", [OTLPGrpcReceiver, OTLPHttpReceiver])
def test_headers_arrive_at_the_receiver(
    receiver_type: type[OTLPGrpcReceiver | OTLPHttpReceiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HONEYCOMB_API_KEY is sent as x-honeycomb-team; OTLP headers arrive URL-decoded, keys lower case."""
    monkeypatch.setenv("HONEYCOMB_API_KEY", "hc-key-123")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "X-Tenant=acme%20realty, x-dataset = jorge%2Cbots")
    kind = "otlp" if receiver_type is OTLPGrpcReceiver else "otlp_http"
    with receiver_type() as receiver:
        monkeypatch.setenv("OTEL_ENDPOINT", receiver.endpoint)
        assert setup_observability(settings(), exporter_type=kind)
        one_span()
        assert flush_observability()
        receiver.wait_for(lambda spans: len(spans) >= 1)
        headers = receiver.headers()[0]
    assert headers["x-honeycomb-team"] == "hc-key-123"
    assert headers["x-tenant"] == "acme realty"
    assert headers["x-dataset"] == "jorge,bots"


def test_malformed_header_entry_is_skipped_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A header entry without `=` is named in the one WARNING; the good entries are still sent."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "broken-entry,x-good=yes")
    caplog.set_level(logging.INFO, LOGGER)
    with OTLPGrpcReceiver() as receiver:
        assert setup_observability(settings(), exporter_type="otlp", endpoint=receiver.endpoint)
        one_span()
        flush_observability()
        receiver.wait_for(lambda spans: len(spans) >= 1)
        assert receiver.headers()[0]["x-good"] == "yes"
    (warning,) = messages(caplog, logging.WARNING)
    assert "'broken-entry'" in warning and "key=value" in warning


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """argument > OTEL_ENDPOINT > OTEL_EXPORTER_OTLP_ENDPOINT: spans go to the winner only."""
    with OTLPGrpcReceiver() as by_arg, OTLPGrpcReceiver() as by_env, OTLPGrpcReceiver() as by_std:
        monkeypatch.setenv("OTEL_ENDPOINT", by_env.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", by_std.endpoint)
        for expected, argument in ((by_arg, by_arg.endpoint), (by_env, None)):
            setup_observability(settings(), exporter_type="otlp", endpoint=argument)
            one_span(f"to-{expected.port}")
            flush_observability()
            expected.wait_for(lambda spans: len(spans) >= 1)
            shutdown_observability()
        monkeypatch.delenv("OTEL_ENDPOINT")
        setup_observability(settings(), exporter_type="otlp")
        one_span(f"to-{by_std.port}")
        flush_observability()
        by_std.wait_for(lambda spans: len(spans) >= 1)
        for receiver in (by_arg, by_env, by_std):
            assert [s.name for s in receiver.spans()] == [f"to-{receiver.port}"]


def test_default_endpoints_and_scheme_pick_plaintext_or_tls(caplog: pytest.LogCaptureFixture) -> None:
    """gRPC defaults to localhost:4317 in plaintext, HTTP to :4318/v1/traces; https:// means TLS."""
    caplog.set_level(logging.INFO, LOGGER)
    setup_observability(settings(), exporter_type="otlp,otlp_http")
    shutdown_observability(0.5)
    setup_observability(settings(), exporter_type="otlp", endpoint="https://api.honeycomb.io:443")
    (first, second) = [m for m in messages(caplog, logging.INFO) if m.startswith("tracing on")]
    assert "otlp(grpc http://localhost:4317, plaintext)" in first
    assert "otlp_http(http://localhost:4318/v1/traces)" in first
    assert "otlp(grpc https://api.honeycomb.io:443, TLS)" in second


def test_https_endpoint_speaks_tls_and_http_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a TLS-only collector, https:// delivers (TLS verified with OTEL_EXPORTER_OTLP_CERTIFICATE)
    and http:// delivers nothing: the scheme alone picks the transport security."""
    certificate, key = self_signed_localhost()
    ca_file = tmp_path / "collector.pem"
    ca_file.write_bytes(certificate)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(ca_file))
    with OTLPGrpcReceiver(tls=(certificate, key)) as receiver:
        assert receiver.endpoint.startswith("https://")
        plaintext = receiver.endpoint.replace("https://", "http://")
        setup_observability(
            settings(otel_exporter_otlp_timeout=500.0), exporter_type="otlp", endpoint=plaintext
        )
        failed_before = otel_config.export_stats().failed
        one_span("over-plaintext")
        flush_observability()
        shutdown_observability()
        assert receiver.spans() == []
        assert otel_config.export_stats().failed == failed_before + 1  # tried, and refused by the TLS server
        setup_observability(settings(), exporter_type="otlp", endpoint=receiver.endpoint)
        one_span("over-tls")
        assert flush_observability()
        spans = receiver.wait_for(lambda spans: len(spans) >= 1)
    assert [s.name for s in spans] == ["over-tls"]


def test_unknown_scheme_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An ftp:// endpoint builds no exporter; the WARNING says which schemes work."""
    caplog.set_level(logging.INFO, LOGGER)
    assert setup_observability(settings(), exporter_type="otlp", endpoint="ftp://collector:4317") is False
    (warning,) = messages(caplog, logging.WARNING)
    assert "'ftp://collector:4317'" in warning and "https://" in warning


# --- sampler ------------------------------------------------------------------------------


def sampler_description() -> str:
    provider = get_sdk_tracer_provider()
    assert provider is not None
    return provider.sampler.get_description()


def test_sampler_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """sampler= > sample_rate= > OTEL_TRACES_SAMPLER(+_ARG) > ParentBased(always on)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    setup_observability(settings(), exporter_type="none", sampler=ALWAYS_OFF, sample_rate=0.5)
    assert sampler_description() == ALWAYS_OFF.get_description()
    shutdown_observability()
    setup_observability(settings(), exporter_type="none", sample_rate=0.5)
    assert sampler_description() == ParentBased(TraceIdRatioBased(0.5)).get_description()
    shutdown_observability()
    setup_observability(settings(), exporter_type="none")
    assert sampler_description() == TraceIdRatioBased(0.25).get_description()
    shutdown_observability()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    setup_observability(settings(), exporter_type="none")
    assert sampler_description() == ParentBased(TraceIdRatioBased(0.25)).get_description()
    shutdown_observability()
    monkeypatch.delenv("OTEL_TRACES_SAMPLER")
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG")
    setup_observability(settings(), exporter_type="none")
    assert sampler_description().startswith("ParentBased{root:AlwaysOnSampler")


def test_unknown_sampler_name_warns_and_samples_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in OTEL_TRACES_SAMPLER never stops the service: one WARNING naming it and the valid names."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "ratio_please")
    caplog.set_level(logging.INFO, LOGGER)
    setup_observability(settings(), exporter_type="none")
    assert sampler_description().startswith("ParentBased{root:AlwaysOnSampler")
    (warning,) = messages(caplog, logging.WARNING)
    assert "'ratio_please'" in warning and "parentbased_traceidratio" in warning


def test_sample_rate_outside_zero_one_is_a_configuration_error() -> None:
    with pytest.raises(ObservabilityConfigError, match=r"sample_rate must be between 0 and 1, got 1\.5"):
        setup_observability(settings(), exporter_type="none", sample_rate=1.5)


# --- switches, idempotence, restart -------------------------------------------------------------


def test_second_call_adds_no_exporter(caplog: pytest.LogCaptureFixture) -> None:
    """A second setup returns the first answer and the receiver gets each span once."""
    caplog.set_level(logging.INFO, LOGGER)
    with OTLPGrpcReceiver() as receiver, OTLPGrpcReceiver() as other:
        assert setup_observability(settings(), exporter_type="otlp", endpoint=receiver.endpoint) is True
        provider = get_sdk_tracer_provider()
        assert setup_observability(settings(), exporter_type="otlp", endpoint=other.endpoint) is True
        assert get_sdk_tracer_provider() is provider
        for index in range(5):
            one_span(f"span-{index}")
        flush_observability()
        spans = receiver.wait_for(lambda spans: len(spans) >= 5)
        shutdown_observability()
        assert sorted(s.name for s in spans) == [f"span-{i}" for i in range(5)]
        assert other.spans() == []
    assert len([m for m in messages(caplog, logging.INFO) if m.startswith("tracing on")]) == 1


@pytest.mark.parametrize(
    ("variable", "reason"),
    [("OTEL_SDK_DISABLED", "OTEL_SDK_DISABLED=true"), ("OTEL_ENABLED", "OTEL_ENABLED=false")],
)
def test_disabled_exports_nothing_and_says_why(
    variable: str, reason: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(variable, "true" if variable == "OTEL_SDK_DISABLED" else "false")
    caplog.set_level(logging.INFO, LOGGER)
    with OTLPGrpcReceiver() as receiver:
        assert setup_observability(settings(), exporter_type="otlp", endpoint=receiver.endpoint) is False
        assert get_sdk_tracer_provider() is None
        one_span()
        assert not trace.get_current_span().get_span_context().is_valid
        shutdown_observability()
        assert receiver.spans() == []
    (info,) = messages(caplog, logging.INFO)[:1]
    assert info == f"tracing off ({reason}): no span is exported"
    assert messages(caplog, logging.WARNING) == []


def test_sdk_disabled_wins_over_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ENABLED", "true")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert setup_observability(settings(), exporter_type="console") is False


def test_bad_exporter_type_warns_once_and_the_rest_works(caplog: pytest.LogCaptureFixture) -> None:
    """`otlp,bogus,zipkin`: one WARNING naming both bad values; otlp still exports; returns True."""
    caplog.set_level(logging.INFO, LOGGER)
    with OTLPGrpcReceiver() as receiver:
        assert setup_observability(settings(), exporter_type="otlp, bogus,zipkin", endpoint=receiver.endpoint)
        one_span()
        flush_observability()
        receiver.wait_for(lambda spans: len(spans) == 1)
    (warning,) = messages(caplog, logging.WARNING)
    assert "'bogus'" in warning and "'zipkin'" in warning and "otlp, otlp_http" in warning


def test_only_bad_exporters_return_false(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    assert setup_observability(settings(), exporter_type="jaeger") is False
    assert len(messages(caplog, logging.WARNING)) == 1


def test_none_exporter_keeps_context_but_exports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """`none`: spans still carry real trace ids (log correlation, propagation) but setup returns False."""
    caplog.set_level(logging.INFO, LOGGER)
    assert setup_observability(settings(), exporter_type="none") is False
    with trace.get_tracer("tests").start_as_current_span("x") as span:
        assert span.get_span_context().is_valid
    (info,) = messages(caplog, logging.INFO)
    assert "exporters=none" in info and "sampler=" in info and "service=enterprisehub" in info


def test_shutdown_allows_a_new_setup() -> None:
    """After shutdown the switch goes no-op, and a new set-up sends to the new receiver only."""
    with OTLPGrpcReceiver() as first, OTLPHttpReceiver() as second:
        setup_observability(settings(), exporter_type="otlp", endpoint=first.endpoint)
        one_span("first")
        shutdown_observability()
        assert isinstance(_provider.current_delegate(), trace.NoOpTracerProvider)
        one_span("lost")
        assert setup_observability(settings(), exporter_type="otlp_http", endpoint=second.endpoint)
        one_span("second")
        flush_observability()
        second.wait_for(lambda spans: len(spans) >= 1)
        assert [s.name for s in first.spans()] == ["first"]
        assert [s.name for s in second.spans()] == ["second"]


def test_shutdown_without_setup_is_harmless() -> None:
    shutdown_observability()
    assert flush_observability() is False
    assert get_sdk_tracer_provider() is None


# --- metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("receiver_type", [OTLPGrpcReceiver, OTLPHttpReceiver])
def test_metrics_are_exported_over_otlp(receiver_type: type[OTLPGrpcReceiver | OTLPHttpReceiver]) -> None:
    """The meter provider handed to the switch exports over the same OTLP transport, with the resource."""
    kind = "otlp" if receiver_type is OTLPGrpcReceiver else "otlp_http"
    with receiver_type() as receiver:
        setup_observability(settings(), exporter_type=kind, endpoint=receiver.endpoint, sample_rate=0.0)
        meter_provider = _provider.current_meter_delegate()
        assert meter_provider is not None
        counter = meter_provider.get_meter("tests").create_counter("jorge.test.calls")
        for _ in range(3):
            counter.add(1, {"bot_type": "lead"})
        assert flush_observability()
        rows = receiver.wait_for_metrics(lambda rows: any(r.name == "jorge.test.calls" for r in rows))
    (row,) = [r for r in rows if r.name == "jorge.test.calls"]
    assert (row.kind, row.value, row.attributes) == ("sum", 3, {"bot_type": "lead"})
    assert row.resource["service.name"] == "enterprisehub"


def test_metric_readers_are_used_and_survive_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers passed in get the metrics, also with OTEL_ENABLED=false (a /metrics page needs them)."""
    monkeypatch.setenv("OTEL_ENABLED", "false")
    reader = InMemoryMetricReader()
    assert setup_observability(settings(), metric_readers=[reader]) is False
    meter_provider = _provider.current_meter_delegate()
    assert meter_provider is not None
    meter_provider.get_meter("tests").create_counter("jorge.test.off").add(2)
    data = reader.get_metrics_data()
    assert data is not None
    names = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert names == ["jorge.test.off"]


# --- redaction and the local store ---------------------------------------------------------------


@pytest.mark.parametrize("capture_content", [False, True])
def test_exporters_fail_closed_without_the_redaction_step(
    capture_content: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the redaction module no exporter is built: nothing could leak, not even secrets."""
    monkeypatch.setitem(sys.modules, "ghl_real_estate_ai.observability.redaction", None)
    caplog.set_level(logging.INFO, LOGGER)
    with OTLPGrpcReceiver() as receiver:
        result = setup_observability(
            settings(otel_capture_content=capture_content), exporter_type="otlp", endpoint=receiver.endpoint
        )
        one_span()
        shutdown_observability()
        assert receiver.spans() == []
    assert result is False
    (warning,) = messages(caplog, logging.WARNING)
    assert "redaction unavailable" in warning


@pytest.mark.parametrize("capture_content", [False, True])
def test_every_exporter_is_wrapped_for_redaction(capture_content: bool) -> None:
    """Each exporter sits behind RedactingSpanExporter, told whether content capture is on."""
    from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter

    inner = InMemorySpanExporter()
    assert setup_observability(
        settings(otel_capture_content=capture_content), exporter_type="console", span_exporters=[inner]
    )
    provider = get_sdk_tracer_provider()
    assert provider is not None
    processors = provider._active_span_processor._span_processors  # the SDK offers no public view
    # The two that only annotate spans and export nothing come first.
    assert [type(p).__name__ for p in processors[:2]] == [
        "ConversationSpanProcessor",
        "UrlTemplateSpanProcessor",
    ]
    processors = processors[2:]
    exporters = [p.exporter if hasattr(p, "exporter") else p.span_exporter for p in processors]
    assert [type(e) for e in exporters] == [RedactingSpanExporter, RedactingSpanExporter]
    assert [e.capture_content for e in exporters] == [capture_content, capture_content]
    assert exporters[1].inner is inner


def test_phone_numbers_do_not_reach_the_receiver_by_default() -> None:
    """End to end through OTLP: with capture off a phone number and an e-mail never arrive."""
    with OTLPGrpcReceiver() as receiver:
        setup_observability(
            settings(otel_capture_content=False), exporter_type="otlp", endpoint=receiver.endpoint
        )
        one_span("probe", note="call me at +1 512 555 0147 or jo@example.com")
        flush_observability()
        (span,) = receiver.wait_for(lambda spans: len(spans) == 1)
    assert "555" not in str(span.attributes["note"]) and "example.com" not in str(span.attributes["note"])


def test_local_exporter_writes_the_trace_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`local` writes spans to TRACE_STORE_PATH and names the file in the INFO line."""
    path = tmp_path / "store" / "traces.db"
    caplog.set_level(logging.INFO, LOGGER)
    assert setup_observability(settings(trace_store_path=path), exporter_type="local")
    one_span("stored")
    assert flush_observability()
    shutdown_observability()
    assert path.exists() and path.stat().st_size > 0
    assert f"local({path})" in messages(caplog, logging.INFO)[0]
    assert otel_config.export_stats().exported >= 1
