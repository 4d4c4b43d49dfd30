"""Turn tracing on: exporters, sampler, resource, metrics and auto-instrumentation.

Call :func:`setup_observability` once at start-up and :func:`shutdown_observability`
at the end; :func:`instrument_app` puts a SERVER span on every request of a
FastAPI app::

    from ghl_real_estate_ai.observability.otel_config import setup_observability

    setup_observability()  # reads OTEL_* and friends from the environment / .env

Configuration comes from :class:`~ghl_real_estate_ai.settings.Settings`
(``OTEL_ENABLED``, ``OTEL_EXPORTER_TYPE``, ``OTEL_ENDPOINT``, ``HONEYCOMB_API_KEY``,
the standard ``OTEL_EXPORTER_OTLP_*``, ``OTEL_TRACES_SAMPLER[_ARG]``,
``OTEL_SDK_DISABLED``, ``OTEL_BSP_*``...). Spans leave through one bounded
queue per exporter, so a dead collector costs dropped (and counted) spans,
never a slow or failed request: see :func:`dropped_spans`.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

import ghl_real_estate_ai
from ghl_real_estate_ai.errors import ConfigurationError
from ghl_real_estate_ai.observability import _provider
from ghl_real_estate_ai.observability._batch import BoundedBatchSpanProcessor, ExportStats
from ghl_real_estate_ai.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "EXCLUDED_URLS",
    "ExportStats",
    "dropped_spans",
    "export_stats",
    "fastapi_native_telemetry_off",
    "flush_observability",
    "get_sdk_tracer_provider",
    "instrument_app",
    "instrument_libraries",
    "setup_observability",
    "shutdown_observability",
]

logger = logging.getLogger(__name__)

EXPORTER_TYPES = ("otlp", "otlp_http", "console", "local", "none")
"""The values OTEL_EXPORTER_TYPE accepts (comma separated)."""

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


_DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"

# One id per process, so replicas of one service are told apart in the backend.
_INSTANCE_ID = str(uuid.uuid4())


@dataclass
class _State:
    """What one successful set-up built, so shutdown can take it apart."""

    exporting: bool
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    processors: list[SpanProcessor] = field(default_factory=list)
    instrumentors: list[tuple[str, Any]] = field(default_factory=list)


_lock = threading.RLock()
_state: _State | None = None
_retired_stats = ExportStats()
_retiring: list[BoundedBatchSpanProcessor] = []
_atexit_registered = False
# Apps handed to instrument_app: instrumented whenever tracing is on, also when
# setup runs after instrument_app or again after a shutdown.
_apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()
_instrumented_apps: weakref.WeakSet[FastAPI] = weakref.WeakSet()


class _RepeatFilter(logging.Filter):
    """Let one record per logger, level and message template through per ``window`` seconds.

    A dead collector makes the OTLP exporters log every failed batch (about one
    ERROR a second); one line a minute says the same without burying the app's logs.
    """

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[tuple[str, int, object], float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.msg)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self.suppressed += 1
            return False
        self._last[key] = now
        return True


_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)
_repeat_filter = _RepeatFilter()


def _quiet_exporter_logs() -> None:
    for name in _EXPORTER_LOGGERS:
        exporter_logger = logging.getLogger(name)
        if _repeat_filter not in exporter_logger.filters:
            exporter_logger.addFilter(_repeat_filter)


class _Problems:
    """Collects what could not be built, for the single start-up WARNING."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


# --- configuration helpers ---------------------------------------------------


def _parse_headers(raw: str | None, problems: _Problems) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (values URL-encoded, as the OTel spec says) into a dict."""
    headers: dict[str, str] = {}
    if not raw:
        return headers
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip().lower()  # gRPC metadata keys must be lower case
        if not sep or not key:
            problems.add(f"OTEL_EXPORTER_OTLP_HEADERS entry {item!r} ignored: write it as key=value")
            continue
        headers[key] = unquote(value).strip()
    return headers


def _resolve_endpoint(argument: str | None, settings: Settings, default: str) -> str:
    """Endpoint precedence: argument > OTEL_ENDPOINT > OTEL_EXPORTER_OTLP_ENDPOINT > default."""
    for candidate in (argument, settings.otel_endpoint, settings.otel_exporter_otlp_endpoint):
        if candidate and candidate.strip():
            endpoint = candidate.strip()
            if "://" not in endpoint:
                # host:port without a scheme: TLS only on the conventional TLS port.
                scheme = "https" if endpoint.rsplit(":", 1)[-1] == "443" else "http"
                endpoint = f"{scheme}://{endpoint}"
            return endpoint
    return default


def _check_scheme(endpoint: str) -> str:
    scheme = urlsplit(endpoint).scheme.lower()
    if scheme not in ("http", "https"):
        raise _BuildError(
            f"endpoint {endpoint!r} has scheme {scheme!r}: use http:// (plaintext) or https:// (TLS)"
        )
    return scheme


def _http_signal_url(endpoint: str, signal: str) -> str:
    """OTLP/HTTP wants the full URL; a bare host gets the standard ``/v1/<signal>`` path."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return f"{parts.scheme}://{parts.netloc}/v1/{signal}"
    return endpoint


_SAMPLER_NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _build_sampler(
    sampler: Sampler | None, sample_rate: float | None, settings: Settings, problems: _Problems
) -> Sampler:
    """Sampler precedence: ``sampler=`` > ``sample_rate=`` > OTEL_TRACES_SAMPLER > ParentBased(always on)."""
    if sampler is not None:
        return sampler
    if sample_rate is not None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ConfigurationError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        return ParentBased(TraceIdRatioBased(sample_rate))
    name = (settings.otel_traces_sampler or "").strip().lower()
    ratio = 1.0 if settings.otel_traces_sampler_arg is None else settings.otel_traces_sampler_arg
    if not name:
        if settings.otel_traces_sampler_arg is not None:
            return ParentBased(TraceIdRatioBased(ratio))
        return ParentBased(ALWAYS_ON)
    built: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(ratio)),
    }
    if name not in built:
        problems.add(
            f"OTEL_TRACES_SAMPLER={settings.otel_traces_sampler!r} is unknown, sampling everything: "
            f"use one of {', '.join(_SAMPLER_NAMES)}"
        )
        return ParentBased(ALWAYS_ON)
    return built[name]()


def _build_resource(settings: Settings, service_name: str | None) -> Resource:
    """service.name, service.version, deployment.environment, service.instance.id + OTEL_RESOURCE_ATTRIBUTES.

    Explicit values (argument, OTEL_SERVICE_NAME, ENVIRONMENT) win over
    OTEL_RESOURCE_ATTRIBUTES, which wins over the defaults.
    """
    from_env = OTELResourceDetector().detect().attributes
    explicit = settings.model_fields_set

    def pick(key: str, given: str | None, field_name: str, value: str) -> str:
        if given:
            return given
        if field_name not in explicit and key in from_env:
            return str(from_env[key])
        return value

    attributes = {
        "service.name": pick("service.name", service_name, "otel_service_name", settings.otel_service_name),
        "service.version": ghl_real_estate_ai.__version__,
        "deployment.environment": pick("deployment.environment", None, "environment", settings.environment),
        "service.instance.id": _INSTANCE_ID,
    }
    created = Resource.create(attributes)
    return _HashOnceResource(created)


class _HashOnceResource(Resource):
    """A Resource that computes its hash once.

    The OTLP encoder groups every exported span by resource, and
    ``Resource.__hash__`` serialises all attributes to JSON each time: about a
    tenth of the encoding cost. A resource never changes, so its hash cannot either.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


# --- exporters -----------------------------------------------------------------


class _BuildError(Exception):
    """An exporter cannot be built; the message says why and how to fix it."""


@dataclass
class _OtlpConfig:
    endpoint: str
    headers: dict[str, str]
    timeout_seconds: float


def _otlp_grpc_config(endpoint: str, cfg: _OtlpConfig) -> dict[str, Any]:
    # TLS follows the scheme explicitly: the project this replaces defaulted to TLS
    # and every plaintext Jaeger export failed.
    insecure = _check_scheme(endpoint) == "http"
    return {
        "endpoint": endpoint,
        "insecure": insecure,
        "headers": tuple(cfg.headers.items()),
        "timeout": cfg.timeout_seconds,
    }


def _build_otlp_span_exporter(kind: str, cfg: _OtlpConfig) -> tuple[SpanExporter, str]:
    try:
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            kwargs = _otlp_grpc_config(cfg.endpoint, cfg)
            security = "plaintext" if kwargs["insecure"] else "TLS"
            return Grpc(**kwargs), f"otlp(grpc {cfg.endpoint}, {security})"
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        _check_scheme(cfg.endpoint)
        url = _http_signal_url(cfg.endpoint, "traces")
        exporter = Http(endpoint=url, headers=dict(cfg.headers), timeout=cfg.timeout_seconds)
        return exporter, f"otlp_http({url})"
    except ImportError as exc:
        package = "grpc" if kind == "otlp" else "http"
        raise _BuildError(
            f"{kind} exporter unavailable ({exc}): pip install opentelemetry-exporter-otlp-proto-{package}"
        ) from None


def _build_otlp_metric_exporter(kind: str, cfg: _OtlpConfig) -> MetricExporter:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc(**_otlp_grpc_config(cfg.endpoint, cfg))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

    return Http(
        endpoint=_http_signal_url(cfg.endpoint, "metrics"),
        headers=dict(cfg.headers),
        timeout=cfg.timeout_seconds,
    )


def _build_local_exporter(settings: Settings) -> tuple[SpanExporter, str]:
    try:
        from ghl_real_estate_ai.observability.local_store import LocalSpanExporter
    except ImportError as exc:
        raise _BuildError(f"local trace store unavailable ({exc})") from None
    path = settings.resolved_trace_store_path
    exporter = LocalSpanExporter(path, settings.trace_store_max_spans, settings.trace_store_max_age_hours)
    return exporter, f"local({path})"


def _redacting(exporter: SpanExporter, settings: Settings) -> SpanExporter:
    """Wrap ``exporter`` so PII (unless OTEL_CAPTURE_CONTENT) and secrets never leave the process."""
    try:
        from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter
    except ImportError as exc:
        # Fail closed: an exporter that could leak message text or secrets is not built at all.
        raise _BuildError(
            f"redaction unavailable ({exc}), so spans cannot leave the process safely"
        ) from None
    redacting: SpanExporter = RedactingSpanExporter(exporter, capture_content=settings.otel_capture_content)
    return redacting


def _parse_exporter_types(raw: str | None, problems: _Problems) -> list[str]:
    kinds: list[str] = []
    for item in (raw or "").split(","):
        kind = item.strip().lower()
        if not kind or kind in kinds:
            continue
        if kind not in EXPORTER_TYPES:
            problems.add(
                f"OTEL_EXPORTER_TYPE {kind!r} is unknown: use a comma list of {', '.join(EXPORTER_TYPES)}"
            )
            continue
        kinds.append(kind)
    return [k for k in kinds if k != "none"]


# --- set-up and shutdown -----------------------------------------------------------


def setup_observability(
    settings: Settings | None = None,
    *,
    service_name: str | None = None,
    exporter_type: str | None = None,
    endpoint: str | None = None,
    sampler: Sampler | None = None,
    sample_rate: float | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> bool:
    """Configure tracing and metrics for the process, once.

    Every value follows the precedence *argument > environment (or .env) > default*;
    the environment is read through :class:`Settings` when ``settings`` is None.
    The endpoint falls back from ``endpoint=`` to OTEL_ENDPOINT, then
    OTEL_EXPORTER_OTLP_ENDPOINT, then ``http://localhost:4317`` (gRPC) or
    ``http://localhost:4318`` (HTTP); ``http://`` is plaintext and ``https://`` TLS.

    A second call while set up changes nothing and returns the first answer; call
    :func:`shutdown_observability` first to configure again.

    Args:
        settings: the settings to read; None reads ``Settings()``.
        service_name: ``service.name`` (else OTEL_SERVICE_NAME, default ``enterprisehub``).
        exporter_type: comma list of ``otlp`` (gRPC), ``otlp_http``, ``console``,
            ``local``, ``none`` (else OTEL_EXPORTER_TYPE).
        endpoint: OTLP endpoint for ``otlp``/``otlp_http``.
        sampler: a ready sampler; wins over everything else.
        sample_rate: share of root traces kept, as ``ParentBased(TraceIdRatioBased(rate))``.
        span_exporters: more exporters to send spans to (each behind its own queue).
        metric_readers: more metric readers (e.g. a Prometheus reader).

    Returns:
        True when spans will really be exported: tracing is enabled, the SDK is
        not disabled and at least one exporter was built.

    Raises:
        ConfigurationError: ``sample_rate`` is outside 0-1.
    """
    global _state, _atexit_registered
    with _lock:
        if _state is not None:
            return _state.exporting
        settings = settings if settings is not None else Settings()
        problems = _Problems()

        if settings.otel_sdk_disabled or not settings.otel_enabled:
            reason = "OTEL_SDK_DISABLED=true" if settings.otel_sdk_disabled else "OTEL_ENABLED=false"
            state = _State(exporting=False)
            if metric_readers and not settings.otel_sdk_disabled:
                state.meter_provider = MeterProvider(
                    resource=_build_resource(settings, service_name),
                    metric_readers=list(metric_readers),
                    shutdown_on_exit=False,
                )
                _provider.set_meter_delegate(state.meter_provider)
            _state = state
            logger.info("tracing off (%s): no span is exported", reason)
            return False

        resource = _build_resource(settings, service_name)
        chosen_sampler = _build_sampler(sampler, sample_rate, settings, problems)
        kinds = _parse_exporter_types(
            exporter_type if exporter_type is not None else settings.otel_exporter_type, problems
        )
        headers = _parse_headers(settings.otel_exporter_otlp_headers, problems)
        if settings.honeycomb_api_key:
            headers["x-honeycomb-team"] = settings.honeycomb_api_key
        timeout_seconds = settings.otel_exporter_otlp_timeout / 1000
        queue_size = settings.otel_bsp_max_queue_size
        batch_size = min(settings.otel_bsp_max_export_batch_size, queue_size)
        delay_seconds = settings.otel_bsp_schedule_delay / 1000

        processors: list[SpanProcessor] = []
        described: list[str] = []
        metric_exporters: list[MetricExporter] = []

        def add_batched(exporter: SpanExporter, label: str) -> None:
            processors.append(
                BoundedBatchSpanProcessor(
                    _redacting(exporter, settings),
                    max_queue_size=queue_size,
                    schedule_delay=delay_seconds,
                    max_export_batch_size=batch_size,
                    name=label.split("(", 1)[0],
                )
            )
            described.append(label)

        for kind in kinds:
            try:
                if kind in ("otlp", "otlp_http"):
                    default = _DEFAULT_GRPC_ENDPOINT if kind == "otlp" else _DEFAULT_HTTP_ENDPOINT
                    cfg = _OtlpConfig(
                        _resolve_endpoint(endpoint, settings, default), headers, timeout_seconds
                    )
                    exporter, label = _build_otlp_span_exporter(kind, cfg)
                    add_batched(exporter, label)
                    try:
                        metric_exporters.append(_build_otlp_metric_exporter(kind, cfg))
                    except Exception as exc:
                        problems.add(f"{kind} metric exporter unavailable ({exc}); spans are still exported")
                elif kind == "local":
                    exporter, label = _build_local_exporter(settings)
                    add_batched(exporter, label)
                else:  # console: synchronous on purpose, it is a debugging aid
                    processors.append(SimpleSpanProcessor(_redacting(ConsoleSpanExporter(), settings)))
                    described.append("console")
            except _BuildError as exc:
                problems.add(f"{kind}: {exc}")
            except Exception as exc:  # a broken exporter must not stop the service
                problems.add(f"{kind}: cannot be built ({type(exc).__name__}: {exc})")
        for extra in span_exporters:
            try:
                add_batched(extra, type(extra).__name__)
            except _BuildError as exc:
                problems.add(f"{type(extra).__name__}: {exc}")

        tracer_provider = TracerProvider(resource=resource, sampler=chosen_sampler, shutdown_on_exit=False)
        for processor in processors:
            tracer_provider.add_span_processor(processor)
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(m, export_timeout_millis=settings.otel_exporter_otlp_timeout)
            for m in metric_exporters
        ]
        readers.extend(metric_readers)
        meter_provider = MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)

        _quiet_exporter_logs()
        _provider.install()
        _provider.set_delegate(tracer_provider)
        _provider.set_meter_delegate(meter_provider)
        state = _State(
            exporting=bool(processors),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            processors=processors,
        )
        _state = state
        state.instrumentors = _instrument_libraries(problems)
        for app in list(_apps):
            _instrument_one_app(app)
        if not _atexit_registered:
            atexit.register(shutdown_observability)
            _atexit_registered = True

        if problems.items:
            logger.warning("tracing: %s", "; ".join(problems.items))
        logger.info(
            "tracing on: service=%s exporters=%s sampler=%s",
            resource.attributes.get("service.name"),
            ", ".join(described) if described else "none (spans are created for context but not exported)",
            chosen_sampler.get_description(),
        )
        return state.exporting


def _run_bounded(jobs: list[Callable[[], object]], timeout_seconds: float) -> None:
    """Run ``jobs`` in parallel daemon threads and wait for them at most ``timeout_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    threads = [threading.Thread(target=job, name="jorge-otel-shutdown", daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        logger.warning(
            "tracing: flush did not finish within %.1f s; unsent spans are dropped", timeout_seconds
        )


def _shutdown_processor(processor: SpanProcessor, budget_ms: int) -> None:
    if isinstance(processor, BoundedBatchSpanProcessor):
        processor.shutdown(budget_ms)
    else:
        processor.shutdown()


def shutdown_observability(timeout_seconds: float = 5.0) -> None:
    """Flush and stop tracing and metrics within ``timeout_seconds``, then allow a new set-up.

    Returns within the bound even when the collector is a closed port or a black
    hole: what cannot be sent in time is dropped and counted in :func:`dropped_spans`.
    Auto-instrumentation is removed; apps given to :func:`instrument_app` are
    instrumented again by the next :func:`setup_observability`.

    Args:
        timeout_seconds: the longest this call may take.
    """
    global _state
    started = time.monotonic()
    with _lock:
        state, _state = _state, None
        if state is None:
            return
        # New spans go nowhere from here on; the old providers only drain.
        _provider.set_delegate(None)
        _provider.set_meter_delegate(None)
        for app in list(_instrumented_apps):
            _uninstrument_one_app(app)
        for name, instrumentor in state.instrumentors:
            try:
                instrumentor.uninstrument()
            except Exception:  # never let cleanup raise into the app's shutdown
                logger.exception("could not uninstrument %s", name)

    remaining = timeout_seconds - (time.monotonic() - started)
    # The flushes get 80 % of what is left so the exporters' own closing fits in the bound too.
    budget_ms = max(0, int(remaining * 800))
    jobs: list[Callable[[], object]] = [
        functools.partial(_shutdown_processor, p, budget_ms) for p in state.processors
    ]
    if state.meter_provider is not None:
        meter_provider = state.meter_provider
        jobs.append(lambda: meter_provider.shutdown(timeout_millis=budget_ms))
    _run_bounded(jobs, timeout_seconds - (time.monotonic() - started) - 0.02)
    with _lock:
        # A processor still stuck on a hung export keeps counting in the background.
        _retiring.extend(p for p in state.processors if isinstance(p, BoundedBatchSpanProcessor))
    logger.info("tracing stopped")


def flush_observability(timeout_seconds: float = 5.0) -> bool:
    """Export every queued span and metric now, waiting at most ``timeout_seconds``.

    Returns:
        True when everything was handed to the exporters in time (False when
        tracing is not set up).
    """
    with _lock:
        state = _state
    if state is None or state.tracer_provider is None:
        return False
    millis = int(timeout_seconds * 1000)
    results: list[bool] = []
    jobs: list[Callable[[], object]] = [
        functools.partial(lambda p: results.append(p.force_flush(millis)), p) for p in state.processors
    ]
    if state.meter_provider is not None:
        meter_provider = state.meter_provider
        jobs.append(lambda: results.append(meter_provider.force_flush(millis)))
    _run_bounded(jobs, timeout_seconds)
    return len(results) == len(jobs) and all(results)


def export_stats() -> ExportStats:
    """Span counts of every exporter since the process started (exported, dropped and why)."""
    global _retired_stats
    with _lock:
        for processor in [p for p in _retiring if p.finished]:
            _retired_stats = _retired_stats + processor.stats
            _retiring.remove(processor)
        total = _retired_stats
        live = list(_retiring)
        if _state is not None:
            live.extend(p for p in _state.processors if isinstance(p, BoundedBatchSpanProcessor))
        for processor in live:
            total = total + processor.stats
        return total


def dropped_spans() -> int:
    """Spans that never reached a backend since the process started.

    Counts spans refused by a full queue, spans in failed exports and spans still
    queued when shutdown ran out of time (see :func:`export_stats` for the split).
    """
    return export_stats().dropped


def get_sdk_tracer_provider() -> TracerProvider | None:
    """The SDK tracer provider spans currently go to, or None when tracing is off."""
    with _lock:
        return _state.tracer_provider if _state is not None else None


# --- auto-instrumentation -------------------------------------------------------------


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


def _instrument_libraries(problems: _Problems) -> list[tuple[str, Any]]:
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
    problems = _Problems()
    done = _instrument_libraries(problems)
    with _lock:
        if _state is not None:
            _state.instrumentors.extend(done)
    if problems.items:
        logger.warning("tracing: %s", "; ".join(problems.items))
    return [name for name, _ in done]


def _instrument_one_app(app: FastAPI) -> None:
    if app in _instrumented_apps:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

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

    ``/health``, ``/ready`` and ``/metrics`` are not traced and the ASGI
    ``receive``/``send`` spans are left out. Call it before or after
    :func:`setup_observability`: the app is instrumented while tracing is set up
    and left alone while it is not.

    Args:
        app: the FastAPI application.
    """
    with _lock:
        _apps.add(app)
        if _state is not None and _state.tracer_provider is not None:
            _instrument_one_app(app)
