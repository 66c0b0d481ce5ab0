"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.settings import ApiSettings


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the API for ``settings``."""
    app = FastAPI(title="churnwatch", version="0.1.0", default_response_class=ORJSONResponse)
    app.state.settings = settings

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics.", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
