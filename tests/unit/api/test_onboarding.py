"""Onboarding milestones in the API: the status filter, the order by overdue days, the fields of each
row and the portfolio's counts and start-month cohorts, from snapshots of either shape (the boolean
``onboarding`` of older snapshots, or the milestones object)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.portfolio import portfolio_figures
from api.query import onboarding_active, onboarding_of
from tests.unit.api.conftest import StoreModel, alert, snapshot

DUE = "2025-03-05T00:00:00.000Z"


def onboarding(
    status: str | None,
    *overdue: int,
    active: bool = True,
    done: int = 1,
    total: int = 4,
    next_: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The milestones object of a snapshot, a missing milestone per overdue count."""
    return {
        "onboarding": {
            "active": active,
            "status": status,
            "reached": [{"name": "signed_up", "at": "2025-03-01T09:00:00.000Z"}],
            "missing": [
                {"name": f"milestone_{i}", "due_at": DUE, "overdue_days": days}
                for i, days in enumerate(overdue)
            ],
            "next": next_,
            "done": done,
            "total": total,
        }
    }


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # the boolean of snapshots written before milestones
        ({"onboarding": True}, (True, None, None)),
        ({"onboarding": False}, (False, None, None)),
        # the object: its active flag, status and the worst missing milestone's overdue days
        (onboarding("stuck", 3, 12, 7), (True, "stuck", 12)),
        (onboarding("behind", 0), (True, "behind", 0)),
        (onboarding("complete", active=False), (False, "complete", None)),
        (onboarding(None, active=False), (False, None, None)),
        # a status this version does not know, and overdue days that are not a count, tell none
        (onboarding("lost", -2), (True, None, None)),
        # no onboarding key at all
        ({}, (False, None, None)),
    ],
)
def test_onboarding_is_read_from_either_shape(doc: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert onboarding_of(doc) == expected
    assert onboarding_active(doc) is expected[0]


def _seed(model: StoreModel) -> None:
    model.apply_health("o1", snapshot("o1", score=10, **onboarding("stuck", 12, 3)))
    model.apply_health("o2", snapshot("o2", score=20, **onboarding("behind", 4)))
    model.apply_health("o3", snapshot("o3", score=30, **onboarding("on_track")))
    model.apply_health("o4", snapshot("o4", score=40, **onboarding("complete", active=False, done=4)))
    model.apply_health("o5", snapshot("o5", score=50, onboarding=True))  # written before milestones
    model.apply_health("o6", snapshot("o6", score=60, **onboarding("behind", 9, 9)))
    model.apply_health("o7", snapshot("o7", score=70, **onboarding(None, active=False, total=0, done=0)))
    model.apply_health("o8", snapshot("o8", score=80, **onboarding("behind", 4)))


async def _listed(client: httpx.AsyncClient, **params: Any) -> list[str]:
    resp = await client.get("/v1/accounts", params={"sort": "score", **params})
    assert resp.status_code == 200, resp.text
    return [i["account_id"] for i in resp.json()["items"]]


async def test_accounts_are_listed_by_onboarding_status_with_it_in_each_row(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)

    assert await _listed(client, onboarding_status="behind") == ["o2", "o6", "o8"]
    assert await _listed(client, onboarding_status="stuck") == ["o1"]
    assert await _listed(client, onboarding_status="on_track") == ["o3"]
    assert await _listed(client, onboarding_status="complete") == ["o4"]
    assert await _listed(client, onboarding_status="behind", min_score=30) == ["o6", "o8"]
    rows = (await client.get("/v1/accounts", params={"sort": "score"})).json()["items"]
    assert [(r["account_id"], r["onboarding_status"], r["onboarding_overdue_days"]) for r in rows] == [
        ("o1", "stuck", 12),
        ("o2", "behind", 4),
        ("o3", "on_track", None),
        ("o4", "complete", None),
        ("o5", None, None),
        ("o6", "behind", 9),
        ("o7", None, None),
        ("o8", "behind", 4),
    ]


async def test_accounts_sort_by_overdue_days_most_first_those_missing_none_last_page_by_page(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)
    pages, cursor = [], ""
    while cursor is not None:
        params: dict[str, str | int] = {"sort": "-onboarding_overdue", "limit": 3, "cursor": cursor}
        body = (await client.get("/v1/accounts", params=params)).json()
        pages.append([i["account_id"] for i in body["items"]])
        cursor = body["next_cursor"]

    # 12, 9, then the tie at 4 by account id (descending, as every descending order); then those
    # missing no milestone (o3, o4, o5, o7), by account id.
    assert pages == [["o1", "o6", "o8"], ["o2", "o7", "o5"], ["o4", "o3"]]
    assert await _listed(client, sort="-onboarding_overdue", onboarding_status="behind") == ["o6", "o8", "o2"]


@pytest.mark.parametrize("value", ["late", "COMPLETE", "none", ""])
async def test_an_unknown_onboarding_status_is_422_listing_the_statuses(
    client: httpx.AsyncClient, value: str
) -> None:
    resp = await client.get("/v1/accounts", params={"onboarding_status": value})

    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"
    assert resp.json()["error"]["message"] == (
        "onboarding_status must be one of 'on_track', 'behind', 'stuck' or 'complete'"
    )


async def test_the_alert_feed_filters_on_the_onboarding_alert_kinds(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_alert(alert("m1", "acme", "milestone_missed"))
    model.apply_alert(alert("m2", "acme", "milestone_reached"))
    model.apply_alert(alert("m3", "acme", "onboarding_complete"))
    model.apply_alert(alert("q1", "acme"))

    for kind, expected in (
        ("milestone_missed", "m1"),
        ("milestone_reached", "m2"),
        ("onboarding_complete", "m3"),
    ):
        resp = await client.get("/v1/alerts", params={"kind": kind})
        assert resp.status_code == 200, resp.text
        assert [a["alert_id"] for a in resp.json()["items"]] == [expected]


def _started(at: str, cancelled: str | None = None) -> dict[str, Any]:
    return {"subscription": {"status": None, "started_at": at, "cancelled_at": cancelled}}


def test_portfolio_counts_onboarding_statuses_and_start_month_cohorts() -> None:
    docs = [
        snapshot("a", **_started("2025-03-02T10:00:00Z"), **onboarding("behind", 2)),
        snapshot("b", **_started("2025-03-05T10:00:00Z"), **onboarding("on_track")),
        # complete while still in its first days: completed, not in progress
        snapshot("c", **_started("2025-03-09T10:00:00Z"), **onboarding("complete", done=4)),
        snapshot("d", **_started("2025-02-10T10:00:00Z"), **onboarding("complete", active=False, done=4)),
        # its onboarding days over without completing: started, neither completed nor in progress
        snapshot("e", **_started("2025-02-11T10:00:00Z"), **onboarding(None, active=False)),
        # written before milestones, in its first days: in progress, in no status
        snapshot("f", **_started("2025-02-12T10:00:00Z"), onboarding=True),
        # cancelled since: still of its start month's cohort
        snapshot("g", **_started("2025-02-20T10:00:00Z", "2025-03-01T00:00:00Z"), **onboarding("stuck", 9)),
        # started before the 12 months shown
        snapshot("h", **_started("2024-03-31T23:00:00Z"), **onboarding("complete", active=False)),
        # no subscription start: counted by status only
        snapshot("i", **onboarding("stuck", 20)),
        snapshot("j", onboarding=False),
    ]

    out = portfolio_figures(docs, datetime(2025, 3, 15, 12, tzinfo=UTC))["onboarding"]

    assert out["by_status"] == {"on_track": 1, "behind": 1, "stuck": 2, "complete": 3}
    cohorts = out["cohorts"]
    assert [row["month"] for row in cohorts] == [f"2024-{m:02d}" for m in range(4, 13)] + [
        "2025-01",
        "2025-02",
        "2025-03",
    ]
    assert cohorts[-1] == {
        "month": "2025-03",
        "started": 3,
        "completed": 1,
        "completed_share": 0.3333,
        "in_progress": 2,
    }
    assert cohorts[-2] == {
        "month": "2025-02",
        "started": 4,
        "completed": 1,
        "completed_share": 0.25,
        "in_progress": 2,
    }
    empty = {"started": 0, "completed": 0, "completed_share": None, "in_progress": 0}
    assert all({k: v for k, v in row.items() if k != "month"} == empty for row in cohorts[:-2])


async def test_portfolio_route_follows_onboarding_as_snapshots_replace_each_other(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    march = _started("2025-03-02T10:00:00Z")
    model.apply_health("a", snapshot("a", at="2025-03-10T00:00:00.000Z", **march, **onboarding("behind", 3)))
    model.apply_health("b", snapshot("b", **march, **onboarding("on_track")))
    model.apply_health("c", snapshot("c", **march, onboarding=True))  # written before milestones
    model.apply_health(
        "a", snapshot("a", at="2025-03-11T00:00:00.000Z", **march, **onboarding("complete", done=4))
    )
    model.apply_health("b", None)  # forgotten

    body = (await client.get("/v1/portfolio")).json()

    assert body["onboarding"]["by_status"] == {"on_track": 0, "behind": 0, "stuck": 0, "complete": 1}
    assert body["onboarding"]["cohorts"][-1] == {
        "month": "2025-03",
        "started": 2,
        "completed": 1,
        "completed_share": 0.5,
        "in_progress": 1,
    }
    assert len(body["onboarding"]["cohorts"]) == 12
