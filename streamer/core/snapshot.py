"""The published view of an account: health plus the facts and activity behind it.

This is the value of the compacted ``account-health`` topic and what the API serves, so it is
self-contained: score, band and breakdown, daily activity for the window, facts, sentiment,
subscription and the open alert episodes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamer.core.alerts import health_to_dict, ms_to_rfc3339
from streamer.core.policy import DAY_MS, Policy
from streamer.core.scoring import Health
from streamer.core.state import FEATURE_BITS, USER_BITS, AccountState, estimate_distinct

__all__ = ["SNAPSHOT_VERSION", "account_snapshot", "trend"]

SNAPSHOT_VERSION = 1


def _at(ms: int | None) -> str | None:
    return ms_to_rfc3339(ms) if ms is not None else None


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
    first_day = today - policy.window_days + 1
    daily = []
    for day in range(first_day, today + 1):
        bucket = state.days.get(day)
        daily.append(
            {
                "date": datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat(),
                "events": bucket.events if bucket else 0,
                "weighted": round(bucket.weight, 2) if bucket else 0.0,
                "users": round(estimate_distinct(bucket.users, USER_BITS)) if bucket else 0,
                "features": round(estimate_distinct(bucket.features, FEATURE_BITS)) if bucket else 0,
            }
        )
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
    }
