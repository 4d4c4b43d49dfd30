"""The tracing library's own configuration, read from the standard ``OTEL_*`` variables.

The library stands alone: it reads no application settings. :meth:`TracingConfig.from_env`
builds the configuration with the precedence *keyword argument > process environment >
``.env`` file in the working directory > default*; an application that has its own
settings class builds a :class:`TracingConfig` from them and hands it to
``setup_observability(config)``.

A bad value in the environment never raises: it is listed in
:attr:`TracingConfig.problems` (the set-up logs them in one WARNING) and the default is
used instead, as the OpenTelemetry SDK does.

The variables, each with its meaning, format and default:

================================== ==========================================================
``OTEL_ENABLED``                    turn tracing on (``true``); ``false`` exports nothing
``OTEL_SDK_DISABLED``               the standard kill switch; ``true`` wins over OTEL_ENABLED
``OTEL_SERVICE_NAME``               ``service.name`` (default ``enterprisehub``)
``OTEL_RESOURCE_ATTRIBUTES``        ``k=v,...`` resource attributes (explicit values win)
``OTEL_EXPORTER_TYPE``              comma list of ``otlp``, ``otlp_http``, ``console``, ``local``, ``none``
``OTEL_ENDPOINT``                   OTLP endpoint (the guide's name); ``http://`` plaintext, ``https://`` TLS
``OTEL_EXPORTER_OTLP_ENDPOINT``     the standard OTLP endpoint, used when OTEL_ENDPOINT is unset
``OTEL_EXPORTER_OTLP_HEADERS``      ``key=value,...`` headers (URL-encoded values)
``OTEL_EXPORTER_OTLP_TIMEOUT``      milliseconds one OTLP export may take (3000)
``HONEYCOMB_API_KEY``               sent as the ``x-honeycomb-team`` header
``OTEL_TRACES_SAMPLER[_ARG]``       standard sampler name and its ratio
``OTEL_BSP_MAX_QUEUE_SIZE``         finished spans queued per exporter (2048); beyond, dropped
``OTEL_BSP_SCHEDULE_DELAY``         milliseconds between exports (1000)
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``  spans per export call (512)
``OTEL_CAPTURE_CONTENT``            let message text, phones and e-mails into spans (``false``)
``TRACE_STORE_PATH``                SQLite file of the ``local`` exporter (``data/traces.db``)
``TRACE_STORE_MAX_SPANS``           spans the local store keeps (200000)
``TRACE_STORE_MAX_AGE_HOURS``       hours the local store keeps a span (72)
``TRACE_STORE_PROCESS``             write the local store from a writer process (``true``)
``OTLP_EXPORT_PROCESS``             send OTLP spans from a writer process (``false``)
================================== ==========================================================
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["DEFAULT_SERVICE_NAME", "EXPORTER_TYPES", "TracingConfig"]

DEFAULT_SERVICE_NAME = "enterprisehub"
"""``service.name`` when neither an argument, OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES gives one."""

EXPORTER_TYPES = ("otlp", "otlp_http", "console", "local", "none")
"""The values OTEL_EXPORTER_TYPE accepts (comma separated)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

T = TypeVar("T")


@dataclass(frozen=True)
class TracingConfig:
    """Everything :func:`setup_observability` needs to know, with the library's defaults.

    Build it with :meth:`from_env` (or directly, for a fully explicit set-up). Fields
    left ``None`` fall back as described on each.
    """

    enabled: bool = True
    """OTEL_ENABLED: turn tracing on."""

    sdk_disabled: bool = False
    """OTEL_SDK_DISABLED: the standard kill switch; wins over ``enabled``."""

    service_name: str | None = None
    """OTEL_SERVICE_NAME. None: OTEL_RESOURCE_ATTRIBUTES' ``service.name``, else ``enterprisehub``."""

    service_version: str | None = None
    """``service.version`` of the resource. None: OTEL_RESOURCE_ATTRIBUTES', else left out."""

    environment: str | None = None
    """``deployment.environment`` of the resource. None: OTEL_RESOURCE_ATTRIBUTES', else left out."""

    exporter_type: str = "local"
    """OTEL_EXPORTER_TYPE: comma list of ``otlp``, ``otlp_http``, ``console``, ``local``, ``none``."""

    endpoint: str | None = None
    """OTEL_ENDPOINT: the guide's OTLP endpoint variable; wins over ``otlp_endpoint``."""

    otlp_endpoint: str | None = None
    """OTEL_EXPORTER_OTLP_ENDPOINT: the standard OTLP endpoint variable."""

    otlp_headers: str | None = None
    """OTEL_EXPORTER_OTLP_HEADERS: ``key=value,key2=value2``, values URL-encoded."""

    otlp_timeout_ms: float = 3000.0
    """OTEL_EXPORTER_OTLP_TIMEOUT: milliseconds one OTLP export may take, retries included."""

    honeycomb_api_key: str | None = None
    """HONEYCOMB_API_KEY: sent as the ``x-honeycomb-team`` header."""

    traces_sampler: str | None = None
    """OTEL_TRACES_SAMPLER: standard sampler name; None samples every root (parent-based)."""

    traces_sampler_arg: float | None = None
    """OTEL_TRACES_SAMPLER_ARG: ratio 0-1 for the ratio samplers."""

    bsp_max_queue_size: int = 2048
    """OTEL_BSP_MAX_QUEUE_SIZE: finished spans each exporter queues; more are dropped and counted."""

    bsp_schedule_delay_ms: float = 1000.0
    """OTEL_BSP_SCHEDULE_DELAY: milliseconds between two exports of queued spans."""

    bsp_max_export_batch_size: int = 512
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE: spans per export call (capped at the queue size)."""

    capture_content: bool = False
    """OTEL_CAPTURE_CONTENT: let message text, phone numbers and e-mail addresses into spans."""

    trace_store_path: Path = Path("data/traces.db")
    """TRACE_STORE_PATH: SQLite file of the ``local`` exporter."""

    trace_store_max_spans: int = 200_000
    """TRACE_STORE_MAX_SPANS: the local store keeps at most this many spans."""

    trace_store_max_age_hours: float = 72.0
    """TRACE_STORE_MAX_AGE_HOURS: spans older than this leave the local store."""

    trace_store_process: bool = True
    """TRACE_STORE_PROCESS: the local store is written by a process of its own, started and
    stopped with tracing, so its inserts never compete with the app for the GIL; ``false``
    writes it from a thread of the app."""

    otlp_export_process: bool = False
    """OTLP_EXPORT_PROCESS: the OTLP span exporters run in a process of their own (redaction,
    encoding and sending leave the app's process, as for the local store)."""

    problems: tuple[str, ...] = field(default=(), compare=False)
    """Environment values that were refused (and replaced by the default), one line each."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        env_file: str | Path | None = ".env",
        **overrides: Any,
    ) -> TracingConfig:
        """Read the configuration: keyword argument > environment > ``.env`` > default.

        Args:
            environ: the variables to read; None reads ``os.environ``.
            env_file: a dotenv file read under the environment; None reads none.
            **overrides: field values that win over both (e.g. ``exporter_type="otlp"``).

        Returns:
            The configuration; refused values are listed in ``problems``.
        """
        values = _read_env_file(env_file)
        values.update({k.upper(): v for k, v in (os.environ if environ is None else environ).items()})
        reader = _Reader(values)
        read: dict[str, Any] = {
            "enabled": reader.boolean("OTEL_ENABLED", True),
            "sdk_disabled": reader.boolean("OTEL_SDK_DISABLED", False),
            "service_name": reader.text("OTEL_SERVICE_NAME"),
            "exporter_type": reader.text("OTEL_EXPORTER_TYPE") or "local",
            "endpoint": reader.text("OTEL_ENDPOINT"),
            "otlp_endpoint": reader.text("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "otlp_headers": reader.text("OTEL_EXPORTER_OTLP_HEADERS"),
            "otlp_timeout_ms": reader.number("OTEL_EXPORTER_OTLP_TIMEOUT", 3000.0, float, minimum=1),
            "honeycomb_api_key": reader.text("HONEYCOMB_API_KEY"),
            "traces_sampler": reader.text("OTEL_TRACES_SAMPLER"),
            "traces_sampler_arg": reader.ratio("OTEL_TRACES_SAMPLER_ARG"),
            "bsp_max_queue_size": reader.number("OTEL_BSP_MAX_QUEUE_SIZE", 2048, int, minimum=1),
            "bsp_schedule_delay_ms": reader.number("OTEL_BSP_SCHEDULE_DELAY", 1000.0, float, minimum=1),
            "bsp_max_export_batch_size": reader.number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, int, minimum=1),
            "capture_content": reader.boolean("OTEL_CAPTURE_CONTENT", False),
            "trace_store_path": Path(reader.text("TRACE_STORE_PATH") or "data/traces.db"),
            "trace_store_max_spans": reader.number("TRACE_STORE_MAX_SPANS", 200_000, int, minimum=100),
            "trace_store_max_age_hours": reader.number(
                "TRACE_STORE_MAX_AGE_HOURS", 72.0, float, minimum=0.001
            ),
            "trace_store_process": reader.boolean("TRACE_STORE_PROCESS", True),
            "otlp_export_process": reader.boolean("OTLP_EXPORT_PROCESS", False),
        }
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"TracingConfig has no field {sorted(unknown)[0]!r}")
        read.update(overrides)
        read["problems"] = tuple(reader.problems) + tuple(read.get("problems", ()))
        return cls(**read)

    def replace(self, **changes: Any) -> TracingConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _read_env_file(path: str | Path | None) -> dict[str, str]:
    """``KEY=value`` lines of a dotenv file (quotes stripped, ``#`` comments and ``export`` allowed)."""
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip().upper()] = value
    return values


class _Reader:
    """Typed reads of one variable mapping, collecting what was refused."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        return value.strip() if value is not None and value.strip() else None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.values.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False if lowered else default
        self.problems.append(
            f"{name}={value!r} is not a boolean, using {str(default).lower()}: write true or false"
        )
        return default

    def number(self, name: str, default: T, kind: Callable[[str], T], *, minimum: float) -> T:
        value = self.text(name)
        if value is None:
            return default
        try:
            parsed = kind(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is not a number, using {default!r}")
            return default
        if float(parsed) < minimum:  # type: ignore[arg-type]
            self.problems.append(f"{name}={value!r} is below {minimum:g}, using {default!r}")
            return default
        return parsed

    def ratio(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            parsed = float(value)
        except ValueError:
            parsed = -1.0
        if not 0.0 <= parsed <= 1.0:
            self.problems.append(f"{name}={value!r} is not a ratio between 0 and 1, ignored")
            return None
        return parsed
