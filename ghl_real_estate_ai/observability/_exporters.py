"""Exporters: build each configured span exporter behind the redaction step.

One job: turn :class:`~.config.TracingConfig` into span exporters (OTLP gRPC/HTTP,
console, the local trace store) and metric exporters, each wrapped so PII and
secrets never leave the process, and quiet the exporters' repeated error logs.
Anything that cannot be built is described in a :class:`Problems` line instead of
raising: a broken exporter must not stop the service.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from ghl_real_estate_ai.observability.config import EXPORTER_TYPES, TracingConfig

if TYPE_CHECKING:
    from ghl_real_estate_ai.observability._writer import WriterProcessExporter

__all__: list[str] = []

DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"


class Problems:
    """Collects what could not be built, for the single start-up WARNING."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


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


def quiet_exporter_logs() -> None:
    """Let the OTLP exporters log a repeated failure once a minute, not once a batch."""
    for name in _EXPORTER_LOGGERS:
        exporter_logger = logging.getLogger(name)
        if _repeat_filter not in exporter_logger.filters:
            exporter_logger.addFilter(_repeat_filter)


def parse_headers(raw: str | None, problems: Problems) -> dict[str, str]:
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


def resolve_endpoint(argument: str | None, config: TracingConfig, default: str) -> str:
    """Endpoint precedence: argument > OTEL_ENDPOINT > OTEL_EXPORTER_OTLP_ENDPOINT > default."""
    for candidate in (argument, config.endpoint, config.otlp_endpoint):
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
        raise BuildError(
            f"endpoint {endpoint!r} has scheme {scheme!r}: use http:// (plaintext) or https:// (TLS)"
        )
    return scheme


def _http_signal_url(endpoint: str, signal: str) -> str:
    """OTLP/HTTP wants the full URL; a bare host gets the standard ``/v1/<signal>`` path."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        return f"{parts.scheme}://{parts.netloc}/v1/{signal}"
    return endpoint


class BuildError(Exception):
    """An exporter cannot be built; the message says why and how to fix it."""


@dataclass
class OtlpConfig:
    endpoint: str
    headers: dict[str, str]
    timeout_seconds: float


def _otlp_grpc_config(endpoint: str, cfg: OtlpConfig) -> dict[str, Any]:
    # TLS follows the scheme explicitly: the project this replaces defaulted to TLS
    # and every plaintext Jaeger export failed.
    insecure = _check_scheme(endpoint) == "http"
    return {
        "endpoint": endpoint,
        "insecure": insecure,
        "headers": tuple(cfg.headers.items()),
        "timeout": cfg.timeout_seconds,
    }


def build_otlp_span_exporter(kind: str, cfg: OtlpConfig) -> tuple[SpanExporter, str]:
    try:
        if kind == "otlp":
            from ghl_real_estate_ai.observability._otlpwire import grpc_span_exporter

            kwargs = _otlp_grpc_config(cfg.endpoint, cfg)
            security = "plaintext" if kwargs["insecure"] else "TLS"
            return grpc_span_exporter(**kwargs), f"otlp(grpc {cfg.endpoint}, {security})"
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        _check_scheme(cfg.endpoint)
        url = _http_signal_url(cfg.endpoint, "traces")
        exporter = Http(endpoint=url, headers=dict(cfg.headers), timeout=cfg.timeout_seconds)
        return exporter, f"otlp_http({url})"
    except ImportError as exc:
        package = "grpc" if kind == "otlp" else "http"
        raise BuildError(
            f"{kind} exporter unavailable ({exc}): pip install opentelemetry-exporter-otlp-proto-{package}"
        ) from None


def build_otlp_metric_exporter(kind: str, cfg: OtlpConfig) -> MetricExporter:
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc(**_otlp_grpc_config(cfg.endpoint, cfg))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

    return Http(
        endpoint=_http_signal_url(cfg.endpoint, "metrics"),
        headers=dict(cfg.headers),
        timeout=cfg.timeout_seconds,
    )


def build_local_exporter(config: TracingConfig) -> tuple[SpanExporter, str]:
    try:
        from ghl_real_estate_ai.observability.local_store import LocalSpanExporter
    except ImportError as exc:
        raise BuildError(f"local trace store unavailable ({exc})") from None
    path = config.trace_store_path
    exporter = LocalSpanExporter(path, config.trace_store_max_spans, config.trace_store_max_age_hours)
    return exporter, f"local({path})"


def build_otlp_writer(kind: str, cfg: OtlpConfig, capture_content: bool) -> tuple[WriterProcessExporter, str]:
    """The OTLP span exporter in a writer process (OTLP_EXPORT_PROCESS); it redacts there too."""
    from ghl_real_estate_ai.observability._writer import WriterProcessExporter

    # Built here once so a bad endpoint or a missing package is reported at set-up, as in-process.
    probe, label = build_otlp_span_exporter(kind, cfg)
    probe.shutdown()
    spec = {
        "kind": kind,
        "endpoint": cfg.endpoint,
        "headers": cfg.headers,
        "timeout": cfg.timeout_seconds,
        "capture_content": capture_content,
    }
    return WriterProcessExporter(spec, label=label), label


def build_local_writer(config: TracingConfig) -> WriterProcessExporter:
    """The local store behind a writer process (TRACE_STORE_PROCESS); it redacts there too."""
    from ghl_real_estate_ai.observability._writer import WriterProcessExporter

    spec = {
        "kind": "local",
        "path": str(Path(config.trace_store_path).resolve()),
        "max_spans": config.trace_store_max_spans,
        "max_age_hours": config.trace_store_max_age_hours,
        "capture_content": config.capture_content,
    }
    return WriterProcessExporter(spec, label=f"local {config.trace_store_path}")


def redacting(exporter: SpanExporter, capture_content: bool) -> SpanExporter:
    """Wrap ``exporter`` so PII (unless OTEL_CAPTURE_CONTENT) and secrets never leave the process."""
    try:
        from ghl_real_estate_ai.observability.redaction import RedactingSpanExporter
    except ImportError as exc:
        # Fail closed: an exporter that could leak message text or secrets is not built at all.
        raise BuildError(f"redaction unavailable ({exc}), so spans cannot leave the process safely") from None
    redacting: SpanExporter = RedactingSpanExporter(exporter, capture_content=capture_content)
    return redacting


def parse_exporter_types(raw: str | None, problems: Problems) -> list[str]:
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
