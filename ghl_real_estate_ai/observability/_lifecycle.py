"""Lifecycle: set tracing up once, join or refuse a provider set by another tool, flush, shut down.

One job: build the SDK tracer and meter providers from a :class:`~.config.TracingConfig`,
point the global switch provider (:mod:`._provider`) at them, answer the SDK-style
calls other tools make on the global provider, and take everything apart within a
time bound. The public names are re-exported by :mod:`.otel_config`.

Another tool's provider set first (Langfuse, Phoenix, Sentry, Logfire, a host app):

* an SDK ``TracerProvider`` (it has ``add_span_processor``): we *join* it. Our
  exporters are added to it behind one gate processor, our spans go to it, and its
  sampler and resource stay in charge. ``setup_observability()`` returns True and
  logs that it joined; shutdown closes our gate (the SDK cannot remove a processor).
* anything else: we cannot add to it, so we *refuse*: one WARNING says why and
  what to do, and ``setup_observability()`` returns False.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from ghl_real_estate_ai.observability import _autoinstrument, _provider
from ghl_real_estate_ai.observability._batch import BoundedBatchSpanProcessor, ExportStats
from ghl_real_estate_ai.observability._exporters import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    BuildError,
    OtlpConfig,
    Problems,
    build_local_exporter,
    build_local_writer,
    build_otlp_metric_exporter,
    build_otlp_span_exporter,
    build_otlp_writer,
    parse_exporter_types,
    parse_headers,
    quiet_exporter_logs,
    redacting,
    resolve_endpoint,
)
from ghl_real_estate_ai.observability._fastspan import FastTracerProvider
from ghl_real_estate_ai.observability.config import DEFAULT_SERVICE_NAME, TracingConfig
from ghl_real_estate_ai.observability.errors import ObservabilityConfigError
from ghl_real_estate_ai.observability.journey import ConversationSpanProcessor
from ghl_real_estate_ai.observability.url_templates import UrlTemplateSpanProcessor

__all__ = [
    "SupportsTracingConfig",
    "dropped_spans",
    "export_stats",
    "flush_observability",
    "get_sdk_tracer_provider",
    "setup_observability",
    "shutdown_observability",
]

# The log lines keep the public module's name: users filter on it.
logger = logging.getLogger("ghl_real_estate_ai.observability.otel_config")

# One id per process, so replicas of one service are told apart in the backend.
_INSTANCE_ID = str(uuid.uuid4())


class SupportsTracingConfig(Protocol):
    """An application settings object that can describe the tracing it wants."""

    def tracing_config(self) -> TracingConfig: ...


@dataclass
class _State:
    """What one successful set-up built, so shutdown can take it apart."""

    exporting: bool
    config: TracingConfig
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    processors: list[SpanProcessor] = field(default_factory=list)
    gate: _Gate | None = None
    """When we joined another tool's provider: the one processor we added to it."""


_lock = threading.RLock()
_state: _State | None = None
_retired_stats = ExportStats()
_retiring: list[BoundedBatchSpanProcessor] = []
_atexit_registered = False
# Processors other tools added through the global provider: kept across set-ups.
_added: list[_RedactedView] = []


class _RedactedView(SpanProcessor):
    """Hands ``inner`` each finished span redacted (unless content capture is on).

    ``on_start`` sees the live span so a tool can enrich it; what it can ship out
    is only what ``on_end`` gives it, and that copy is redacted.
    """

    def __init__(self, inner: SpanProcessor, capture_content: bool) -> None:
        self.inner = inner
        self.capture_content = capture_content

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not self.capture_content:
            from ghl_real_estate_ai.observability.redaction import redact_span

            try:
                span = redact_span(span, capture_content=False)
            except Exception:
                # Better lose a span than leak one.
                logger.warning("could not redact span %r for an added processor; dropped it", span.name)
                return
        self.inner.on_end(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _Gate(SpanProcessor):
    """Our processors inside another tool's provider; closing it detaches them."""

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self.processors: tuple[SpanProcessor, ...] = tuple(processors)

    def close(self) -> None:
        self.processors = ()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self.processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        # The host provider shuts down at its own exit; our processors are ours to stop.
        self.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)


class _Owner:
    """Answers ``force_flush``/``shutdown``/``add_span_processor``/``resource`` on the global provider."""

    def force_flush(self, timeout_millis: int) -> bool:
        with _lock:
            added = list(_added)
        ok = flush_observability(timeout_millis / 1000)
        if _state is None:
            ok = True
        return all([ok] + [p.force_flush(timeout_millis) for p in added])

    def shutdown(self) -> None:
        shutdown_observability()
        with _lock:
            added = list(_added)
            _added.clear()
        for processor in added:
            try:
                processor.shutdown()
            except Exception:
                logger.exception("an added span processor failed to shut down")

    def add_span_processor(self, processor: SpanProcessor) -> None:
        with _lock:
            state = _state
            capture = state.config.capture_content if state is not None else _capture_from_env()
            view = _RedactedView(processor, capture)
            _added.append(view)
            if state is not None and state.tracer_provider is not None and state.gate is None:
                state.tracer_provider.add_span_processor(view)

    @property
    def resource(self) -> Resource:
        state = _state
        if state is not None and state.tracer_provider is not None:
            return state.tracer_provider.resource
        return Resource.get_empty()


_OWNER = _Owner()


def _capture_from_env() -> bool:
    return TracingConfig.from_env().capture_content


def _foreign_provider() -> object | None:
    """The global provider another tool set, if any (None: ours, or nobody's yet)."""
    current = trace_api.get_tracer_provider()
    if isinstance(current, trace_api.ProxyTracerProvider | _provider.SwitchTracerProvider):
        return None
    return current


def _resolve_config(config: TracingConfig | SupportsTracingConfig | None) -> TracingConfig:
    if config is None:
        return TracingConfig.from_env()
    if isinstance(config, TracingConfig):
        return config
    tracing_config = getattr(config, "tracing_config", None)
    if callable(tracing_config):
        built = tracing_config()
        if isinstance(built, TracingConfig):
            return built
    raise ObservabilityConfigError(
        f"setup_observability() takes a TracingConfig, got {type(config).__name__}: "
        "build one with TracingConfig.from_env()"
    )


_SAMPLER_NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _build_sampler(
    sampler: Sampler | None, sample_rate: float | None, config: TracingConfig, problems: Problems
) -> Sampler:
    """Sampler precedence: ``sampler=`` > ``sample_rate=`` > OTEL_TRACES_SAMPLER > ParentBased(always on)."""
    if sampler is not None:
        return sampler
    if sample_rate is not None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ObservabilityConfigError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        return ParentBased(TraceIdRatioBased(sample_rate))
    name = (config.traces_sampler or "").strip().lower()
    ratio = 1.0 if config.traces_sampler_arg is None else config.traces_sampler_arg
    if not name:
        if config.traces_sampler_arg is not None:
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
            f"OTEL_TRACES_SAMPLER={config.traces_sampler!r} is unknown, sampling everything: "
            f"use one of {', '.join(_SAMPLER_NAMES)}"
        )
        return ParentBased(ALWAYS_ON)
    return built[name]()


def _build_resource(config: TracingConfig) -> Resource:
    """service.name, service.version, deployment.environment, service.instance.id + OTEL_RESOURCE_ATTRIBUTES.

    Explicit values (argument or OTEL_SERVICE_NAME) win over OTEL_RESOURCE_ATTRIBUTES,
    which wins over the defaults; a version or environment nobody gave is left out.
    """
    from_env = OTELResourceDetector().detect().attributes
    attributes: dict[str, str] = {
        "service.name": config.service_name or str(from_env.get("service.name") or DEFAULT_SERVICE_NAME),
        "service.instance.id": _INSTANCE_ID,
    }
    for key, given in (
        ("service.version", config.service_version),
        ("deployment.environment", config.environment),
    ):
        value = given or from_env.get(key)
        if value:
            attributes[key] = str(value)
    return _HashOnceResource(Resource.create(attributes))


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


# --- set-up and shutdown -----------------------------------------------------------


def setup_observability(
    config: TracingConfig | SupportsTracingConfig | None = None,
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    exporter_type: str | None = None,
    endpoint: str | None = None,
    sampler: Sampler | None = None,
    sample_rate: float | None = None,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
) -> bool:
    """Configure tracing and metrics for the process, once.

    Every value follows the precedence *argument > environment > .env > default*
    (:meth:`TracingConfig.from_env` reads the environment when ``config`` is None).
    The endpoint falls back from ``endpoint=`` to OTEL_ENDPOINT, then
    OTEL_EXPORTER_OTLP_ENDPOINT, then ``http://localhost:4317`` (gRPC) or
    ``http://localhost:4318`` (HTTP); ``http://`` is plaintext and ``https://`` TLS.

    A second call while set up changes nothing and returns the first answer; call
    :func:`shutdown_observability` first to configure again. When another tool set
    the global provider first, an SDK provider is joined and anything else refused
    (see the module docstring).

    Args:
        config: the configuration, or an object whose ``tracing_config()`` gives one
            (an application's settings); None reads the environment.
        service_name: ``service.name`` (else OTEL_SERVICE_NAME, default ``enterprisehub``).
        service_version: ``service.version`` of the resource (else the config's, else
            OTEL_RESOURCE_ATTRIBUTES', else none).
        exporter_type: comma list of ``otlp`` (gRPC), ``otlp_http``, ``console``,
            ``local``, ``none`` (else OTEL_EXPORTER_TYPE).
        endpoint: OTLP endpoint for ``otlp``/``otlp_http``.
        sampler: a ready sampler; wins over everything else.
        sample_rate: share of root traces kept, as ``ParentBased(TraceIdRatioBased(rate))``.
        span_exporters: more exporters to send spans to (each behind its own queue).
        metric_readers: more metric readers (e.g. a Prometheus reader).

    Returns:
        True when spans will really be exported: tracing is enabled, the SDK is
        not disabled, no foreign provider refused us and at least one exporter was built.

    Raises:
        ObservabilityConfigError: ``sample_rate`` is outside 0-1, or ``config`` is
            not a configuration.
    """
    global _state, _atexit_registered
    with _lock:
        if _state is not None:
            return _state.exporting
        cfg = _resolve_config(config)
        changes: dict[str, Any] = {}
        if service_name:
            changes["service_name"] = service_name
        if service_version:
            changes["service_version"] = service_version
        if exporter_type is not None:
            changes["exporter_type"] = exporter_type
        if changes:
            cfg = cfg.replace(**changes)
        problems = Problems()
        for problem in cfg.problems:
            problems.add(problem)

        if cfg.sdk_disabled or not cfg.enabled:
            reason = "OTEL_SDK_DISABLED=true" if cfg.sdk_disabled else "OTEL_ENABLED=false"
            state = _State(exporting=False, config=cfg)
            if metric_readers and not cfg.sdk_disabled:
                state.meter_provider = MeterProvider(
                    resource=_build_resource(cfg),
                    metric_readers=list(metric_readers),
                    shutdown_on_exit=False,
                    exemplar_filter=AlwaysOffExemplarFilter(),
                )
                _provider.set_meter_delegate(state.meter_provider)
            _state = state
            logger.info("tracing off (%s): no span is exported", reason)
            return False

        foreign = _foreign_provider()
        if foreign is not None and not callable(getattr(foreign, "add_span_processor", None)):
            _state = _State(exporting=False, config=cfg)
            logger.warning(
                "tracing: another tool set the global tracer provider first (%s) and it cannot take "
                "span processors, so our exporters would get nothing: no span is exported. Call "
                "setup_observability() before that tool, or give it an SDK TracerProvider",
                type(foreign).__name__,
            )
            return False

        resource = _build_resource(cfg)
        chosen_sampler = _build_sampler(sampler, sample_rate, cfg, problems)
        kinds = parse_exporter_types(cfg.exporter_type, problems)
        headers = parse_headers(cfg.otlp_headers, problems)
        if cfg.honeycomb_api_key:
            headers["x-honeycomb-team"] = cfg.honeycomb_api_key
        timeout_seconds = cfg.otlp_timeout_ms / 1000
        queue_size = cfg.bsp_max_queue_size
        batch_size = min(cfg.bsp_max_export_batch_size, queue_size)
        delay_seconds = cfg.bsp_schedule_delay_ms / 1000

        processors: list[SpanProcessor] = []
        described: list[str] = []
        metric_exporters: list[MetricExporter] = []

        def add_batched(exporter: SpanExporter, label: str) -> None:
            processors.append(
                BoundedBatchSpanProcessor(
                    redacting(exporter, cfg.capture_content),
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
                    default = DEFAULT_GRPC_ENDPOINT if kind == "otlp" else DEFAULT_HTTP_ENDPOINT
                    otlp = OtlpConfig(resolve_endpoint(endpoint, cfg, default), headers, timeout_seconds)
                    if cfg.otlp_export_process:
                        # Redaction, encoding and sending run in the writer process (see ._writer).
                        otlp_writer, label = build_otlp_writer(kind, otlp, cfg.capture_content)
                        processors.append(
                            BoundedBatchSpanProcessor(
                                otlp_writer,
                                max_queue_size=queue_size,
                                schedule_delay=delay_seconds,
                                max_export_batch_size=batch_size,
                                name=kind,
                            )
                        )
                        described.append(f"{label} in writer process {otlp_writer.pid}")
                    else:
                        exporter, label = build_otlp_span_exporter(kind, otlp)
                        add_batched(exporter, label)
                    try:
                        metric_exporters.append(build_otlp_metric_exporter(kind, otlp))
                    except Exception as exc:
                        problems.add(f"{kind} metric exporter unavailable ({exc}); spans are still exported")
                elif kind == "local" and cfg.trace_store_process:
                    # Redaction and the inserts run in the writer process (see ._writer).
                    writer = build_local_writer(cfg)
                    processors.append(
                        BoundedBatchSpanProcessor(
                            writer,
                            max_queue_size=queue_size,
                            schedule_delay=delay_seconds,
                            max_export_batch_size=batch_size,
                            name="local",
                        )
                    )
                    described.append(f"local({cfg.trace_store_path}) in writer process {writer.pid}")
                elif kind == "local":
                    exporter, label = build_local_exporter(cfg)
                    add_batched(exporter, label)
                else:  # console: synchronous on purpose, it is a debugging aid
                    processors.append(
                        SimpleSpanProcessor(redacting(ConsoleSpanExporter(), cfg.capture_content))
                    )
                    described.append("console")
            except BuildError as exc:
                problems.add(f"{kind}: {exc}")
            except Exception as exc:  # a broken exporter must not stop the service
                problems.add(f"{kind}: cannot be built ({type(exc).__name__}: {exc})")
        for extra in span_exporters:
            try:
                add_batched(extra, type(extra).__name__)
            except BuildError as exc:
                problems.add(f"{type(extra).__name__}: {exc}")

        gate: _Gate | None = None
        # Session keys and the journey go on the spans before any exporter sees them.
        conversation = ConversationSpanProcessor()
        if foreign is not None:
            # Join the host's SDK provider: its sampler and resource stay in charge.
            tracer_provider: TracerProvider = foreign  # type: ignore[assignment]
            gate = _Gate([conversation, UrlTemplateSpanProcessor(), *processors])
            tracer_provider.add_span_processor(gate)
            resource = getattr(tracer_provider, "resource", resource)
            sampler_text = "the host provider's"
        else:
            tracer_provider = FastTracerProvider(
                resource=resource, sampler=chosen_sampler, shutdown_on_exit=False
            )
            tracer_provider.add_span_processor(conversation)
            tracer_provider.add_span_processor(UrlTemplateSpanProcessor())
            for processor in processors:
                tracer_provider.add_span_processor(processor)
            for view in _added:
                tracer_provider.add_span_processor(view)
            sampler_text = chosen_sampler.get_description()
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(m, export_timeout_millis=int(cfg.otlp_timeout_ms))
            for m in metric_exporters
        ]
        readers.extend(metric_readers)
        # No exemplars (issue 11): /metrics does not expose them, and the SDK's reservoir costs
        # every measurement a draw from the global random module.
        meter_provider = MeterProvider(
            resource=resource,
            metric_readers=readers,
            shutdown_on_exit=False,
            exemplar_filter=AlwaysOffExemplarFilter(),
        )

        quiet_exporter_logs()
        _provider.install()
        _provider.set_owner(_OWNER)
        _provider.set_delegate(tracer_provider)
        _provider.set_meter_delegate(meter_provider)
        state = _State(
            exporting=bool(processors),
            config=cfg,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            processors=processors,
            gate=gate,
        )
        _state = state
        _autoinstrument.activate(problems)
        if not _atexit_registered:
            atexit.register(shutdown_observability)
            _atexit_registered = True

        if problems.items:
            logger.warning("tracing: %s", "; ".join(problems.items))
        if foreign is not None:
            logger.info(
                "tracing joined the provider another tool set first (%s): our exporters were added "
                "to it; its sampler and resource apply",
                type(foreign).__name__,
            )
        logger.info(
            "tracing on: service=%s exporters=%s sampler=%s",
            resource.attributes.get("service.name"),
            ", ".join(described) if described else "none (spans are created for context but not exported)",
            sampler_text,
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
        _provider.set_owner(None)
        if state.gate is not None:
            state.gate.close()
        _autoinstrument.deactivate()
        added = list(_added)

    remaining = timeout_seconds - (time.monotonic() - started)
    # The flushes get 80 % of what is left so the exporters' own closing fits in the bound too.
    budget_ms = max(0, int(remaining * 800))
    jobs: list[Callable[[], object]] = [
        functools.partial(_shutdown_processor, p, budget_ms) for p in state.processors
    ]
    # Processors other tools added stay theirs (kept for the next set-up): flushed, not stopped.
    jobs.extend(functools.partial(p.force_flush, budget_ms) for p in added)
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
