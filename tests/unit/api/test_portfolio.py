"""Portfolio figures: the pure computation with fixed instants, and the route with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.portfolio import month_starts, monthly_churn, nps, portfolio_figures
from tests.unit.api.conftest import NOW, StoreModel, snapshot

T = datetime


def test_month_starts_cover_twelve_months_ending_with_now_across_a_year_boundary() -> None:
    starts = month_starts(datetime(2025, 2, 10, 8, 0, tzinfo=UTC))

    assert len(starts) == 12
    assert starts[0] == datetime(2024, 3, 1, tzinfo=UTC)
    assert starts[-1] == datetime(2025, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("subs", "month", "expected"),
    [
        # 4 active at the start of March, 1 new, 1 lost: 1 / (4 + 1).
        (
            [(T(2024, 1, 1, tzinfo=UTC), None)] * 3
            + [(T(2024, 6, 1, tzinfo=UTC), T(2025, 3, 20, tzinfo=UTC)), (T(2025, 3, 2, tzinfo=UTC), None)],
            "2025-03",
            {"active_at_start": 4, "new": 1, "lost": 1, "churn_rate": 0.2, "retention_rate": 0.8},
        ),
        # Cancelled exactly at the month start counts as lost in that month, not the one before.
        (
            [(T(2024, 1, 1, tzinfo=UTC), T(2025, 2, 1, tzinfo=UTC)), (T(2024, 1, 1, tzinfo=UTC), None)],
            "2025-02",
            {"active_at_start": 2, "new": 0, "lost": 1, "churn_rate": 0.5, "retention_rate": 0.5},
        ),
        (
            [(T(2024, 1, 1, tzinfo=UTC), T(2025, 2, 1, tzinfo=UTC)), (T(2024, 1, 1, tzinfo=UTC), None)],
            "2025-01",
            {"active_at_start": 2, "new": 0, "lost": 0, "churn_rate": 0.0, "retention_rate": 1.0},
        ),
        # Started and cancelled within the month: in the base and lost.
        (
            [(T(2025, 3, 3, tzinfo=UTC), T(2025, 3, 9, tzinfo=UTC))],
            "2025-03",
            {"active_at_start": 0, "new": 1, "lost": 1, "churn_rate": 1.0, "retention_rate": 0.0},
        ),
        # No subscriptions at all: undefined, not zero.
        (
            [],
            "2025-03",
            {"active_at_start": 0, "new": 0, "lost": 0, "churn_rate": None, "retention_rate": None},
        ),
    ],
)
def test_monthly_churn_table(
    subs: list[tuple[datetime, datetime | None]], month: str, expected: dict[str, object]
) -> None:
    rows = {r["month"]: r for r in monthly_churn(subs, datetime(2025, 3, 25, tzinfo=UTC))}

    assert {k: rows[month][k] for k in expected} == expected


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([10, 9, 8, 7, 6, 0], 0.0), ([10, 10, 9, 5], 50.0), ([0, 3], -100.0), ([7, 8], 0.0), ([9, 9, 9], 100.0)],
)
def test_nps(scores: list[int], expected: float) -> None:
    assert nps(scores)["score"] == expected


def test_nps_without_responses_is_none() -> None:
    assert nps([]) == {"score": None, "responses": 0, "promoters": 0, "passives": 0, "detractors": 0}


def test_portfolio_counts_bands_nps_and_open_episodes() -> None:
    docs = [
        snapshot("a", band="good", nps={"score": 10, "at": None}),
        snapshot("b", band="poor", nps={"score": 3, "at": None}, episodes={"quiet_since": "x", "poor": True}),
        snapshot("c", band="poor", episodes={"drop_since": "y", "quiet_since": "z", "poor": False}),
    ]

    out = portfolio_figures(docs, datetime(2025, 3, 1, tzinfo=UTC))

    assert out["accounts"] == 3
    assert out["by_band"] == {"good": 1, "average": 0, "poor": 2}
    assert out["nps"]["score"] == 0.0
    assert out["open_alerts"] == {"account_quiet": 2, "usage_drop": 1, "health_degraded": 1}
    assert out["churn"][-1]["month"] == "2025-03"


def _facts(**revenue: Any) -> dict[str, Any]:
    return {"name": "x", "seats": 5, "plan": "pro", "segment": "smb", "owner": "ann", **revenue}


def test_arr_at_risk_sums_bands_average_and_poor_per_currency_and_by_open_alert() -> None:
    quiet = {"quiet_since": "2025-02-20T00:00:00.000Z", "drop_since": None, "poor": True}
    docs = [
        snapshot("a", band="good", facts=_facts(arr=100_000, currency="EUR")),
        snapshot("b", band="average", facts=_facts(arr=20_000.5, currency="EUR")),  # half to even: 20000
        snapshot("c", band="poor", facts=_facts(arr=30_000, currency="USD"), episodes=quiet),
        snapshot("d", band="poor", facts=_facts(arr=1_500.5)),  # no currency: XXX; rounds to 1500
        snapshot("e", band="poor", facts=_facts()),  # no ARR: counted as an account, not in ARR
    ]

    out = portfolio_figures(docs, datetime(2025, 3, 1, tzinfo=UTC))

    assert out["by_band"] == {"good": 1, "average": 1, "poor": 3}
    assert out["arr"] == {
        "at_risk": {"EUR": 20_000, "USD": 30_000, "XXX": 1_500},
        "by_band": {
            "good": {"EUR": 100_000},
            "average": {"EUR": 20_000},
            "poor": {"USD": 30_000, "XXX": 1_500},
        },
        "by_open_alert": {
            "account_quiet": {"USD": 30_000},
            "usage_drop": {},
            "health_degraded": {"USD": 30_000},
        },
    }


def _lifecycle(status: str | None) -> dict[str, Any]:
    return {"lifecycle": {"status": status, "active_days_7": 1, "active_days_28": 1}}


def test_portfolio_counts_accounts_per_lifecycle_status() -> None:
    docs = [
        snapshot("a", **_lifecycle("returning")),
        snapshot("b", **_lifecycle("returning")),
        snapshot("c", **_lifecycle("dormant")),
        snapshot("d", **_lifecycle("new")),
        snapshot("e", **_lifecycle(None)),  # active neither on its day nor the day before
        snapshot("f"),  # written before lifecycles
    ]

    out = portfolio_figures(docs, datetime(2025, 3, 1, tzinfo=UTC))

    assert out["accounts"] == 6
    assert out["lifecycle"] == {"new": 1, "returning": 2, "resurrecting": 0, "dormant": 1}


async def test_portfolio_route_counts_lifecycle_statuses_as_snapshots_replace_each_other(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("a", snapshot("a", **_lifecycle("new"), at="2025-03-10T00:00:00.000Z"))
    model.apply_health("b", snapshot("b", **_lifecycle("resurrecting")))
    model.apply_health("a", snapshot("a", **_lifecycle("returning"), at="2025-03-11T00:00:00.000Z"))
    model.apply_health("c", snapshot("c", **_lifecycle("dormant")))
    model.apply_health("c", None)  # forgotten

    body = (await client.get("/v1/portfolio")).json()

    assert body["lifecycle"] == {"new": 0, "returning": 1, "resurrecting": 1, "dormant": 0}


async def test_portfolio_route_uses_the_injected_clock(client: httpx.AsyncClient, model: StoreModel) -> None:
    sub = {
        "status": "cancelled",
        "started_at": "2024-05-01T00:00:00.000Z",
        "cancelled_at": "2025-03-02T00:00:00.000Z",
    }
    model.apply_health("a", snapshot("a", subscription=sub))
    model.apply_health("b", snapshot("b", subscription={**sub, "cancelled_at": None}))

    body = (await client.get("/v1/portfolio")).json()

    assert body["as_of"] == NOW.isoformat().replace("+00:00", "Z")
    assert [r["month"] for r in body["churn"]][-1] == "2025-03"
    assert body["churn"][-1]["churn_rate"] == 0.5
    assert body["churn"][0]["month"] == "2024-04"
    assert body["churn"][0]["churn_rate"] is None
