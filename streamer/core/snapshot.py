"""The published view of an account: health plus the facts and activity behind it.

This is the value of the compacted ``account-health`` topic and what the API serves, so it is
self-contained: score, band and breakdown, daily activity for the window, lifecycle and active days
(:mod:`streamer.core.lifecycle`, as of the UTC day it was scored on), facts, sentiment, subscription
and the open alert episodes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from streamer.core.alerts import health_to_dict, ms_to_rfc3339
from streamer.core.changes import what_changed
from streamer.core.lifecycle import lifecycle
from streamer.core.policy import DAY_MS, Policy
from streamer.core.scoring import Health
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, estimate_distinct

__all__ = ["SNAPSHOT_VERSION", "account_snapshot", "trend"]

# Fields are added with a default for readers of older snapshots: the lifecycle block came without a new
# version, and a snapshot without it reads as one without a status. Version 2: ``onboarding`` changed
# from a boolean to an object (streamer.core.milestones), whose ``active`` is the former boolean.
SNAPSHOT_VERSION = 2


# A day's distinct users and features as shown: the rounded estimate, which depends only on how many bits
# of its sketch are set (two of these per day of the window in every snapshot).
_USERS = tuple(round(estimate_distinct((1 << n) - 1, USER_BITS)) for n in range(USER_BITS + 1))
_FEATURES = tuple(round(estimate_distinct((1 << n) - 1, FEATURE_BITS)) for n in range(FEATURE_BITS + 1))


def _at(ms: int | None) -> str | None:
    return ms_to_rfc3339(ms) if ms is not None else None


@lru_cache(maxsize=512)
def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()


def trend(current_weekly: float, baseline_weekly: float) -> str:
    """``up``, ``down`` or ``flat``: this week's activity against the baseline week (10% dead band)."""
    if baseline_weekly <= 0:
        return "up" if current_weekly > 0 else "flat"
    ratio = current_weekly / baseline_weekly
    if ratio >= 1.1:
        return "up"
    if ratio <= 0.9:
        return "down"
    return "flat"


def account_snapshot(
    state: AccountState, health: Health, policy: Policy, previous_score: int | None
) -> dict[str, Any]:
    """The JSON-ready snapshot of ``state`` as scored by ``health``."""
    today = health.at_ms // DAY_MS
    days = range(today - policy.window_days + 1, today + 1)
    buckets = [state.days.get(day) for day in days]
    daily = {
        "from": _date(days[0]),
        "to": _date(days[-1]),
        "events": [b.events if b else 0 for b in buckets],
        "weighted": [round(b.weight, 2) if b else 0.0 for b in buckets],
        "users": [_USERS[b.users.bit_count()] if b else 0 for b in buckets],
        "features": [_FEATURES[b.features.bit_count()] if b else 0 for b in buckets],
    }
    return {
        "version": SNAPSHOT_VERSION,
        **health_to_dict(health),
        "trend": trend(health.current_weekly, health.baseline_weekly),
        "score_change": None if previous_score is None else health.score - previous_score,
        "first_seen_at": _at(state.first_seen_ms),
        "last_activity_at": _at(state.last_activity_ms),
        "facts": {
            "name": state.name,
            "seats": state.seats,
            "plan": state.plan,
            "segment": state.segment,
            "owner": state.owner,
            "arr": state.arr,
            "currency": state.currency,
            "renewal_at": _at(state.renewal_ms),
            "contract": state.contract,
        },
        "nps": {"score": state.nps_score, "at": _at(state.nps_at_ms)},
        "open_tickets": max(0, state.open_tickets),
        "subscription": {
            "status": state.subscription,
            "started_at": _at(state.subscription_started_ms),
            "cancelled_at": _at(state.subscription_cancelled_ms),
        },
        "episodes": {
            "quiet_since": _at(state.quiet_since_ms),
            "drop_since": _at(state.drop_since_ms),
            "poor": state.poor_open,
        },
        "daily": daily,
        "lifecycle": lifecycle(state, health.at_ms, policy).to_dict(),
        "what_changed": what_changed(state.scored, health),
    }
