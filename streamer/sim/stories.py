"""What happens to an account over time: users joining and leaving, ramps, declines, dips, gaps.

Each function edits a :class:`SimAccount` being built (its users, trend pieces, tracking gaps) and
records an episode for the truth file. They model customers, not detectors: a decline is users
drifting away one by one while the rest do less, a dark account is everyone stopping at once.
"""

from __future__ import annotations

import math
import random

from streamer.sim.calendar import DAY_MS, HOUR_MS
from streamer.sim.model import NEVER_MS, SimAccount, SimUser, between, user_preferences

__all__ = [
    "add_user",
    "champion_change",
    "downsize",
    "dark",
    "declining",
    "dip",
    "growth",
    "key_user_loss",
    "onboarding",
    "seasonal_dip",
    "tracking_gap",
    "turnover",
]


def add_user(
    rng: random.Random, acct: SimAccount, role: str, from_ms: int, popularity: dict[str, float]
) -> SimUser:
    """Add a user: ``champion`` (the admin who does most), ``deputy`` (a second key user) or ``member``.

    Members' daily activity probability is log-normal around 0.3 and their events per active day
    about 3, so that a few users carry much of an account's usage, as in real products.
    """
    if role == "champion":
        p, m = rng.uniform(0.8, 0.97), rng.uniform(5.0, 12.0)
    elif role == "deputy":
        p, m = rng.uniform(0.6, 0.9), rng.uniform(4.0, 9.0)
    elif role == "consumer":
        p = min(0.95, max(0.03, rng.lognormvariate(math.log(0.4), 0.75)))
        m = 1.5 + rng.lognormvariate(math.log(3.0), 0.6)
    else:
        p = min(0.9, max(0.03, rng.lognormvariate(math.log(0.22), 0.6)))
        m = 1.5 + rng.lognormvariate(math.log(1.5), 0.6)
    admin = role == "champion" or (role == "deputy" and rng.random() < 0.5)
    names, cum = user_preferences(rng, acct.features, popularity, admin)
    user = SimUser(
        f"{acct.account_id}-u{len(acct.users)}",
        p,
        m,
        from_ms,
        NEVER_MS,
        names,
        cum,
        role in ("champion", "deputy"),
    )
    acct.users.append(user)
    return user


def onboarding(rng: random.Random, acct: SimAccount, ramp_days: float, start_level: float) -> None:
    """A new account ramps up: users join over ``ramp_days`` (the champion first) as usage grows."""
    ramp = int(ramp_days * DAY_MS)
    for i, user in enumerate(acct.users):
        if i == 0:
            user.from_ms = acct.started_ms + rng.randrange(10 * 60_000, 2 * DAY_MS)
        else:
            user.from_ms = acct.started_ms + int(ramp * rng.random() ** 1.3) + rng.randrange(DAY_MS)
    acct.trend.append((acct.started_ms, acct.started_ms + ramp, start_level, 1.0, 1.0))
    acct.episodes.append(("onboarding_ramp", acct.started_ms, acct.started_ms + ramp, round(start_level, 3)))


def turnover(
    rng: random.Random, acct: SimAccount, lo_ms: int, hi_ms: int, yearly: float, popularity: dict[str, float]
) -> None:
    """Ordinary staff turnover: some members leave during [lo, hi) and most are replaced later."""
    years = (hi_ms - lo_ms) / (365 * DAY_MS)
    for user in list(acct.users):
        if user.key or rng.random() >= yearly * years:
            continue
        left = max(lo_ms, user.from_ms + 1)
        if left >= hi_ms:
            continue
        user.until_ms = rng.randrange(left, hi_ms)
        if rng.random() < 0.8:
            add_user(rng, acct, "member", user.until_ms + rng.randrange(3 * DAY_MS, 30 * DAY_MS), popularity)


def _activity(acct: SimAccount, at_ms: int) -> float:
    """The expected activity of the users present at ``at_ms`` (before trend and rhythm)."""
    return sum(u.p * u.m for u in acct.users if u.from_ms <= at_ms < u.until_ms)


def _kept(acct: SimAccount, before_ms: int, after_ms: int) -> float:
    """The share of the activity at ``before_ms`` that the users present at ``after_ms`` make."""
    before = _activity(acct, before_ms)
    return round(_activity(acct, after_ms) / before, 3) if before else 0.0


def declining(rng: random.Random, acct: SimAccount, signal_ms: int, cancel_ms: int) -> None:
    """Usage falls gradually from ``signal_ms``: members drop off one by one, the rest do less."""
    span = cancel_ms - signal_ms
    fall = max(DAY_MS, int(span * rng.uniform(0.5, 1.0)))
    floor = rng.uniform(0.1, 0.35)
    acct.trend.append((signal_ms, signal_ms + fall, 1.0, floor, floor))
    leaving = rng.uniform(0.5, 1.0)
    for user in acct.users:
        if not user.key and rng.random() < leaving:
            user.until_ms = min(user.until_ms, signal_ms + int(span * rng.uniform(0.05, 0.95)))
    kept = _kept(acct, signal_ms - 1, cancel_ms - 1)
    acct.episodes.append(("decline", signal_ms, cancel_ms, round(floor * kept, 3)))
    acct.unhappy_from = signal_ms


def key_user_loss(rng: random.Random, acct: SimAccount, signal_ms: int, cancel_ms: int) -> None:
    """The champion leaves at ``signal_ms``; the others go on, in half the cases fading slowly later."""
    champion = acct.users[0]
    champion.until_ms = signal_ms
    acct.episodes.append(("key_user_left", signal_ms, cancel_ms, _kept(acct, signal_ms - 1, signal_ms)))
    fade_at = signal_ms + rng.randrange(10 * DAY_MS, 40 * DAY_MS)
    if rng.random() < 0.5 and fade_at < cancel_ms - DAY_MS:
        floor = rng.uniform(0.5, 0.8)
        acct.trend.append((fade_at, cancel_ms, 1.0, floor, floor))
        acct.episodes.append(("decline", fade_at, cancel_ms, round(floor, 3)))
    acct.unhappy_from = signal_ms + 7 * DAY_MS


def dark(acct: SimAccount, signal_ms: int, cancel_ms: int) -> None:
    """Every user stops at ``signal_ms``; nothing more happens until the cancellation."""
    for user in acct.users:
        user.until_ms = min(user.until_ms, signal_ms)
    acct.episodes.append(("went_dark", signal_ms, cancel_ms, 0.0))
    acct.dark_from = signal_ms
    acct.unhappy_from = signal_ms


def champion_change(rng: random.Random, acct: SimAccount, at_ms: int, popularity: dict[str, float]) -> None:
    """The champion leaves at ``at_ms`` and, a few days to three weeks later, someone takes over."""
    acct.users[0].until_ms = at_ms
    successor = at_ms + rng.randrange(3 * DAY_MS, 21 * DAY_MS)
    kept = _kept(acct, at_ms - 1, at_ms)
    add_user(rng, acct, "champion", successor, popularity)
    acct.episodes.append(("key_user_replaced", at_ms, successor, kept))


def downsize(rng: random.Random, acct: SimAccount, at_ms: int) -> None:
    """The customer shrinks but stays: seats are cut, members leave, usage settles lower."""
    keep = rng.uniform(0.4, 0.7)
    seats = max(1, round(acct.seats * keep))
    acct.fact_changes.append((at_ms, {"seats": seats}))
    acct.seats_end = seats
    for user in acct.users:
        if not user.key and rng.random() > keep:
            user.until_ms = min(user.until_ms, at_ms + rng.randrange(-14 * DAY_MS, 14 * DAY_MS))
    level = rng.uniform(0.6, 0.9)
    acct.trend.append((at_ms, at_ms + 14 * DAY_MS, 1.0, level, level))
    kept = _kept(acct, at_ms - 14 * DAY_MS - 1, at_ms + 14 * DAY_MS)
    acct.episodes.append(("downsized", at_ms, at_ms + 14 * DAY_MS, round(level * kept, 3)))


def dip(acct: SimAccount, start_ms: int, end_ms: int, depth: float, kind: str = "dip") -> None:
    """Activity falls by ``depth`` (0..1) for [start, end), then comes back (a pause, a vacation)."""
    acct.trend.append((start_ms, end_ms, 1.0 - depth, 1.0 - depth, 1.0))
    acct.episodes.append((kind, start_ms, end_ms, round(1.0 - depth, 3)))


def seasonal_dip(acct: SimAccount, start_ms: int, end_ms: int, depth: float) -> None:
    """A seasonal low with week-long slopes in and out (a summer break in education, say)."""
    edge = min(7 * DAY_MS, (end_ms - start_ms) // 4)
    low = 1.0 - depth
    acct.trend.append((start_ms, start_ms + edge, 1.0, low, 1.0))
    acct.trend.append((start_ms + edge, end_ms - edge, low, low, 1.0))
    acct.trend.append((end_ms - edge, end_ms, low, 1.0, 1.0))
    acct.episodes.append(("seasonal_dip", start_ms, end_ms, round(low, 3)))


def tracking_gap(acct: SimAccount, start_ms: int, end_ms: int) -> None:
    """The account's own tracking breaks: its events in [start, end) are missing (usage goes on)."""
    acct.gaps.append((start_ms, end_ms))
    acct.episodes.append(("tracking_gap", start_ms, end_ms, 0.0))


def growth(
    rng: random.Random,
    acct: SimAccount,
    lo_ms: int,
    hi_ms: int,
    adoption: float,
    popularity: dict[str, float],
) -> None:
    """The account grows: seats are added in one to three steps, new users follow, usage deepens."""
    final = max(acct.seats + 2, round(acct.seats * rng.uniform(1.3, 2.5)))
    steps = sorted(between(rng, lo_ms, hi_ms - 14 * DAY_MS) for _ in range(rng.randint(1, 3)))
    for j, at_ms in enumerate(steps, start=1):
        seats = acct.seats + (final - acct.seats) * j // len(steps)
        acct.fact_changes.append((at_ms, {"seats": seats}))
        while len(acct.users) < max(1, round(seats * adoption)):
            add_user(rng, acct, "member", at_ms + rng.randrange(HOUR_MS, 30 * DAY_MS), popularity)
    acct.seats_end = final
    deeper = rng.uniform(1.05, 1.4)
    acct.trend.append((lo_ms, hi_ms, 1.0, deeper, deeper))
    acct.episodes.append(("growth", lo_ms, hi_ms, round(deeper, 3)))
