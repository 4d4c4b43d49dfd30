"""``GET /metrics``: the app's metrics in the Prometheus text format, from one registry per app.

Three sources, all read when Prometheus scrapes (nothing runs between scrapes):

* the OpenTelemetry instruments every node, handoff and webhook records
  (:class:`~ghl_real_estate_ai.observability.metrics.PrometheusBridge`; exact at
  any trace sampling ratio, since they count calls, not kept spans);
* the span exporters' counts: ``jorge_spans_exported_total`` and
  ``jorge_spans_dropped_total{reason}``;
* the database: ``jorge_outbox_backlog``, ``jorge_outbox_failed``,
  ``jorge_followups_due`` and ``jorge_followups_dead`` (one query per scrape).

:class:`WebhookMetricsMiddleware` wraps the webhook route: it counts each
request by outcome and opens the trace scope that ``jorge_traces_total`` counts.
No label holds a contact id or any other unbounded value.

With ``METRICS_TOKEN`` set the route needs ``Authorization: Bearer <token>``
(401 otherwise). An unreadable database never fails the scrape: its gauges are
left out and ``jorge_metrics_database_up`` is 0.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from opentelemetry.sdk.metrics.export import MetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ghl_real_estate_ai.observability import metrics
from ghl_real_estate_ai.observability.otel_config import export_stats

__all__ = ["AppMetrics", "WebhookMetricsMiddleware", "create_metrics_router", "webhook_outcome"]

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


class _StateCollector(Collector):
    """Span export counts and the database gauges of the last scrape."""

    def __init__(self) -> None:
        self.backlog: dict[str, int] | None = None

    def collect(self) -> Iterable[Metric]:
        stats = export_stats()
        exported = CounterMetricFamily("jorge_spans_exported", "Spans the exporters accepted")
        exported.add_metric([], stats.exported)
        dropped = CounterMetricFamily(
            "jorge_spans_dropped", "Spans that never reached a backend, by reason", labels=["reason"]
        )
        dropped.add_metric(["queue_full"], stats.queue_full)
        dropped.add_metric(["export_failed"], stats.failed)
        dropped.add_metric(["shutdown"], stats.abandoned)
        families: list[Metric] = [exported, dropped]
        up = GaugeMetricFamily("jorge_metrics_database_up", "1 when the last scrape read the database")
        up.add_metric([], 0 if self.backlog is None else 1)
        families.append(up)
        if self.backlog is not None:
            for key, (name, help_text) in _BACKLOG_GAUGES.items():
                gauge = GaugeMetricFamily(name, help_text)
                gauge.add_metric([], self.backlog.get(key, 0))
                families.append(gauge)
        return families


class AppMetrics:
    """One app's Prometheus registry: the OpenTelemetry bridge and the state collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.bridge = metrics.PrometheusBridge()
        self._state = _StateCollector()
        self.registry.register(self.bridge)
        self.registry.register(self._state)

    def new_reader(self) -> MetricReader:
        """A fresh pull reader for this start-up's meter provider (give it to ``setup_observability``)."""
        return self.bridge.new_reader()

    async def render(self, store: Any) -> bytes:
        """The exposition text: read the database gauges, then every collector.

        An unreadable database leaves its gauges out and sets ``jorge_metrics_database_up`` to 0;
        the scrape itself still succeeds, so the other metrics are not lost with it.
        """
        self._state.backlog = None
        if store is not None:
            try:
                self._state.backlog = await store.backlog_counts(datetime.now(UTC))
            except Exception as exc:
                logger.warning("metrics: the database gauges could not be read: %s", exc)
        return generate_latest(self.registry)


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
        body = await app_metrics.render(getattr(request.app.state, "store", None))
        return Response(body, media_type=CONTENT_TYPE)

    return router
