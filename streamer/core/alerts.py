"""Alert records and their JSON-ready form.

Alert ids are derived from the account, the alert kind and the start of the episode it
belongs to, so replaying the same events yields the same ids and downstream consumers can
deduplicate on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streamer.core.scoring import Health

__all__ = [
    "ACCOUNT_QUIET",
    "ACCOUNT_RECOVERED",
    "HEALTH_DEGRADED",
    "USAGE_DROP",
    "Alert",
    "alert_id",
    "alert_to_dict",
    "health_to_dict",
    "ms_to_rfc3339",
]

ACCOUNT_QUIET = "account_quiet"
USAGE_DROP = "usage_drop"
HEALTH_DEGRADED = "health_degraded"
ACCOUNT_RECOVERED = "account_recovered"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Evidence keys holding instants; they are rendered as RFC 3339 under an ``_at`` name.
_TIME_KEYS = {"last_activity_ms": "last_activity_at", "episode_started_ms": "episode_started_at"}


@dataclass(frozen=True, slots=True)
class Alert:
    """An early-warning (or all-clear) signal for one account."""

    alert_id: str
    kind: str
    account_id: str
    detected_at_ms: int
    severity: str
    health: Health
    evidence: Mapping[str, Any]
    # Who the account is (name, segment, plan, owner, seats), for routing and for people reading it.
    account: Mapping[str, Any] = field(default_factory=dict)


def alert_id(account_id: str, kind: str, episode_start_ms: int, closes: str | None = None) -> str:
    """Derive a deterministic alert id.

    Args:
        account_id: The account.
        kind: Alert kind.
        episode_start_ms: Start of the episode the alert belongs to.
        closes: For ``account_recovered``, the kind of episode closed; it keeps a quiet and
            a drop episode that started at the same instant from sharing an id.

    Returns:
        The first 32 hex characters of SHA-256 over ``account_id|kind|episode_start_ms``
        (with ``|closes`` appended for recoveries).
    """
    key = f"{account_id}|{kind}|{episode_start_ms}"
    if closes is not None:
        key += f"|{closes}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def ms_to_rfc3339(ms: int) -> str:
    """Render epoch milliseconds as an RFC 3339 UTC string with millisecond precision."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        "features_28d": h.features_28d,
        "onboarding": h.onboarding,
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
        "health": health_to_dict(a.health),
        "evidence": _jsonable(a.evidence),
        "account": dict(a.account),
    }
