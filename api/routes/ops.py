"""Operational endpoints: liveness, readiness and metrics (no API key, for probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ProducerDep, ReadModelDep
from api.errors import OrjsonResponse
from api.models import Status

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process answers.", response_model=Status)
async def healthz() -> Status:
    """Always ok while the process serves requests."""
    return Status(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the read model has caught up with Kafka, and Kafka takes writes.",
    response_model=Status,
    responses={
        503: {
            "model": Status,
            "description": "Still loading the read model (`loading`), or Kafka is unreachable "
            "(`unavailable`); `reason` says which.",
        }
    },
)
async def readyz(model: ReadModelDep, producer: ProducerDep) -> Response:
    """200 once the read model reached the end offsets seen at start and while Kafka is reachable."""
    unreachable = producer.unreachable
    if unreachable is not None:
        return OrjsonResponse(
            {"status": "unavailable", "lag": model.lag, "reason": unreachable}, status_code=503
        )
    if model.ready:
        return OrjsonResponse({"status": "ready", "lag": model.lag})
    reason = "the read model is still loading the health and alert topics"
    return OrjsonResponse({"status": "loading", "lag": model.lag, "reason": reason}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics.", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """This app's metrics in the Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
