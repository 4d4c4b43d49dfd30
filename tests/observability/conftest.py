"""Fixtures of the observability tests: ``span_capture`` (fresh providers, span trees, metrics)."""

from ghl_real_estate_ai.observability.testing import span_capture  # noqa: F401
