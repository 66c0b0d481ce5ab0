"""Prometheus metrics of one app instance, in its own registry.

A registry per app keeps several apps in one process (tests, embedded use) from clashing over
metric names. Requests are labelled with the route template, never the raw path, so account
ids cannot blow up the label cardinality.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    """The API's metrics, registered in a fresh registry."""

    def __init__(self, lag: Callable[[], float]) -> None:
        """Create the metrics; ``lag`` is read at scrape time for the read-model lag gauge."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "churnwatch_api_requests",
            "HTTP requests answered.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "churnwatch_api_request_seconds",
            "Time to answer an HTTP request (to the end of the body).",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.lag = Gauge(
            "churnwatch_api_readmodel_lag_records",
            "Records on the health and alert topics not applied to the read model yet.",
            registry=self.registry,
        )
        self.lag.set_function(lag)


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            labels = (scope["method"], template, str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
