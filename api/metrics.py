"""Prometheus metrics of one app instance, in its own registry.

A registry per app keeps several apps in one process (tests, embedded use) from clashing over
metric names. Every request label comes from a closed set, so no client can grow ``/metrics``:
the method is a known HTTP method or ``other``, the route is the matched route template (never the
raw path, which carries account ids) or ``unmatched``, and the status is one the API answers with
or its class (``5xx``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
# The statuses this API answers with; 499 is a client that went away before sending its whole body.
STATUSES = frozenset(
    {200, 202, 204, 206, 304, 307, 400, 401, 403, 404, 405, 408, 413, 416, 422, 429, 499, 500, 503}
)
UNMATCHED = "unmatched"


def method_label(method: str) -> str:
    """The request method when it is a standard HTTP method, else ``other``."""
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    """The status when the API is known to answer with it, else its class (``4xx``)."""
    return str(status) if status in STATUSES else f"{status // 100}xx"


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request (``/v1/accounts/{account_id}/health``)."""
    route = scope.get("route")
    # path_format is the template without converters ({account_id:path} -> {account_id}).
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


class ApiMetrics:
    """The API's metrics, registered in a fresh registry."""

    def __init__(self, lag: Callable[[], float], write_failures: Callable[[], float] = lambda: 0.0) -> None:
        """Create the metrics; ``lag`` and ``write_failures`` are read at scrape time."""
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
        self.registry.register(
            _CountedAtScrape(
                "churnwatch_api_store_write_failures",
                "Failed attempts to write records read from the topics to the read store (each retried).",
                write_failures,
            )
        )


class _CountedAtScrape(Collector):
    """A counter whose value is read from its owner when scraped."""

    def __init__(self, name: str, documentation: str, value: Callable[[], float]) -> None:
        self._name, self._documentation, self._value = name, documentation, value

    def collect(self) -> Iterator[Metric]:
        """The counter's one sample."""
        yield CounterMetricFamily(self._name, self._documentation, value=self._value())


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (closed label sets)."""

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
            labels = (method_label(scope["method"]), route_label(scope), status_label(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - start)
