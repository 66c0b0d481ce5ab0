"""Explainable health: components, renormalisation, bands and material change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.policy import DAY_MS, Policy
from streamer.core.rhythm import weekday
from streamer.core.scoring import Health, band_for, health_changed_materially, score
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, DayBucket, bit_for, estimate_distinct

POLICY = Policy()
NOW = int(datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp() * 1000)
TODAY = NOW // DAY_MS
OLD = NOW - 200 * DAY_MS  # first seen long ago: not onboarding


USERS = ("user-0", "user-1", "user-2", "user-3", "user-4", "user-5", "user-7", "user-8")  # distinct bits
FEATURES = ("login", "export", "share", "invite", "filter", "upload")  # distinct bits
ONE = estimate_distinct(1, USER_BITS)  # user-days of a day with one user (linear counting: 1.0039)
TWO = estimate_distinct(3, USER_BITS)


def mature(**kw: object) -> AccountState:
    s = AccountState(account_id="acme", first_seen_ms=OLD, clock_ms=NOW)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def users(*names: str) -> int:
    bits = 0
    for name in names:
        bits |= bit_for(name, USER_BITS)
    return bits


def features(*names: str) -> int:
    bits = 0
    for name in names:
        bits |= bit_for(name, FEATURE_BITS)
    return bits


def daily(first_age: int, last_age: int, who: int, feats: int = 0) -> dict[int, DayBucket]:
    """A bucket with ``who`` active on every day from ``first_age`` to ``last_age`` days ago (inclusive)."""
    return {TODAY - a: DayBucket(3, 3.0, who, feats) for a in range(last_age, first_age + 1)}


def component(s: AccountState, name: str, policy: Policy = POLICY) -> float | None:
    c = score(s, NOW, policy).component(name)
    return None if c is None else c.value


@pytest.mark.parametrize(
    ("active_days_ago", "expected"),
    [
        # An account active every day has a usual share of 0.95 a day (capped); NOW is noon.
        (0, 100.0),  # active today
        (1, 100.0),  # yesterday: half a usual day missed, within the one-day grace
        (2, 84.4),  # 1.5 x 0.95 = 1.425 missed: exp(-(1.425 - 1) / 2.5)
        (3, 57.7),  # 2.375 missed
        (7, 12.6),  # 6.175 missed
        (20, 0.1),  # long gone (the rhythm from the days the window still holds)
    ],
)
def test_recency_counts_the_usual_active_days_missed(active_days_ago: int, expected: float) -> None:
    days = daily(35, active_days_ago, users("user-0"))
    last = (TODAY - active_days_ago) * DAY_MS + 10 * 3_600_000
    assert component(mature(days=days, last_activity_ms=last), "recency") == expected


def test_recency_of_a_twice_weekly_account_forgives_five_silent_days_a_daily_one_does_not() -> None:
    # Active on Mondays and Thursdays for four weeks, last on the Thursday five days ago (NOW is a
    # Tuesday): one usual Monday missed (share 0.92), the other days hardly count (0.03 each).
    who = users("user-0")
    twice = {d: DayBucket(2, 2.0, who, 0) for d in range(TODAY - 33, TODAY - 4) if weekday(d) in (0, 3)}
    last = max(twice) * DAY_MS + 3_600_000
    h = score(mature(days=twice, last_activity_ms=last), NOW, POLICY)
    assert h.missed_active_days == pytest.approx(1.04, abs=0.01)
    assert component(mature(days=twice, last_activity_ms=last), "recency") == 98.6
    assert component(mature(days=daily(35, 5, who), last_activity_ms=last), "recency") == 27.0


@pytest.mark.parametrize(
    ("week", "baseline", "expected"),
    [
        (users("user-0", "user-1"), users("user-0", "user-1"), 100.0),  # as usual
        (users("user-0"), users("user-0", "user-1"), 53.1),  # half: (7 x 1.0039 + 1) / (7 x 2.0157 + 1)
        (0, users("user-0", "user-1"), 6.6),  # nothing this week: 1 / 15.11
        (users("user-0", "user-1", "user-2"), users("user-0"), 100.0),  # growth is capped at 100
    ],
)
def test_activity_compares_the_last_complete_week_with_the_same_weekdays_before(
    week: int, baseline: int, expected: float
) -> None:
    days = daily(35, 8, baseline) | (daily(7, 1, week) if week else {})
    assert component(mature(days=days, last_activity_ms=NOW), "activity") == pytest.approx(expected, abs=0.2)


def test_activity_is_left_out_until_the_account_has_two_weeks_of_baseline() -> None:
    young = mature(
        days=daily(13, 0, users("user-0")), first_seen_ms=(TODAY - 13) * DAY_MS, last_activity_ms=NOW
    )
    assert component(young, "activity") is None
    h = score(young, NOW, POLICY)
    assert sum(c.weight for c in h.components) == pytest.approx(1.0)


def test_activity_measures_against_the_weekly_history_when_it_was_higher() -> None:
    # One user a day for the last five weeks, but two a day in the eight weeks before: a gradual
    # decline that the weeks just before the current one no longer show.
    s = mature(days=daily(35, 1, users("user-0")), last_activity_ms=NOW)
    s.history = [(w, 7 * TWO, 7) for w in range(8)]
    assert component(s, "activity") == pytest.approx(100 * (7 * ONE + 1) / (7 * TWO + 1), abs=0.1)
    s.history = []
    assert component(s, "activity") == 100.0


@pytest.mark.parametrize(
    ("earlier", "recent", "expected"),
    [
        (("user-0", "user-1", "user-2", "user-3"), ("user-0", "user-1", "user-2", "user-3"), 100.0),
        (
            ("user-0", "user-1", "user-2", "user-3"),
            ("user-0", "user-1"),
            59.6,
        ),  # two of four: (2 + 1) / (4 + 1)
        (("user-0", "user-1"), ("user-2", "user-3"), 33.2),  # all replaced: (0 + 1) / (2 + 1)
        (("user-0",), ("user-0", "user-1"), 100.0),  # newcomers do not lower it
    ],
)
def test_users_is_the_share_of_users_of_weeks_3_4_still_active_in_weeks_1_2(
    earlier: tuple[str, ...], recent: tuple[str, ...], expected: float
) -> None:
    days = daily(28, 15, users(*earlier)) | daily(14, 1, users(*recent))
    assert component(mature(days=days, last_activity_ms=NOW), "users") == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize(
    ("active_days", "expected"),
    [
        (28, 100.0),  # active every day: stickiness 1, above the 0.5 target
        (14, 100.0),  # every other day: the target
        (7, 50.0),  # one day in four
        (2, 14.3),  # thinly used, whatever its own past says
    ],
)
def test_stickiness_is_days_active_per_user_against_the_target(active_days: int, expected: float) -> None:
    days = {TODAY - a: DayBucket(1, 1.0, users("user-0"), 0) for a in range(1, active_days + 1)}
    assert component(mature(days=days, last_activity_ms=NOW), "stickiness") == pytest.approx(
        expected, abs=0.2
    )


def test_stickiness_leaves_excluded_days_out_and_users_count_on_every_day() -> None:
    # Active on 14 of the last 28 days; 7 of the inactive days are holidays.
    days = {TODAY - a: DayBucket(1, 1.0, users("user-0"), 0) for a in range(1, 15)}
    holidays = frozenset(TODAY - a for a in range(15, 22))
    policy = replace(POLICY, holiday_days=holidays)
    s = mature(days=days, last_activity_ms=NOW)
    assert component(s, "stickiness", policy) == 100.0  # 14 active of 21 counted days
    assert component(s, "stickiness") == 100.0  # 14 of 28: exactly the target
    days[TODAY - 20] = DayBucket(1, 1.0, users("user-1"), 0)  # a user seen only on a holiday still counts
    assert score(mature(days=days, last_activity_ms=NOW), NOW, policy).active_users_28d == 2


def test_utilization_is_users_of_28_days_against_seats_and_is_omitted_without_seats() -> None:
    days = daily(20, 1, users("user-0", "user-1", "user-2"))
    # 3.04 users (linear counting) of 6 seats is 51%, against the 0.8 target
    assert component(mature(days=days, seats=6, last_activity_ms=NOW), "utilization") == 63.2
    assert component(mature(days=days, last_activity_ms=NOW), "utilization") is None


@pytest.mark.parametrize(
    ("earlier", "recent", "expected"),
    [
        (FEATURES[:4], FEATURES[:4], 100.0),  # the same features
        (FEATURES[:4], FEATURES[:2], 60.0),  # narrowing: (2 + 1) / (4 + 1)
        (FEATURES[:2], FEATURES, 100.0),  # widening is capped
    ],
)
def test_breadth_compares_the_features_of_the_last_14_days_with_the_14_before(
    earlier: tuple[str, ...], recent: tuple[str, ...], expected: float
) -> None:
    who = users("user-0")
    days = daily(28, 15, who, features(*earlier)) | daily(14, 1, who, features(*recent))
    assert component(mature(days=days, last_activity_ms=NOW), "breadth") == pytest.approx(expected, abs=1.5)


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
    assert component(mature(nps_score=nps, open_tickets=tickets), "sentiment") == expected


def test_score_is_the_weighted_geometric_mean_and_contributions_add_up() -> None:
    days = daily(35, 0, users("user-0", "user-1"), features("login", "export"))
    h = score(mature(days=days, last_activity_ms=NOW, nps_score=10, seats=4), NOW, POLICY)
    assert [c.name for c in h.components] == [
        "recency",
        "activity",
        "users",
        "stickiness",
        "utilization",
        "breadth",
        "sentiment",
    ]
    # 100 everywhere but utilization: 2.02 users of 4 seats against 0.8 is 63.0 (weight 0.2), so
    # 100 x 0.63 ^ 0.2; utilization alone costs the 8.8 points.
    assert h.score == round(sum(c.contribution for c in h.components)) == 91
    assert [c.contribution for c in h.components if c.name == "utilization"] == [11.2]


def test_one_failing_component_holds_the_score_back() -> None:
    # Steady and recent, but 1 user on 200 seats: the arithmetic mean would say 80, the health is poor.
    days = daily(35, 0, users("user-0"), features("login"))
    h = score(mature(days=days, last_activity_ms=NOW, seats=200), NOW, POLICY)
    assert h.component("utilization") is not None and h.component("utilization").value == 0.6  # type: ignore[union-attr]
    assert (h.score, h.band) == (39, "poor")


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
    base = score(mature(days=daily(35, 0, users("user-0")), last_activity_ms=NOW), NOW, POLICY)
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
