"""Alert records and their JSON-ready form.

Alert ids are derived from the account, the alert kind and the start of the episode it
belongs to, so replaying the same events yields the same ids and downstream consumers can
deduplicate on them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from streamer.core.milestones import Onboarding
from streamer.core.scoring import Health

__all__ = [
    "ACCOUNT_QUIET",
    "ACCOUNT_RECOVERED",
    "DATA_GAP",
    "HEALTH_DEGRADED",
    "KEY_USER_LOST",
    "MILESTONE_MISSED",
    "MILESTONE_REACHED",
    "ONBOARDING_COMPLETE",
    "POSITIVE_KINDS",
    "USAGE_DROP",
    "Alert",
    "AlertKind",
    "Severity",
    "alert_id",
    "alert_to_dict",
    "health_to_dict",
    "human_duration",
    "ms_to_rfc3339",
    "onboarding_to_dict",
]


class AlertKind(StrEnum):
    """What an alert says; the value is the ``kind`` of the alert document."""

    ACCOUNT_QUIET = "account_quiet"
    USAGE_DROP = "usage_drop"
    HEALTH_DEGRADED = "health_degraded"
    KEY_USER_LOST = "key_user_lost"
    ACCOUNT_RECOVERED = "account_recovered"
    # An operations alert, of a partition rather than an account: its data stopped or fell together.
    DATA_GAP = "data_gap"
    # Onboarding milestones: one missed its due date, one was reached, all were.
    MILESTONE_MISSED = "milestone_missed"
    MILESTONE_REACHED = "milestone_reached"
    ONBOARDING_COMPLETE = "onboarding_complete"


class Severity(StrEnum):
    """How urgent an alert is: ``info`` for an all-clear or good news."""

    INFO = "info"
    MEDIUM = "medium"
    HIGH = "high"


ACCOUNT_QUIET = AlertKind.ACCOUNT_QUIET
USAGE_DROP = AlertKind.USAGE_DROP
HEALTH_DEGRADED = AlertKind.HEALTH_DEGRADED
KEY_USER_LOST = AlertKind.KEY_USER_LOST
ACCOUNT_RECOVERED = AlertKind.ACCOUNT_RECOVERED
DATA_GAP = AlertKind.DATA_GAP
MILESTONE_MISSED = AlertKind.MILESTONE_MISSED
MILESTONE_REACHED = AlertKind.MILESTONE_REACHED
ONBOARDING_COMPLETE = AlertKind.ONBOARDING_COMPLETE
# Good news, not warnings: left out of warning counts and of a kind's precision against cancellations.
POSITIVE_KINDS = frozenset({ACCOUNT_RECOVERED, MILESTONE_REACHED, ONBOARDING_COMPLETE})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Evidence keys holding instants; they are rendered as RFC 3339 under an ``_at`` name.
_TIME_KEYS = {
    "last_activity_ms": "last_activity_at",
    "episode_started_ms": "episode_started_at",
    "gap_started_ms": "gap_started_at",
    "gap_ended_ms": "gap_ended_at",
    "renewal_ms": "renewal_at",
    "due_ms": "due_at",
    "reached_ms": "reached_at",
}


@dataclass(frozen=True, slots=True)
class Alert:
    """An early-warning (or all-clear) signal for one account."""

    alert_id: str
    kind: AlertKind
    account_id: str | None  # None for an operations alert (data_gap)
    detected_at_ms: int
    severity: Severity
    health: Health | None
    evidence: Mapping[str, Any]
    # Who the account is (name, segment, plan, owner, seats), for routing and for people reading it.
    account: Mapping[str, Any] = field(default_factory=dict)
    # One line a person reads first: what happened, in words and human units.
    reason: str = ""
    # What moved the score in the last week, and what holds it down most (streamer.core.changes);
    # None when the account has no scored day kept (and for an operations alert).
    what_changed: Mapping[str, Any] | None = None


def alert_id(
    account_id: str | None,
    kind: str,
    episode_start_ms: int,
    closes: str | None = None,
    milestone: str | None = None,
) -> str:
    """Derive a deterministic alert id.

    Args:
        account_id: The account.
        kind: Alert kind.
        episode_start_ms: Start of the episode the alert belongs to.
        closes: For ``account_recovered``, the kind of episode closed; it keeps a quiet and
            a drop episode that started at the same instant from sharing an id.
        milestone: For the onboarding kinds, which are raised once per milestone (or once per
            account, ``onboarding_complete``, with ``""``): its name, in place of the episode start.

    Returns:
        The first 32 hex characters of SHA-256 over ``account_id|kind|episode_start_ms``
        (with ``|closes`` appended for recoveries), or over ``account_id|kind|milestone|name``.
    """
    if milestone is not None:
        key = f"{account_id}|{kind}|milestone|{milestone}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]
    key = f"{account_id}|{kind}|{episode_start_ms}"
    if closes is not None:
        key += f"|{closes}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def human_duration(ms: int) -> str:
    """A duration as people say it: "45 minutes", "5 hours", "3 days 4 hours", "17 days"."""
    minutes = max(0, ms) // 60_000
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days, rest = divmod(hours, 24)
    if days >= 7 or rest == 0:
        return f"{days} days"
    return f"{days} days {rest} hour{'s' if rest != 1 else ''}"


def ms_to_rfc3339(ms: int) -> str:
    """Render epoch milliseconds as an RFC 3339 UTC string with millisecond precision."""
    # Every snapshot renders several times, mostly of a few days: the date part is cached per day and
    # the time of day is plain arithmetic (the same text as datetime.isoformat, out-of-range errors too).
    day, rest = divmod(ms, _DAY_MS)
    seconds, milli = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_date_prefix(day)}{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


_DAY_MS = 86_400_000


@functools.lru_cache(maxsize=4096)
def _date_prefix(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).date().isoformat() + "T"


def health_to_dict(h: Health) -> dict[str, Any]:
    """Return a JSON-ready dict for a health snapshot (times as RFC 3339 UTC strings)."""
    return {
        "account_id": h.account_id,
        "at": ms_to_rfc3339(h.at_ms),
        "score": h.score,
        "band": h.band,
        "components": [
            {
                "name": c.name,
                "value": c.value,
                "weight": c.weight,
                "contribution": c.contribution,
                "explanation": c.explanation,
            }
            for c in h.components
        ],
        "current_weekly": h.current_weekly,
        "baseline_weekly": h.baseline_weekly,
        "active_users_7d": h.active_users_7d,
        "active_users_28d": h.active_users_28d,
        "user_days_week": h.user_days_week,
        "user_days_usual": h.user_days_usual,
        "missed_active_days": h.missed_active_days,
        "features_28d": h.features_28d,
        "onboarding": onboarding_to_dict(h.onboarding),
    }


def onboarding_to_dict(o: Onboarding) -> dict[str, Any]:
    """The JSON-ready form of an onboarding view (the ``onboarding`` of snapshots and alerts)."""
    return {
        "active": o.active,
        "status": o.status,
        "reached": [{"name": n, "at": ms_to_rfc3339(at)} for n, at in o.reached],
        "missing": [
            {"name": m.name, "due_at": ms_to_rfc3339(m.due_ms), "overdue_days": m.overdue_days}
            for m in o.missing
        ],
        "next": None if o.next is None else {"name": o.next[0], "due_at": ms_to_rfc3339(o.next[1])},
        "done": o.done,
        "total": o.total,
    }


def _jsonable(evidence: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        if key in _TIME_KEYS:
            out[_TIME_KEYS[key]] = None if value is None else ms_to_rfc3339(value)
        elif isinstance(value, Mapping):
            out[key] = _jsonable(value)
        else:
            out[key] = value
    return out


def alert_to_dict(a: Alert) -> dict[str, Any]:
    """Return a JSON-ready dict for an alert (times as RFC 3339 UTC strings)."""
    return {
        "alert_id": a.alert_id,
        "kind": a.kind,
        "account_id": a.account_id,
        "detected_at": ms_to_rfc3339(a.detected_at_ms),
        "severity": a.severity,
        "reason": a.reason,
        "health": health_to_dict(a.health) if a.health is not None else None,
        "evidence": _jsonable(a.evidence),
        "account": dict(a.account),
        "what_changed": a.what_changed,
    }
