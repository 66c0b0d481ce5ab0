"""Lifecycle status and active days of an account on a UTC day, with the time given."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.engine import record_event
from streamer.core.events import EventKind, UsageEvent
from streamer.core.lifecycle import Lifecycle, LifecycleStatus, lifecycle
from streamer.core.policy import DAY_MS, Policy
from streamer.core.state import AccountState, DayBucket, TopUser

POLICY = Policy()
TODAY = int(datetime(2026, 3, 11, tzinfo=UTC).timestamp() * 1000) // DAY_MS
NOON = TODAY * DAY_MS + DAY_MS // 2
NEW, RETURNING, RESURRECTING, DORMANT = (
    LifecycleStatus.NEW,
    LifecycleStatus.RETURNING,
    LifecycleStatus.RESURRECTING,
    LifecycleStatus.DORMANT,
)


def state(active: list[int], first_seen: int | None = None) -> AccountState:
    """An account active on the days ``active`` (offsets from today), first seen on ``first_seen``
    (an offset; the first active day when None)."""
    first = first_seen if first_seen is not None else min(active, default=0)
    s = AccountState("acme", first_seen_ms=(TODAY + first) * DAY_MS, clock_ms=NOON)
    s.days = {TODAY + d: DayBucket(1, 1.0, 1, 1) for d in active}
    return s


@pytest.mark.parametrize(
    ("active", "first_seen", "expected"),
    [
        # first active day ever: new
        ([0], None, Lifecycle(NEW, 1, 1)),
        # active today and yesterday
        ([0, -1], None, Lifecycle(RETURNING, 2, 2)),
        # first active yesterday, again today: returning, not new
        ([-1, 0], -1, Lifecycle(RETURNING, 2, 2)),
        # a gap of one day
        ([0, -2], None, Lifecycle(RESURRECTING, 2, 2)),
        # active yesterday only
        ([-1], None, Lifecycle(DORMANT, 1, 1)),
        # active the day before yesterday only: no status
        ([-2], None, Lifecycle(None, 1, 1)),
        # never active, seen by a fact three days ago
        ([], -3, Lifecycle(None, 0, 0)),
        # first seen by a fact ten days ago, first active today: facts are not activity
        ([0], -10, Lifecycle(NEW, 1, 1)),
        # every one of the last 7 days
        ([0, -1, -2, -3, -4, -5, -6], None, Lifecycle(RETURNING, 7, 7)),
        # 7 days ago is outside the 7 days (today is the 7th), inside the 28
        ([-7], None, Lifecycle(None, 0, 1)),
        # 6 days ago is the first of the 7
        ([-6], None, Lifecycle(None, 1, 1)),
        # 27 days ago is the first of the 28, 28 days ago outside it
        ([-27, -28], None, Lifecycle(None, 0, 1)),
        # every one of the last 28 days, and the day before them
        (list(range(-28, 1)), None, Lifecycle(RETURNING, 7, 28)),
        # back after 5 weeks away
        ([0, -35], None, Lifecycle(RESURRECTING, 1, 1)),
        # dormant after a long streak
        (list(range(-20, 0)), None, Lifecycle(DORMANT, 6, 20)),
    ],
)
def test_lifecycle_of_a_day(active: list[int], first_seen: int | None, expected: Lifecycle) -> None:
    assert lifecycle(state(active, first_seen), NOON, POLICY) == expected


def test_the_day_is_the_utc_day_of_the_time_given() -> None:
    s = state([0])
    assert lifecycle(s, TODAY * DAY_MS, POLICY) == Lifecycle(NEW, 1, 1)  # midnight opens the day
    assert lifecycle(s, (TODAY + 1) * DAY_MS - 1, POLICY) == Lifecycle(NEW, 1, 1)  # its last ms
    assert lifecycle(s, (TODAY + 1) * DAY_MS, POLICY) == Lifecycle(DORMANT, 1, 1)  # the next day
    assert lifecycle(s, (TODAY + 2) * DAY_MS, POLICY) == Lifecycle(None, 1, 1)
    assert lifecycle(s, (TODAY + 7) * DAY_MS, POLICY) == Lifecycle(None, 0, 1)
    assert lifecycle(s, TODAY * DAY_MS - 1, POLICY) == Lifecycle(None, 0, 0)  # the day before


def test_a_bucket_of_a_fact_with_a_reserved_weight_is_not_an_active_day() -> None:
    s = state([-1])
    s.days[TODAY] = DayBucket(0, -5.0, 0, 0)
    assert lifecycle(s, NOON, POLICY) == Lifecycle(DORMANT, 1, 1)


def test_active_days_of_28_are_unknown_when_the_window_keeps_fewer_days() -> None:
    short = Policy(window_days=27, baseline_days=14, drop_window_days=7, drop_baseline_days=14)
    assert lifecycle(state([0, -1]), NOON, short) == Lifecycle(RETURNING, 2, None)
    exact = Policy(window_days=28, baseline_days=14, drop_window_days=7, drop_baseline_days=14)
    assert lifecycle(state([0, -1, -27]), NOON, exact) == Lifecycle(RETURNING, 2, 3)


def test_activity_remembered_in_a_weekly_total_makes_an_account_resurrecting() -> None:
    s = state([0], first_seen=-100)
    s.history, s.history_through = [(TODAY // 7 - 9, 0.0, 7), (TODAY // 7 - 8, 2.0, 7)], TODAY // 7 - 8
    assert lifecycle(s, NOON, POLICY).status is RESURRECTING
    s.history = [(TODAY // 7 - 9, 0.0, 7), (TODAY // 7 - 8, 0.0, 7)]
    # first seen before the 8 weeks of totals, an empty top-users list: no user was ever active
    assert lifecycle(s, NOON, POLICY).status is NEW


def test_a_top_user_first_active_before_today_makes_an_account_resurrecting() -> None:
    s = state([0], first_seen=-200)
    s.history_through = TODAY // 7 - 8
    s.top_users = [TopUser(1, 1.0, TODAY - 150, TODAY - 150), TopUser(2, 1.0, TODAY, TODAY)]
    assert lifecycle(s, NOON, POLICY).status is RESURRECTING


def test_an_account_known_longer_than_remembered_with_a_full_top_users_list_is_resurrecting() -> None:
    s = state([0], first_seen=-200)
    s.history_through = TODAY // 7 - 8
    s.top_users = [TopUser(u, 1.0, TODAY, TODAY) for u in range(5)]
    assert lifecycle(s, NOON, POLICY).status is RESURRECTING
    s.top_users.pop()  # not full: every identified user ever active is in it, all first active today
    assert lifecycle(s, NOON, POLICY).status is NEW
    s.first_seen_ms = (TODAY - 60) * DAY_MS  # within the weekly totals: nothing forgotten
    s.top_users = [TopUser(u, 1.0, TODAY, TODAY) for u in range(5)]
    assert lifecycle(s, NOON, POLICY).status is NEW


def _event(i: int, at_ms: int, kind: EventKind = EventKind.ACTIVITY, user: str | None = "u1") -> UsageEvent:
    props = {"plan": "pro"} if kind is EventKind.ACCOUNT_UPDATED else {}
    return UsageEvent(f"e{i}", "acme", kind.value, at_ms, user, props, True, kind)


def _fed(*events: UsageEvent) -> AccountState:
    s: AccountState | None = None
    for e in events:
        s, _, _ = record_event(s, e, POLICY)
    assert s is not None
    return s


def test_an_account_told_by_a_fact_long_before_its_first_activity_is_new() -> None:
    s = _fed(_event(0, NOON - 200 * DAY_MS, EventKind.ACCOUNT_UPDATED), _event(1, NOON))
    assert s.history_through is not None  # the engine pruned: the account's first day is forgotten
    assert lifecycle(s, NOON, POLICY) == Lifecycle(NEW, 1, 1)


def test_an_account_back_after_more_than_the_state_remembers_is_resurrecting() -> None:
    s = _fed(_event(0, NOON - 200 * DAY_MS), _event(1, NOON))
    assert [d - TODAY for d in s.days] == [0]
    assert lifecycle(s, NOON, POLICY) == Lifecycle(RESURRECTING, 1, 1)


def test_anonymous_activity_pruned_long_ago_is_not_remembered() -> None:
    s = _fed(_event(0, NOON - 200 * DAY_MS, user=None), _event(1, NOON, user=None))
    assert lifecycle(s, NOON, POLICY) == Lifecycle(NEW, 1, 1)  # the documented limit


def _by_definition(active: set[int], window_days: int) -> Lifecycle:
    """The lifecycle of today (offset 0) read off the definitions, for an account remembered whole."""
    today, yesterday, earlier = 0 in active, -1 in active, any(d < -1 for d in active)
    if today and yesterday:
        status: LifecycleStatus | None = RETURNING
    elif today:
        status = RESURRECTING if earlier else NEW
    else:
        status = DORMANT if yesterday else None
    days_28 = sum(1 for d in active if -28 < d <= 0) if window_days >= 28 else None
    return Lifecycle(status, sum(1 for d in active if -7 < d <= 0), days_28)


@settings(max_examples=300, deadline=None)
@given(
    active=st.sets(st.integers(-35, 0)),
    facts_only=st.sets(st.integers(-35, 0)),
    window_days=st.sampled_from([22, 28, 36]),
)
def test_lifecycle_agrees_with_its_definition(
    active: set[int], facts_only: set[int], window_days: int
) -> None:
    policy = Policy(window_days=window_days, baseline_days=14, drop_window_days=7, drop_baseline_days=14)
    s = state(sorted(active), first_seen=min(active | facts_only, default=0))
    for d in facts_only - active:
        s.days[TODAY + d] = DayBucket(0, 2.0, 0, 0)  # a fact's reserved weight: not activity
    assert lifecycle(s, NOON, policy) == _by_definition(active, window_days)
