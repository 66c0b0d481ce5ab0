"""Portfolio-wide figures."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import ClockDep, HealthReader, ReadModelDep
from api.errors import AUTH_ERRORS, ErrorBody
from api.models import Portfolio, PortfolioHistory
from api.portfolio_history import DEFAULT_WEEKS, MAX_WEEKS

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
    "arr": {
        "at_risk": {"EUR": 1_250_000, "USD": 300_000},
        "by_band": {
            "good": {"EUR": 4_800_000, "USD": 900_000},
            "average": {"EUR": 750_000, "USD": 300_000},
            "poor": {"EUR": 500_000},
        },
        "by_open_alert": {
            "account_quiet": {"EUR": 120_000},
            "usage_drop": {"USD": 300_000},
            "health_degraded": {"EUR": 500_000},
        },
    },
    "lifecycle": {"new": 3, "returning": 90, "resurrecting": 8, "dormant": 11},
    "onboarding": {
        "by_status": {"on_track": 6, "behind": 2, "stuck": 1, "complete": 9},
        "cohorts": [
            {"month": "2025-03", "started": 4, "completed": 1, "completed_share": 0.25, "in_progress": 3}
        ],
    },
}


@router.get(
    "/portfolio",
    summary="Accounts per band, churn and retention (12 months), NPS, open alerts by kind, ARR at risk, "
    "lifecycle and onboarding.",
    response_model=Portfolio,
    responses={200: {"content": {"application/json": {"example": _EXAMPLE}}}, **AUTH_ERRORS},
)
async def portfolio(model: ReadModelDep, clock: ClockDep, reader: HealthReader) -> dict[str, Any]:
    """Figures over the latest snapshot of every account the key may read, as of now."""
    return model.portfolio(clock(), scope=reader.reads)


_WEEK = {
    "week": "2025-03-03",
    "as_of": "2025-03-08",
    "accounts": 120,
    "by_band": {"good": 80, "average": 25, "poor": 15},
    "arr": {
        "at_risk": {"EUR": 1_250_000, "USD": 300_000},
        "by_band": {
            "good": {"EUR": 4_800_000, "USD": 900_000},
            "average": {"EUR": 750_000, "USD": 300_000},
            "poor": {"EUR": 500_000},
        },
    },
    "lifecycle": {"new": 3, "returning": 70, "resurrecting": 8, "dormant": 11},
}


@router.get(
    "/portfolio/history",
    summary="Accounts and ARR per band and accounts per lifecycle status, per ISO week.",
    response_model=PortfolioHistory,
    responses={
        200: {
            "content": {"application/json": {"example": {"as_of": "2025-03-08T09:30:00Z", "weeks": [_WEEK]}}}
        },
        422: {"model": ErrorBody, "description": f"weeks out of range: 1 to {MAX_WEEKS}."},
        **AUTH_ERRORS,
    },
)
async def portfolio_history(
    model: ReadModelDep,
    clock: ClockDep,
    reader: HealthReader,
    weeks: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_WEEKS,
            description=f"ISO weeks to show, the current one last: 1 to {MAX_WEEKS}.",
        ),
    ] = DEFAULT_WEEKS,
) -> dict[str, Any]:
    """The portfolio as of the end of each week (today for the current one), over the accounts the key
    may read, each as it was then (its band, ARR, status, owner and segment)."""
    now = clock()
    return {
        "as_of": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "weeks": model.portfolio_history(weeks, now, scope=reader.reads),
    }
