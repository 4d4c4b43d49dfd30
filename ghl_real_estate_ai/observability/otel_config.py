"""Turn tracing on: the guide's entry point, and the public names of the set-up.

Call :func:`setup_observability` once at start-up and :func:`shutdown_observability`
at the end; :func:`instrument_app` puts a SERVER span on every request of a
FastAPI app::

    from ghl_real_estate_ai.observability.otel_config import setup_observability

    setup_observability()  # reads OTEL_* and friends from the environment / .env

The work is split by job, each in its own module: configuration (:mod:`.config`,
:class:`TracingConfig` read from the standard ``OTEL_*`` variables and the guide's),
exporters (:mod:`._exporters`), auto-instrumentation (:mod:`._autoinstrument`) and
lifecycle (:mod:`._lifecycle`: set-up, joining another tool's provider, flush,
shutdown). Spans leave through one bounded queue per exporter, so a dead collector
costs dropped (and counted) spans, never a slow or failed request: see
:func:`dropped_spans`.

After set-up, ``opentelemetry.trace.get_tracer_provider()`` answers the SDK calls
other tools make (``force_flush()``, ``shutdown()``, ``add_span_processor()``,
``resource``); a processor added that way receives spans already redacted unless
``OTEL_CAPTURE_CONTENT=true``.
"""

from __future__ import annotations

from ghl_real_estate_ai.observability._autoinstrument import (
    EXCLUDED_URLS,
    fastapi_native_telemetry_off,
    instrument_app,
    instrument_libraries,
)
from ghl_real_estate_ai.observability._batch import ExportStats
from ghl_real_estate_ai.observability._lifecycle import (
    SupportsTracingConfig,
    dropped_spans,
    export_stats,
    flush_observability,
    get_sdk_tracer_provider,
    setup_observability,
    shutdown_observability,
)
from ghl_real_estate_ai.observability.config import EXPORTER_TYPES, TracingConfig
from ghl_real_estate_ai.observability.errors import ObservabilityConfigError, ObservabilityError

__all__ = [
    "EXCLUDED_URLS",
    "EXPORTER_TYPES",
    "ExportStats",
    "ObservabilityConfigError",
    "ObservabilityError",
    "SupportsTracingConfig",
    "TracingConfig",
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
