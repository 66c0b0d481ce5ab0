"""The dashboard's onboarding view: accounts in their first onboarding days, furthest behind first.

An account is listed while its snapshot says it is onboarding (``onboarding.active``) and tells a
milestone status: stuck ones first, then behind, on track and complete, each by the overdue days of its
worst missing milestone (most first). A snapshot written before milestones (``onboarding`` a boolean)
tells no status, so its account is not listed until the worker publishes the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api.query import AccountFilters, AccountSort, OnboardingStatus
from api.readmodel import Doc, ReadModel
from api.restrictions import AccountScope

__all__ = ["ONBOARDING_LABELS", "ONBOARDING_ORDER", "milestones", "onboarding_accounts"]

ONBOARDING_ORDER = (
    OnboardingStatus.STUCK,
    OnboardingStatus.BEHIND,
    OnboardingStatus.ON_TRACK,
    OnboardingStatus.COMPLETE,
)
# What a person reads for an onboarding status (None: no milestone applies, or the snapshot tells none).
ONBOARDING_LABELS: dict[str | None, str] = {
    OnboardingStatus.STUCK: "Stuck",
    OnboardingStatus.BEHIND: "Behind",
    OnboardingStatus.ON_TRACK: "On track",
    OnboardingStatus.COMPLETE: "Complete",
    None: "No milestone",
}


def onboarding_accounts(model: ReadModel, limit: int, *, scope: AccountScope) -> list[Doc]:
    """The first ``limit`` onboarding accounts within ``scope`` in the order of the module docstring."""
    found: list[Doc] = []
    for status in ONBOARDING_ORDER:
        if len(found) >= limit:
            break
        filters = AccountFilters(onboarding_status=status.value, onboarding_active=True)
        docs, _ = model.list_accounts(
            filters, AccountSort.ONBOARDING_OVERDUE_DESC, None, limit - len(found), scope=scope
        )
        found.extend(docs)
    return found


def _day(value: object) -> str:
    if not isinstance(value, str):
        return "–"
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return "–"
    return (at if at.tzinfo is None else at.astimezone(UTC)).date().isoformat()


def milestones(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the dashboard shows of a snapshot's onboarding: ``status`` and its ``label``, ``done`` of
    ``total``, the ``next`` milestone (name, UTC due day) or None, the ``missing`` ones (name, due day,
    overdue days), most overdue first, and the ``reached`` ones (name, UTC day) as the snapshot orders
    them; None for a snapshot without the onboarding object."""
    block = doc.get("onboarding")
    if not isinstance(block, Mapping):
        return None
    status = block.get("status")
    status = status if status in ONBOARDING_LABELS else None
    nxt = block.get("next")
    missing = [m for m in block.get("missing") or () if isinstance(m, Mapping)]
    missing.sort(key=lambda m: -m["overdue_days"] if isinstance(m.get("overdue_days"), int) else 0)
    return {
        "active": block.get("active") is True,
        "status": status,
        "label": ONBOARDING_LABELS[status],
        "done": block.get("done"),
        "total": block.get("total"),
        "next": {"name": nxt.get("name"), "due": _day(nxt.get("due_at"))}
        if isinstance(nxt, Mapping)
        else None,
        "missing": [
            {"name": m.get("name"), "due": _day(m.get("due_at")), "overdue_days": m.get("overdue_days")}
            for m in missing
        ],
        "reached": [
            {"name": r.get("name"), "at": _day(r.get("at"))}
            for r in block.get("reached") or ()
            if isinstance(r, Mapping)
        ],
    }
