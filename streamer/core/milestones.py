"""Onboarding milestones: the adoption goals a new account should reach by a deadline.

A milestone (``[[onboarding.milestones]]`` in the rules file, :class:`~streamer.core.policy.Milestone`)
is reached once ``count`` matching events, from at least ``users`` distinct users, were seen, each
dated at or after the moment its ``after`` milestone was reached. It is due ``deadline_days`` after
the account's start (its subscription start, or its first event).

:func:`record` counts one event towards every milestone it matches; :func:`evaluate` says where the
account stands at an instant: ``on_track`` (nothing overdue), ``behind`` (a milestone past its
deadline by less than ``onboarding.stuck_days``), ``stuck`` (by that much or more) or ``complete``.
Both are pure and read event times only, so replay and live, one batch or many, agree.

Only accounts whose first product activity comes before the last milestone deadline (and within their
first ``onboarding.days``) are judged (:func:`applies`): an account older than that when churnwatch
first saw it is past its onboarding, and one with no activity yet is not judged, as no quiet alert is
raised for it either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from streamer.core.events import UsageEvent
from streamer.core.policy import DAY_MS, Milestone, Policy
from streamer.core.state import AccountState, MilestoneProgress, milestone_key

__all__ = [
    "BEHIND",
    "COMPLETE",
    "NOT_ONBOARDING",
    "ON_TRACK",
    "STUCK",
    "Missing",
    "Onboarding",
    "applies",
    "evaluate",
    "onboarding_of",
    "progress_text",
    "record",
    "start_ms",
]

ON_TRACK, BEHIND, STUCK, COMPLETE = "on_track", "behind", "stuck", "complete"
_EMPTY = MilestoneProgress()


@dataclass(frozen=True, slots=True)
class Missing:
    """A milestone not reached yet: when it is due and how late it is (negative: not due yet)."""

    name: str
    due_ms: int
    late_ms: int
    progress: str  # what is still missing, in words: "1 of 3 users"

    @property
    def overdue_days(self) -> int:
        """Whole days past its deadline (0 while not due, or due less than a day ago)."""
        return max(0, self.late_ms) // DAY_MS


@dataclass(frozen=True, slots=True)
class Onboarding:
    """Where an account stands in its onboarding at one instant (the snapshot's ``onboarding``)."""

    active: bool  # within its first onboarding.days
    status: str | None = None  # None when no milestone applies to the account
    reached: tuple[tuple[str, int], ...] = ()  # (name, reached at), oldest first
    missing: tuple[Missing, ...] = ()  # in the rules file's order
    next: tuple[str, int] | None = None  # the missing milestone due first: (name, due at)
    done: int = 0
    total: int = 0


NOT_ONBOARDING = Onboarding(active=False)


def _user_hash(user_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=4).digest(), "little")


def start_ms(state: AccountState) -> int:
    """The account's start: its subscription start, or its first event (as for ``onboarding.days``)."""
    started = state.subscription_started_ms
    return started if started is not None else state.first_seen_ms


def applies(state: AccountState, policy: Policy) -> bool:
    """Whether the account is judged on milestones: some are configured and its first product activity
    came before the last of their deadlines and within its first ``onboarding.days``.

    An account first active after every deadline (an existing customer whose subscription started
    months before churnwatch saw it) would otherwise miss them all at once, dated before anything of it
    was seen.
    """
    first = state.first_activity_ms
    if not policy.milestones or first is None:
        return False
    last_deadline = max(m.deadline_ms for m in policy.milestones)
    return first - start_ms(state) < min(policy.onboarding_days * DAY_MS, last_deadline)


def record(
    progress: Mapping[int, MilestoneProgress], event: UsageEvent, policy: Policy
) -> tuple[Mapping[int, MilestoneProgress], list[Milestone]]:
    """Count one event towards the milestones it matches.

    Args:
        progress: The account's progress by :func:`~streamer.core.state.milestone_key` (not modified).
        event: The event.
        policy: The account's rules (its ``milestones``).

    Returns:
        The new progress (``progress`` itself when the event changed nothing, as for most events) and
        the milestones this event reached, in the rules file's order.
    """
    out: dict[int, MilestoneProgress] | None = None
    reached: list[Milestone] = []
    t = event.occurred_at_ms
    for m in policy.milestones:
        if not m.matches(event.name, event.properties):
            continue
        if out is None:
            out = dict(progress)
        key = milestone_key(m.name)
        p = out.get(key, _EMPTY)
        if p.reached_ms is not None:
            continue
        if m.after is not None:
            before = out.get(milestone_key(m.after), _EMPTY).reached_ms
            if before is None or t < before:
                continue  # counted only once the milestone it follows is reached
        users = p.users
        if m.users and event.user_id is not None and len(users) < m.users:
            h = _user_hash(event.user_id)
            if h not in users:
                users = (*users, h)
        count = min(m.count, p.events + 1)
        if count >= m.count and len(users) >= m.users:
            # Reached: the users are no longer needed, so the state shrinks back.
            out[key] = MilestoneProgress(t, count, (), p.missed)
            reached.append(m)
        else:
            out[key] = MilestoneProgress(None, count, users, p.missed)
    return (progress if out is None else out), reached


def progress_text(m: Milestone, p: MilestoneProgress) -> str:
    """What a missing milestone still lacks, in words: ``1 of 3 users``, ``2 of 5 report_exported``."""
    parts = []
    if m.count > 1 or not m.users:
        parts.append(f"{p.events} of {m.count} {m.event}")
    if m.users:
        parts.append(f"{len(p.users)} of {m.users} user{'s' if m.users != 1 else ''}")
    if m.after is not None and p.events == 0:
        parts.append(f"after {m.after!r}")
    return ", ".join(parts)


def evaluate(
    progress: Mapping[int, MilestoneProgress],
    start: int,
    now_ms: int,
    policy: Policy,
    judged: bool = True,
) -> Onboarding:
    """Where the account stands at ``now_ms``.

    Args:
        progress: The account's progress by milestone key.
        start: The account's start (epoch ms), which the deadlines count from.
        now_ms: The instant.
        policy: The account's rules.
        judged: Whether milestones apply to the account at all (:func:`applies`).

    Returns:
        The onboarding view: ``status`` is None when no milestone applies.
    """
    active = now_ms - start < policy.onboarding_days * DAY_MS
    if not judged or not policy.milestones:
        return Onboarding(active=active)
    reached: list[tuple[str, int]] = []
    missing: list[Missing] = []
    worst = 0  # 0 on track, 1 behind, 2 stuck
    for m in policy.milestones:
        p = progress.get(milestone_key(m.name), _EMPTY)
        if p.reached_ms is not None:
            reached.append((m.name, p.reached_ms))
            continue
        due = start + m.deadline_ms
        late = now_ms - due
        if late >= 0:
            worst = max(worst, 2 if late >= policy.onboarding_stuck_ms else 1)
        missing.append(Missing(m.name, due, late, progress_text(m, p)))
    reached.sort(key=lambda r: r[1])
    nxt = min(missing, key=lambda x: x.due_ms, default=None)
    status = COMPLETE if not missing else (ON_TRACK, BEHIND, STUCK)[worst]
    return Onboarding(
        active=active,
        status=status,
        reached=tuple(reached),
        missing=tuple(missing),
        next=None if nxt is None else (nxt.name, nxt.due_ms),
        done=len(reached),
        total=len(policy.milestones),
    )


def onboarding_of(state: AccountState, now_ms: int, policy: Policy) -> Onboarding:
    """:func:`evaluate` for an account's state."""
    return evaluate(state.milestones, start_ms(state), now_ms, policy, applies(state, policy))
