"""Public facade of the core: apply events, drive the clock, raise alerts.

Time only moves when the caller says so: :func:`record_event` with an event's timestamp,
:func:`advance` with a watermark. Evaluations run at *due points* (UTC midnights, when the
windows slide, and quiet deadlines) and ``record_event`` first catches up on every due
point at or before the event's time. Together this makes alerts (ids and detection times)
identical whether events arrive in one batch or one by one with ``advance`` calls in
between, as long as the clock is never advanced past an event that is still to come.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from streamer.core.alerts import (
    ACCOUNT_QUIET,
    ACCOUNT_RECOVERED,
    HEALTH_DEGRADED,
    USAGE_DROP,
    Alert,
    alert_id,
)
from streamer.core.events import EventKind, UsageEvent
from streamer.core.policy import DAY_MS, Policy
from streamer.core.scoring import Health, changed_since_published, score, window_stats
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, DayBucket, bit_for, event_id_hash

__all__ = ["Outcome", "advance", "evaluate", "mark_published", "next_due_ms", "record_event"]

_MAX_STEPS = 100_000
_EMPTY = DayBucket()
_LOWERING_KINDS = frozenset(
    {EventKind.NPS_RESPONSE, EventKind.SUPPORT_TICKET_OPENED, EventKind.SUBSCRIPTION_CANCELLED}
)


class Outcome(StrEnum):
    """What :func:`record_event` did with an event."""

    COUNTED = "counted"
    DUPLICATE = "duplicate"
    FACT = "fact"
    INACTIVE = "inactive"
    LATE = "late"


def _horizon_day(state: AccountState, policy: Policy) -> int:
    """First UTC day still inside the window of the account's newest day (or its clock)."""
    newest = state.clock_ms // DAY_MS
    if state.days:
        newest = max(newest, max(state.days))
    return newest - policy.window_days + 1


def _prune(state: AccountState, policy: Policy) -> None:
    horizon = _horizon_day(state, policy)
    for day in [d for d in state.days if d < horizon]:
        del state.days[day]


def _evidence(
    state: AccountState, health: Health, policy: Policy, started_ms: int, **extra: Any
) -> dict[str, Any]:
    base = health.baseline_weekly
    return {
        "last_activity_ms": state.last_activity_ms,
        "current_weekly": health.current_weekly,
        "baseline_weekly": base,
        "ratio": round(health.current_weekly / base, 3) if base > 0 else None,
        "quiet_after_ms": policy.quiet_after_ms,
        "drop_ratio": policy.drop_ratio,
        "thresholds": {
            "good_min": policy.good_min,
            "average_min": policy.average_min,
            "drop_min_baseline_weekly": policy.drop_min_baseline_weekly,
            "drop_recover_ratio": policy.drop_recover_ratio,
            "quiet_min_baseline_events": policy.quiet_min_baseline_events,
        },
        "episode_started_ms": started_ms,
        **extra,
    }


def _alert(
    state: AccountState,
    kind: str,
    at_ms: int,
    started_ms: int,
    severity: str,
    health: Health,
    policy: Policy,
    closes: str | None = None,
) -> Alert:
    extra = {"closed_episode": closes} if closes is not None else {}
    return Alert(
        alert_id=alert_id(state.account_id, kind, started_ms, closes),
        kind=kind,
        account_id=state.account_id,
        detected_at_ms=at_ms,
        severity=severity,
        health=health,
        evidence=_evidence(state, health, policy, started_ms, **extra),
        account={
            "name": state.name,
            "segment": state.segment,
            "plan": state.plan,
            "owner": state.owner,
            "seats": state.seats,
        },
    )


def _quiet_deadline(state: AccountState, policy: Policy) -> int | None:
    """When a quiet episode would open if nothing else happens, or None if it cannot."""
    last = state.last_activity_ms
    if state.quiet_since_ms is not None or last is None or state.subscription == "cancelled":
        return None
    last_day = last // DAY_MS
    seen = sum(b.events for d, b in state.days.items() if last_day - policy.window_days < d <= last_day)
    if seen < policy.quiet_min_baseline_events:
        return None
    return last + policy.quiet_after_ms


def evaluate(state: AccountState, now_ms: int, policy: Policy) -> tuple[Health, list[Alert]]:
    """Score the account and open any alert episodes that are due.

    Args:
        state: Account state; ``clock_ms`` advances to ``max(clock_ms, now_ms)``.
        now_ms: Evaluation time.
        policy: Effective policy.

    Returns:
        The health at the (advanced) clock and the alerts opened by this evaluation.
        Each episode alerts once: evaluating again never repeats an alert. The health carries
        explanations only when an alert was opened (the numbers are the same either way):
        most evaluations open nothing, and explaining costs more than scoring.
    """
    t = max(state.clock_ms, now_ms)
    state.clock_ms = t
    deadline = _quiet_deadline(state, policy)
    _prune(state, policy)
    quick = score(state, t, policy, explain=False)
    if not _opens_episode(state, quick, deadline, t, policy):
        _close_or_keep_poor(state, quick, policy)
        return quick, []
    health = score(state, t, policy)
    alerts: list[Alert] = []
    if deadline is not None and t >= deadline:
        # Detected at the deadline rather than now so that replay and live agree.
        state.quiet_since_ms = deadline
        severity = "medium" if health.onboarding else "high"
        alerts.append(_alert(state, ACCOUNT_QUIET, deadline, deadline, severity, health, policy))
    cur, base = health.current_weekly, health.baseline_weekly
    if (
        state.drop_since_ms is None
        and not health.onboarding
        and base >= policy.drop_min_baseline_weekly
        and cur <= policy.drop_ratio * base
    ):
        state.drop_since_ms = t
        severity = "high" if cur <= policy.drop_ratio * base / 2 else "medium"
        alerts.append(_alert(state, USAGE_DROP, t, t, severity, health, policy))
    if health.band == "poor":
        if not state.poor_open and state.last_band not in (None, "poor"):
            state.poor_open = True
            alerts.append(_alert(state, HEALTH_DEGRADED, t, t, "medium", health, policy))
    _close_or_keep_poor(state, health, policy)
    return health, alerts


def _opens_episode(state: AccountState, health: Health, deadline: int | None, t: int, policy: Policy) -> bool:
    """Whether :func:`evaluate` at ``t`` opens any alert episode (the same tests, without side effects)."""
    if deadline is not None and t >= deadline:
        return True
    base = health.baseline_weekly
    if (
        state.drop_since_ms is None
        and not health.onboarding
        and base >= policy.drop_min_baseline_weekly
        and health.current_weekly <= policy.drop_ratio * base
    ):
        return True
    return health.band == "poor" and not state.poor_open and state.last_band not in (None, "poor")


def _close_or_keep_poor(state: AccountState, health: Health, policy: Policy) -> None:
    if health.band != "poor" and state.poor_open and health.score >= policy.average_min:
        state.poor_open = False
    state.last_band = health.band


def next_due_ms(state: AccountState, policy: Policy) -> int | None:
    """Return when :func:`evaluate` must next run if no events arrive.

    Args:
        state: Account state.
        policy: Effective policy.

    Returns:
        The earliest of the pending quiet deadline (the clock itself if already overdue)
        and the next UTC midnight after the clock while any day bucket is still inside the
        window; None when nothing can change without new events. Open episodes alone need
        no timer: they only close on new activity, which brings a bucket back.
    """
    due: int | None = None
    deadline = _quiet_deadline(state, policy)
    if deadline is not None:
        due = max(deadline, state.clock_ms)
    clock_day = state.clock_ms // DAY_MS
    if state.days and max(state.days) > clock_day - policy.window_days:
        midnight = (clock_day + 1) * DAY_MS
        due = midnight if due is None else min(due, midnight)
    return due


def advance(state: AccountState, until_ms: int, policy: Policy) -> list[Alert]:
    """Run every due evaluation at or before ``until_ms``, in order.

    The clock stops at the last due point, not at ``until_ms``, so how often this is
    called never changes the outcome.

    Args:
        state: Account state.
        until_ms: Watermark up to which time is known to have passed.
        policy: Effective policy.

    Returns:
        All alerts opened, in detection order.
    """
    alerts: list[Alert] = []
    for _ in range(_MAX_STEPS):
        due = next_due_ms(state, policy)
        if due is None or due > until_ms:
            return alerts
        alerts.extend(evaluate(state, due, policy)[1])
    raise RuntimeError(f"advance made no progress for account {state.account_id!r}")


def _apply_fact(state: AccountState, event: UsageEvent) -> None:
    t, props, kind = event.occurred_at_ms, event.properties, event.kind
    if kind is EventKind.ACCOUNT_UPDATED:
        for key in ("seats", "plan", "segment", "name", "owner"):
            value = props.get(key)
            if value is not None and state.facts_at_ms.get(key, t) <= t:
                setattr(state, key, value)
                state.facts_at_ms[key] = t
    elif kind is EventKind.NPS_RESPONSE:
        if state.nps_at_ms is None or t >= state.nps_at_ms:
            state.nps_score, state.nps_at_ms = int(props["score"]), t
    elif kind is EventKind.SUPPORT_TICKET_OPENED:
        state.open_tickets += 1
    elif kind is EventKind.SUPPORT_TICKET_CLOSED:
        state.open_tickets -= 1
    elif kind is EventKind.SUBSCRIPTION_STARTED:
        state.subscription_started_ms = max(t, state.subscription_started_ms or t)
    elif kind is EventKind.SUBSCRIPTION_CANCELLED:
        state.subscription_cancelled_ms = max(t, state.subscription_cancelled_ms or t)


def _recover(state: AccountState, event: UsageEvent, prev_last: int | None, policy: Policy) -> list[Alert]:
    t = event.occurred_at_ms
    now = max(t, state.clock_ms)
    alerts: list[Alert] = []
    health: Health | None = None
    # Activity no newer than what the quiet episode was measured from says nothing new.
    if state.quiet_since_ms is not None and (prev_last is None or t > prev_last):
        started, state.quiet_since_ms = state.quiet_since_ms, None
        health = score(state, now, policy)
        alerts.append(_alert(state, ACCOUNT_RECOVERED, t, started, "info", health, policy, ACCOUNT_QUIET))
    if state.drop_since_ms is not None:
        stats = window_stats(state, now, policy)
        if stats.current_weekly >= policy.drop_recover_ratio * stats.baseline_weekly:
            started, state.drop_since_ms = state.drop_since_ms, None
            health = health or score(state, now, policy)
            alerts.append(_alert(state, ACCOUNT_RECOVERED, t, started, "info", health, policy, USAGE_DROP))
    return alerts


def record_event(
    state: AccountState | None, event: UsageEvent, policy: Policy
) -> tuple[AccountState, Outcome, list[Alert]]:
    """Apply one event to an account's state.

    Args:
        state: Current state, or None for an account not seen before.
        event: A validated event for this account.
        policy: Effective policy.

    Returns:
        The (possibly new, mutated in place) state, what happened to the event, and the
        alerts raised: catch-up evaluations due at or before the event, recoveries, and
        evaluations triggered by events that can lower the score.

    Raises:
        ValueError: If the event belongs to a different account.
    """
    t = event.occurred_at_ms
    if state is None:
        state = AccountState(account_id=event.account_id, first_seen_ms=t, clock_ms=t)
    elif event.account_id != state.account_id:
        raise ValueError(f"event for {event.account_id!r} applied to {state.account_id!r}")
    h = event_id_hash(event.event_id)
    if h in state.recent_ids:
        return state, Outcome.DUPLICATE, []
    day = t // DAY_MS
    if day < _horizon_day(state, policy):
        return state, Outcome.LATE, []
    alerts = advance(state, t, policy)
    state.recent_ids.append(h)
    if len(state.recent_ids) > policy.max_tracked_ids:
        del state.recent_ids[: len(state.recent_ids) - policy.max_tracked_ids]
    state.first_seen_ms = min(state.first_seen_ms, t)
    prev_last = state.last_activity_ms
    lowers = False
    if event.kind is EventKind.ACTIVITY:
        if not event.active:
            return state, Outcome.INACTIVE, alerts
        weight = policy.event_weights.get(event.name, 1.0)
        user_bit = 0 if event.user_id is None else bit_for(event.user_id, USER_BITS)
        feature_bit = bit_for(event.name, FEATURE_BITS)
        b = state.days.get(day)
        if b is None:
            state.days[day] = DayBucket(1, weight, user_bit, feature_bit)
        else:
            users, features = b.users | user_bit, b.features | feature_bit
            state.days[day] = DayBucket(b.events + 1, b.weight + weight, users, features)
        state.last_activity_ms = t if prev_last is None else max(prev_last, t)
        outcome, lowers = Outcome.COUNTED, weight < 0
    else:
        _apply_fact(state, event)
        reserved_weight = policy.event_weights.get(event.name)
        if reserved_weight is not None:
            b = state.days.get(day, _EMPTY)
            state.days[day] = b._replace(weight=b.weight + reserved_weight)
            lowers = reserved_weight < 0
        outcome, lowers = Outcome.FACT, lowers or event.kind in _LOWERING_KINDS
    _prune(state, policy)
    if outcome is Outcome.COUNTED:
        alerts.extend(_recover(state, event, prev_last, policy))
    if lowers or day < state.clock_ms // DAY_MS - policy.current_days + 1:
        alerts.extend(evaluate(state, max(t, state.clock_ms), policy)[1])
    return state, outcome, alerts


def mark_published(state: AccountState, health: Health, policy: Policy) -> bool:
    """Record ``health`` as published if it differs materially from the last publication.

    Args:
        state: Account state holding the last published snapshot.
        health: A fresh snapshot.
        policy: Effective policy.

    Returns:
        True when the caller should publish ``health`` (the state now remembers it).
    """
    if not changed_since_published(state, health, policy):
        return False
    state.published_score, state.published_band = health.score, health.band
    state.published_components = {c.name: c.value for c in health.components}
    return True
