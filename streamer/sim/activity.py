"""Product events of one account on one day: the generator's hot loop.

A day's factor is the account's level, its trend, the day's rhythm (weekend, holiday, Christmas
lull) and an autocorrelated log-normal noise (busy weeks and quiet weeks). Each user is then active
with probability ``p`` times the factor; an active user does 1 + a geometric number of events
(mean ``m``, so the counts are over-dispersed: many light days, a few heavy ones), grouped into
sessions that start at an hour drawn from the account's daily profile, a minute or two apart.
Events outside a user's tenure, after the cancellation, or lost to an outage are not written.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass

from streamer.sim.calendar import DAY_MS, SECONDS, Day
from streamer.sim.encode import product_template
from streamer.sim.model import SimAccount, hours_profile, trend_at

__all__ = ["AccountRun", "account_day"]

_HALF_DAY_MS = DAY_MS // 2
_SESSION_EXTRA = {"b2b": 3.0, "consumer": 2.5}  # events per session beyond the first, on average
_GAP_MS = {"b2b": 100_000, "consumer": 60_000}  # mean time between two events of a session


@dataclass(slots=True)
class AccountRun:
    """The mutable side of generating an account: its random stream, noise state and event count."""

    acct: SimAccount
    rng: random.Random
    template: str
    hours: tuple[float, ...]
    log_session: float
    gap_mean: float
    noise_keep: float
    noise_sd: float
    noise_shift: float  # half the noise's stationary variance, so that its mean factor is 1
    noise: float = 0.0
    seq: int = 0

    @classmethod
    def start(cls, acct: SimAccount, seed: int) -> AccountRun:
        """A fresh run of ``acct`` (the same seed always replays the same events)."""
        extra = _SESSION_EXTRA[acct.shape]
        return cls(
            acct=acct,
            rng=random.Random(f"{seed}/activity/{acct.idx}"),
            template=product_template(acct.account_id, acct.source),
            hours=hours_profile(acct.shape == "consumer", acct.region),
            log_session=math.log(extra / (1 + extra)),
            gap_mean=_GAP_MS[acct.shape],
            noise_keep=acct.noise_keep,
            noise_sd=acct.noise_sd,
            noise_shift=acct.noise_sd**2 / (1 - acct.noise_keep**2) / 2,
        )


def _lost(day: Day, acct: SimAccount) -> list[tuple[int, int, tuple[str, ...]]]:
    """Windows of this day in which the account's events (all, or of the named ones) are missing."""
    windows = [
        (o.start_ms, o.end_ms, o.events) for o in day.outages if not o.sources or acct.source in o.sources
    ]
    end = day.start_ms + DAY_MS
    windows += [(s, e, ()) for s, e in acct.gaps if s < end and e > day.start_ms]
    return windows


def account_day(run: AccountRun, day: Day, scale: float, out: list[tuple[int, str]]) -> None:
    """Append the account's product events of ``day`` to ``out`` as (time, JSON line)."""
    acct = run.acct
    d0 = day.start_ms
    d1 = d0 + DAY_MS
    stop = acct.stop_ms
    if acct.started_ms >= d1 or stop <= d0:
        return
    rng = run.rng
    rand = rng.random
    noise = run.noise = run.noise_keep * run.noise + rng.gauss(0.0, run.noise_sd)
    factor = acct.level * math.exp(noise - run.noise_shift)
    if acct.trend:
        factor *= trend_at(acct.trend, d0 + _HALF_DAY_MS)
    if day.weekend:
        factor *= acct.weekend
    if day.lull:
        factor *= acct.lull
    if day.holiday_regions and acct.region in day.holiday_regions:
        # Consumers spend a public holiday as a weekend day; offices close.
        factor *= acct.holiday * (acct.weekend if acct.shape == "consumer" and not day.weekend else 1.0)
    if factor <= 0.0:
        return
    lost = _lost(day, acct) if day.outages or acct.gaps else []
    hours, top = run.hours, run.hours[-1]
    log_session, gap_mean = run.log_session, run.gap_mean
    template, minutes, login_first = run.template, day.minutes, acct.login_first
    log = math.log
    has_login = acct.features[0] == "login"
    append = out.append
    seq = run.seq
    seconds = SECONDS
    for user in acct.users:
        if user.from_ms >= d1 or user.until_ms <= d0:
            continue
        p = user.p * factor
        mean = user.m * scale
        if p > 1.0:
            mean *= p
            p = 1.0
        if mean < 1.0:
            p *= mean
            mean = 1.0
        if rand() >= p:
            continue
        n = 1 + (int(log(1.0 - rand()) / log((mean - 1) / mean)) if mean > 1.0 else 0)
        lo = max(d0, user.from_ms)
        hi = min(d1, user.until_ms, stop)
        names, cum = user.names, user.cum
        total = cum[-1]
        uid = user.user_id
        while n > 0:
            size = min(n, 1 + int(log(1.0 - rand()) / log_session))
            n -= size
            at = d0 + bisect(hours, rand() * top) * 3_600_000 + int(rand() * 3_600_000)
            if has_login and rand() < login_first:
                name = "login"
            else:
                name = names[bisect(cum, rand() * total)]
            while at < hi:
                if at >= lo and (
                    not lost or not any(s <= at < e and (not ev or name in ev) for s, e, ev in lost)
                ):
                    off = at - d0
                    seq += 1
                    append((at, template % (seq, name, minutes[off // 60_000] + seconds[off % 60_000], uid)))
                size -= 1
                if not size:
                    break
                at += 2000 + int(-log(1.0 - rand()) * gap_mean)
                name = names[bisect(cum, rand() * total)]
    run.seq = seq
