"""Lifecycle and stickiness of an account on one UTC day, from its daily buckets.

PostHog's lifecycle, applied to accounts with a UTC day as the period:

* ``new``: active on the day, and never active before it;
* ``returning``: active on the day and on the day before;
* ``resurrecting``: active on the day, not on the day before, but active before that;
* ``dormant``: not active on the day, but active on the day before.

An account active neither on the day nor on the day before has no status (None): it is not part of
the day's lifecycle, as in PostHog.

Active means at least one counted usage event that day (a bucket with ``events > 0``): facts
(``account_updated``, NPS, tickets, subscription events), events marked inactive, duplicates and
events too late for the window never make a day active, even when a fact's reserved weight gave the
day a bucket.

What the state remembers bounds what can be told. The day buckets cover at least ``window_days``
(36 by default, pruned a whole week at a time) back from the account's newest day; the weeks that left
them survive as weekly user-day totals (:data:`~streamer.core.state.HISTORY_WEEKS`, 8). So:

* ``active_days_7`` is always exact (a policy's window is at least 15 days);
* ``active_days_28`` is exact when the policy's window is at least 28 days, and None otherwise, never a
  count of fewer days;
* ``new`` against ``resurrecting``: an account is ``resurrecting`` when the state remembers it active
  before yesterday (a bucket, a weekly total, or one of its top users first active before today). When
  it remembers none, the account is ``new`` if it was first seen (by any event, facts included) within
  what the buckets and weekly totals cover, or if its top-users list is not full (the list drops a user
  only to make room for another, so every identified user ever active is still in it). Otherwise (first
  seen longer ago than the state remembers, and five or more users today) it is ``resurrecting``: it
  was known long before, and PostHog too calls ``resurrecting`` every account active in a period, not
  in the one before, and not created in it. So activity without a user id, pruned from the buckets and
  not in a weekly total (over 8 weeks ago, or on an excluded day), is not remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streamer.core.policy import DAY_MS, Policy
from streamer.core.state import HISTORY_WEEKS, TOP_USERS, AccountState

__all__ = ["Lifecycle", "LifecycleStatus", "lifecycle"]


class LifecycleStatus(StrEnum):
    """An account's lifecycle status on one UTC day."""

    NEW = "new"
    RETURNING = "returning"
    RESURRECTING = "resurrecting"
    DORMANT = "dormant"


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """An account's lifecycle status and active days as of one UTC day."""

    status: LifecycleStatus | None
    active_days_7: int
    active_days_28: int | None

    def to_dict(self) -> dict[str, Any]:
        """The snapshot's ``lifecycle`` block."""
        return {
            "status": None if self.status is None else self.status.value,
            "active_days_7": self.active_days_7,
            "active_days_28": self.active_days_28,
        }


def _remembers_since_first_seen(state: AccountState) -> bool:
    """Whether every day since the account was first seen is still in a bucket or a weekly total."""
    through = state.history_through
    if through is None:
        return True  # nothing was ever pruned
    # Weeks run Monday..Sunday; week w starts on day 7w - 3 (see engine._prune).
    remembered_from = 7 * (through - HISTORY_WEEKS + 1) - 3
    return state.first_seen_ms // DAY_MS >= remembered_from


def _active_before_memory(state: AccountState, today: int) -> bool:
    """Whether an account active ``today`` whose buckets show no earlier activity was (or, beyond what
    the state remembers, may have been) active before."""
    if any(units > 0 for _, units, _ in state.history):
        return True
    if any(u.first_day < today for u in state.top_users):
        return True
    return not _remembers_since_first_seen(state) and len(state.top_users) >= TOP_USERS


def lifecycle(state: AccountState, at_ms: int, policy: Policy) -> Lifecycle:
    """The account's lifecycle on the UTC day holding ``at_ms``.

    Args:
        state: Account state; ``at_ms`` must not be before its newest day (as when it is scored).
        at_ms: The instant whose UTC day is "today", in ms since the epoch.
        policy: Effective policy (its ``window_days`` bounds the days remembered).

    Returns:
        The status (None when active neither today nor yesterday) and the active days of the 7 and of the
        28 days ending today, today included (the 28 None when the window keeps fewer days).
    """
    today = at_ms // DAY_MS
    # One pass over the buckets (at most a window and a week of them): on the hot path of every snapshot.
    active_7 = active_28 = 0
    active_today = active_yesterday = active_earlier = False
    for day, bucket in state.days.items():
        if bucket.events <= 0:
            continue
        age = today - day
        if age < 0:
            continue
        if age < 7:
            active_7 += 1
        if age < 28:
            active_28 += 1
        if age == 0:
            active_today = True
        elif age == 1:
            active_yesterday = True
        else:
            active_earlier = True
    status: LifecycleStatus | None
    if active_today and active_yesterday:
        status = LifecycleStatus.RETURNING
    elif active_today:
        before = active_earlier or _active_before_memory(state, today)
        status = LifecycleStatus.RESURRECTING if before else LifecycleStatus.NEW
    elif active_yesterday:
        status = LifecycleStatus.DORMANT
    else:
        status = None
    return Lifecycle(status, active_7, active_28 if policy.window_days >= 28 else None)
