"""The simulator's pure core: seeded accounts and the events they produce, in simulated time.

Nothing here reads a clock or touches Kafka: :class:`Simulation` is told how far simulated time has
advanced (``until(sim_ms)``) and returns every event stamped up to then, in time order. The same
seed, start and horizon give the same accounts and the same event sequence however the calls are
spread, so a run can be paced against the wall clock, sped up or written to a file unchanged.

Each account has seats, users, a plan, a segment, an owner and one behaviour: ``steady``,
``decaying`` (usage falls to 15% over two weeks), ``stops`` (and may cancel its subscription a few
days later) or ``returns`` (stops, then comes back); these subscribe as the simulation starts.
One account in five is new instead: it subscribes to a ``trial`` during the horizon and onboards at
its own pace (``onboards_fast``, ``onboards_slow``, or ``onboarding_fails``: it stalls and
cancels), reaching the milestones of ``deploy/rules.demo.toml`` (a report exported, three
invitations, three users active, an integration) when its story says. Usage follows a daily
rhythm (busy in UTC working hours, quiet at night) and a weekly one (weekends at a quarter of a
weekday). Besides product events, accounts start their subscription, answer NPS surveys
(detractors when unhappy), open and close support tickets (more when unhappy) and some cancel.
Event names are the reserved ones of :mod:`streamer.core.events`.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streamer.core.alerts import ms_to_rfc3339

__all__ = [
    "BEHAVIOURS",
    "FEATURES",
    "MILESTONE_EVENTS",
    "ONBOARDING_PACES",
    "SimAccount",
    "Simulation",
    "activity_factor",
    "make_accounts",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays.
_MONDAY_OFFSET = 3

FEATURES = (
    "login",
    "dashboard_viewed",
    "report_viewed",
    "report_exported",
    "search",
    "comment_added",
    "invite_sent",
    "integration_synced",
    "file_uploaded",
    "settings_changed",
    "automation_created",
    "api_key_created",
)
PLANS = ("starter", "pro", "enterprise")
SEGMENTS = ("smb", "mid-market", "enterprise")
OWNERS = ("ana@example.com", "ben@example.com", "chloe@example.com")
BEHAVIOURS = ("steady", "steady", "steady", "decaying", "stops", "returns")
ONBOARDING_PACES = ("onboards_fast", "onboards_slow", "onboarding_fails")
# Events a new account sends when its story reaches a milestone, not at random before.
MILESTONE_EVENTS = ("report_exported", "invite_sent", "integration_synced")
# When each milestone event comes, in days after the start, per pace: (event, earliest, latest).
_PACE_SCRIPTS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "onboards_fast": (
        ("report_exported", 0.2, 2.0),
        ("invite_sent", 0.2, 1.5),
        ("invite_sent", 1.0, 3.0),
        ("invite_sent", 2.0, 4.0),
        ("integration_synced", 2.0, 8.0),
    ),
    "onboards_slow": (
        ("report_exported", 3.0, 6.0),
        ("invite_sent", 4.0, 6.0),
        ("invite_sent", 9.0, 12.0),
        ("invite_sent", 16.0, 19.0),  # after the 14-day deadline
        ("integration_synced", 20.0, 27.0),
    ),
    "onboarding_fails": (("invite_sent", 0.5, 2.0),),
}
# A new account in five: every fifth from the third.
_NEW_EVERY, _NEW_FROM = 5, 2
_COMPANY_WORDS = (
    ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka", "Tyrell"),
    ("Labs", "Systems", "Logistics", "Foods", "Health", "Media", "Capital", "Works", "Retail", "Energy"),
)

# Relative activity per UTC hour (index 0..23), normalised below. Busy 08-18, quiet at night.
_HOURLY = (
    0.005, 0.004, 0.004, 0.004, 0.005, 0.008, 0.015, 0.030,
    0.060, 0.085, 0.090, 0.088, 0.070, 0.080, 0.088, 0.085,
    0.075, 0.060, 0.040, 0.025, 0.018, 0.012, 0.008, 0.011,
)  # fmt: skip
_WEEKEND_FACTOR = 0.25
_HOURLY_TOTAL = sum(_HOURLY)
_PEAK = max(_HOURLY) * 24 / _HOURLY_TOTAL  # highest hourly rate relative to the day's average
_DECAY_MS = 14 * DAY_MS
_DECAY_FLOOR = 0.15
_NPS_EVERY_MS = 21 * DAY_MS  # one survey answer per account every three weeks on average
_TICKET_EVERY_MS = 12 * DAY_MS  # a ticket per account every 12 days when happy, 4x more when not
NEVER_MS = 2**62


@dataclass(frozen=True, slots=True)
class SimAccount:
    """A simulated customer account and the story it follows (all times in epoch ms)."""

    account_id: str
    name: str
    seats: int
    users: tuple[str, ...]
    plan: str
    segment: str
    owner: str
    behaviour: str
    daily_events: float  # on an average weekday at full activity
    features: tuple[str, ...]
    change_at_ms: int  # when decaying starts, or when the account stops
    return_at_ms: int  # when a "returns" account comes back (NEVER_MS for the others)
    cancel_at_ms: int | None  # subscription cancelled, for some stopping or decaying accounts
    # When a new account subscribes, during the simulation (None: as the simulation starts).
    started_at_ms: int | None = None
    # A new account's milestone events: (time, event name), in time order.
    milestones: tuple[tuple[int, str], ...] = ()

    def factor(self, at_ms: int) -> float:
        """The share of full activity the behaviour allows at ``at_ms`` (0..1)."""
        if self.started_at_ms is not None and at_ms < self.started_at_ms:
            return 0.0
        if self.behaviour == "onboarding_fails":
            return 1.0 if at_ms < self.change_at_ms else 0.1
        if at_ms < self.change_at_ms or self.behaviour in ("steady", "onboards_fast", "onboards_slow"):
            return 1.0
        if self.behaviour == "decaying":
            return max(_DECAY_FLOOR, 1.0 - (1.0 - _DECAY_FLOOR) * (at_ms - self.change_at_ms) / _DECAY_MS)
        if self.behaviour == "returns" and at_ms >= self.return_at_ms:
            return 1.0
        return 0.0

    def unhappy(self, at_ms: int) -> bool:
        """Whether the account is in the unhappy part of its story (for NPS scores and tickets)."""
        if self.behaviour in ("onboards_fast", "onboards_slow"):
            return False
        return self.behaviour != "steady" and self.change_at_ms - 3 * DAY_MS <= at_ms < self.return_at_ms


def activity_factor(at_ms: int) -> float:
    """Daily and weekly rhythm: the usage rate at ``at_ms`` relative to a weekday's average (UTC)."""
    hour = (at_ms // HOUR_MS) % 24
    weekday = (at_ms // DAY_MS + _MONDAY_OFFSET) % 7
    return _HOURLY[hour] * 24 / _HOURLY_TOTAL * (_WEEKEND_FACTOR if weekday >= 5 else 1.0)


def make_accounts(n: int, seed: int, start_ms: int, horizon_ms: int) -> list[SimAccount]:
    """Build ``n`` seeded accounts whose stories unfold within ``horizon_ms`` after ``start_ms``.

    Decays and stops begin between 30% and 80% of the horizon; returns come 10-40% of it later (so
    some return after the horizon); a third of the stopping accounts and a fifth of the decaying
    ones cancel their subscription 3-10 days after the change. Every fifth account (from the third)
    is new instead: it subscribes to the ``trial`` plan between 15% and 75% of the horizon and
    onboards at the next of :data:`ONBOARDING_PACES` (fast, slow, failing: it stalls 4-8 days in
    and cancels 22-28 days in).
    """
    rng = random.Random(seed)
    # The new accounts draw from their own generator, so the others are the same as without them.
    new_rng = random.Random(f"{seed}/onboarding")
    accounts = []
    for i in range(n):
        seats = rng.choice((3, 5, 10, 25, 50))
        behaviour = rng.choice(BEHAVIOURS)
        change = start_ms + int(horizon_ms * rng.uniform(0.3, 0.8))
        back = change + int(horizon_ms * rng.uniform(0.1, 0.4))
        cancels = (behaviour == "stops" and rng.random() < 1 / 3) or (
            behaviour == "decaying" and rng.random() < 1 / 5
        )
        cancel = change + rng.randint(3 * DAY_MS, 10 * DAY_MS) if cancels else None
        active_users = max(1, round(seats * rng.uniform(0.4, 1.0)))
        name = f"{rng.choice(_COMPANY_WORDS[0])} {rng.choice(_COMPANY_WORDS[1])} {i:03d}"
        accounts.append(
            SimAccount(
                account_id=f"acct-{i:04d}",
                name=name,
                seats=seats,
                users=tuple(f"user-{i:04d}-{u}" for u in range(active_users)),
                plan=rng.choice(PLANS),
                segment=rng.choice(SEGMENTS),
                owner=rng.choice(OWNERS),
                behaviour=behaviour,
                daily_events=active_users * rng.uniform(1.5, 3.5),
                features=FEATURES[: rng.randint(4, len(FEATURES))],
                change_at_ms=change,
                return_at_ms=back if behaviour == "returns" else NEVER_MS,
                cancel_at_ms=cancel,
            )
        )
        if i % _NEW_EVERY == _NEW_FROM:
            accounts[-1] = _new_account(accounts[-1], i // _NEW_EVERY, new_rng, start_ms, horizon_ms)
    return accounts


def _new_account(
    base: SimAccount, nth: int, rng: random.Random, start_ms: int, horizon_ms: int
) -> SimAccount:
    """``base`` as a new account onboarding at the ``nth`` pace (in turn)."""
    pace = ONBOARDING_PACES[nth % len(ONBOARDING_PACES)]
    started = start_ms + int(horizon_ms * rng.uniform(0.15, 0.75))
    users = rng.randint(1, 2) if pace == "onboarding_fails" else rng.randint(4, 8)
    seats = max(base.seats, users)
    cancel = None
    change = NEVER_MS
    if pace == "onboarding_fails":
        change = started + round(rng.uniform(4, 8) * DAY_MS)
        cancel = started + round(rng.uniform(22, 28) * DAY_MS)
    script = sorted(
        (started + round(rng.uniform(lo, hi) * DAY_MS), name) for name, lo, hi in _PACE_SCRIPTS[pace]
    )
    return dataclasses.replace(
        base,
        seats=seats,
        plan="trial",
        users=tuple(f"{base.account_id.replace('acct', 'user')}-{u}" for u in range(users)),
        behaviour=pace,
        daily_events=users * rng.uniform(1.5, 3.5),
        # Milestone events come when the story says, not at random before.
        features=tuple(f for f in base.features if f not in MILESTONE_EVENTS) or ("login",),
        change_at_ms=change,
        return_at_ms=NEVER_MS,
        cancel_at_ms=cancel,
        started_at_ms=started,
        milestones=tuple(script),
    )


# Streams of one account, in the order their first candidates are drawn.
_USAGE, _NPS, _TICKET, _ONCE = range(4)


class Simulation:
    """Events of a set of accounts in simulated time, generated lazily and in time order.

    Usage, NPS answers and ticket openings are non-homogeneous Poisson processes per account, drawn by
    thinning: a candidate time from the peak rate, kept with probability rate(t) / peak. One-off events
    (facts, subscription start and cancel, ticket closes) are scheduled on the same heap, so the output
    is ordered by timestamp (ties by account and stream, deterministically).
    """

    def __init__(self, accounts: list[SimAccount], seed: int, start_ms: int) -> None:
        """Prepare the streams of ``accounts`` from ``start_ms``; nothing is generated yet."""
        self.accounts = accounts
        self.start_ms = start_ms
        self.now_ms = start_ms
        self._tag = f"{start_ms // 1000:x}"
        self._rngs = [random.Random(f"{seed}/{a.account_id}") for a in accounts]
        self._seq = [0] * len(accounts)
        self._heap: list[tuple[int, int, int, int, dict[str, Any] | None]] = []
        self._order = 0
        for idx, account in enumerate(accounts):
            # Facts and the subscription start come first, a few seconds apart per account (a new
            # account's when it starts).
            at = account.started_at_ms if account.started_at_ms is not None else start_ms + idx * 1000
            self._push(at, idx, _ONCE, self._event(idx, "account_updated", at, None, self._facts(account)))
            self._push(
                at + 1,
                idx,
                _ONCE,
                self._event(idx, "subscription_started", at + 1, None, {"plan": account.plan}),
            )
            for n, (when, name) in enumerate(account.milestones):
                # The account's first user invites, exports and connects: an admin's work.
                user = account.users[0]
                props = {"invitee": f"{account.account_id}-invitee-{n}"} if name == "invite_sent" else None
                self._push(when, idx, _ONCE, self._event(idx, name, when, user, props))
            if account.cancel_at_ms is not None:
                cancel = account.cancel_at_ms
                props = {"reason": self._rngs[idx].choice(("price", "missing feature", "switched vendor"))}
                self._push(
                    cancel, idx, _ONCE, self._event(idx, "subscription_cancelled", cancel, None, props)
                )
            for stream in (_USAGE, _NPS, _TICKET):
                self._push(self._next_candidate(idx, stream, start_ms), idx, stream, None)

    @staticmethod
    def _facts(account: SimAccount) -> dict[str, Any]:
        return {
            "name": account.name,
            "seats": account.seats,
            "plan": account.plan,
            "segment": account.segment,
            "owner": account.owner,
        }

    def _push(self, at_ms: int, idx: int, stream: int, event: dict[str, Any] | None) -> None:
        self._order += 1
        heapq.heappush(self._heap, (at_ms, idx, stream, self._order, event))

    def _peak_rate(self, idx: int, stream: int) -> float:
        """Candidates per ms of ``stream``: an upper bound of its rate at any time."""
        account = self.accounts[idx]
        if stream == _USAGE:
            return account.daily_events * _PEAK / DAY_MS
        if stream == _NPS:
            return 1 / _NPS_EVERY_MS
        return 4 / _TICKET_EVERY_MS

    def _rate(self, idx: int, stream: int, at_ms: int) -> float:
        account = self.accounts[idx]
        active = account.factor(at_ms)
        if account.cancel_at_ms is not None and at_ms >= account.cancel_at_ms:
            active = 0.0
        if stream == _USAGE:
            return account.daily_events * activity_factor(at_ms) * active / DAY_MS
        if active == 0.0:
            return 0.0
        if stream == _NPS:
            return 1 / _NPS_EVERY_MS
        return (4 if account.unhappy(at_ms) else 1) / _TICKET_EVERY_MS

    def _next_candidate(self, idx: int, stream: int, after_ms: int) -> int:
        gap = self._rngs[idx].expovariate(self._peak_rate(idx, stream))
        return after_ms + max(1, math.ceil(gap))

    def _event(
        self, idx: int, name: str, at_ms: int, user: str | None, props: dict[str, Any] | None
    ) -> dict[str, Any]:
        account = self.accounts[idx]
        self._seq[idx] += 1
        doc: dict[str, Any] = {
            "event_id": f"{account.account_id}-{self._tag}-{self._seq[idx]}",
            "account_id": account.account_id,
            "event": name,
            "timestamp": ms_to_rfc3339(at_ms),
        }
        if user is not None:
            doc["user_id"] = user
        if props:
            doc["properties"] = props
        return doc

    def _draw(self, idx: int, stream: int, at_ms: int) -> dict[str, Any] | None:
        """The event a kept candidate of ``stream`` becomes (scheduling follow-ups), or None."""
        rng = self._rngs[idx]
        account = self.accounts[idx]
        if rng.random() * self._peak_rate(idx, stream) >= self._rate(idx, stream, at_ms):
            return None
        user = rng.choice(account.users)
        if stream == _USAGE:
            # Most sessions start with a login; the rest spread over the features the account uses.
            name = "login" if rng.random() < 0.2 else rng.choice(account.features)
            return self._event(idx, name, at_ms, user, None)
        if stream == _NPS:
            score = rng.randint(0, 6) if account.unhappy(at_ms) else rng.choice((7, 8, 8, 9, 9, 10))
            return self._event(idx, "nps_response", at_ms, user, {"score": score})
        ticket = f"T-{account.account_id[5:]}-{self._seq[idx] + 1}"
        close = at_ms + rng.randint(2 * HOUR_MS, 3 * DAY_MS)
        self._push(
            close, idx, _ONCE, self._event(idx, "support_ticket_closed", close, None, {"ticket_id": ticket})
        )
        return self._event(idx, "support_ticket_opened", at_ms, user, {"ticket_id": ticket})

    def until(self, sim_ms: int) -> Iterator[dict[str, Any]]:
        """Every event stamped at or before ``sim_ms`` not returned yet, in time order.

        Args:
            sim_ms: How far simulated time has advanced (epoch ms); earlier than a previous call is a no-op.

        Yields:
            Events in the native shape of schema v1 (timestamps as RFC 3339 UTC strings).
        """
        heap = self._heap
        while heap and heap[0][0] <= sim_ms:
            at_ms, idx, stream, _, ready = heapq.heappop(heap)
            if stream == _ONCE:
                event = ready
            else:
                self._push(self._next_candidate(idx, stream, at_ms), idx, stream, None)
                event = self._draw(idx, stream, at_ms)
            if event is not None:
                yield event
        self.now_ms = max(self.now_ms, sim_ms)
