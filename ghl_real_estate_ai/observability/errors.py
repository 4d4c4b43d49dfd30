"""Exceptions the tracing library raises, all under one base.

::

    ObservabilityError
    ├── ObservabilityConfigError   an argument given to the set-up is invalid
    └── TraceQueryError            a trace query is invalid or its backend cannot answer

The library never raises on a bad *environment* value: it logs one WARNING naming the
variable and goes on with the default, so a typo in ``OTEL_*`` cannot stop a service.
"""

from __future__ import annotations

__all__ = ["ObservabilityConfigError", "ObservabilityError", "TraceQueryError"]


class ObservabilityError(Exception):
    """Base of every error the tracing library raises on purpose."""


class ObservabilityConfigError(ObservabilityError, ValueError):
    """An argument given to :func:`setup_observability` is invalid; the message says the fix."""


class TraceQueryError(ObservabilityError):
    """A trace query is invalid, or the trace store or Jaeger cannot answer it."""
