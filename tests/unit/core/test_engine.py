"""Engine facade: outcomes, alert episodes, the clock and determinism."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.alerts import Alert, alert_to_dict, health_to_dict, ms_to_rfc3339
from streamer.core.engine import (
    Outcome,
    advance,
    evaluate,
    mark_published,
    next_due_ms,
    record_event,
    snapshot_behind,
)
from streamer.core.events import EventKind, UsageEvent
from streamer.core.partition import EMPTY_CONTEXT
from streamer.core.policy import DAY_MS, Policy
from streamer.core.state import AccountState, decode_state, encode_state, event_id_hash, id_ring

POLICY = Policy()
START = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000


def act(at_ms: int, i: int | str, name: str = "view", user: str = "u1") -> UsageEvent:
    return UsageEvent(f"e-{i}-{at_ms}", "acme", name, at_ms, user, {}, True, EventKind.ACTIVITY)


def fact(at_ms: int, kind: EventKind, name: str | None = None, **props: Any) -> UsageEvent:
    return UsageEvent(f"f-{kind}-{at_ms}", "acme", name or kind.value, at_ms, None, props, True, kind)


def feed(
    state: AccountState | None,
    events: Iterable[UsageEvent],
    policy: Policy = POLICY,
) -> tuple[AccountState, list[Alert]]:
    alerts: list[Alert] = []
    for e in events:
        state, _, new = record_event(state, e, policy)
        alerts.extend(new)
    assert state is not None
    return state, alerts


def daily(first_day: int, last_day: int, per_day: int) -> list[UsageEvent]:
    """``per_day`` events at 10:00+i minutes on each day offset from START (inclusive)."""
    return [
        act(START + d * DAY_MS + 10 * HOUR + i * 60_000, i)
        for d in range(first_day, last_day + 1)
        for i in range(per_day)
    ]


def kinds(alerts: list[Alert]) -> list[str]:
    return [a.kind for a in alerts]


def only(kind: str, alerts: list[Alert]) -> list[Alert]:
    # Small synthetic accounts also drift into a poor band; most tests look at one rule.
    return [a for a in alerts if a.kind == kind]


# --- outcomes -------------------------------------------------------------------------


def test_first_event_creates_state_with_first_seen_at_event_time() -> None:
    s, outcome, alerts = record_event(None, act(START, 1), POLICY)
    assert (s.account_id, s.first_seen_ms, s.clock_ms, s.last_activity_ms) == ("acme", START, START, START)
    assert outcome is Outcome.COUNTED
    assert alerts == []


def test_duplicate_event_is_reported_and_changes_nothing() -> None:
    s, _, _ = record_event(None, act(START, 1), POLICY)
    before = encode_state(s)
    s, outcome, alerts = record_event(s, act(START, 1), POLICY)
    assert outcome is Outcome.DUPLICATE
    assert (encode_state(s), alerts) == (before, [])


def test_dedup_ring_keeps_only_the_most_recent_ids() -> None:
    policy = Policy(max_tracked_ids=3)
    s, _ = feed(None, [act(START + i, i) for i in range(5)], policy)
    assert s.recent_ids == id_ring(event_id_hash(f"e-{i}-{START + i}") for i in (2, 3, 4))
    _, outcome, _ = record_event(s, act(START, 0), policy)
    assert outcome is Outcome.COUNTED  # forgotten id: counted again


def test_inactive_activity_is_not_counted() -> None:
    s, _, _ = record_event(None, act(START, 1), POLICY)
    e = UsageEvent("x", "acme", "ping", START + 1, None, {}, False, EventKind.ACTIVITY)
    s, outcome, _ = record_event(s, e, POLICY)
    assert outcome is Outcome.INACTIVE
    assert s.days[START // DAY_MS].events == 1


def test_events_older_than_the_window_are_late_and_not_applied() -> None:
    s, _, _ = record_event(None, act(START + 40 * DAY_MS, 1), POLICY)
    before = encode_state(s)
    s, outcome, alerts = record_event(s, act(START, 2), POLICY)
    assert outcome is Outcome.LATE
    assert (encode_state(s), alerts) == (before, [])


def test_event_for_another_account_is_rejected() -> None:
    s, _, _ = record_event(None, act(START, 1), POLICY)
    other = UsageEvent("z", "globex", "view", START, None, {}, True, EventKind.ACTIVITY)
    with pytest.raises(ValueError, match="globex"):
        record_event(s, other, POLICY)


def test_facts_keep_the_newest_value_per_field_regardless_of_arrival_order() -> None:
    s, _ = feed(
        None,
        [
            fact(START + 2 * HOUR, EventKind.ACCOUNT_UPDATED, seats=10),
            fact(START + 1 * HOUR, EventKind.ACCOUNT_UPDATED, seats=5, plan="pro"),  # older: plan only is new
            fact(START + 3 * HOUR, EventKind.SUBSCRIPTION_STARTED),
            fact(START + 1 * HOUR, EventKind.SUPPORT_TICKET_CLOSED),
            fact(START + 2 * HOUR, EventKind.SUPPORT_TICKET_OPENED),
        ],
    )
    assert (s.seats, s.plan, s.subscription, s.open_tickets) == (10, "pro", "active", 0)


def test_revenue_facts_arr_from_mrr_currency_upper_cased_and_renewal_date_at_utc_midnight() -> None:
    s, _ = feed(
        None,
        [
            fact(START, EventKind.ACCOUNT_UPDATED, mrr=1250.5, currency="eur", renewal_at="2026-03-01"),
            fact(START + HOUR, EventKind.ACCOUNT_UPDATED, contract="annual, net 30"),
        ],
    )
    renewal = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert (s.arr, s.currency, s.renewal_ms, s.contract) == (15006.0, "EUR", renewal, "annual, net 30")


def test_arr_wins_over_mrr_and_older_revenue_facts_never_win() -> None:
    s, _ = feed(
        None,
        [
            fact(START + 2 * HOUR, EventKind.ACCOUNT_UPDATED, arr=50_000, mrr=1),
            fact(START + HOUR, EventKind.ACCOUNT_UPDATED, arr=10, currency="USD"),  # older: currency only
            fact(START + 3 * HOUR, EventKind.ACCOUNT_UPDATED, renewal_at="2026-06-30T12:00:00+02:00"),
        ],
    )
    renewal = int(datetime(2026, 6, 30, 10, tzinfo=UTC).timestamp() * 1000)
    assert (s.arr, s.currency, s.renewal_ms) == (50_000.0, "USD", renewal)


def test_reserved_events_only_add_weight_when_listed() -> None:
    policy = Policy(event_weights={"support_ticket_opened": -5.0})
    s, _ = feed(
        None,
        [
            act(START, 1),
            fact(START + 1, EventKind.SUPPORT_TICKET_OPENED),
            fact(START + 2, EventKind.SUBSCRIPTION_STARTED),
        ],
        policy,
    )
    bucket = s.days[START // DAY_MS]
    assert (bucket.events, bucket.weight) == (1, -4.0)


# --- quiet ------------------------------------------------------------------------------


def test_account_is_quiet_after_threshold_without_events() -> None:
    s, _ = feed(None, daily(0, 2, 3))
    last = s.last_activity_ms
    assert last is not None
    deadline = last + POLICY.quiet_after_ms
    assert only("account_quiet", advance(s, deadline - 1, POLICY)) == []
    alerts = only("account_quiet", advance(s, deadline + 5 * DAY_MS, POLICY))
    assert kinds(alerts) == ["account_quiet"]
    assert alerts[0].detected_at_ms == deadline
    assert alerts[0].evidence["episode_started_ms"] == deadline


def test_quiet_alert_fires_once_per_episode() -> None:
    s, _ = feed(None, daily(0, 2, 3))
    first = only("account_quiet", advance(s, START + 20 * DAY_MS, POLICY))
    again = advance(s, START + 40 * DAY_MS, POLICY)
    _, more = evaluate(s, START + 41 * DAY_MS, POLICY)
    assert kinds(first) == ["account_quiet"]
    assert again == more == []


def test_quiet_detection_time_is_the_deadline_even_when_evaluated_late() -> None:
    s, _ = feed(None, daily(0, 0, 2))
    assert s.last_activity_ms is not None
    _, alerts = evaluate(s, START + 12 * DAY_MS, POLICY)
    deadline = s.last_activity_ms + POLICY.quiet_after_ms
    assert [a.detected_at_ms for a in only("account_quiet", alerts)] == [deadline]


def test_activity_after_quiet_closes_the_episode_with_a_recovery() -> None:
    s, _ = feed(None, daily(0, 2, 3))
    quiet = only("account_quiet", advance(s, START + 12 * DAY_MS, POLICY))
    back = START + 13 * DAY_MS + HOUR
    s, outcome, alerts = record_event(s, act(back, "back"), POLICY)
    assert outcome is Outcome.COUNTED
    assert kinds(alerts) == ["account_recovered"]
    assert alerts[0].detected_at_ms == back
    assert alerts[0].evidence["closed_episode"] == "account_quiet"
    assert alerts[0].evidence["episode_started_ms"] == quiet[0].detected_at_ms
    assert s.quiet_since_ms is None
    assert alerts[0].reason == "Active again after 10 days without activity"
    # A new episode gets a new alert once the account has missed five of its usual active days: active
    # on 4 of its 14 days, its usual week has about 2 active days, so that takes 17 days, not 7.
    assert only("account_quiet", advance(s, back + 8 * DAY_MS, POLICY)) == []
    later = only("account_quiet", advance(s, back + 30 * DAY_MS, POLICY))
    assert [(a.detected_at_ms - back) // DAY_MS for a in later] == [17]
    assert later[0].alert_id != quiet[0].alert_id


def test_cancelled_subscriptions_do_not_go_quiet() -> None:
    s, _ = feed(None, [*daily(0, 2, 3), fact(START + 3 * DAY_MS, EventKind.SUBSCRIPTION_CANCELLED)])
    assert only("account_quiet", advance(s, START + 30 * DAY_MS, POLICY)) == []


def test_quiet_needs_the_minimum_number_of_events() -> None:
    s, _ = feed(None, daily(0, 0, 2), Policy(quiet_min_baseline_events=3))
    assert only("account_quiet", advance(s, START + 30 * DAY_MS, Policy(quiet_min_baseline_events=3))) == []


# --- usage drop -------------------------------------------------------------------------

HISTORY = 120  # days of steady use so the account is no longer onboarding


def team(first_day: int, last_day: int, users: int, every: int = 1, tag: str = "") -> list[UsageEvent]:
    """One event for each of ``users`` users on every ``every``-th day from ``first_day`` to ``last_day``."""
    return [
        act(START + d * DAY_MS + 10 * HOUR + u * 60_000, f"{tag}{d}-{u}", user=f"user-{u}")
        for d in range(first_day, last_day + 1, every)
        for u in range(users)
    ]


def test_usage_drop_fires_once_when_two_weeks_of_user_days_fall_improbably_low() -> None:
    # Four users every day for HISTORY days, then one: 14 user-days against 56 expected in 14 days.
    s, alerts = feed(None, [*team(0, HISTORY - 1, 4), *team(HISTORY, HISTORY + 20, 1, tag="x")])
    drops = only("usage_drop", alerts)
    assert len(drops) == 1
    drop = drops[0]
    assert drop.detected_at_ms % DAY_MS == 0
    assert drop.evidence["episode_started_ms"] == drop.detected_at_ms == s.drop_since_ms
    detail = drop.evidence["drop"]
    assert detail["observed"] / detail["expected"] <= POLICY.drop_ratio
    assert detail["p_value"] < POLICY.drop_alpha
    assert drop.severity == "medium"
    assert drop.reason.startswith("Active user-days down to ")
    # Detected once the 14-day window is down to 40% of usual: 12 days into it (12 + 2 x 4 user-days
    # of 56 expected; after 11 days it is 41%).
    assert drop.detected_at_ms == START + (HISTORY + 12) * DAY_MS


DETECTED = START + (HISTORY + 12) * DAY_MS  # when the drop below is detected
RENEWAL_POLICY = Policy(renewal_raise_within_ms=60 * DAY_MS)


def _drop_with_renewal(renewal_ms: int | None, policy: Policy = RENEWAL_POLICY) -> Alert:
    facts = (
        []
        if renewal_ms is None
        else [fact(START, EventKind.ACCOUNT_UPDATED, renewal_at=ms_to_rfc3339(renewal_ms))]
    )
    _, alerts = feed(
        None, [*facts, *team(0, HISTORY - 1, 4), *team(HISTORY, HISTORY + 20, 1, tag="x")], policy
    )
    [drop] = only("usage_drop", alerts)
    assert drop.detected_at_ms == DETECTED
    return drop


def test_an_alert_detected_within_the_renewal_window_is_one_severity_higher_and_says_why() -> None:
    renewal = DETECTED + 23 * DAY_MS + HOUR
    drop = _drop_with_renewal(renewal)
    assert drop.severity == "high"
    assert drop.reason.startswith("Active user-days down to ")
    assert drop.reason.endswith("; renewal in 23 days")
    assert drop.evidence["renewal"] == {
        "renewal_ms": renewal,
        "days": 23,
        "raised_from": "medium",
        "why": "renewal in 23 days, within 60 days: medium raised to high",
    }
    assert alert_to_dict(drop)["evidence"]["renewal"]["renewal_at"] == ms_to_rfc3339(renewal)


@pytest.mark.parametrize(
    ("renewal_ms", "policy"),
    [
        (DETECTED + 60 * DAY_MS + 1, RENEWAL_POLICY),  # one ms beyond the window
        (DETECTED - 1, RENEWAL_POLICY),  # renewed the moment before: past
        (None, RENEWAL_POLICY),  # no renewal known
        (DETECTED + DAY_MS, POLICY),  # the rule is off by default
    ],
)
def test_an_alert_outside_the_renewal_window_keeps_its_severity(
    renewal_ms: int | None, policy: Policy
) -> None:
    drop = _drop_with_renewal(renewal_ms, policy)
    assert drop.severity == "medium"
    assert "renewal" not in drop.evidence


def test_the_renewal_window_ends_on_the_renewal_instant() -> None:
    drop = _drop_with_renewal(DETECTED + 60 * DAY_MS)  # exactly 60 days: within
    assert (drop.severity, drop.evidence["renewal"]["days"]) == ("high", 60)
    drop = _drop_with_renewal(DETECTED)  # renewing the instant it is detected
    assert (drop.severity, drop.reason.endswith("; renewal in 0 days")) == ("high", True)


def test_fewer_events_from_the_same_users_are_no_drop() -> None:
    # Ten events a day from the same user, then two: the same user-days.
    _, alerts = feed(None, [*daily(0, HISTORY - 1, 10), *daily(HISTORY, HISTORY + 20, 2)])
    assert "usage_drop" not in kinds(alerts)


def test_usage_drop_needs_a_baseline_of_enough_user_days() -> None:
    # One user every third day is 2.3 user-days a week, below drop_min_weekly_user_days (3).
    s, alerts = feed(None, team(0, HISTORY - 1, 1, every=3))
    alerts += advance(s, START + (HISTORY + 20) * DAY_MS, POLICY)
    assert "usage_drop" not in kinds(alerts)


def test_a_gradual_decline_is_measured_against_the_weekly_history() -> None:
    # Eight users a day, then one user less every week: the weeks just before any window have already
    # declined, but the account's history of the months before has not.
    events = team(0, 59, 8)
    for week in range(6):
        events += team(60 + 7 * week, 66 + 7 * week, 7 - week, tag=f"w{week}")
    s, alerts = feed(None, events)
    drops = only("usage_drop", alerts)
    # On day 100 the last 14 days held 2 x 4 + 7 x 3 + 5 x 2 user-days, 35% of the eight users a day of
    # the history; the 21 days before the window (7, 6 and 5 users a day) would have expected far less.
    assert [(a.detected_at_ms - START) // DAY_MS for a in drops] == [100]
    assert s.history and all(days == 7 for _, _, days in s.history)


def test_usage_recovery_closes_the_drop_episode_at_the_recover_ratio_of_the_frozen_baseline() -> None:
    s, alerts = feed(None, [*team(0, HISTORY - 1, 4), *team(HISTORY, HISTORY + 13, 1, tag="x")])
    assert s.drop_since_ms is not None
    s, more = feed(s, team(HISTORY + 14, HISTORY + 16, 4, tag="y"))
    assert only("account_recovered", more) == []  # a few good days are not a good week
    s, more = feed(s, team(HISTORY + 17, HISTORY + 22, 4, tag="z"))
    recovered = only("account_recovered", more)
    assert len(recovered) == 1
    assert recovered[0].evidence["closed_episode"] == "usage_drop"
    assert recovered[0].reason.startswith("Active users are back to ")
    assert s.drop_since_ms is None and s.drop_base == ()


# --- health degraded --------------------------------------------------------------------


def test_health_degraded_fires_after_a_day_in_the_poor_band_and_closes_after_two_good_weeks() -> None:
    # A team of six on 20 seats: then only one of them, every other day. Drops are switched off: the
    # drop would be raised first, and health_degraded not for the same story.
    policy = Policy(drop_min_weekly_user_days=10_000)
    base = [fact(START, EventKind.ACCOUNT_UPDATED, seats=20), *team(0, HISTORY - 1, 6)]
    s, _ = feed(None, base, policy)
    assert evaluate(s, START + HISTORY * DAY_MS, policy)[0].band == "good"
    s, alerts = feed(s, team(HISTORY, HISTORY + 40, 1, every=2, tag="x"), policy)
    degraded = only("health_degraded", alerts)
    assert len(degraded) == 1
    alert = degraded[0]
    assert alert.health is not None and alert.health.band == "poor"
    assert alert.detected_at_ms - alert.evidence["episode_started_ms"] == DAY_MS  # poor for a day first
    assert alert.reason.startswith(f"Health fell to {alert.health.score} (poor): ")
    assert s.poor_open
    # Back to the whole team: the episode closes silently once the score has stayed >= 60 for 14 days.
    s, back = feed(s, team(HISTORY + 41, HISTORY + 80, 6, tag="y"), policy)
    assert only("health_degraded", back) == [] and only("account_recovered", back) == []
    assert not s.poor_open


def test_a_new_account_poor_from_the_start_is_warned_about_once_after_check_days() -> None:
    start = [fact(START, EventKind.SUBSCRIPTION_STARTED), fact(START, EventKind.ACCOUNT_UPDATED, seats=100)]
    s, alerts = feed(None, [*start, *team(0, 40, 1, every=4)])
    alerts += advance(s, START + 45 * DAY_MS, POLICY)
    degraded = only("health_degraded", alerts)
    assert [(a.detected_at_ms - START) // DAY_MS for a in degraded] == [22]
    assert degraded[0].reason.startswith("Not taking off: health ")
    assert "21 days after the start" in degraded[0].reason


def test_health_degraded_is_not_raised_for_an_account_already_flagged_by_another_episode() -> None:
    base = [fact(START, EventKind.ACCOUNT_UPDATED, seats=8), *team(0, HISTORY - 1, 6)]
    s, alerts = feed(None, [*base, *team(HISTORY, HISTORY + 30, 1, tag="x")])
    assert kinds([a for a in alerts if a.kind != "account_recovered"]) == ["usage_drop"]
    assert s.drop_since_ms is not None and not s.poor_open


# --- key user -----------------------------------------------------------------------------


def champion_team(last_day_of_champion: int, until: int) -> list[UsageEvent]:
    events = [
        act(START + d * DAY_MS + 9 * HOUR, f"c{d}", user="champion")
        for d in range(0, last_day_of_champion + 1)
    ]
    for d in range(0, until + 1, 3):  # two others, every third day
        events += [act(START + d * DAY_MS + 11 * HOUR, f"o{d}-{u}", user=f"other-{u}") for u in range(2)]
    return sorted(events, key=lambda e: e.occurred_at_ms)


def test_key_user_lost_when_the_most_active_user_is_away_two_weeks_while_others_stay() -> None:
    s, alerts = feed(None, champion_team(60, 90))
    lost = only("key_user_lost", alerts)
    assert len(lost) == 1
    assert lost[0].detected_at_ms == START + 75 * DAY_MS  # 14 days after the last active day (60)
    assert lost[0].reason.startswith("Its most active user (")
    assert "has not been seen for 14 days while 2 other users stay active" in lost[0].reason
    s, _, back = record_event(s, act(START + 91 * DAY_MS, "again", user="champion"), POLICY)
    assert [(a.kind, a.evidence["closed_episode"]) for a in back] == [("account_recovered", "key_user_lost")]


def test_no_key_user_alert_when_activity_is_shared_or_everyone_stops() -> None:
    shared = team(0, 90, 3)  # three equal users: none holds 30% of the top users' weight alone ... but
    _, alerts = feed(None, shared)
    assert only("key_user_lost", alerts) == []
    s, alerts = feed(None, champion_team(60, 60))  # the others stop too: that is a quiet account
    alerts += advance(s, START + 90 * DAY_MS, POLICY)
    assert only("key_user_lost", alerts) == []


# --- late events ----------------------------------------------------------------------------


def two_users(shift_ms: int, tag: str) -> list[UsageEvent]:
    """u1 (the key user) every day of the first two weeks at 09:00, u2 every third day until day 24."""
    u1 = [act(START + d * DAY_MS + 9 * HOUR + shift_ms, f"{tag}1-{d}", user="u1") for d in range(14)]
    u2 = [act(START + d * DAY_MS + 11 * HOUR + shift_ms, f"{tag}2-{d}", user="u2") for d in range(0, 25, 3)]
    return sorted([*u1, *u2], key=lambda e: e.occurred_at_ms)


QUIET_SINCE = START + 31 * DAY_MS + 79_814_785  # two_users' deadline: five of its usual active days missed


@pytest.mark.parametrize(
    ("shift_hours", "clock_days"),
    [
        (6, 40),  # make demo again six hours later, over a first run whose clock reached day 40
        (14, 32),  # u2's last replayed event falls on day 25; the clock had just passed the quiet alert
        (14, 33),  # the same a day later: how far the clock had gone changes nothing
        (14, 40),
    ],
)
def test_a_history_replayed_over_the_first_neither_flaps_nor_dates_recoveries_before_activity(
    shift_hours: int, clock_days: int
) -> None:
    s, alerts = feed(None, two_users(0, "a"))
    alerts += advance(s, START + clock_days * DAY_MS, POLICY)
    assert [(a.kind, a.detected_at_ms) for a in alerts] == [
        ("usage_drop", START + 28 * DAY_MS),
        ("key_user_lost", START + 31 * DAY_MS),
        ("account_quiet", QUIET_SINCE),
    ]
    # The second run's events are late (the clock passed them), but newer than the first run's: they are
    # dated before the episodes they fall in began, so they move the silence's start, not end it.
    s, replayed = feed(s, two_users(shift_hours * HOUR, "b"))
    assert replayed == []
    assert (s.quiet_since_ms, s.key_since_ms) == (QUIET_SINCE, START + 31 * DAY_MS)
    back = START + 45 * DAY_MS + HOUR  # the account really comes back
    s, returned = feed(s, [act(back, "back", user="u2")])
    returned += advance(s, back + DAY_MS, POLICY)
    assert [
        (a.kind, a.evidence["closed_episode"], a.evidence["episode_started_ms"], a.detected_at_ms)
        for a in returned
    ] == [("account_recovered", "account_quiet", QUIET_SINCE, back)]


@pytest.mark.parametrize(
    ("late_day", "recovered_at"),
    [
        (70, None),  # seen before it was found away (day 75): it left later than measured, still away
        (80, START + 90 * DAY_MS + 11 * HOUR),  # back, learnt after the others' day 90: dated then
    ],
)
def test_a_key_user_seen_in_a_late_event_closes_the_episode_only_after_its_start(
    late_day: int, recovered_at: int | None
) -> None:
    s, alerts = feed(None, champion_team(60, 90))
    assert [a.detected_at_ms for a in only("key_user_lost", alerts)] == [START + 75 * DAY_MS]
    assert s.last_activity_ms == START + 90 * DAY_MS + 11 * HOUR
    late = act(START + late_day * DAY_MS + 8 * HOUR, "late", user="champion")
    s, _, back = record_event(s, late, POLICY)
    if recovered_at is None:
        assert back == [] and s.key_since_ms == START + 75 * DAY_MS
    else:
        assert [(a.evidence["closed_episode"], a.detected_at_ms) for a in back] == [
            ("key_user_lost", recovered_at)
        ]
        assert back[0].evidence["last_activity_ms"] == recovered_at


# --- cancelled ----------------------------------------------------------------------------


def test_a_cancelled_account_raises_nothing_more() -> None:
    s, _ = feed(None, team(0, HISTORY - 1, 4))
    s, alerts = feed(s, [fact(START + HISTORY * DAY_MS, EventKind.SUBSCRIPTION_CANCELLED)])
    alerts += advance(s, START + (HISTORY + 60) * DAY_MS, POLICY)
    assert alerts == []


# --- clock ------------------------------------------------------------------------------


def test_next_due_is_the_next_midnight_while_days_are_in_the_window() -> None:
    s, _, _ = record_event(None, act(START + 10 * HOUR, 1), POLICY)
    assert next_due_ms(s, POLICY) == START + DAY_MS


def test_next_due_is_the_quiet_deadline_when_it_comes_first() -> None:
    s, _, _ = record_event(None, act(START + 10 * HOUR, 1), POLICY)
    s.clock_ms = START + 7 * DAY_MS  # next midnight is after the deadline at 10:00
    assert next_due_ms(s, POLICY) == START + 7 * DAY_MS + 10 * HOUR


def test_next_due_is_none_when_nothing_can_change() -> None:
    s, _, _ = record_event(None, fact(START, EventKind.ACCOUNT_UPDATED, seats=3), POLICY)
    assert next_due_ms(s, POLICY) is None
    s, _, _ = record_event(None, act(START, 1), POLICY)
    advance(s, START + 100 * DAY_MS, POLICY)
    assert next_due_ms(s, POLICY) is None


def test_advance_evaluates_due_points_in_order_and_stops_at_the_last_one() -> None:
    s, _, _ = record_event(None, act(START + 10 * HOUR, 1), POLICY)
    advance(s, START + 3 * DAY_MS + HOUR, POLICY)
    assert s.clock_ms == START + 3 * DAY_MS


def events_for_determinism() -> list[UsageEvent]:
    return [
        *daily(0, HISTORY - 1, 10),
        *daily(HISTORY, HISTORY + 6, 2),  # drop
        act(START + (HISTORY + 20) * DAY_MS, "back"),  # quiet in between, then back
        fact(START + (HISTORY + 21) * DAY_MS, EventKind.NPS_RESPONSE, score=1),
        *daily(HISTORY + 22, HISTORY + 30, 12),  # drop recovers
    ]


def run_batched(events: list[UsageEvent], advance_points: list[int]) -> list[tuple[str, str, int]]:
    state: AccountState | None = None
    alerts: list[Alert] = []
    points = sorted(advance_points)
    for e in events:
        while points and points[0] <= e.occurred_at_ms and state is not None:
            alerts += advance(state, points.pop(0), POLICY)
        state, _, new = record_event(state, e, POLICY)
        alerts += new
    assert state is not None
    alerts += advance(state, START + (HISTORY + 60) * DAY_MS, POLICY)
    return [(a.alert_id, a.kind, a.detected_at_ms) for a in alerts]


REFERENCE = run_batched(events_for_determinism(), [])


def test_reference_history_raises_every_alert_kind() -> None:
    expected = {"usage_drop", "account_quiet", "account_recovered", "health_degraded"}
    assert {k for _, k, _ in REFERENCE} == expected


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, (HISTORY + 31) * DAY_MS), max_size=30))
def test_alerts_do_not_depend_on_how_the_clock_was_advanced_between_events(offsets: list[int]) -> None:
    assert run_batched(events_for_determinism(), [START + o for o in offsets]) == REFERENCE


@settings(max_examples=50)
@given(st.permutations(list(range(12))))
def test_buckets_do_not_depend_on_arrival_order(order: list[int]) -> None:
    events = [
        act(START + (i % 6) * DAY_MS + i * HOUR, i, name=f"f{i % 4}", user=f"u{i % 5}") for i in range(12)
    ]
    ordered, _ = feed(None, events)
    shuffled, _ = feed(None, [events[i] for i in order])
    assert shuffled.days == ordered.days
    assert shuffled.last_activity_ms == ordered.last_activity_ms


@given(st.integers(0, 11), st.integers(0, 11))
def test_replaying_any_recent_event_changes_nothing(upto: int, replay: int) -> None:
    events = [act(START + i * HOUR, i) for i in range(upto + 1)]
    s, _ = feed(None, events)
    before = encode_state(s)
    _, outcome, alerts = record_event(s, events[min(replay, upto)], POLICY)
    assert outcome is Outcome.DUPLICATE
    assert (encode_state(s), alerts) == (before, [])


# --- publishing and serialisation -------------------------------------------------------


def test_mark_published_only_accepts_material_changes() -> None:
    s, _ = feed(None, daily(0, 3, 5))
    h, _ = evaluate(s, START + 4 * DAY_MS, POLICY)
    assert mark_published(s, h, POLICY) is True
    assert mark_published(s, h, POLICY) is False
    later, _ = evaluate(s, START + 12 * DAY_MS, POLICY)
    assert mark_published(s, later, POLICY) is True


LAST = START + 2 * DAY_MS + 10 * HOUR + 2 * 60_000  # daily(0, 2, 3)'s last event


@pytest.mark.parametrize(
    ("changed", "behind"),
    [
        ({}, False),  # as published
        ({"last_activity_ms": LAST + 13 * HOUR}, False),  # more activity the same UTC day (23:02)
        ({"last_activity_ms": START + 3 * DAY_MS}, True),  # the first activity of the next day
        ({"quiet_since_ms": START + 9 * DAY_MS}, True),  # an episode opened ...
        ({"drop_since_ms": START + 2 * DAY_MS}, True),
        ({"poor_open": True}, True),
        ({"published_activity_ms": None}, True),  # ... or nothing shown yet (a state of version 3)
    ],
)
def test_a_snapshot_is_behind_when_it_shows_another_day_of_activity_or_other_episodes(
    changed: dict[str, Any], behind: bool
) -> None:
    s, _ = feed(None, daily(0, 2, 3))
    h, _ = evaluate(s, LAST, POLICY)
    mark_published(s, h, POLICY)
    assert s.published_activity_ms == LAST and not snapshot_behind(s)
    for name, value in changed.items():
        setattr(s, name, value)
    assert snapshot_behind(s) is behind
    # Published again, what it shows is recorded even when its health is not a material change.
    assert mark_published(s, h, POLICY) is False
    assert not snapshot_behind(s)


def test_alert_dicts_are_json_ready_with_rfc3339_utc_times() -> None:
    s, _ = feed(None, daily(0, 2, 3))
    alert = only("account_quiet", advance(s, START + 20 * DAY_MS, POLICY))[0]
    d = alert_to_dict(alert)
    assert d["detected_at"] == "2026-01-14T10:02:00.000Z"
    assert d["evidence"]["last_activity_at"] == "2026-01-07T10:02:00.000Z"
    assert d["evidence"]["thresholds"]["quiet_after_days"] == 7
    assert (d["evidence"]["quiet_for"], d["evidence"]["quiet_for_ms"]) == ("7 days", 7 * DAY_MS)
    assert d["reason"] == "No activity for 7 days"  # no rhythm yet to compare with (three days)
    assert alert.health is not None and d["health"] == health_to_dict(alert.health)
    assert len(d["alert_id"]) == 32
    orjson.dumps(d)


def test_a_quiet_deadline_does_not_depend_on_a_restart_between_due_points() -> None:
    """The quiet deadline is kept with the state unstored: recomputing it after a restart, later in
    the silence, must give the deadline the undisturbed worker kept (a SIGKILL test caught them
    disagreeing once the silence outlasted the window's spare days)."""
    ctx = EMPTY_CONTEXT
    s, _ = feed(None, team(0, 40, 2, every=4))
    last_day = (s.last_activity_ms or 0) // DAY_MS
    assert next_due_ms(s, POLICY, ctx) is not None  # the undisturbed worker schedules it at once
    restarted = decode_state(encode_state(s))
    seen: dict[str, list[Alert]] = {"kept": [], "restarted": []}
    for day in range(last_day + 1, last_day + 40):
        t = (day + 1) * DAY_MS - 1
        seen["kept"] += advance(s, t, POLICY, ctx)
        seen["restarted"] += advance(restarted, t, POLICY, ctx)
        restarted = decode_state(encode_state(restarted))
    quiet = only("account_quiet", seen["kept"])
    assert len(quiet) == 1
    assert [alert_to_dict(a) for a in seen["restarted"]] == [alert_to_dict(a) for a in seen["kept"]]
    assert s.quiet_since_ms == restarted.quiet_since_ms == quiet[0].detected_at_ms
    assert quiet[0].detected_at_ms > (last_day + 8) * DAY_MS  # the deadline comes from the rhythm
