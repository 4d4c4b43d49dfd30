"""Shared fixtures: a clean environment for every test and the real backends.

PostgreSQL and Redis tests use the servers on 127.0.0.1. Elsewhere they skip
with a one-line reason when a server is unreachable; with ``CI=true`` they
fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from ghl_real_estate_ai.observability.testing import span_capture  # noqa: F401  (fixture for every test)
from ghl_real_estate_ai.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from ghl_real_estate_ai.storage import Store

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"

# Variables of the process that must not leak into a test: every settings field
# plus the standard OpenTelemetry ones.
_ENV_NAMES = {name.upper() for name in Settings.model_fields} | {
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no service variables set, in its own working directory,
    and leaves the root logger as it found it (an app start-up configures logging)."""
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_address(url: str, default_port: int) -> tuple[str, int]:
    """The host and port a server URL points at (the probe checks those, not fixed ones)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def require_or_skip(reason: str) -> None:
    """Skip with ``reason``, except under ``CI=true``, where a missing part is a failure."""
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true runs every test (no skips)")
    pytest.skip(reason)


def _require_server(name: str, url: str, default_port: int) -> None:
    host, port = server_address(url, default_port)
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it (.ci/run starts it)")
    pytest.skip(message)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """URL of a freshly created PostgreSQL database, dropped after the test."""
    _require_server("PostgreSQL", POSTGRES_ADMIN_URL, 5432)
    import asyncpg

    name = f"jorge_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def redis_url() -> str:
    """URL of the Redis test server."""
    _require_server("Redis", REDIS_TEST_URL, 6379)
    return REDIS_TEST_URL


@pytest.fixture
def redis_namespace() -> str:
    """A key prefix no other test uses, so tests can share one Redis."""
    return f"jorge-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite database file in the test's folder."""
    return f"sqlite:///{tmp_path / 'jorge.db'}"


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Headless Chromium for the page tests, closed after the test (see ``tests/api/_browser.py``).

    Here rather than in a ``tests/api/conftest.py``: a second module named ``conftest``
    shadows this one for the tests that import helpers from it (``from conftest import ...``).
    """
    from _browser import launch_chromium  # tests/api is on the path once a page test is imported

    with launch_chromium() as browser:
        yield browser


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each backend in turn (test files may define their own)."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An opened store on ``database_url``, closed after the test."""
    from ghl_real_estate_ai.storage import open_store

    opened = open_store(database_url, pool_size=2)
    await opened.open()
    yield opened
    await opened.close()
