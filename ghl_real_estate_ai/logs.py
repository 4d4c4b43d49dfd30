"""Structured logging: one JSON object per line, carrying the current trace and span ids.

Call :func:`configure_logging` once at start-up (the app's lifespan and the CLI do).
Every record gets ``trace_id`` and ``span_id`` from the active OpenTelemetry span,
so a log line leads straight to its trace; message text, phone numbers and
e-mail addresses are redacted unless ``OTEL_CAPTURE_CONTENT=true``.

:class:`AccessLogMiddleware` writes one access line per HTTP request (logger
``ghl_real_estate_ai.access``) with the method, path, status, duration and the
request's ``trace_id``, so the ``make run`` terminal shows which trace to open.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ACCESS_LOGGER",
    "AccessLogMiddleware",
    "JsonFormatter",
    "TraceContextFilter",
    "configure_logging",
    "send_logs_to",
]

ACCESS_LOGGER = "ghl_real_estate_ai.access"
"""The logger of the per-request access lines."""

_HANDLER_NAME = "jorge"
# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, or None outside a span) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None):  # given by the caller (the access log)
            if not hasattr(record, "span_id"):
                record.span_id = None
            return True
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        else:
            record.trace_id = None
            record.span_id = None
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A plain StreamHandler keeps the stream it was built with; when a test runner
    or a CLI harness swaps stderr and later closes its stand-in, every later
    record would fail. Looking ``sys.stderr`` up per record avoids that.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} trace_id={trace_id}" if trace_id else line


_log_file: Path | None = None


def send_logs_to(path: Path | None) -> None:
    """Make :func:`configure_logging` write to ``path`` (appended) instead of stderr; None: stderr again.

    For commands whose own output is the point (``jorge demo``): the log lines are kept,
    out of the way. A handler already installed is moved at once.
    """
    global _log_file
    _log_file = path
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
            replacement = _new_handler()
            for log_filter in handler.filters:
                replacement.addFilter(log_filter)
            replacement.setFormatter(handler.formatter)
            root.addHandler(replacement)
            handler.close()


def _new_handler() -> logging.Handler:
    handler: logging.Handler
    if _log_file is not None:
        _log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(_log_file, encoding="utf-8")
    else:
        handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    return handler


def configure_logging(level: str = "INFO", fmt: str = "json", *, capture_content: bool = False) -> None:
    """Send the root logger's records to stderr, structured, with trace ids.

    Idempotent: a second call replaces the handler it installed, nothing else.

    Args:
        level: root level name (``DEBUG``, ``INFO``...).
        fmt: ``json`` or ``console``.
        capture_content: keep message text and contact details in log lines.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _new_handler()
    handler.addFilter(TraceContextFilter())
    if not capture_content:
        from ghl_real_estate_ai.observability.redaction import RedactingLogFilter

        handler.addFilter(RedactingLogFilter(capture_content=False))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the spans already hold that.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class AccessLogMiddleware:
    """Logs one line per HTTP request: ``POST /api/v1/webhooks/ghl 200 12.3ms`` plus fields.

    The line carries ``http_method``, ``http_path`` (no query string: it may hold
    contact details), ``http_status``, ``duration_ms`` and the request's
    ``trace_id``/``span_id``: from the ``traceresponse`` header when the tracing
    middleware sits inside this one, else from the current (SERVER) span.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            # No line would be written (LOG_LEVEL above INFO): nothing to watch or time.
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "trace": None}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"traceresponse":
                        seen["trace"] = value.decode("latin-1")
                if seen["trace"] is None:
                    context = trace.get_current_span().get_span_context()
                    if context.is_valid:
                        seen["trace"] = f"00-{context.trace_id:032x}-{context.span_id:016x}-00"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._log(scope, seen, (time.perf_counter() - started) * 1000)

    def _log(self, scope: Scope, seen: dict[str, Any], duration_ms: float) -> None:
        trace_id = span_id = None
        parts = str(seen["trace"] or "").split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            trace_id, span_id = parts[1], parts[2]
        method, path, status = scope.get("method", "?"), scope.get("path", "?"), seen["status"]
        self.logger.info(
            "%s %s %s %.1fms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "http_method": method,
                "http_path": path,
                "http_status": status,
                "duration_ms": round(duration_ms, 1),
                "trace_id": trace_id,
                "span_id": span_id,
            },
        )
