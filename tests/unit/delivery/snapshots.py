"""Health snapshots as the worker publishes them on ``account-health``, with only what a test sets."""

from __future__ import annotations

from typing import Any

from streamer.wire.documents import SnapshotDocument


def snapshot(
    account_id: str,
    at: str,
    score: int,
    band: str,
    *,
    owner: str | None = None,
    name: str | None = None,
    arr: float | None = None,
    currency: str | None = None,
    renewal_at: str | None = None,
    quiet_since: str | None = None,
    drop_since: str | None = None,
    poor: bool = False,
) -> dict[str, Any]:
    """A snapshot document that validates against :class:`SnapshotDocument`."""
    doc = {
        "version": 1,
        "account_id": account_id,
        "at": at,
        "score": score,
        "band": band,
        "components": [],
        "current_weekly": 10.0,
        "baseline_weekly": 12.0,
        "active_users_7d": 3,
        "features_28d": 4,
        "onboarding": False,
        "trend": "flat",
        "score_change": None,
        "facts": {"name": name, "owner": owner, "arr": arr, "currency": currency, "renewal_at": renewal_at},
        "nps": {},
        "subscription": {},
        "episodes": {"quiet_since": quiet_since, "drop_since": drop_since, "poor": poor},
        "daily": {
            "from": at[:10],
            "to": at[:10],
            "events": [1],
            "weighted": [1.0],
            "users": [1],
            "features": [1],
        },
    }
    SnapshotDocument.model_validate(doc)
    return doc
