"""An account's score history: the daily series, what changed in the last week, and its route."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from api.history import daily, daily_points, what_changed
from api.models import ComponentMove, Detractor, HistoryPoint, WhatChanged
from streamer.core.changes import scored
from streamer.core.changes import what_changed as core_what_changed
from streamer.core.milestones import NOT_ONBOARDING
from streamer.core.policy import DAY_MS, Band
from streamer.core.scoring import Component, Health
from tests.unit.api.conftest import WRITER, AppFactory, StoreModel, client_for, snapshot

TODAY = date(2025, 3, 14)


def comp(name: str, value: float, weight: float, contribution: float, why: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "weight": weight, "contribution": contribution, "explanation": why}


def row(
    day: str, score: int, components: list[dict[str, Any]] | None = None, hour: int = 10
) -> dict[str, Any]:
    at_ms = (date.fromisoformat(day) - date(1970, 1, 1)).days * 86_400_000 + hour * 3_600_000
    return {"day": day, "at_ms": at_ms, "score": score, "band": _band(score), "components": components or []}


def _band(score: int) -> str:
    return "poor" if score < 40 else "average" if score < 70 else "good"


R01, R05, R12 = row("2025-03-01", 80), row("2025-03-05", 70), row("2025-03-12", 40)


@pytest.mark.parametrize(
    ("rows", "days", "expected"),
    [
        # The 5 days up to today: the 10th and 11th show the 5th's snapshot, the rest the 12th's.
        (
            [R01, R05, R12],
            5,
            [("03-10", R05), ("03-11", R05), ("03-12", R12), ("03-13", R12), ("03-14", R12)],
        ),
        # More days than kept: the series starts on the first day kept.
        ([R12], 30, [("03-12", R12), ("03-13", R12), ("03-14", R12)]),
        # One day: today, showing the newest snapshot before it.
        ([R01, R05], 1, [("03-14", R05)]),
        # A snapshot dated after today (a clock behind the data) ends the series on its day.
        ([R12, row("2025-03-15", 50)], 2, [("03-14", R12), ("03-15", row("2025-03-15", 50))]),
        # Nothing kept: no days.
        ([], 90, []),
    ],
)
def test_each_day_shows_the_latest_snapshot_on_or_before_it(
    rows: list[dict[str, Any]], days: int, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    assert daily(rows, days, TODAY) == [(date.fromisoformat(f"2025-{d}"), r) for d, r in expected]


def test_a_point_has_the_days_score_band_component_values_and_the_snapshot_it_shows() -> None:
    rows = [row("2025-03-12", 41, [comp("activity", 38.0, 0.25, 9.5), comp("recency", 45.1, 0.15, 12.0)])]

    assert daily_points(rows, 2, TODAY) == [
        HistoryPoint(
            date=date(2025, 3, 13),
            at="2025-03-12T10:00:00.000Z",
            score=41,
            band="average",
            components={"activity": 38.0, "recency": 45.1},
        ),
        HistoryPoint(
            date=date(2025, 3, 14),
            at="2025-03-12T10:00:00.000Z",
            score=41,
            band="average",
            components={"activity": 38.0, "recency": 45.1},
        ),
    ]


WEEK_AGO = [
    comp("recency", 100.0, 0.15, 15.0),
    comp("activity", 90.0, 0.25, 25.0),
    comp("stickiness", 80.0, 0.20, 18.0),
    comp("breadth", 50.0, 0.05, 3.0),
]
NOW_COMPONENTS = [
    comp("recency", 100.0, 0.15, 14.0, "last active 0 d ago"),
    comp("activity", 40.0, 0.25, 10.0, "11 user-days in the last 7 days vs 29.0 usually (38%)"),
    comp("stickiness", 60.0, 0.20, 12.5),
    comp("breadth", 60.0, 0.05, 3.4),
    comp("utilization", 20.0, 0.20, 6.0),  # not scored a week ago: not compared
]


def test_what_changed_ranks_components_by_the_points_they_moved_and_names_the_top_detractor() -> None:
    # The 7th (7 days before the 14th) shows the 5th's snapshot.
    rows = [row("2025-03-05", 80, WEEK_AGO), row("2025-03-13", 41, NOW_COMPONENTS)]

    assert what_changed(rows, TODAY) == WhatChanged(
        since=date(2025, 3, 7),
        score_change=-39,
        moved=[
            ComponentMove(name="activity", before=90.0, after=40.0, change=-50.0, points=-15.0),
            ComponentMove(name="stickiness", before=80.0, after=60.0, change=-20.0, points=-5.5),
            # Its value did not move, its points did (the weights of the others changed).
            ComponentMove(name="recency", before=100.0, after=100.0, change=0.0, points=-1.0),
            # breadth (+0.4) is the fourth: left out.
        ],
        top_detractor=Detractor(
            name="activity",
            value=40.0,
            points=15.0,
            explanation="11 user-days in the last 7 days vs 29.0 usually (38%)",
        ),
    )


@pytest.mark.parametrize(
    ("rows", "since", "score_change", "moved"),
    [
        # Kept for less than a week: compared with the first day kept.
        ([row("2025-03-12", 80, WEEK_AGO), row("2025-03-13", 41, NOW_COMPONENTS)], "2025-03-12", -39, 3),
        # No snapshot in the last week: nothing moved.
        ([row("2025-03-01", 41, NOW_COMPONENTS)], "2025-03-07", 0, 0),
        # One snapshot, today's: nothing to compare it with.
        ([row("2025-03-14", 41, NOW_COMPONENTS)], "2025-03-14", 0, 0),
    ],
)
def test_what_changed_compares_with_what_was_kept(
    rows: list[dict[str, Any]], since: str, score_change: int, moved: int
) -> None:
    changed = what_changed(rows, TODAY)

    assert (changed.since, changed.score_change, len(changed.moved)) == (
        date.fromisoformat(since),
        score_change,
        moved,
    )
    assert changed.top_detractor is not None and changed.top_detractor.name == "activity"


def test_without_history_or_a_cost_nothing_changed_and_nothing_detracts() -> None:
    perfect = [comp("recency", 100.0, 0.5, 50.0), comp("activity", 100.0, 0.5, 50.0)]

    assert what_changed([], TODAY) == WhatChanged(since=None, score_change=0, moved=[], top_detractor=None)
    assert what_changed([row("2025-03-13", 100, perfect)], TODAY).top_detractor is None


def test_components_moving_the_same_points_rank_by_their_change_then_name() -> None:
    before = [comp("b", 50.0, 0.2, 10.0), comp("a", 50.0, 0.2, 10.0), comp("c", 50.0, 0.2, 10.0)]
    after = [comp("b", 60.0, 0.2, 12.0), comp("a", 60.0, 0.2, 12.0), comp("c", 40.0, 0.2, 12.0)]

    moved = what_changed([row("2025-03-07", 50, before), row("2025-03-14", 55, after)], TODAY).moved

    assert [(m.name, m.change, m.points) for m in moved] == [
        ("a", 10.0, 2.0),
        ("b", 10.0, 2.0),
        ("c", -10.0, 2.0),
    ]


# -- the route ----------------------------------------------------------------------------------------

ACME = [
    ("2025-03-01T10:00:00.000Z", 80, "good", WEEK_AGO),
    ("2025-03-10T10:00:00.000Z", 61, "average", WEEK_AGO[:2]),
    ("2025-03-14T09:00:00.000Z", 35, "poor", NOW_COMPONENTS),
]


@pytest.fixture
def acme(model: StoreModel) -> None:
    for at, score, band, components in ACME:
        model.apply_health("acme", snapshot("acme", score=score, band=band, at=at, components=components))


@pytest.mark.usefixtures("acme")
async def test_the_history_route_answers_a_point_per_day_and_what_changed(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/accounts/acme/history", params={"days": 3})  # the clock says 2025-03-15

    assert resp.status_code == 200
    now = {c["name"]: c["value"] for c in NOW_COMPONENTS}
    assert resp.json() == {
        "account_id": "acme",
        "days": 3,
        "points": [
            {
                "date": "2025-03-13",
                "at": "2025-03-10T10:00:00.000Z",
                "score": 61,
                "band": "average",
                "components": {"recency": 100.0, "activity": 90.0},
            },
            {
                "date": "2025-03-14",
                "at": "2025-03-14T09:00:00.000Z",
                "score": 35,
                "band": "poor",
                "components": now,
            },
            {
                "date": "2025-03-15",
                "at": "2025-03-14T09:00:00.000Z",
                "score": 35,
                "band": "poor",
                "components": now,
            },
        ],
        "what_changed": {
            # The 8th shows the snapshot of the 1st.
            "since": "2025-03-08",
            "score_change": -45,
            "moved": [
                {"name": "activity", "before": 90.0, "after": 40.0, "change": -50.0, "points": -15.0},
                {"name": "stickiness", "before": 80.0, "after": 60.0, "change": -20.0, "points": -5.5},
                {"name": "recency", "before": 100.0, "after": 100.0, "change": 0.0, "points": -1.0},
            ],
            "top_detractor": {
                "name": "activity",
                "value": 40.0,
                "points": 15.0,
                "explanation": "11 user-days in the last 7 days vs 29.0 usually (38%)",
            },
        },
    }


@pytest.mark.usefixtures("acme")
async def test_without_days_the_history_shows_90_days_or_every_day_kept_when_fewer(
    client: httpx.AsyncClient, make_app: AppFactory
) -> None:
    default = (await client.get("/v1/accounts/acme/history")).json()
    async with client_for(make_app(history_days=10)) as short:
        kept = (await short.get("/v1/accounts/acme/history")).json()

    assert (default["days"], default["points"][0]["date"], len(default["points"])) == (90, "2025-03-01", 15)
    assert (kept["days"], kept["points"][0]["date"], len(kept["points"])) == (10, "2025-03-06", 10)


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize("days", ["0", "11", "-3"])
async def test_days_outside_1_to_the_days_kept_is_a_422_saying_so(make_app: AppFactory, days: str) -> None:
    async with client_for(make_app(history_days=10)) as client:
        resp = await client.get("/v1/accounts/acme/history", params={"days": days})

    assert resp.status_code == 422
    assert resp.json() == {
        "error": {
            "code": "invalid_request",
            "message": "days must be 1 to 10, the days of history the API keeps (CHURNWATCH_HISTORY_DAYS)",
        }
    }


async def test_the_history_of_an_unknown_account_is_a_404_like_its_health(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/accounts/nobody/history")

    assert resp.status_code == 404
    assert resp.json() == {
        "error": {"code": "not_found", "message": "no health snapshot for account 'nobody'"}
    }


@pytest.mark.usefixtures("acme")
async def test_the_history_needs_a_key_with_health_read(make_app: AppFactory) -> None:
    app = make_app()
    async with client_for(app, None) as anonymous, client_for(app, WRITER) as writer:
        statuses = [(await c.get("/v1/accounts/acme/history")).status_code for c in (anonymous, writer)]

    assert statuses == [401, 403]


async def test_the_openapi_document_bounds_days_by_the_days_kept(make_app: AppFactory) -> None:
    async with client_for(make_app(history_days=45)) as client:
        schema = (await client.get("/openapi.json")).json()

    params = schema["paths"]["/v1/accounts/{account_id}/history"]["get"]["parameters"]
    days = next(p for p in params if p["name"] == "days")
    assert (days["schema"]["type"], days["schema"]["minimum"], days["schema"]["maximum"]) == (
        "integer",
        1,
        45,
    )


# -- the worker's what_changed, and the API's alike -----------------------------------------------------

WORKER_CHANGED = {
    "since": "2025-03-07",
    "score_change": -39,
    "moved": [{"name": "activity", "before": 90.0, "after": 40.0, "change": -50.0, "points": -15.0}],
    "top_detractor": {
        "name": "activity",
        "value": 40.0,
        "points": 15.0,
        "explanation": "11 user-days in the last 7 days vs 29.0 usually (38%)",
    },
}


def test_the_history_says_what_the_worker_would_say_over_the_same_days() -> None:
    def health_of(day: date, score: int, components: list[dict[str, Any]]) -> Health:
        parts = tuple(Component(**c) for c in components)
        at_ms = (day - date(1970, 1, 1)).days * DAY_MS + 10 * 3_600_000
        return Health("acme", at_ms, score, Band.POOR, parts, 0.0, 0.0, 0, 0, NOT_ONBOARDING)

    days = [
        (date(2025, 3, 5), 80, WEEK_AGO),
        (date(2025, 3, 10), 61, WEEK_AGO[:2]),
        (TODAY, 41, NOW_COMPONENTS),
    ]
    kept = [scored((d - date(1970, 1, 1)).days, s, health_of(d, s, c).components) for d, s, c in days]
    rows = [row(d.isoformat(), s, c) for d, s, c in days]

    worker = core_what_changed(kept, health_of(TODAY, 41, NOW_COMPONENTS))
    assert worker is not None
    assert what_changed(rows, TODAY) == WhatChanged.model_validate(worker)
    assert worker["since"] == "2025-03-07" and worker["score_change"] == -39


async def test_the_health_route_serves_the_snapshot_s_what_changed(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("acme", snapshot("acme", score=41, what_changed=WORKER_CHANGED))
    model.apply_health("globex", snapshot("globex", score=41))  # written before it was published

    acme = (await client.get("/v1/accounts/acme/health")).json()
    globex = (await client.get("/v1/accounts/globex/health")).json()

    assert acme["what_changed"] == WORKER_CHANGED
    assert "what_changed" not in globex  # served as written: an older worker's snapshot has none


async def test_the_openapi_document_types_what_changed_in_snapshots_and_alerts(make_app: AppFactory) -> None:
    async with client_for(make_app()) as client:
        schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    for name in ("AccountHealth", "AlertDocument"):
        field = schemas[name]["properties"]["what_changed"]
        assert {"$ref": "#/components/schemas/WhatChanged"} in field["anyOf"], name
    assert set(schemas["WhatChanged"]["properties"]) == {"since", "score_change", "moved", "top_detractor"}
