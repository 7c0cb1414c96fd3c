"""`/metrics` on the server's port (`inventory serve --metrics`): sync metrics, HTTP requests, pending approvals.

Like /health it needs no token, so that Prometheus can scrape it; it carries counts and source
names, never objects or arguments. Object gauges are read from the database at each scrape.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from inventory.metrics import SyncMetrics
from inventory.server.state import ServerState

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class ServerMetrics:
    def __init__(self) -> None:
        self.sync = SyncMetrics()
        registry = self.sync.registry
        self.requests = Counter(
            "inventory_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "inventory_http_request_duration_seconds",
            "Time to answer a request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pending = Gauge("inventory_approvals_pending", "Tool calls waiting for approval.", registry=registry)

    def scrape(self, state: ServerState) -> bytes:
        from inventory.audit.models import Approval

        with state.db.read_session() as session:
            self.sync.refresh_from_database(session)
            self.pending.set(
                session.execute(
                    select(func.count()).select_from(Approval).where(Approval.status == "pending")
                ).scalar_one()
            )
        return generate_latest(self.sync.registry)


class _RequestMetrics:
    """ASGI middleware: counts and times every HTTP request under its route template (never the raw path)."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI) -> ServerMetrics:
    metrics = ServerMetrics()
    state: ServerState = app.state.inventory
    if state.refresher is not None:
        state.refresher.observe(metrics.sync.observe)
    app.add_middleware(_RequestMetrics, metrics=metrics)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def scrape(request: Request) -> Response:
        return Response(metrics.scrape(request.app.state.inventory), media_type=CONTENT_TYPE_LATEST)

    return metrics
