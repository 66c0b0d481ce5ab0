"""Which accounts the dashboard lists as at risk.

An account is at risk when the core bands its score ``poor`` or ``average`` (the band is written by
the worker with the account's effective policy, so per-segment thresholds hold here too). An account
in onboarding is the exception: its score is built from the little history it has (a day-old account
has no stickiness and no seats in use yet, so it scores low), and the core judges it separately, by
opening an episode when it goes quiet, drops or is still poor after its first weeks. So an onboarding
account is listed only once the core has opened such an episode for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.query import AccountFilters, AccountSort, onboarding_active, sort_key
from api.readmodel import Doc, ReadModel
from api.restrictions import AccountScope
from streamer.core.policy import Band

__all__ = ["AT_RISK_BANDS", "AT_RISK_SORTS", "at_risk_accounts", "is_at_risk"]

AT_RISK_BANDS = (Band.POOR, Band.AVERAGE)
# The orders of the at-risk list, with what the dashboard calls them.
AT_RISK_SORTS = {
    AccountSort.SCORE: "lowest score first",
    AccountSort.ARR_DESC: "largest ARR first",
    AccountSort.RENEWAL: "soonest renewal first",
}


def is_at_risk(doc: Mapping[str, Any]) -> bool:
    """Whether a snapshot belongs in the at-risk list (see the module docstring)."""
    if doc.get("band") not in AT_RISK_BANDS:
        return False
    if not onboarding_active(doc):
        return True
    episodes = doc.get("episodes") or {}
    return bool(episodes.get("quiet_since") or episodes.get("drop_since") or episodes.get("poor"))


def at_risk_accounts(
    model: ReadModel, limit: int, *, scope: AccountScope, sort: AccountSort = AccountSort.SCORE
) -> list[Doc]:
    """The first ``limit`` at-risk accounts within ``scope`` in the order ``sort`` (one of
    :data:`AT_RISK_SORTS`): lowest score, largest ARR or soonest renewal first."""
    found: list[Doc] = []
    for band in AT_RISK_BANDS:
        kept = 0
        cursor: str | None = None
        while True:
            # Onboarding accounts are left out after they are read: a band may take more than a page.
            docs, cursor = model.list_accounts(AccountFilters(band=band), sort, cursor, limit, scope=scope)
            at_risk = [doc for doc in docs if is_at_risk(doc)]
            found.extend(at_risk)
            kept += len(at_risk)
            if kept >= limit or cursor is None:
                break
    # With per-segment bands a poor score can be above an average one: order the union as each band.
    found.sort(key=lambda doc: sort_key(doc, sort), reverse=sort.value.startswith("-"))
    return found[:limit]
