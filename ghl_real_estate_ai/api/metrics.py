"""``GET /metrics``: the app's metrics in the Prometheus text format, one set per app.

Three sources; a scrape reads all of them from memory and sends no statement
to the database:

* the OpenTelemetry instruments every node, handoff and webhook records
  (:class:`~ghl_real_estate_ai.observability.metrics.PrometheusBridge`; exact at
  any trace sampling ratio, since they count calls, not kept spans);
* the span exporters' counts: ``jorge_spans_exported_total`` and
  ``jorge_spans_dropped_total{reason}``;
* the database gauges ``jorge_outbox_backlog``, ``jorge_outbox_failed``,
  ``jorge_followups_due`` and ``jorge_followups_dead``: :class:`DatabaseGauges`
  reads them in one statement every :data:`GAUGE_INTERVAL_SECONDS` in a
  background task, so they are at most that old, and the database sees the same
  load whether Prometheus scrapes every second or every minute.

:class:`WebhookMetricsMiddleware` wraps the webhook route: it counts each
request by outcome and opens the trace scope that ``jorge_traces_total`` counts.
No label holds a contact id or any other unbounded value.

With ``METRICS_TOKEN`` set the route needs ``Authorization: Bearer <token>``
(401 otherwise). An unreadable database never fails the scrape: while the
gauges cannot be read they are left out and ``jorge_metrics_database_up`` is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from opentelemetry.sdk.metrics.export import MetricReader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ghl_real_estate_ai.observability import metrics
from ghl_real_estate_ai.observability.otel_config import export_stats

__all__ = [
    "GAUGE_INTERVAL_SECONDS",
    "AppMetrics",
    "DatabaseGauges",
    "WebhookMetricsMiddleware",
    "create_metrics_router",
    "webhook_outcome",
]

logger = logging.getLogger(__name__)

_BACKLOG_GAUGES = {
    "outbox_pending": ("jorge_outbox_backlog", "Outbox items waiting to be sent (pending or sending)"),
    "outbox_failed": ("jorge_outbox_failed", "Outbox items GHL refused or that gave up (failed or dead)"),
    "followups_due": ("jorge_followups_due", "Follow-up steps due now and not yet run"),
    "followups_dead": ("jorge_followups_dead", "Follow-up steps that gave up"),
}

# The classic text format, which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_BODY_OUTCOMES = frozenset({"processed", "queued", "duplicate", "ignored"})
_MAX_CAPTURED_BODY = 4096


def webhook_outcome(status_code: int, body: bytes) -> str:
    """The ``outcome`` label of one webhook answer (a fixed set of values).

    2xx answers carry their ``status`` field (``processed``, ``queued``,
    ``duplicate``, ``ignored``); 429 is ``retry_later``, other 4xx ``rejected``,
    5xx ``error``.
    """
    if status_code == 429:
        return "retry_later"
    if status_code >= 500:
        return "error"
    if status_code >= 400:
        return "rejected"
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return "other"
    return status if status in _BODY_OUTCOMES else "other"


class WebhookMetricsMiddleware:
    """Counts the requests of one path by outcome and counts their traces (pure ASGI, no buffering)."""

    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        status = 500
        body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and len(body) < _MAX_CAPTURED_BODY:
                body.extend(message.get("body", b"")[: _MAX_CAPTURED_BODY - len(body)])
            await send(message)

        with metrics.trace_scope() as outcome:
            try:
                await self.app(scope, receive, watch)
            except Exception:
                outcome.error = True
                metrics.record_webhook("error", 500)
                raise
            if status >= 500:
                outcome.error = True
        metrics.record_webhook(webhook_outcome(status, bytes(body)), status)


GAUGE_INTERVAL_SECONDS: Final = 5.0
"""How often the database gauges are read (by a background task, never by a scrape)."""


class DatabaseGauges:
    """The outbox and follow-up gauges, read from the database by a background task.

    A scrape only reads the last values: whatever the scrape rate, the database
    sees one small statement (:meth:`Store.backlog_counts`) per ``interval``, and
    a slow or unreachable database never slows a scrape down. ``values`` is
    ``None`` while the last read failed (or before the first one).
    """

    def __init__(self, interval: float = GAUGE_INTERVAL_SECONDS) -> None:
        if interval <= 0:
            raise ValueError(f"the gauge interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self.values: dict[str, int] | None = None
        self.reads = 0
        """Database reads so far (successful or not)."""
        self._store: Any = None
        self._failing = False

    async def refresh(self) -> None:
        """Read the gauges now (``values`` becomes ``None`` when the database cannot be read)."""
        if self._store is None:
            return
        self.reads += 1
        try:
            self.values = await self._store.backlog_counts(datetime.now(UTC))
        except Exception as exc:
            if not self._failing:  # say it once per outage, not every interval
                logger.warning("metrics: the database gauges could not be read: %s", exc)
            self._failing, self.values = True, None
        else:
            self._failing = False

    @asynccontextmanager
    async def running(self, store: Any) -> AsyncIterator[None]:
        """Read the gauges once, then every ``interval`` seconds in a task, until the block ends."""
        self._store = store
        await self.refresh()
        task = asyncio.create_task(self._loop(), name="metrics-database-gauges")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._store = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()


class AppMetrics:
    """One app's metrics: the OpenTelemetry bridge, the span export counts and the database gauges.

    Each app has its own (nothing goes to ``prometheus_client``'s global registry).
    """

    def __init__(self, *, gauge_interval: float = GAUGE_INTERVAL_SECONDS) -> None:
        self.bridge = metrics.PrometheusBridge()
        self.gauges = DatabaseGauges(gauge_interval)
        self._text = metrics.PrometheusText()

    def new_reader(self) -> MetricReader:
        """A fresh pull reader for this start-up's meter provider (give it to ``setup_observability``)."""
        return self.bridge.new_reader()

    def render(self) -> bytes:
        """The exposition text, from memory only: no database statement, no await.

        While the database gauges cannot be read they are left out and
        ``jorge_metrics_database_up`` is 0; the other metrics are still there.
        """
        out: list[str] = []
        self.bridge.write(out)
        text = self._text
        stats = export_stats()
        text.family(out, "jorge_spans_exported_total", "Spans the exporters accepted", "counter")
        text.sample(out, "jorge_spans_exported_total", stats.exported)
        name = "jorge_spans_dropped_total"
        text.family(out, name, "Spans that never reached a backend, by reason", "counter")
        text.sample(out, name, stats.queue_full, {"reason": "queue_full"})
        text.sample(out, name, stats.failed, {"reason": "export_failed"})
        text.sample(out, name, stats.abandoned, {"reason": "shutdown"})
        values = self.gauges.values
        text.family(
            out, "jorge_metrics_database_up", "1 when the last read of the database gauges worked", "gauge"
        )
        text.sample(out, "jorge_metrics_database_up", 0 if values is None else 1)
        if values is not None:
            for key, (gauge, help_text) in _BACKLOG_GAUGES.items():
                text.family(out, gauge, help_text, "gauge")
                text.sample(out, gauge, values.get(key, 0))
        out.append("")
        return "\n".join(out).encode()


def create_metrics_router(app_metrics: AppMetrics, *, token: str | None) -> APIRouter:
    """The ``/metrics`` route over ``app_metrics`` (``token``: demand it as a bearer token)."""
    router = APIRouter(tags=["metrics"])
    expected = token.encode() if token else None

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_endpoint(request: Request) -> Response:
        if expected is not None:
            header = request.headers.get("authorization", "")
            supplied = header[7:].strip().encode() if header[:7].lower() == "bearer " else b""
            if not hmac.compare_digest(supplied, expected):
                return PlainTextResponse(
                    "missing or wrong token: send Authorization: Bearer <METRICS_TOKEN>\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(app_metrics.render(), media_type=CONTENT_TYPE)

    return router
