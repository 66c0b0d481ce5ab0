"""Engine facade: outcomes, alert episodes, the clock and determinism."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.alerts import Alert, alert_to_dict, health_to_dict
from streamer.core.engine import Outcome, advance, evaluate, mark_published, next_due_ms, record_event
from streamer.core.events import EventKind, UsageEvent
from streamer.core.policy import DAY_MS, Policy
from streamer.core.state import AccountState, encode_state

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
    assert len(s.recent_ids) == 3
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
    later = only("account_quiet", advance(s, back + 8 * DAY_MS, POLICY))
    assert kinds(later) == ["account_quiet"]  # a new episode gets a new alert
    assert later[0].alert_id != quiet[0].alert_id


def test_cancelled_subscriptions_do_not_go_quiet() -> None:
    s, _ = feed(None, [*daily(0, 2, 3), fact(START + 3 * DAY_MS, EventKind.SUBSCRIPTION_CANCELLED)])
    assert only("account_quiet", advance(s, START + 30 * DAY_MS, POLICY)) == []


def test_quiet_needs_the_minimum_number_of_events() -> None:
    s, _ = feed(None, daily(0, 0, 2), Policy(quiet_min_baseline_events=3))
    assert only("account_quiet", advance(s, START + 30 * DAY_MS, Policy(quiet_min_baseline_events=3))) == []


# --- usage drop -------------------------------------------------------------------------

HISTORY = 120  # days of steady use so the account is no longer onboarding


def test_usage_drop_fires_once_at_a_midnight_when_current_falls_below_ratio() -> None:
    s, _ = feed(None, [*daily(0, HISTORY - 1, 10), *daily(HISTORY, HISTORY + 13, 2)])
    alerts = [a for a in advance(s, START + (HISTORY + 14) * DAY_MS, POLICY) if a.kind == "usage_drop"]
    s2, during = feed(None, [*daily(0, HISTORY - 1, 10), *daily(HISTORY, HISTORY + 13, 2)])
    drops = [a for a in during + alerts if a.kind == "usage_drop"]
    assert len(drops) == 1
    assert drops[0].detected_at_ms % DAY_MS == 0
    assert drops[0].evidence["ratio"] <= POLICY.drop_ratio
    assert drops[0].severity in {"medium", "high"}
    assert s2.drop_since_ms == drops[0].detected_at_ms


def test_usage_drop_needs_a_minimum_baseline() -> None:
    _, alerts = feed(None, [*daily(0, HISTORY - 1, 2), *daily(HISTORY, HISTORY + 13, 0)])
    s, _ = feed(None, [*daily(0, HISTORY - 1, 2)])
    alerts += advance(s, START + (HISTORY + 5) * DAY_MS, POLICY)
    assert "usage_drop" not in kinds(alerts)


def test_onboarding_accounts_never_raise_usage_drops() -> None:
    s, alerts = feed(None, [*daily(0, 40, 10), *daily(41, 55, 1)])
    alerts += advance(s, START + 60 * DAY_MS, POLICY)
    assert "usage_drop" not in kinds(alerts)


def test_usage_recovery_closes_the_drop_episode_only_after_reaching_the_recover_ratio() -> None:
    s, alerts = feed(None, [*daily(0, HISTORY - 1, 10), *daily(HISTORY, HISTORY + 9, 1)])
    assert s.drop_since_ms is not None
    s, _, first = record_event(s, act(START + (HISTORY + 10) * DAY_MS + HOUR, "a"), POLICY)
    assert first == []  # one event does not restore the weekly rate
    s, more = feed(s, daily(HISTORY + 10, HISTORY + 16, 10))
    recovered = [a for a in more if a.kind == "account_recovered"]
    assert len(recovered) == 1
    assert recovered[0].evidence["closed_episode"] == "usage_drop"
    assert s.drop_since_ms is None


# --- health degraded --------------------------------------------------------------------


def test_health_degraded_fires_when_band_falls_to_poor_and_closes_silently() -> None:
    policy = Policy(event_weights={"support_ticket_opened": -30.0})
    s, _ = feed(None, daily(0, HISTORY - 1, 10), policy)
    day = START + HISTORY * DAY_MS
    assert evaluate(s, day, policy)[0].band != "poor"
    bad = [fact(day + i, EventKind.SUPPORT_TICKET_OPENED, name="support_ticket_opened") for i in range(1, 6)]
    s, alerts = feed(s, [fact(day, EventKind.NPS_RESPONSE, score=0), *bad], policy)
    degraded = only("health_degraded", alerts)
    assert len(degraded) == 1
    assert degraded[0].health.band == "poor"
    assert s.poor_open
    s, _ = feed(s, [fact(day + 10 + i, EventKind.SUPPORT_TICKET_CLOSED) for i in range(5)], policy)
    s, _ = feed(s, [fact(day + 20, EventKind.NPS_RESPONSE, score=10)], policy)
    s, _ = feed(s, daily(HISTORY + 1, HISTORY + 8, 10), policy)
    advance(s, START + (HISTORY + 9) * DAY_MS, policy)
    assert not s.poor_open
    assert only("health_degraded", advance(s, START + (HISTORY + 12) * DAY_MS, policy)) == []


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
    assert s.days == {}


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


def test_alert_dicts_are_json_ready_with_rfc3339_utc_times() -> None:
    s, _ = feed(None, daily(0, 2, 3))
    alert = only("account_quiet", advance(s, START + 20 * DAY_MS, POLICY))[0]
    d = alert_to_dict(alert)
    assert d["detected_at"] == "2026-01-14T10:02:00.000Z"
    assert d["evidence"]["last_activity_at"] == "2026-01-07T10:02:00.000Z"
    assert d["evidence"]["quiet_after_ms"] == 7 * DAY_MS
    assert d["health"] == health_to_dict(alert.health)
    assert len(d["alert_id"]) == 32
    orjson.dumps(d)
