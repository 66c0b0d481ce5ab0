"""What changed in the last week: the scored days an account keeps, and the comparison with them."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.alerts import Alert, alert_to_dict
from streamer.core.changes import KEPT, remember, scored, scored_parts, week_before, what_changed
from streamer.core.engine import advance, record_event
from streamer.core.milestones import NOT_ONBOARDING
from streamer.core.policy import DAY_MS, Band
from streamer.core.scoring import Component, Health
from streamer.core.state import AccountState, Scored
from tests.unit.core.test_engine import HISTORY, POLICY, REFERENCE, START, events_for_determinism

DAY = 20_161  # 2025-03-14


def health(day: int, score: int, components: list[Component], hour: int = 10) -> Health:
    at_ms = day * DAY_MS + hour * 3_600_000
    return Health("acme", at_ms, score, Band.GOOD, tuple(components), 0.0, 0.0, 0, 0, NOT_ONBOARDING)


def comp(name: str, value: float, weight: float, contribution: float, why: str = "") -> Component:
    return Component(name, value, weight, contribution, why)


WEEK_AGO = [
    comp("recency", 100.0, 0.15, 15.0),
    comp("activity", 90.0, 0.25, 25.0),
    comp("stickiness", 80.0, 0.20, 18.0),
    comp("breadth", 50.0, 0.05, 3.0),
]
NOW = [
    comp("recency", 100.0, 0.15, 14.0, "last active 0 d ago"),
    comp("activity", 40.0, 0.25, 10.0, "11 user-days in the last 7 days vs 29.0 usually (38%)"),
    comp("stickiness", 60.0, 0.20, 12.5),
    comp("breadth", 60.0, 0.05, 3.4),
    comp("utilization", 20.0, 0.20, 6.0),  # not scored a week ago: not compared
]


def test_a_component_falling_from_90_to_40_moves_the_exact_points_and_is_the_top_detractor() -> None:
    kept = [scored(DAY - 7, 80, WEEK_AGO), scored(DAY - 1, 60, WEEK_AGO)]

    assert what_changed(kept, health(DAY, 41, NOW)) == {
        "since": "2025-03-07",
        "score_change": -39,
        "moved": [
            {"name": "activity", "before": 90.0, "after": 40.0, "change": -50.0, "points": -15.0},
            {"name": "stickiness", "before": 80.0, "after": 60.0, "change": -20.0, "points": -5.5},
            # Its value did not move, its points did (the weights of the others changed).
            {"name": "recency", "before": 100.0, "after": 100.0, "change": 0.0, "points": -1.0},
            # breadth (+0.4) is the fourth: left out.
        ],
        "top_detractor": {
            "name": "activity",
            "value": 40.0,
            "points": 15.0,
            "explanation": "11 user-days in the last 7 days vs 29.0 usually (38%)",
        },
    }


@pytest.mark.parametrize(
    ("days", "today", "expected"),
    [
        # A day for each of the last 8: the one 7 days before today.
        (list(range(DAY - 7, DAY + 1)), DAY, (DAY - 7, 0)),
        # No day 7 days before: the last one before it shows.
        ([DAY - 20, DAY - 3], DAY, (DAY - 7, 0)),
        # Kept for less than a week: the first day kept.
        ([DAY - 3, DAY - 1], DAY, (DAY - 3, 0)),
        # Only today: today itself.
        ([DAY], DAY, (DAY, 0)),
        # A kept day after "today" ends the week on it.
        ([DAY - 6, DAY + 1], DAY, (DAY - 6, 0)),
        # Nothing kept: nothing to compare with.
        ([], DAY, None),
    ],
)
def test_the_week_before_is_the_last_day_kept_on_or_before_it(
    days: list[int], today: int, expected: tuple[int, int] | None
) -> None:
    assert week_before(days, today) == expected


def test_without_a_day_kept_nothing_is_said_and_a_perfect_health_has_no_detractor() -> None:
    perfect = [comp("recency", 100.0, 0.5, 50.0), comp("activity", 100.0, 0.5, 50.0)]

    assert what_changed([], health(DAY, 100, perfect)) is None
    assert what_changed([scored(DAY, 100, perfect)], health(DAY, 100, perfect)) == {
        "since": "2025-03-14",
        "score_change": 0,
        "moved": [],
        "top_detractor": None,
    }


def test_a_scored_day_keeps_values_and_contributions_to_the_tenth_negative_ones_too() -> None:
    entry = scored(DAY, 7, [comp("activity", 0.0, 0.6, -85.3), comp("sentiment", 100.0, 0.4, 92.3)])

    assert len(entry.parts) == 32  # 8 components, value and contribution as int16 each
    assert scored_parts(entry) == {"activity": (0.0, -85.3), "sentiment": (100.0, 92.3)}
    onboarding = scored(DAY, 7, [comp("onboarding", 25.0, 0.15, 3.8)])
    assert scored_parts(onboarding) == {"onboarding": (25.0, 3.8)}
    with pytest.raises(ValueError, match="unknown component"):
        scored(DAY, 7, [comp("mood", 1.0, 1.0, 100.0)])


def test_an_account_remembers_one_score_a_day_the_day_s_last_and_at_most_kept_days() -> None:
    s = AccountState("acme", DAY * DAY_MS, DAY * DAY_MS)
    remember(s, health(DAY, 50, WEEK_AGO, hour=0))
    remember(s, health(DAY, 45, WEEK_AGO, hour=9))  # the same day: replaces
    assert [(e.day, e.score) for e in s.scored] == [(DAY, 45)]
    remember(s, health(DAY - 1, 99, WEEK_AGO))  # older than the newest kept: ignored
    assert [(e.day, e.score) for e in s.scored] == [(DAY, 45)]
    for d in range(1, 12):
        remember(s, health(DAY + d, 50 + d, WEEK_AGO))
    assert KEPT == 8
    assert [(e.day, e.score) for e in s.scored] == [(DAY + d, 50 + d) for d in range(4, 12)]


def test_scored_days_compare_like_the_health_they_came_from() -> None:
    before = health(DAY - 7, 80, WEEK_AGO)
    entry = scored(DAY - 7, before.score, before.components)

    assert entry == Scored(DAY - 7, 80, entry.parts)
    assert scored_parts(entry) == {c.name: (c.value, c.contribution) for c in WEEK_AGO}
    assert what_changed([entry], health(DAY, 80, WEEK_AGO))["moved"] == []  # type: ignore[index]
    assert date.fromisoformat(what_changed([entry], before)["since"]) == date(2025, 3, 7)  # type: ignore[index]


# -- the engine: what it remembers, and what its alerts carry ------------------------------------------


def _replay(advance_points: list[int]) -> tuple[list[tuple[str, Any]], list[Scored]]:
    state: AccountState | None = None
    alerts: list[Alert] = []
    points = sorted(advance_points)
    for e in events_for_determinism():
        while points and points[0] <= e.occurred_at_ms and state is not None:
            alerts += advance(state, points.pop(0), POLICY)
        state, _, new = record_event(state, e, POLICY)
        alerts += new
    assert state is not None
    alerts += advance(state, START + (HISTORY + 60) * DAY_MS, POLICY)
    return [(a.alert_id, alert_to_dict(a)["what_changed"]) for a in alerts], state.scored


REPLAYED = _replay([])


def test_the_engine_remembers_a_score_a_day_and_its_alerts_say_what_changed() -> None:
    alerts, kept = REPLAYED
    assert [e.day for e in kept] == list(range(kept[-1].day - KEPT + 1, kept[-1].day + 1))
    # Every account alert carries a week's comparison (the history has a day kept by then).
    assert alerts and all(changed is not None for _, changed in alerts)
    # The first drop, a week after the account fell from 10 events a day to 2 and then went silent.
    [drop, *_] = [
        changed
        for (alert_id, kind, _), (_, changed) in zip(REFERENCE, alerts, strict=True)
        if kind == "usage_drop"
    ]
    assert drop == {
        "since": "2026-05-16",
        "score_change": -39,
        "moved": [
            {"name": "recency", "before": 32.6, "after": 2.3, "change": -30.3, "points": -21.5},
            {"name": "activity", "before": 49.9, "after": 12.5, "change": -37.4, "points": -17.8},
            {"name": "sentiment", "before": 70.0, "after": 70.0, "change": 0.0, "points": 0.5},
        ],
        "top_detractor": {
            "name": "recency",
            "value": 2.3,
            "points": 38.5,
            "explanation": "last active 12 days ago: 10.4 of its usual active days missed",
        },
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, (HISTORY + 31) * DAY_MS), max_size=30))
def test_what_changed_does_not_depend_on_how_the_clock_was_advanced_between_events(
    offsets: list[int],
) -> None:
    assert _replay([START + o for o in offsets]) == REPLAYED
