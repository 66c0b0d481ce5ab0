"""Quality figures: exact values on small hand-made cases."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.backtest.metrics import AlertFact, auc, busiest_weeks, kind_quality, lift_at, week_start

DAY = 86_400_000
T0 = 1_767_571_200_000  # 2026-01-05, a Monday


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([1, 2, 3, 4], [False, False, True, True], 1.0),  # perfectly ranked
        ([4, 3, 2, 1], [False, False, True, True], 0.0),  # perfectly wrong
        ([1, 1, 1, 1], [False, True, False, True], 0.5),  # all tied: no information
        ([1, 2, 2, 3], [False, True, False, True], 0.875),  # one tie across classes counts half
        ([0.1, 0.4, 0.35, 0.8], [False, False, True, True], 0.75),  # sklearn's documented example
    ],
)
def test_auc_is_the_mann_whitney_statistic_with_ties_counted_half(
    scores: list[float], labels: list[bool], expected: float
) -> None:
    assert auc(scores, labels) == pytest.approx(expected)


def test_auc_needs_both_classes() -> None:
    assert auc([1, 2], [True, True]) is None
    assert auc([], []) is None


def test_lift_is_the_top_shares_rate_over_the_overall_rate() -> None:
    scores = list(range(100))
    labels = [s >= 95 for s in scores]  # the 5 riskiest of 100 cancel
    # The top decile (10 rows) holds all 5: a rate of 50% against 5% overall.
    assert lift_at(scores, labels) == pytest.approx(10.0)
    # Ties at the cut are taken in proportion: 20 rows tied, 2 of them positive, cut at 10 of them.
    assert lift_at([1.0] * 20, [True, True] + [False] * 18) == pytest.approx(1.0)
    assert lift_at([1, 2], [False, False]) is None


def test_kind_quality_counts_precision_on_complete_follow_up_and_recall_on_eligible_cancellations() -> None:
    first, last = T0, T0 + 200 * DAY
    cancellations = {
        "a": [T0 + 100 * DAY],  # alerted 30 days before: recalled, lead 30
        "b": [T0 + 120 * DAY],  # alerted 90 days before: too early to count
        "c": [T0 + 30 * DAY],  # less than 60 days into the history: not eligible for recall
        "d": [T0 + 150 * DAY],  # never alerted
    }
    alerts = [
        AlertFact("a", "account_quiet", T0 + 70 * DAY),
        AlertFact("a", "account_quiet", T0 + 80 * DAY),  # a second alert: lead counts from the first
        AlertFact("b", "account_quiet", T0 + 30 * DAY),
        AlertFact("e", "account_quiet", T0 + 50 * DAY),  # never cancels
        AlertFact("e", "account_quiet", T0 + 190 * DAY),  # follow-up window not complete: left out
        AlertFact("e", "account_recovered", T0 + 60 * DAY),  # recoveries never count
        AlertFact("d", "usage_drop", T0 + 140 * DAY),
    ]
    q = kind_quality(
        "account_quiet",
        alerts,
        cancellations,
        first_ms=first,
        last_ms=last,
        live_account_days=300.0,
        base_rate=0.1,
    )
    assert (q.alerts, q.followed, q.followed_by_cancel) == (5, 4, 2)
    assert q.precision == pytest.approx(0.5)
    assert q.lift_over_base == pytest.approx(5.0)
    assert (q.eligible_cancellations, q.recalled) == (3, 1)
    assert q.recall == pytest.approx(1 / 3)
    assert q.median_lead_days == pytest.approx(30.0)
    assert q.per_100_accounts_month == pytest.approx(100 * 5 / 10)
    pooled = kind_quality(
        "any", alerts, cancellations, first_ms=first, last_ms=last, live_account_days=300.0, base_rate=0.1
    )
    assert (pooled.alerts, pooled.recalled, pooled.median_lead_days) == (6, 2, 20.0)


def test_busiest_weeks_are_whole_weeks_against_the_median_week() -> None:
    alerts = [AlertFact("a", "usage_drop", T0 + d * DAY) for d in (0, 1, 7, 8, 9, 10, 14, 21)]
    alerts.append(AlertFact("a", "account_recovered", T0 + 8 * DAY))
    median, weeks = busiest_weeks(alerts, T0 + 12 * 3_600_000, T0 + 28 * DAY)
    # Whole weeks: from the first Monday after the start (Jan 12) to the last one ending by the end.
    assert median == 1
    assert weeks[0] == ("2026-01-12", 4, 4.0)
    assert [w for w, _, _ in weeks] == ["2026-01-12", "2026-01-19", "2026-01-26"]
    assert week_start(T0 + 6 * DAY) == "2026-01-05"


def test_missed_milestones_are_warnings_and_onboarding_progress_is_not() -> None:
    cancellations = {"a": [T0 + 100 * DAY]}
    alerts = [
        AlertFact("a", "milestone_missed", T0 + 80 * DAY),  # followed by the cancellation, 20 days ahead
        AlertFact("a", "milestone_reached", T0 + 70 * DAY),  # good news: never a warning
        AlertFact("b", "onboarding_complete", T0 + 70 * DAY),
    ]
    args: dict[str, Any] = {
        "first_ms": T0,
        "last_ms": T0 + 200 * DAY,
        "live_account_days": 300.0,
        "base_rate": 0.1,
    }
    missed = kind_quality("milestone_missed", alerts, cancellations, **args)
    assert (missed.alerts, missed.followed_by_cancel, missed.recalled, missed.median_lead_days) == (
        1,
        1,
        1,
        20.0,
    )
    pooled = kind_quality("any", alerts, cancellations, **args)
    assert (pooled.alerts, pooled.median_lead_days) == (1, 20.0)
    assert busiest_weeks(alerts[1:], T0, T0 + 28 * DAY)[0] == 0
