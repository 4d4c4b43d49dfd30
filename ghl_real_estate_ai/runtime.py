"""The composition root: what the app builds at start-up, and its routes.

:func:`start` opens every part in dependency order on an ``AsyncExitStack``, so
shutdown closes them in reverse; :func:`add_routes` attaches the routers that
need no settings. The web layer is the only place that knows every part; the
parts know nothing of it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ghl_real_estate_ai.api import webhooks
from ghl_real_estate_ai.api.admin import create_admin_router
from ghl_real_estate_ai.api.dashboard import create_dashboard_router
from ghl_real_estate_ai.api.metrics import AppMetrics, WebhookMetricsMiddleware, create_metrics_router
from ghl_real_estate_ai.api.serving import server_facts
from ghl_real_estate_ai.api.traces import create_traces_router
from ghl_real_estate_ai.cache import open_cache
from ghl_real_estate_ai.conversation import build_conversation_service
from ghl_real_estate_ai.followups import FollowUpRunner
from ghl_real_estate_ai.integrations.ghl.client import build_ghl_client
from ghl_real_estate_ai.integrations.ghl.sandbox import create_sandbox_app, get_sandbox_state
from ghl_real_estate_ai.integrations.ghl.webhook import WebhookVerifier
from ghl_real_estate_ai.logs import configure_logging
from ghl_real_estate_ai.observability.slo import SloThresholds
from ghl_real_estate_ai.outbox import Outbox
from ghl_real_estate_ai.settings import Settings
from ghl_real_estate_ai.storage import open_store
from ghl_real_estate_ai.understanding.reading import warm_up
from ghl_real_estate_ai.worker import BackgroundWorker

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["SANDBOX_PATH", "add_routes", "start", "startup_facts"]

SANDBOX_PATH = "/sandbox/ghl"
_GC_FIRST_THRESHOLD = 5_000

logger = logging.getLogger(__name__)


async def start(
    app: FastAPI, settings: Settings, stack: AsyncExitStack, *, manage_observability: bool
) -> None:
    """Open the app's parts, store them on ``app.state`` and start the background worker."""
    # Built first: a malformed webhook key stops start-up instead of refusing every webhook.
    verifier = WebhookVerifier.from_settings(settings)
    configure_logging(settings.log_level, settings.log_format, capture_content=settings.otel_capture_content)
    if manage_observability:
        from ghl_real_estate_ai.observability.otel_config import setup_observability, shutdown_observability

        # The /metrics bridge reads the instruments through its own pull reader.
        setup_observability(settings, metric_readers=[app.state.metrics.new_reader()])

        async def _shutdown_tracing() -> None:
            # The final flush may wait on the exporter for seconds: not on the event loop.
            await asyncio.to_thread(shutdown_observability)

        stack.push_async_callback(_shutdown_tracing)

    store = open_store(
        settings.database_url,
        pool_size=settings.database_pool_size,
        trace_statements=settings.database_trace_statements,
    )
    await store.open()
    stack.push_async_callback(store.close)
    # /metrics reads the outbox and follow-up gauges from memory; this task keeps them fresh.
    await stack.enter_async_context(app.state.metrics.gauges.running(store))
    cache = open_cache(settings.redis_url, trace_commands=settings.redis_trace_commands)
    await cache.open()
    stack.push_async_callback(cache.close)

    sandbox = app.state.ghl_sandbox
    faults = get_sandbox_state(sandbox)
    faults.latency_ms = settings.sandbox_latency_ms
    faults.failure_rate = settings.sandbox_failure_rate
    faults.location_id = settings.ghl_location_id
    ghl = build_ghl_client(settings, cache, sandbox_app=sandbox)
    stack.push_async_callback(ghl.aclose)

    outbox = Outbox(
        store,
        ghl,
        max_age=timedelta(hours=settings.outbox_max_age_hours),
        max_delay=settings.outbox_max_delay_seconds,
        owner_timeout=timedelta(seconds=settings.outbox_owner_timeout_seconds),
    )
    processor = build_conversation_service(store, outbox, ghl, settings)
    followups = FollowUpRunner(store, processor.bots.lead)
    worker = BackgroundWorker(
        store,
        outbox,
        processor,
        poll_seconds=settings.followup_poll_seconds,
        stuck_after=timedelta(seconds=settings.webhook_stuck_after_seconds),
        order_window=timedelta(milliseconds=settings.contact_order_window_ms),
    )
    worker.add_job("followups", followups.run_due)

    state = app.state
    state.settings, state.store, state.cache, state.ghl = settings, store, cache, ghl
    state.webhook_verifier = verifier
    state.outbox, state.processor, state.followups, state.worker = outbox, processor, followups, worker
    _add_settings_routes(app, settings)

    # The intent classifier and the gazetteer are read once here, not on the first message (issue 10).
    await asyncio.to_thread(warm_up)
    _tune_collector(stack)

    # The first pass picks up what a crash or a restart left behind: events stored but not
    # processed, undelivered outbox items and follow-ups that fell due while the app was down.
    worker.start()
    stack.push_async_callback(worker.stop)
    server = getattr(app.state, "server", None) or server_facts()
    logger.info("started", extra=startup_facts(settings, store.backend, cache.backend) | server)


def _tune_collector(stack: AsyncExitStack) -> None:
    """Keep the cyclic garbage collector off the request path; undone when ``stack`` closes.

    What start-up built (modules, compiled graphs, the classifier, the gazetteer: ~190,000
    objects) lives as long as the app: frozen, a full collection no longer walks it. A
    webhook allocates ~700 container objects, so the default first-generation threshold
    (700) collected about once a webhook and promoted short-lived objects that then cost
    the older generations; at 5,000 it collects every seven or so. In-process (issue 14),
    the collector's CPU per webhook went from 0.64 to about 0.04 ms untraced and from 1.66
    to 0.17 ms with the local store. Both are undone at shutdown, so that an app stopped
    inside a longer process (a test run) leaves the collector as it found it.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], _GC_FIRST_THRESHOLD), *threshold[1:])
    stack.callback(gc.set_threshold, *threshold)
    stack.callback(gc.unfreeze)


def startup_facts(settings: Settings, database: str, cache: str) -> dict[str, object]:
    """What the start-up line says about the running service, measured from what was opened.

    ``embedded`` is true only when every part is the embedded one: SQLite, the in-process
    cache and the GHL sandbox (issue 12: it said true on PostgreSQL and Redis).
    """
    ghl = "sandbox" if settings.embedded else "api"
    tracing = settings.otel_exporter_type if settings.tracing_on else "off"
    return {
        "database": database,
        "cache": cache,
        "ghl": ghl,
        "tracing": tracing,
        "embedded": database == "sqlite" and cache == "memory" and ghl == "sandbox",
    }


def _add_settings_routes(app: FastAPI, settings: Settings) -> None:
    # These routers need the settings, which are only known at start-up; attach them once.
    if getattr(app.state, "settings_routes_added", False):
        return
    protect = settings.protect_admin_endpoints
    app.include_router(
        create_traces_router(
            settings.resolved_trace_store_path, admin_token=settings.admin_token, require_token=protect
        )
    )
    app.include_router(create_admin_router(admin_token=settings.admin_token, require_token=protect))
    app.include_router(create_metrics_router(app.state.metrics, token=settings.metrics_token))
    app.include_router(
        create_dashboard_router(
            settings.resolved_trace_store_path,
            admin_token=settings.admin_token,
            require_token=protect,
            thresholds=SloThresholds(
                p95_latency_ms=settings.slo_p95_latency_ms,
                handoff_failure_rate=settings.slo_handoff_failure_rate,
                trace_error_rate=settings.slo_trace_error_rate,
            ),
        )
    )
    app.state.settings_routes_added = True


def add_routes(app: FastAPI, embedded_only: Any) -> None:
    """Attach the routers that need no settings, and mount the GHL sandbox."""
    app.include_router(webhooks.router)
    app.state.metrics = AppMetrics()  # one Prometheus registry per app
    app.add_middleware(WebhookMetricsMiddleware, path=webhooks.WEBHOOK_PATH)
    sandbox = create_sandbox_app()
    app.state.ghl_sandbox = sandbox
    app.mount(SANDBOX_PATH, embedded_only(app, sandbox))
