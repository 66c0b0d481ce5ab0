"""Portfolio-wide figures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import ClockDep, HealthReader, ReadModelDep
from api.errors import AUTH_ERRORS

router = APIRouter(prefix="/v1", tags=["portfolio"])

_EXAMPLE = {
    "as_of": "2025-03-08T09:30:00Z",
    "accounts": 120,
    "by_band": {"good": 80, "average": 25, "poor": 15},
    "churn": [
        {
            "month": "2025-03",
            "active_at_start": 100,
            "new": 4,
            "lost": 2,
            "churn_rate": 0.0192,
            "retention_rate": 0.9808,
        }
    ],
    "nps": {"score": 22.5, "responses": 40, "promoters": 17, "passives": 14, "detractors": 9},
    "open_alerts": {"account_quiet": 6, "usage_drop": 3, "health_degraded": 15},
}


@router.get(
    "/portfolio",
    summary="Accounts per band, monthly churn and retention (12 months), NPS and open alerts by kind.",
    response_model=dict[str, Any],
    responses={200: {"content": {"application/json": {"example": _EXAMPLE}}}, **AUTH_ERRORS},
)
async def portfolio(model: ReadModelDep, clock: ClockDep, reader: HealthReader) -> dict[str, Any]:
    """Figures over the latest snapshot of every account the key may read, as of now."""
    return model.portfolio(clock(), scope=reader.reads)
