"""An account's usual week: weekday shares, missed active days, the drop test."""

from __future__ import annotations

import math

import pytest

from streamer.core.rhythm import (
    Rhythm,
    at_level,
    drop_stat,
    missed_active_days,
    poisson_cdf,
    rhythm,
    time_of_missed,
    weekday,
)

DAY = 86_400_000
MONDAY = 20_458  # 2026-01-05


def test_weekday_counts_from_monday() -> None:
    assert [weekday(MONDAY + i) for i in range(8)] == [0, 1, 2, 3, 4, 5, 6, 0]


@pytest.mark.parametrize(
    ("active", "weekday_share", "other_share"),
    [
        # Every weekday active for four weeks, weekends never: the shares of a working team.
        ({d for d in range(MONDAY, MONDAY + 28) if weekday(d) < 5}, 0.95, 0.08),
        # Mondays only: a weekly check-in.
        ({d for d in range(MONDAY, MONDAY + 28) if weekday(d) == 0}, 0.91, 0.02),
        # Nothing: nothing is usual, but never quite zero.
        (set(), 0.0, 0.0),
    ],
)
def test_weekday_shares_come_with_a_prior_of_half_a_day(
    active: set[int], weekday_share: float, other_share: float
) -> None:
    r = rhythm(dict.fromkeys(active, 1.0), MONDAY, MONDAY + 27, frozenset(), MONDAY)
    assert r.days == 28 and r.active_days == len(active)
    assert r.share[0] == pytest.approx(weekday_share, abs=0.01)
    assert r.share[6] == pytest.approx(other_share, abs=0.01)


def test_excluded_days_and_days_before_the_account_are_left_out() -> None:
    units = dict.fromkeys(range(MONDAY, MONDAY + 28), 2.0)
    r = rhythm(units, MONDAY - 7, MONDAY + 27, frozenset({MONDAY, MONDAY + 1}), since=MONDAY)
    assert (r.days, r.active_days, r.total) == (26, 26, 52.0)
    assert r.mean == (2.0,) * 7 and r.dispersion == 1.0


def test_dispersion_is_the_residual_variance_over_the_mean_with_weekday_means_fitted() -> None:
    # 0 or 4 user-days on alternate weeks of the same weekday: mean 2, variance 28 * 4 / 21 = 5.33.
    units = {d: (4.0 if (d - MONDAY) // 7 % 2 else 0.0) for d in range(MONDAY, MONDAY + 28)}
    r = rhythm(units, MONDAY, MONDAY + 27, frozenset(), MONDAY)
    assert r.dispersion == pytest.approx(28 * 4 / 21 / 2)


@pytest.mark.parametrize(
    ("until_day", "until_hour", "expected"),
    [
        (MONDAY + 7, 0, 0.0),  # the last active day itself: nothing missed
        (MONDAY + 8, 12, 0.475),  # half of the next (usual) day
        (MONDAY + 12, 0, 3.8),  # Tuesday to Friday: four usual days
        (MONDAY + 14, 0, 3.8 + 2 * 0.0785),  # a weekend adds little
        (MONDAY + 15, 0, 3.8 + 2 * 0.0785 + 0.95),  # a Monday adds a usual day
    ],
)
def test_missed_active_days_sum_the_usual_shares_of_the_silent_days(
    until_day: int, until_hour: int, expected: float
) -> None:
    team = {d: 1.0 for d in range(MONDAY - 28, MONDAY + 8) if weekday(d) < 5}
    r = rhythm(team, MONDAY - 20, MONDAY + 7, frozenset(), MONDAY - 28)
    missed = missed_active_days(r, MONDAY + 7, until_day * DAY + until_hour * 3_600_000, frozenset())
    assert missed == pytest.approx(expected, abs=0.02)


def test_the_time_of_missed_days_skips_excluded_days_and_stops_at_the_limit() -> None:
    r = Rhythm(28, 20, (0.95,) * 5 + (0.1,) * 2, (1.0,) * 7, 1.0, 20.0)
    # From a Monday: Tuesday .. Friday are 3.8 usual days, the 5th is reached on the next Monday.
    t = time_of_missed(r, MONDAY, 5.0, frozenset(), limit_ms=(MONDAY + 60) * DAY)
    assert t == (MONDAY + 7) * DAY + int((5.0 - 4.0) / 0.95 * DAY)
    # The Wednesday a holiday: one day later.
    assert time_of_missed(r, MONDAY, 5.0, frozenset({MONDAY + 2}), limit_ms=(MONDAY + 60) * DAY) == t + DAY
    assert time_of_missed(r, MONDAY, 5.0, frozenset(), limit_ms=(MONDAY + 3) * DAY) == (MONDAY + 3) * DAY


@pytest.mark.parametrize(
    ("k", "lam", "expected"),
    [
        (0, 1.0, math.exp(-1)),  # P(X = 0)
        (3, 10.0, 0.010336),
        (10, 10.0, 0.583040),
        (50, 100.0, 2.4016e-08),
        (1000, 1100.0, 0.0011752),  # large counts, the continued fraction
        (0.5, 2.3, 0.203542),  # continuous in k (a quasi-Poisson count divided by its dispersion)
        (5, 0.0, 1.0),  # nothing expected: nothing is unlikely
    ],
)
def test_poisson_cdf_matches_the_reference_values(k: float, lam: float, expected: float) -> None:
    assert poisson_cdf(k, lam) == pytest.approx(expected, rel=1e-4)


def test_the_drop_test_widens_for_a_baseline_it_estimated_and_for_its_dispersion() -> None:
    base = Rhythm(21, 21, (0.95,) * 7, (4.0,) * 7, 1.0, 84.0)
    window = dict.fromkeys(range(MONDAY, MONDAY + 14), 1.0)
    stat = drop_stat(window, base, MONDAY, MONDAY + 13, frozenset())
    assert (stat.observed, stat.expected, round(stat.ratio, 2)) == (14.0, 56.0, 0.25)
    # Expectation from 84 user-days: the dispersion grows by 56 / 84.
    assert stat.p_value == pytest.approx(poisson_cdf(14 / (1 + 56 / 84), 56 / (1 + 56 / 84)))
    frozen = Rhythm(0, 0, (0.0,) * 7, (4.0,) * 7, 2.0)  # a frozen baseline: no total, its own dispersion
    assert drop_stat(window, frozen, MONDAY, MONDAY + 13, frozenset()).p_value == pytest.approx(
        poisson_cdf(7, 28)
    )
    excluded = frozenset(range(MONDAY + 7, MONDAY + 14))
    assert drop_stat(window, base, MONDAY, MONDAY + 13, excluded).expected == 28.0


def test_a_baseline_is_raised_to_the_history_level_and_never_lowered() -> None:
    recent = Rhythm(21, 21, (0.95,) * 7, (1.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0), 1.5, 21.0)
    higher = at_level(recent, 2.0, 300.0)  # the months before: 2 a day, twice this baseline's 1
    assert higher.mean == (2.0, 4.0, 4.0, 4.0, 4.0, 2.0, 0.0)  # the same weekday shape, higher
    assert (higher.total, higher.dispersion) == (300.0, 1.5)
    assert at_level(recent, 0.5, 300.0) is recent
    assert at_level(recent, None, 0.0) is recent
