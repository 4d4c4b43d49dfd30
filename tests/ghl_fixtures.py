"""Fixtures for tests that talk to the in-process GHL sandbox: a SQLite store, a memory cache,
the sandbox app and a GHL client wired to it (retries back off in a millisecond).

A test module takes them with ``from tests.ghl_fixtures import *  # noqa: F403``: pytest finds
fixtures by the names in the module, and a star import (limited by ``__all__``) binds them
without tripping the unused-import and redefinition checks. A module that needs another
sandbox defines its own ``sandbox`` fixture after the import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from ghl_real_estate_ai.cache import Cache, open_cache
from ghl_real_estate_ai.integrations.ghl.client import GHLClient, build_ghl_client
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.storage.base import Store

__all__ = ["cache", "ghl", "sandbox", "store"]


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[Store]:
    """An open SQLite store in the test's own database file."""
    opened = open_store(sqlite_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    """An open in-memory cache."""
    opened = open_cache(None)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def sandbox() -> FastAPI:
    """A fresh GHL sandbox app; its fault-injection generator is seeded (reproducible runs)."""
    return create_sandbox_app(seed=3)


@pytest.fixture
async def ghl(sandbox: FastAPI, cache: Cache) -> AsyncIterator[GHLClient]:
    """A GHL client talking to ``sandbox`` in process, with near-instant retry back-off."""
    client = build_ghl_client(Settings(), cache, sandbox_app=sandbox)
    client.backoff_base = 0.001
    yield client
    await client.aclose()
