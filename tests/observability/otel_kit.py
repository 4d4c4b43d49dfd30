"""Helpers for tests that set observability up for real: a clean provider per test, and settings.

``fresh_observability`` is an autouse fixture; a module takes it (and ``settings``) with
``from tests.observability.otel_kit import fresh_observability, settings  # noqa: F401``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ghl_real_estate_ai.observability import _lifecycle
from ghl_real_estate_ai.observability.config import TracingConfig
from ghl_real_estate_ai.observability.otel_config import shutdown_observability
from ghl_real_estate_ai.settings import Settings

__all__ = ["fresh_observability", "settings"]


@pytest.fixture(autouse=True)
def fresh_observability() -> Iterator[None]:
    """Shut down whatever a previous test set up, before and after the test."""
    shutdown_observability(2.0)
    yield
    shutdown_observability(2.0)
    _lifecycle._added.clear()  # processors a test added through the global provider


def settings(**overrides: object) -> TracingConfig:
    """Settings for transport tests; content capture on so the exporters need no redaction step."""
    values: dict[str, object] = {"otel_capture_content": True, "otel_bsp_schedule_delay": 50.0}
    values.update(overrides)
    return Settings(**values).tracing_config()  # type: ignore[arg-type]
