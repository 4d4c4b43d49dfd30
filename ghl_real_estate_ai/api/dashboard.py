"""The embedded ``/dashboard`` page: the guide's three dashboards and three SLOs from the local trace store.

For the embedded mode, where no Prometheus or Grafana runs:

* ``GET /dashboard?window=1h|24h|7d`` (default ``24h``): the three SLOs (P95
  latency, handoff failure rate, trace error rate) with their value, threshold
  and state, and three charts (average handoff latency by route, P95 latency by
  node, error rate by bot type) drawn by Chart.js, served from ``/static``;
* ``GET /dashboard/traces?window=...&figure=...&key=...``: the traces behind
  one figure (a chart bar links here): ``figure=node`` with ``key`` such as
  ``lead_bot.analyze_intent`` (its traces at or above the P95), ``route``
  (``lead->buyer``, its failed handoffs), ``bot`` (traces where that bot's
  nodes failed), ``errors`` and ``handoffs`` (every trace with an error, every
  failed handoff).

Figures come from :func:`~ghl_real_estate_ai.observability.slo.slo_window`, the
query ``jorge slo`` runs, so both show the same numbers. A bad ``window`` or
``figure`` answers 400, an unreadable store 503, and the token policy is the
trace viewer's (401 without it when required).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ghl_real_estate_ai.api.traces_page import (
    add_static_route,
    render_message_page,
    render_template,
    with_token,
)
from ghl_real_estate_ai.errors import TraceQueryError
from ghl_real_estate_ai.observability.local_store import LocalTraceReader
from ghl_real_estate_ai.observability.query import TraceSummary
from ghl_real_estate_ai.observability.slo import WINDOWS, SloThresholds, SloWindow, slo_window

__all__ = ["FIGURES", "create_dashboard_router", "dashboard_data"]

FIGURES = ("node", "route", "bot", "errors", "handoffs")
"""What ``/dashboard/traces`` can list the traces of."""


def _traces_url(window: str, figure: str, key: str | None, token: str | None) -> str:
    from urllib.parse import urlencode

    params = {"window": window, "figure": figure, **({"key": key} if key is not None else {})}
    return with_token("/dashboard/traces?" + urlencode(params), token)


def dashboard_data(result: SloWindow, token: str | None = None) -> dict[str, Any]:
    """The figures of a window as the page's charts and tables use them (JSON-ready).

    Values are those of ``jorge slo --json``; each chart point carries the link
    to the traces behind it.
    """
    report = result.report
    limits = report.thresholds
    window = result.window
    worst = max(report.nodes, key=lambda n: n.p95_ms, default=None)
    return {
        "window": window,
        "thresholds": {
            "p95_latency_ms": limits.p95_latency_ms,
            "handoff_failure_rate": limits.handoff_failure_rate,
            "trace_error_rate": limits.trace_error_rate,
        },
        "slos": [
            {
                "id": "p95",
                "title": "P95 latency (worst node)",
                "value": f"{worst.p95_ms:.1f} ms" if worst else "no data",
                "detail": f"{worst.bot_type}.{worst.node_name}" if worst else "",
                "limit": f"{limits.p95_latency_ms:g} ms",
                "breached": any(n.breached for n in report.nodes),
                "href": _traces_url(window, "node", f"{worst.bot_type}.{worst.node_name}", token)
                if worst
                else None,
            },
            {
                "id": "handoff",
                "title": "Handoff failure rate",
                "value": f"{report.handoff_failure_rate:.2%}",
                "detail": f"{report.handoff_failures}/{report.handoff_total} handoffs",
                "limit": f"{limits.handoff_failure_rate:.2%}",
                "breached": report.handoff_failure_rate > limits.handoff_failure_rate,
                "href": _traces_url(window, "handoffs", None, token),
            },
            {
                "id": "errors",
                "title": "Trace error rate",
                "value": f"{report.trace_error_rate:.2%}",
                "detail": f"{report.trace_errors}/{report.trace_total} traces",
                "limit": f"{limits.trace_error_rate:.2%}",
                "breached": report.trace_error_rate > limits.trace_error_rate,
                "href": _traces_url(window, "errors", None, token),
            },
        ],
        "routes": [
            {
                "label": r.route,
                "avg_ms": round(r.avg_ms, 1),
                "p95_ms": round(r.p95_ms, 1),
                "count": r.count,
                "failures": r.failures,
                "breached": r.breached,
                "href": _traces_url(window, "route", r.route, token),
            }
            for r in report.routes
        ],
        "nodes": [
            {
                "label": f"{n.bot_type}.{n.node_name}",
                "p95_ms": round(n.p95_ms, 1),
                "count": n.count,
                "breached": n.breached,
                "href": _traces_url(window, "node", f"{n.bot_type}.{n.node_name}", token),
            }
            for n in report.nodes
        ],
        "bots": [
            {
                "label": b.bot_type,
                "rate": b.rate,
                "rate_text": f"{b.rate:.2%}",
                "total": b.total,
                "errors": b.errors,
                "breached": b.breached,
                "href": _traces_url(window, "bot", b.bot_type, token),
            }
            for b in report.bots
        ],
    }


def _figure_traces(result: SloWindow, figure: str, key: str) -> tuple[str, list[TraceSummary]]:
    traces = result.traces
    if figure == "node":
        return f"Slowest traces of {key} (at or above its P95)", traces.slow.get(key, [])
    if figure == "route":
        return f"Failed {key} handoffs", traces.handoff_failures.get(key, [])
    if figure == "bot":
        return f"Traces where a {key} node failed", traces.bot_errors.get(key, [])
    if figure == "errors":
        return "Traces with an error", traces.errors
    return "Failed handoffs", traces.failed_handoffs()


def create_dashboard_router(
    store_path: Path,
    *,
    admin_token: str | None,
    require_token: bool,
    thresholds: SloThresholds | None = None,
) -> APIRouter:
    """The ``/dashboard`` routes over the local trace store at ``store_path``.

    Args:
        store_path: the SQLite file the local exporter writes (it may not exist yet).
        admin_token: the token that unlocks the pages when ``require_token`` is set.
        require_token: demand ``Authorization: Bearer`` or ``?token=`` (as ``/traces`` does).
        thresholds: the SLO limits (the settings' ``SLO_*``); the guide's when ``None``.
    """
    reader = LocalTraceReader(store_path)
    router = APIRouter(tags=["dashboard"])
    add_static_route(router)
    expected = admin_token.encode() if admin_token else None

    def refused(request: Request) -> Response | None:
        if not require_token:
            return None
        header = request.headers.get("authorization", "")
        supplied = (
            header[7:].strip() if header[:7].lower() == "bearer " else request.query_params.get("token")
        )
        if expected is not None and supplied is not None and hmac.compare_digest(supplied.encode(), expected):
            return None
        return HTMLResponse(
            render_message_page("Token required", "Open this page with ?token=<ADMIN_TOKEN>."),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    def token_of(request: Request) -> str | None:
        return request.query_params.get("token") if require_token else None

    def load(window: str, token: str | None) -> SloWindow | HTMLResponse:
        if window not in WINDOWS:
            message = f"window {window!r} is not one of {', '.join(WINDOWS)}"
            return HTMLResponse(render_message_page("Bad window", message, token=token), status_code=400)
        try:
            return slo_window(reader, window, thresholds)
        except TraceQueryError as exc:
            return HTMLResponse(
                render_message_page("Trace store unavailable", str(exc), token=token), status_code=503
            )

    @router.get("/dashboard", response_class=HTMLResponse, summary="SLO dashboard page")
    def dashboard(request: Request, window: str = "24h") -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        token = token_of(request)
        result = load(window, token)
        if isinstance(result, HTMLResponse):
            return result
        data = dashboard_data(result, token)
        return HTMLResponse(
            render_template(
                "dashboard.html",
                data=data,
                report=result.report,
                window=window,
                windows=list(WINDOWS),
                token=token,
                window_links={w: with_token(f"/dashboard?window={w}", token) for w in WINDOWS},
            )
        )

    @router.get("/dashboard/traces", response_class=HTMLResponse, summary="Traces behind a dashboard figure")
    def figure_traces(
        request: Request, window: str = "24h", figure: str = "errors", key: str = ""
    ) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        token = token_of(request)
        if figure not in FIGURES:
            message = f"figure {figure!r} is not one of {', '.join(FIGURES)}"
            return HTMLResponse(render_message_page("Bad figure", message, token=token), status_code=400)
        result = load(window, token)
        if isinstance(result, HTMLResponse):
            return result
        title, traces = _figure_traces(result, figure, key)
        return HTMLResponse(
            render_template(
                "dashboard_traces.html",
                title=title,
                results=traces,
                window=window,
                token=token,
                back=with_token(f"/dashboard?window={window}", token),
            )
        )

    return router
