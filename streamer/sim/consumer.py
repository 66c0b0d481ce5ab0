"""Individual subscriptions: one person per account, monthly or annual billing, steady acquisition.

Subscribers cancel at billing periods: each monthly period (each year for annual plans) carries a
hazard that is higher in the first months and for light users, calibrated so that the portfolio's
monthly churn (cancellations over subscriber-months in the history) is its churn rate. Many leave
without warning (price, a failed payment: ``no_signal``); the others fade (``declining``) or stop
(``dark``) one to six weeks before. Stayers are ``steady``, take a break (``dip``), drift into
hardly using what they pay for (``lapsed``) or have their app's tracking break for a few days
(``broken_tracking``).
"""

from __future__ import annotations

import random

from streamer.sim import stories
from streamer.sim.calendar import DAY_MS, HOUR_MS, Calendar
from streamer.sim.model import CONSUMER_POPULARITY, SimAccount, between, choose_features
from streamer.sim.truth import PortfolioParams

__all__ = ["build_consumer"]

MONTH_MS = 2_629_746_000  # a mean Gregorian month
YEAR_MS = 12 * MONTH_MS
_TAIL_MS = 60 * DAY_MS
_FIRST = ("Alex", "Sam", "Maria", "Yuki", "Omar", "Lena", "Chen", "Priya", "Lucas", "Ava", "Noah", "Zoe",
          "Ines", "Tom", "Aiko", "Mateo", "Nora", "Ravi", "Emma", "Jonas")  # fmt: skip
_LAST = "ABCDEFGHIJKLMNOPRSTVWZ"
_REASONS = {
    "declining": ("not using", "too expensive", "switched app"),
    "dark": ("not using", "switched app"),
    "no_signal": ("price", "price", "no longer needed", "switched app"),
}


def _tenure_factor(months: int) -> float:
    return (
        2.2 if months <= 1 else 1.5 if months <= 3 else 1.15 if months <= 6 else 0.7 if months >= 12 else 1.0
    )


def _periods(acct: SimAccount, annual: bool, start_ms: int, end_ms: int) -> list[tuple[int, int, int]]:
    """Billing periods (start, end, number) ending after the history starts, up to the tail."""
    length = YEAR_MS if annual else MONTH_MS
    k = max(1, (start_ms - acct.started_ms) // length + 1)
    out = []
    while acct.started_ms + (k - 1) * length < end_ms + _TAIL_MS:
        out.append((acct.started_ms + (k - 1) * length, acct.started_ms + k * length, k))
        k += 1
    return out


def _hazard(base: float, weight: float, k: int, annual: bool) -> float:
    """The chance to cancel in period ``k`` (annual subscribers decide once a year, and stick more)."""
    if annual:
        monthly = min(0.9, base * weight * _tenure_factor(12 * k) * 0.5)
        return 1 - (1 - monthly) ** 12
    return min(0.9, base * weight * _tenure_factor(k))


def _calibrate(
    plans: list[tuple[list[tuple[int, int, int]], float, bool]], rate: float, start: int, end: int
) -> float:
    """The base hazard whose expected cancellations per subscriber-month in the history are ``rate``."""

    def monthly(base: float) -> float:
        cancels = months = 0.0
        for periods, weight, annual in plans:
            alive = 1.0
            for s, e, k in periods:
                if s >= end:
                    break
                q = _hazard(base, weight, k, annual)
                months += alive * max(0, min(e, end) - max(s, start)) / MONTH_MS
                if e <= end:
                    cancels += alive * q
                alive *= 1 - q
        return cancels / months if months else 0.0

    lo, hi = 0.0, 0.5
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if monthly(mid) < rate else (lo, mid)
    return lo


def _draft(rng: random.Random, i: int, cal: Calendar, source: str) -> tuple[SimAccount, bool]:
    start_ms, end_ms = cal.start_ms, cal.end_ms
    region = rng.choices(("eu", "us", "apac"), (0.4, 0.45, 0.15))[0]
    new = rng.random() < 0.4
    if new:
        started = cal.past_outages(
            source, "subscription_started", rng.randrange(start_ms, end_ms - 7 * DAY_MS)
        )
    else:
        started = start_ms - int((0.3 + min(60.0, rng.expovariate(1 / 14))) * MONTH_MS)
    acct = SimAccount(
        idx=i,
        account_id=f"sub-{i:05d}",
        name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}.",
        shape="consumer",
        region=region,
        source=source,
        started_ms=started,
        seats=1,
        plan="annual" if rng.random() < 0.3 else "monthly",
        segment=rng.choices(("personal", "student", "professional"), (0.6, 0.15, 0.25))[0],
        owner=None,
        features=choose_features(rng, rng.randint(3, 8), CONSUMER_POPULARITY),
        level=rng.lognormvariate(0, 0.3),
        weekend=rng.uniform(1.0, 1.4),
        lull=rng.uniform(0.4, 1.7),
        holiday=rng.uniform(0.8, 1.3),
        seats_end=1,
        mood=min(9.8, max(2.0, rng.gauss(7.3, 1.6))),
        nps_answer=rng.uniform(0.05, 0.15),
        tickets_per_month=0.06,
        login_first=rng.uniform(0.3, 0.9),
        noise_keep=0.8,
        noise_sd=0.3,
    )
    user = stories.add_user(
        rng, acct, "consumer", started + rng.randrange(60_000, HOUR_MS), CONSUMER_POPULARITY
    )
    user.key = True
    if new:
        burst = rng.uniform(1.2, 1.8)
        end = started + rng.randrange(14 * DAY_MS, 28 * DAY_MS)
        acct.trend.append((started, end, burst, 1.0, 1.0))
        acct.episodes.append(("new_subscriber_burst", started, end, round(burst, 3)))
    return acct, new


def _cancel_time(rng: random.Random, s: int, e: int) -> tuple[int, bool]:
    """When a subscriber leaves in period [s, e): mostly just before renewal; some payments fail."""
    r = rng.random()
    if r < 0.45:
        return e - rng.randrange(3 * DAY_MS), False
    if r < 0.65:
        return e + rng.randrange(HOUR_MS, 6 * DAY_MS), True
    return between(rng, s + DAY_MS, e), False


def build_consumer(
    params: PortfolioParams, cal: Calendar, sources: list[str]
) -> tuple[list[SimAccount], float]:
    """Build the consumer accounts of a history; returns them and the monthly churn rate used."""
    start_ms, end_ms = cal.start_ms, cal.end_ms
    portfolio_rng = random.Random(f"{params.seed}/consumer/churn")
    churn = params.churn_rate if params.churn_rate is not None else portfolio_rng.uniform(0.03, 0.05)
    no_signal_share = portfolio_rng.uniform(0.42, 0.58)
    rngs = [random.Random(f"{params.seed}/consumer/{i}") for i in range(params.accounts)]
    drafts = [_draft(rngs[i], i, cal, sources[i]) for i in range(params.accounts)]
    plans = []
    for (acct, _), rng in zip(drafts, rngs, strict=True):
        user = acct.users[0]
        engagement = acct.level * user.p * user.m
        weight = min(2.0, max(0.6, engagement**-0.35)) * rng.lognormvariate(0, 0.3)
        annual = acct.plan == "annual"
        plans.append((_periods(acct, annual, start_ms, end_ms), weight, annual))
    base = _calibrate(plans, churn, start_ms, end_ms)
    for (acct, _), rng, (periods, weight, annual) in zip(drafts, rngs, plans, strict=True):
        cancel = None
        failed_payment = False
        for s, e, k in periods:
            if rng.random() < _hazard(base, weight, k, annual):
                cancel, failed_payment = _cancel_time(rng, max(s, acct.started_ms), e)
                break
        lo = max(start_ms, acct.started_ms + DAY_MS)
        if cancel is not None:
            cancel = cal.past_outages(acct.source, "subscription_cancelled", max(cancel, lo + HOUR_MS))
            kind = (
                "no_signal"
                if failed_payment or rng.random() < no_signal_share
                else rng.choice(("declining", "dark"))
            )
            signal = (
                None
                if kind == "no_signal"
                else max(cancel - rng.randrange(7 * DAY_MS, 42 * DAY_MS), acct.started_ms + 3 * DAY_MS)
            )
            if cancel < end_ms or (signal is not None and signal < end_ms):
                acct.archetype, acct.cancel_ms, acct.signal_ms = kind, cancel, signal
                acct.cancel_reason = "payment failed" if failed_payment else rng.choice(_REASONS[kind])
                if kind == "declining" and signal is not None:
                    floor = rng.uniform(0.05, 0.3)
                    fall = max(DAY_MS, int((cancel - signal) * rng.uniform(0.5, 1.0)))
                    acct.trend.append((signal, signal + fall, 1.0, floor, floor))
                    acct.episodes.append(("decline", signal, cancel, round(floor, 3)))
                    acct.unhappy_from = signal
                elif kind == "dark" and signal is not None:
                    stories.dark(acct, signal, cancel)
                continue
        kind = rng.choices(("steady", "dip", "lapsed", "broken_tracking"), (0.78, 0.12, 0.08, 0.02))[0]
        acct.archetype = kind
        if kind == "lapsed":
            # Pays on, hardly uses it: the subscriber everybody expects to cancel, who does not (yet).
            s = between(rng, lo + 14 * DAY_MS, end_ms - 30 * DAY_MS)
            floor = rng.uniform(0.0, 0.2)
            acct.trend.append((s, s + rng.randrange(14 * DAY_MS, 56 * DAY_MS), 1.0, floor, floor))
            acct.episodes.append(("lapse", s, acct.trend[-1][1], round(floor, 3)))
        elif kind == "dip":
            s = between(rng, lo + 7 * DAY_MS, end_ms - 7 * DAY_MS)
            stories.dip(acct, s, s + rng.randrange(7 * DAY_MS, 21 * DAY_MS), rng.uniform(0.6, 0.95))
        elif kind == "broken_tracking":
            s = between(rng, lo + 7 * DAY_MS, end_ms - 14 * DAY_MS)
            stories.tracking_gap(acct, s, s + rng.randrange(3 * DAY_MS, 10 * DAY_MS))
    return [a for a, _ in drafts], churn
