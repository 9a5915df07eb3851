"""Prometheus metrics and the health endpoints every service serves.

Each app gets its own registry, so the embedded mode (five apps in one process) still gives each service a
`/metrics` of its own.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("salesflow_http_requests_total", "HTTP requests handled",
                                     ["method", "route", "status"], registry=r)
        self.http_latency = Histogram("salesflow_http_request_duration_seconds", "HTTP request latency",
                                      ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.messages_handled = Counter("salesflow_messages_handled_total", "Events handled by outcome",
                                        ["event_type", "outcome"], registry=r)
        self.message_latency = Histogram("salesflow_message_handling_seconds", "Event handling duration",
                                         ["event_type"], buckets=LATENCY_BUCKETS, registry=r)
        # occurred_at → start of handling: outbox wait + broker queue + retries, as the consumer sees it.
        self.event_delivery_lag = Histogram("salesflow_event_delivery_lag_seconds",
                                            "Time from an event's occurred_at to the start of its handling",
                                            ["event_type"], buckets=LAG_BUCKETS, registry=r)
        self.events_published = Counter("salesflow_events_published_total", "Events published by the relay",
                                        ["event_type"], registry=r)
        self.publish_failures = Counter("salesflow_outbox_publish_failures_total",
                                        "Outbox publish attempts that failed", registry=r)
        self.dead_lettered = Counter("salesflow_messages_dead_lettered_total", "Messages parked",
                                     ["queue"], registry=r)
        # Every statement sent to the database (an executemany counts once: one round trip of pages), by what it
        # was sent for (db.STATEMENT_PATH), so that statements per delivery can be measured from the outside, on
        # the hot paths and in all (bench/cpu_per_lead.py).
        self.db_statements = Counter("salesflow_db_statements_total", "SQL statements sent to the database",
                                     ["path"], registry=r)
        # Its own commits (the database's xact_commit also counts autovacuum's and other clients' transactions).
        self.db_commits = Counter("salesflow_db_commits_total", "Transactions this process committed", registry=r)
        self.outbox_unsent = Gauge("salesflow_outbox_unsent", "Outbox rows not yet published", registry=r)
        self.outbox_oldest_age = Gauge("salesflow_outbox_oldest_unsent_age_seconds",
                                       "Age of the oldest unpublished outbox row", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Count and time every HTTP request by method, route template and status.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the rest of the app
    in a task of its own with memory streams between them, a cost paid on every request.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escapes the app is answered 500 outside

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The route template, not the raw path, keeps the label set small.
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.http_requests.labels(method, path, str(status)).inc()
            self.metrics.http_latency.labels(method, path).observe(time.perf_counter() - started)


def install_request_metrics(app: FastAPI, metrics: ServiceMetrics) -> None:
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)


def health_router(readiness: Callable[[], Awaitable[dict[str, bool]]],
                  render_metrics: Callable[[], Awaitable[bytes]]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="The database and the broker are reachable",
                responses={503: {"description": "A dependency is not reachable",
                                 "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def readyz() -> Any:
        checks = await readiness()
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                responses={200: {"description": "Prometheus text exposition format",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        return Response(await render_metrics(), media_type=CONTENT_TYPE_LATEST)

    return router
