"""Explainable health: components, renormalisation, bands and material change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.policy import DAY_MS, Policy
from streamer.core.scoring import Health, band_for, health_changed_materially, score
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, DayBucket, bit_for

POLICY = Policy()
NOW = int(datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)
TODAY = NOW // DAY_MS
OLD = NOW - 200 * DAY_MS  # first seen long ago: not onboarding


def mature(**kw: object) -> AccountState:
    s = AccountState(account_id="acme", first_seen_ms=OLD, clock_ms=NOW)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def steady(per_day: float, days: range) -> dict[int, DayBucket]:
    return {TODAY - d: DayBucket(int(per_day), per_day) for d in days}


@pytest.mark.parametrize(
    ("current_per_day", "baseline_per_day", "expected"),
    [
        (2.0, 2.0, 100.0),  # same rate as baseline
        (1.0, 2.0, 50.0),  # half the baseline
        (4.0, 2.0, 100.0),  # growth is capped at 100
        (0.0, 2.0, 0.0),  # nothing this week
        (1.0, 0.0, 100.0),  # activity without any baseline
    ],
)
def test_activity_component_compares_current_week_with_baseline(
    current_per_day: float, baseline_per_day: float, expected: float
) -> None:
    days = steady(current_per_day, range(7)) | steady(baseline_per_day, range(7, 35))
    comp = score(mature(days=days), NOW, POLICY).component("activity")
    assert comp is not None
    assert comp.value == expected


def test_activity_explanation_states_current_baseline_and_ratio() -> None:
    h = score(mature(days=steady(1.0, range(7)) | steady(2.0, range(7, 35))), NOW, POLICY)
    assert h.current_weekly == 7.0
    assert h.baseline_weekly == 14.0
    comp = h.component("activity")
    assert comp is not None
    assert comp.explanation == "7-day activity 7.0 vs baseline 14.0/week (50%)"


@pytest.mark.parametrize(
    ("seats", "expected"),
    [
        (None, 50.0),  # 25/week vs the flat onboarding expectation of 50
        (2, 62.5),  # 25/week vs 2 seats * 20
        (1, 100.0),  # exceeds 1 seat * 20: capped
    ],
)
def test_onboarding_accounts_use_absolute_expectations(seats: int | None, expected: float) -> None:
    s = AccountState(account_id="new", first_seen_ms=NOW - 10 * DAY_MS, clock_ms=NOW, seats=seats)
    s.days = {TODAY: DayBucket(25, 25.0)}
    h = score(s, NOW, POLICY)
    assert h.onboarding
    comp = h.component("activity")
    assert comp is not None
    assert comp.value == expected


@pytest.mark.parametrize(
    ("age_days", "expected"),
    [
        (0.5, 100.0),  # active within the last day
        (1.0, 100.0),  # exactly one day ago still counts as recent
        (7.5, 50.0),  # halfway between 1 and 14 days
        (14.0, 0.0),  # zero at recency_zero_after_days
        (30.0, 0.0),  # floored at zero
    ],
)
def test_recency_falls_linearly_from_one_day_to_zero_after_days(age_days: float, expected: float) -> None:
    s = mature(last_activity_ms=NOW - int(age_days * DAY_MS))
    comp = score(s, NOW, POLICY).component("recency")
    assert comp is not None
    assert comp.value == expected


def test_utilization_counts_distinct_users_against_seats_and_is_omitted_without_seats() -> None:
    users = 0
    for u in ("ann", "bob", "cy"):
        users |= bit_for(u, USER_BITS)
    days = {TODAY: DayBucket(3, 3.0, users, 0)}
    with_seats = score(mature(days=days, seats=6), NOW, POLICY)
    comp = with_seats.component("utilization")
    assert comp is not None
    assert with_seats.active_users_7d == 3
    assert comp.value == 50.0
    without = score(mature(days=days), NOW, POLICY)
    assert without.component("utilization") is None
    assert sum(c.weight for c in without.components) == pytest.approx(1.0)


def test_breadth_counts_distinct_features_over_28_days() -> None:
    features = 0
    for f in ("export", "share", "invite", "filter", "login"):
        features |= bit_for(f, FEATURE_BITS)
    old_feature = bit_for("legacy", FEATURE_BITS)
    days = {TODAY - 3: DayBucket(5, 5.0, 0, features), TODAY - 30: DayBucket(1, 1.0, 0, old_feature)}
    h = score(mature(days=days), NOW, POLICY)
    comp = h.component("breadth")
    assert comp is not None
    assert h.features_28d == 5
    assert comp.value == 50.0


@pytest.mark.parametrize(
    ("nps", "tickets", "expected"),
    [
        (None, 0, 70.0),  # no response counts as passive
        (10, 0, 100.0),  # promoter
        (8, 0, 70.0),  # passive
        (3, 0, 20.0),  # detractor
        (9, 2, 70.0),  # promoter minus 15 per open ticket
        (3, 5, 0.0),  # floored at zero
        (None, -1, 70.0),  # a close that arrived before its open never adds credit
    ],
)
def test_sentiment_uses_nps_and_open_tickets(nps: int | None, tickets: int, expected: float) -> None:
    comp = score(mature(nps_score=nps, open_tickets=tickets), NOW, POLICY).component("sentiment")
    assert comp is not None
    assert comp.value == expected


def test_score_is_the_renormalised_weighted_mean_and_contributions_add_up() -> None:
    s = mature(days=steady(2.0, range(35)), last_activity_ms=NOW, nps_score=10)
    h = score(s, NOW, POLICY)
    assert h.score == round(sum(c.contribution for c in h.components))
    assert h.band == band_for(h.score, POLICY)


@pytest.mark.parametrize(
    ("value", "band"),
    [(100, "good"), (70, "good"), (69, "average"), (40, "average"), (39, "poor"), (0, "poor")],  # edges
)
def test_bands_follow_thresholds(value: int, band: str) -> None:
    assert band_for(value, POLICY) == band


bucket_st = st.builds(
    DayBucket,
    st.integers(0, 10_000),
    st.floats(-1e6, 1e6),
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**64 - 1),
)


@given(
    days=st.dictionaries(st.integers(TODAY - 40, TODAY + 2), bucket_st, max_size=40),
    seats=st.none() | st.integers(0, 10_000),
    nps=st.none() | st.integers(0, 10),
    tickets=st.integers(-5, 50),
    last=st.none() | st.integers(NOW - 100 * DAY_MS, NOW + DAY_MS),
    first=st.integers(NOW - 400 * DAY_MS, NOW),
)
def test_score_is_always_between_0_and_100(
    days: dict[int, DayBucket], seats: int | None, nps: int | None, tickets: int, last: int | None, first: int
) -> None:
    s = AccountState(
        "acme", first, NOW, last_activity_ms=last, days=days, seats=seats, nps_score=nps, open_tickets=tickets
    )
    h = score(s, NOW, POLICY)
    assert 0 <= h.score <= 100
    assert all(0 <= c.value <= 100 for c in h.components)


def _health(score_: int, **values: float) -> Health:
    base = score(mature(days=steady(2.0, range(35)), last_activity_ms=NOW), NOW, POLICY)
    comps = tuple(replace(c, value=values.get(c.name, c.value)) for c in base.components)
    return replace(base, score=score_, band=band_for(score_, POLICY), components=comps)


@pytest.mark.parametrize(
    ("prev", "new", "material"),
    [
        (None, _health(50), True),  # first publication
        (_health(50), _health(51), False),  # small wobble
        (_health(50), _health(52), True),  # score moved by the material delta
        (_health(70), _health(69), True),  # band changed by one point
        (_health(50, recency=60.0), _health(50, recency=65.0), True),  # a component moved 5 points
        (_health(50, recency=60.0), _health(50, recency=64.0), False),  # component moved less
    ],
)
def test_material_change_detection(prev: Health | None, new: Health, material: bool) -> None:
    assert health_changed_materially(prev, new, POLICY) is material
