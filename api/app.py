"""The FastAPI application factory: wires settings, read model, producer and routes together."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Request

from api.bodylimit import BodyLimitMiddleware
from api.docs import DOCS_STATIC, install_docs
from api.errors import OrjsonResponse, api_error, bounded, install_error_handlers
from api.fastlookup import HealthLookupLane
from api.headers import SecurityHeadersMiddleware
from api.hosts import RelativeSlashRedirect, TrustedHostMiddleware
from api.kafka_readmodel import KafkaReadModel
from api.metrics import ApiMetrics, MetricsMiddleware
from api.producer import EventProducer, KafkaEventProducer
from api.ratelimit import FailureThrottle, RateLimiter
from api.readmodel import ReadModel
from api.routes import accounts, alerts, dashboard, ingest, ops, portfolio, segment
from api.settings import ApiSettings


async def reject_repeated_query_parameters(request: Request) -> None:
    """Every query parameter of this API takes one value; a repeated one is an error, not "the last wins".

    Raises:
        HTTPException: 422 naming the repeated parameter.
    """
    keys = [key for key, _ in request.query_params.multi_items()]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        names = ", ".join(bounded(key) for key in repeated[:10])
        raise api_error(422, f"query parameter given more than once: {names}")


def _finish_openapi(app: FastAPI, history_days: int) -> None:
    """Document optional query parameters as their type alone, without FastAPI's ``null`` variant, and
    the history's ``days`` as 1 to the days the settings keep.

    A query string has no null: an absent parameter is the "no value" case. Left in, ``anyOf [string,
    null]`` makes a one-element array a distinct variant although ``?owner=x`` encodes both alike.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for route, path in schema.get("paths", {}).items():
                for operation in path.values():
                    for param in operation.get("parameters", []) if isinstance(operation, dict) else []:
                        variants = param.get("schema", {}).get("anyOf")
                        if param.get("in") == "query" and variants:
                            kept = [v for v in variants if v.get("type") != "null"]
                            if len(kept) == 1:
                                rest = {k: v for k, v in param["schema"].items() if k != "anyOf"}
                                param["schema"] = {**kept[0], **rest}
                        if route == accounts.HISTORY_PATH and param.get("name") == "days":
                            param["schema"].update(minimum=1, maximum=history_days)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: ApiSettings,
    read_model: ReadModel | None = None,
    producer: EventProducer | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
    monotonic: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """Build the API.

    Args:
        settings: Configuration.
        read_model: What to serve from; a :class:`KafkaReadModel` on ``settings`` when omitted.
        producer: Where ingested events go; an idempotent Kafka producer when omitted.
        clock: Wall clock for "now" in computed figures.
        monotonic: Seconds from a monotonic origin, for rate limiting.

    Returns:
        The app; the read model and producer are started and stopped by its lifespan.
    """
    model: ReadModel = read_model if read_model is not None else KafkaReadModel(settings)
    sink: EventProducer = producer if producer is not None else KafkaEventProducer(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await sink.start()
        try:
            await model.start()
            try:
                yield
            finally:
                await model.stop()
        finally:
            await sink.stop()

    app = FastAPI(
        title="churnwatch",
        version="0.1.0",
        summary="Account health, at-risk lists, churn alerts and event ingest.",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        dependencies=[Depends(reject_repeated_query_parameters)],
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    _finish_openapi(app, settings.history_days)
    app.state.settings = settings
    app.state.read_model = model
    app.state.producer = sink
    app.state.clock = clock
    app.state.monotonic = monotonic
    app.state.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.auth_throttle = FailureThrottle(settings.auth_failure_limit, settings.auth_failure_window_s)
    app.state.metrics = ApiMetrics(lambda: float(model.lag), lambda: float(model.write_failures))
    install_error_handlers(app)
    for module in (accounts, alerts, ingest, segment, portfolio, ops, dashboard):
        app.include_router(module.router)
    app.mount(f"{dashboard.BASE}/static", dashboard.static_files, name="dashboard-static")
    install_docs(app)
    app.router.redirect_slashes = False
    app.router.default = RelativeSlashRedirect(app.router.routes, app.router.default)
    # The last added runs first: metrics count every answer, also the refusals below; a foreign Host
    # header and oversized bodies are refused before any other work; health lookups are answered
    # inside all of them.
    app.add_middleware(HealthLookupLane, api=app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(TrustedHostMiddleware, allowed=settings.trusted_hosts)
    app.add_middleware(
        SecurityHeadersMiddleware, cacheable_prefixes=(f"{dashboard.BASE}/static/", f"{DOCS_STATIC}/")
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
