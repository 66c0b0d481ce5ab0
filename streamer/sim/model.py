"""The generator's model of an account: its users, rhythm, trend over time and story.

An account's product usage on a day is its ``level`` times its trend (a product of piecewise linear
pieces: onboarding ramps, declines, dips, growth) times the day's rhythm (weekend, holiday, lull)
times an autocorrelated noise. Each user is active on a day with probability ``p`` times that
factor and then does a heavy-tailed number of events (mean ``m``) in sessions during the region's
working (or, for consumers, waking) hours. Users join and leave at their own times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import accumulate

from streamer.sim.calendar import DAY_MS, HOUR_MS, MINUTE_MS, REGIONS, weekday
from streamer.sim.seeded import FEATURES

__all__ = [
    "ADMIN_FEATURES",
    "NEVER_MS",
    "Piece",
    "between",
    "SimAccount",
    "SimUser",
    "choose_features",
    "hours_profile",
    "trend_at",
    "user_preferences",
    "work_time",
]

NEVER_MS = 2**62
# (start_ms, end_ms, factor at start, factor at end, factor after end); 1.0 before the start.
Piece = tuple[int, int, float, float, float]

# How often a feature is used relative to the others, once an account uses it (logins are mostly
# tracked at the start of a session, see SimAccount.login_first).
B2B_POPULARITY = {
    "login": 0.3,
    "dashboard_viewed": 1.4,
    "report_viewed": 1.0,
    "report_exported": 0.35,
    "search": 0.8,
    "comment_added": 0.6,
    "invite_sent": 0.04,
    "integration_synced": 0.3,
    "file_uploaded": 0.45,
    "settings_changed": 0.06,
    "automation_created": 0.05,
    "api_key_created": 0.01,
}
CONSUMER_POPULARITY = {
    **B2B_POPULARITY,
    "dashboard_viewed": 1.6,
    "comment_added": 0.3,
    "invite_sent": 0.08,
    "integration_synced": 0.05,
    "automation_created": 0.01,
    "api_key_created": 0.002,
}
ADMIN_FEATURES = frozenset({"invite_sent", "settings_changed", "automation_created", "api_key_created"})
assert set(B2B_POPULARITY) == set(FEATURES)  # noqa: S101 - a typo here would silently skew usage

# Relative activity per local hour. Office hours with a lunch dip; consumers in the evening.
_OFFICE = (
    0.02, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.2, 0.6, 0.95, 1.0, 0.95,
    0.6, 0.8, 0.95, 0.9, 0.75, 0.45, 0.2, 0.12, 0.1, 0.08, 0.05, 0.03,
)  # fmt: skip
_LEISURE = (
    0.15, 0.08, 0.04, 0.02, 0.02, 0.04, 0.2, 0.45, 0.5, 0.4, 0.4, 0.45,
    0.6, 0.5, 0.45, 0.45, 0.5, 0.6, 0.8, 1.0, 1.0, 0.9, 0.6, 0.3,
)  # fmt: skip


def hours_profile(consumer: bool, region: str) -> tuple[float, ...]:
    """Cumulative weights of the 24 UTC hours for a region's office (or leisure) day."""
    local = _LEISURE if consumer else _OFFICE
    offset = REGIONS[region]
    return tuple(accumulate(local[(h + offset) % 24] for h in range(24)))


def trend_at(pieces: list[Piece], at_ms: int) -> float:
    """The product of the trend pieces at ``at_ms``."""
    f = 1.0
    for start, end, f0, f1, after in pieces:
        if at_ms < start:
            continue
        if at_ms >= end:
            f *= after
        else:
            f *= f0 + (f1 - f0) * (at_ms - start) / (end - start)
    return f


def between(rng: random.Random, lo: int, hi: int) -> int:
    """A uniform integer in [lo, hi), or ``lo`` when the range is empty (short histories)."""
    return rng.randrange(lo, hi) if hi > lo else lo


def work_time(rng: random.Random, at_ms: int, region: str) -> int:
    """A moment of office hours (09-17 local) on the first weekday on or after ``at_ms``'s day."""
    day = at_ms // DAY_MS * DAY_MS
    while weekday(day) >= 5:
        day += DAY_MS
    t = day + (9 - REGIONS[region]) * HOUR_MS + rng.randrange(8 * 60) * MINUTE_MS + rng.randrange(60_000)
    return max(t, at_ms)


def choose_features(rng: random.Random, k: int, popularity: dict[str, float]) -> tuple[str, ...]:
    """``k`` features (login always among them), the popular ones more likely, in FEATURES order."""
    chosen = {"login"}
    rest = [f for f in FEATURES if f != "login"]
    while len(chosen) < min(k, len(FEATURES)):
        weights = [0.0 if f in chosen else popularity[f] for f in rest]
        chosen.add(rng.choices(rest, weights)[0])
    return tuple(f for f in FEATURES if f in chosen)


def user_preferences(
    rng: random.Random, features: tuple[str, ...], popularity: dict[str, float], admin: bool
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """A user's taste: the account's features with cumulative weights (admins do the admin work)."""
    weights = []
    for f in features:
        w = popularity[f] * rng.expovariate(1.0)
        if f in ADMIN_FEATURES:
            w *= 6.0 if admin else 0.3
        weights.append(w + 1e-3)
    return features, tuple(accumulate(weights))


@dataclass(slots=True)
class SimUser:
    """A named user: daily activity probability ``p``, events per active day ``m``, tenure.

    ``names`` are the account's features and ``cum`` this user's cumulative preference weights.
    """

    user_id: str
    p: float
    m: float
    from_ms: int
    until_ms: int
    names: tuple[str, ...]
    cum: tuple[float, ...]
    key: bool = False


@dataclass(slots=True)
class SimAccount:
    """An account as generated: facts, users, rhythm and story (times in epoch ms).

    ``cancel_ms`` is when the subscription is cancelled, possibly after the history's end (then the
    truth says None); ``stop_ms`` is when its events stop (the cancellation, or NEVER_MS).
    """

    idx: int
    account_id: str
    name: str
    shape: str
    region: str
    source: str
    started_ms: int
    seats: int
    plan: str
    segment: str
    owner: str | None
    features: tuple[str, ...]
    level: float
    weekend: float
    lull: float
    holiday: float
    archetype: str = "steady"
    cancel_ms: int | None = None
    signal_ms: int | None = None
    cancel_reason: str = ""
    seats_end: int = 0
    users: list[SimUser] = field(default_factory=list)
    trend: list[Piece] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    episodes: list[tuple[str, int, int, float]] = field(default_factory=list)
    fact_changes: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    unhappy_from: int = NEVER_MS
    dark_from: int = NEVER_MS
    mood: float = 7.5  # latent satisfaction 0..10 behind NPS answers
    tickets_per_month: float = 0.5
    nps_answer: float = 0.2  # chance the account answers a survey wave
    login_first: float = 0.5  # chance a session starts with a tracked login
    noise_keep: float = 0.85  # day-to-day persistence of the activity noise (AR(1) on the log)
    noise_sd: float = 0.15

    @property
    def stop_ms(self) -> int:
        """When this account's events stop: at its cancellation, else never."""
        return NEVER_MS if self.cancel_ms is None else self.cancel_ms

    @property
    def key_users(self) -> tuple[str, ...]:
        """User ids of the champion(s), in order of importance."""
        return tuple(u.user_id for u in self.users if u.key)

    def facts(
        self, seats: int | None = None, plan: str | None = None, owner: str | None = None
    ) -> dict[str, object]:
        """The account's facts for ``account_updated`` (or a Segment ``group`` call's traits)."""
        doc: dict[str, object] = {
            "name": self.name,
            "seats": self.seats if seats is None else seats,
            "plan": plan or self.plan,
            "segment": self.segment,
        }
        if owner or self.owner:
            doc["owner"] = owner or self.owner
        return doc
