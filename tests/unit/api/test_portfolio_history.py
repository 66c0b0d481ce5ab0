"""The portfolio per ISO week: week bucketing and each week's day as plain functions, the changes a run of
snapshots makes, and the route on each store with an injected clock and restricted keys."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from api.portfolio_history import (
    WEEKS_KEPT,
    counted_of,
    day_deltas,
    fold_before,
    kept_from,
    week_end,
    week_start,
    week_starts,
    weekly_figures,
)
from tests.unit.api.conftest import ANN, StoreModel, client_for, snapshot

D = date


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        (D(2025, 3, 10), D(2025, 3, 10)),  # a Monday is its own week's start
        (D(2025, 3, 16), D(2025, 3, 10)),  # a Sunday ends the week begun the Monday before
        (D(2025, 1, 1), D(2024, 12, 30)),  # ISO week 1 of 2025 starts in 2024
        (D(2024, 3, 1), D(2024, 2, 26)),  # across a leap day
    ],
)
def test_week_start_is_the_monday_of_the_iso_week(day: date, monday: date) -> None:
    assert week_start(day) == monday


@pytest.mark.parametrize(
    ("today", "weeks", "mondays"),
    [
        (D(2025, 3, 15), 1, [D(2025, 3, 10)]),  # the current week alone
        (D(2025, 3, 15), 3, [D(2025, 2, 24), D(2025, 3, 3), D(2025, 3, 10)]),  # oldest first
        (D(2025, 1, 6), 2, [D(2024, 12, 30), D(2025, 1, 6)]),  # across a year
    ],
)
def test_week_starts_end_with_the_current_week(today: date, weeks: int, mondays: list[date]) -> None:
    assert week_starts(today, weeks) == mondays


@pytest.mark.parametrize(
    ("monday", "today", "end"),
    [
        (D(2025, 3, 3), D(2025, 3, 15), D(2025, 3, 9)),  # a past week: its Sunday
        (D(2025, 3, 10), D(2025, 3, 15), D(2025, 3, 15)),  # the current week: today
        (D(2025, 3, 10), D(2025, 3, 10), D(2025, 3, 10)),  # the current week on its Monday
        (D(2025, 3, 10), D(2025, 3, 16), D(2025, 3, 16)),  # the current week on its Sunday
    ],
)
def test_a_weeks_figures_are_as_of_its_sunday_or_today(monday: date, today: date, end: date) -> None:
    assert week_end(monday, today) == end


def test_the_stores_keep_53_weeks_counted_back_from_the_newest_day() -> None:
    assert WEEKS_KEPT == 53
    assert kept_from(D(2025, 3, 15)) == D(2024, 3, 11)  # the Monday 52 weeks before 2025-03-10
    assert kept_from(D(2025, 3, 10)) == D(2024, 3, 11)  # the same week: the same first day


def _doc(band: str, at: str, **facts: Any) -> dict[str, Any]:
    return snapshot("a", band=band, at=at, facts={"owner": "ann", "segment": "smb", **facts})


MAR_03 = 1_740_960_000_000  # 2025-03-03T00:00:00Z
DAY = 86_400_000


def _counted(band: str, day: int, **facts: Any) -> Any:
    return counted_of(_doc(band, "2025-03-03T00:00:00.000Z", **facts), MAR_03 + day * DAY)


def _all_accounts(deltas: Any, dimension: str = "band") -> dict[tuple[str, str], int]:
    # The rows of the scope of every account, by (day, value).
    return {
        (k[4], k[6]): n
        for k, n in deltas.items()
        if k[:4] == (False, None, False, None) and k[5] == dimension and n
    }


def test_a_new_snapshot_moves_the_account_on_its_day_and_a_tombstone_takes_it_out_on_its_last_day() -> None:
    runs = [
        ("a", _counted("good", 0)),
        ("a", _counted("poor", 2)),
        ("a", _counted("average", 1)),  # older than the one counted: a replay, nothing changes
        ("a", None),
    ]

    deltas, _sums, state = day_deltas(runs, {})

    # Poor from the 5th, and out on the 5th (its last snapshot's day): no change of poor is left.
    assert _all_accounts(deltas) == {("2025-03-03", "good"): 1, ("2025-03-05", "good"): -1}
    assert state == {"a": None}


def test_changes_start_from_how_the_account_counts_and_carry_its_arr_per_currency() -> None:
    before = {"a": _counted("good", 0, arr=1000.0, currency="EUR")}

    deltas, sums, state = day_deltas([("a", _counted("poor", 7, arr=1200.0, currency="EUR"))], before)

    assert _all_accounts(deltas) == {("2025-03-10", "good"): -1, ("2025-03-10", "poor"): 1}
    assert _all_accounts(sums, "arr_band") == {
        ("2025-03-10", "good|EUR"): -1000,
        ("2025-03-10", "poor|EUR"): 1200,
    }
    assert state["a"] == _counted("poor", 7, arr=1200.0, currency="EUR")
    # The same change in the owner's, the segment's and both's rows.
    scopes = {k[:4] for k, n in deltas.items() if n}
    assert scopes == {
        (False, None, False, None),
        (True, "ann", False, None),
        (False, None, True, "smb"),
        (True, "ann", True, "smb"),
    }


def test_days_before_the_first_kept_fold_into_the_day_before_it() -> None:
    scope = (False, None, False, None)
    rows = [
        ((*scope, "2024-01-01", "band", "good"), 3, 0),
        ((*scope, "2024-02-01", "band", "good"), -1, 0),
        ((*scope, "2024-02-01", "arr_band", "good|EUR"), 1, 500),
    ]

    assert fold_before(rows, D(2024, 3, 18)) == {
        (*scope, "2024-03-17", "band", "good"): (2, 0),
        (*scope, "2024-03-17", "arr_band", "good|EUR"): (1, 500),
    }


def test_each_weeks_figures_sum_the_changes_up_to_its_day() -> None:
    rows = [
        ("2025-03-04", "band", "good", 2, 0),
        ("2025-03-04", "arr_band", "good|EUR", 2, 3000),
        ("2025-03-04", "lifecycle", "new", 2, 0),
        ("2025-03-11", "band", "good", -1, 0),
        ("2025-03-11", "band", "poor", 1, 0),
        ("2025-03-11", "arr_band", "good|EUR", -1, -1000),
        ("2025-03-11", "arr_band", "poor|EUR", 1, 1000),
        ("2025-03-16", "band", "poor", 1, 0),  # after today: not counted yet
    ]

    weeks = weekly_figures(rows, 3, D(2025, 3, 15))

    assert [(w["week"], w["as_of"]) for w in weeks] == [
        (D(2025, 2, 24), None),  # before the first change: nothing held
        (D(2025, 3, 3), D(2025, 3, 9)),
        (D(2025, 3, 10), D(2025, 3, 15)),
    ]
    assert weeks[0]["accounts"] == 0
    assert weeks[0]["arr"] == {"at_risk": {}, "by_band": {"good": {}, "average": {}, "poor": {}}}
    assert weeks[1]["by_band"] == {"good": 2, "average": 0, "poor": 0}
    assert weeks[1]["arr"] == {"at_risk": {}, "by_band": {"good": {"EUR": 3000}, "average": {}, "poor": {}}}
    assert weeks[1]["lifecycle"] == {"new": 2, "returning": 0, "resurrecting": 0, "dormant": 0}
    assert weeks[2]["accounts"] == 2
    assert weeks[2]["by_band"] == {"good": 1, "average": 0, "poor": 1}
    assert weeks[2]["arr"] == {
        "at_risk": {"EUR": 1000},
        "by_band": {"good": {"EUR": 2000}, "average": {}, "poor": {"EUR": 1000}},
    }


def _account(account_id: str, band: str, at: str, owner: str, **extra: Any) -> dict[str, Any]:
    facts = {"name": account_id, "owner": owner, "segment": "smb", "arr": 1000.0, "currency": "EUR"}
    return snapshot(account_id, band=band, at=at, facts=facts, **extra)


def _status(status: str) -> dict[str, Any]:
    return {"lifecycle": {"status": status, "active_days_7": 1, "active_days_28": 1}}


async def test_the_history_route_counts_each_week_as_of_its_end_on_every_store(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    # NOW is Saturday 2025-03-15: weeks of 2025-02-24, 03-03 and 03-10.
    model.apply_health("a", _account("a", "good", "2025-03-04T10:00:00.000Z", "ann", **_status("new")))
    model.apply_health("b", _account("b", "average", "2025-03-05T10:00:00.000Z", "bob", **_status("new")))
    model.apply_health("a", _account("a", "poor", "2025-03-12T10:00:00.000Z", "ann", **_status("dormant")))
    model.apply_health("c", _account("c", "good", "2025-03-13T10:00:00.000Z", "ann", **_status("returning")))
    model.apply_health("c", None)  # forgotten: out from its snapshot's day on

    body = (await client.get("/v1/portfolio/history", params={"weeks": 3})).json()

    assert body["as_of"] == "2025-03-15T12:00:00Z"
    weeks = body["weeks"]
    assert [(w["week"], w["as_of"], w["accounts"]) for w in weeks] == [
        ("2025-02-24", None, 0),
        ("2025-03-03", "2025-03-09", 2),
        ("2025-03-10", "2025-03-15", 2),
    ]
    assert weeks[1]["by_band"] == {"good": 1, "average": 1, "poor": 0}
    assert weeks[1]["arr"]["at_risk"] == {"EUR": 1000}
    assert weeks[1]["lifecycle"] == {"new": 2, "returning": 0, "resurrecting": 0, "dormant": 0}
    assert weeks[2]["by_band"] == {"good": 0, "average": 1, "poor": 1}
    assert weeks[2]["arr"] == {
        "at_risk": {"EUR": 2000},
        "by_band": {"good": {}, "average": {"EUR": 1000}, "poor": {"EUR": 1000}},
    }
    assert weeks[2]["lifecycle"] == {"new": 1, "returning": 0, "resurrecting": 0, "dormant": 1}
    assert len((await client.get("/v1/portfolio/history")).json()["weeks"]) == 12


async def test_a_restricted_key_sees_the_weeks_of_its_accounts_only(make_app: Any, model: StoreModel) -> None:
    model.apply_health("a", _account("a", "poor", "2025-03-04T10:00:00.000Z", "ann"))
    model.apply_health("b", _account("b", "poor", "2025-03-05T10:00:00.000Z", "bob"))

    async with client_for(make_app(), ANN) as ann:
        weeks = (await ann.get("/v1/portfolio/history", params={"weeks": 2})).json()["weeks"]

    assert [w["by_band"]["poor"] for w in weeks] == [1, 1]
    assert [w["arr"]["at_risk"] for w in weeks] == [{"EUR": 1000}, {"EUR": 1000}]


@pytest.mark.parametrize("weeks", ["0", "53", "x"])
async def test_weeks_out_of_range_is_a_422_naming_it(client: httpx.AsyncClient, weeks: str) -> None:
    response = await client.get("/v1/portfolio/history", params={"weeks": weeks})

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("weeks")
