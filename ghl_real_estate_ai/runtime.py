"""The composition root: what the app builds at start-up, and its routes.

:func:`start` opens every part in dependency order on an ``AsyncExitStack`` so
shutdown closes them in reverse; :func:`add_routes` attaches the routers. The
web layer is the only place that knows every part; the parts know nothing of it.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from ghl_real_estate_ai.cache import open_cache
from ghl_real_estate_ai.logs import configure_logging
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["add_routes", "start"]

logger = logging.getLogger(__name__)


async def start(
    app: FastAPI, settings: Settings, stack: AsyncExitStack, *, manage_observability: bool
) -> None:
    """Open the app's parts and store them on ``app.state``."""
    configure_logging(settings.log_level, settings.log_format, capture_content=settings.otel_capture_content)
    if manage_observability:
        from ghl_real_estate_ai.observability.otel_config import setup_observability, shutdown_observability

        setup_observability(settings)
        stack.callback(shutdown_observability)

    store = open_store(settings.database_url, pool_size=settings.database_pool_size)
    await store.open()
    stack.push_async_callback(store.close)
    cache = open_cache(settings.redis_url)
    await cache.open()
    stack.push_async_callback(cache.close)

    app.state.settings = settings
    app.state.store = store
    app.state.cache = cache
    logger.info(
        "started",
        extra={"database": store.backend, "cache": cache.backend, "embedded": settings.embedded},
    )


def add_routes(app: FastAPI, embedded_only: Any) -> None:
    """Attach every router of the service."""
