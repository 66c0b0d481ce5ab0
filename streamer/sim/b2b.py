"""Business accounts with seats: who they are, who churns, and the story each one follows.

A quarter of the accounts start during the history and go through onboarding (some never ramp up
and cancel: ``failed_onboarding``); the rest existed before it, with tenures of months to years.
The others churn by a proportional hazard that is higher for thin (low-engagement), small, young
and starter-plan accounts, calibrated so that the portfolio loses its annual churn rate over a year;
the time to cancel is exponential and, for some, moved to a renewal anniversary. Each churner gets
an archetype (``declining``, ``key_user_loss``, ``dark``, ``no_signal``, ``thin``) and each stayer one
(``steady``, ``seasonal``, ``dip``, ``growing``, ``onboarding_success``, ``broken_tracking``, and the
look-alikes of churners that stay: ``champion_change``, where someone takes over from the champion
who left, and ``downsized``, which cuts seats and settles at lower usage).
"""

from __future__ import annotations

import math
import random
from datetime import date

from streamer.sim import stories
from streamer.sim.calendar import DAY_MS, Calendar, date_ms, ms_datetime
from streamer.sim.model import B2B_POPULARITY, SimAccount, between, choose_features, work_time
from streamer.sim.truth import PortfolioParams

__all__ = ["build_b2b"]

YEAR_MS = 365 * DAY_MS
_TAIL_MS = 150 * DAY_MS  # cancellations drawn this far past the end give in-progress churners
_PLANS = {
    "smb": (("starter", "pro", "enterprise"), (0.6, 0.35, 0.05)),
    "mid-market": (("starter", "pro", "enterprise"), (0.2, 0.6, 0.2)),
    "enterprise": (("starter", "pro", "enterprise"), (0.0, 0.3, 0.7)),
}
_OWNERS = {
    "smb": ("ana@csm.example.com", "ben@csm.example.com", "chloe@csm.example.com", "dev@csm.example.com"),
    "mid-market": ("elena@csm.example.com", "farid@csm.example.com", "grace@csm.example.com"),
    "enterprise": ("hiro@csm.example.com", "ines@csm.example.com"),
}
_HAZARD = {"smb": 1.3, "mid-market": 0.9, "enterprise": 0.55}
_WORDS = (
    ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka", "Tyrell",
     "Nimbus", "Soylent", "Cyberdyne", "Oscorp", "Massive", "Pied Piper", "Aperture", "Gringotts"),
    ("Labs", "Systems", "Logistics", "Foods", "Health", "Media", "Capital", "Works", "Retail", "Energy",
     "Analytics", "Studios", "Robotics", "Partners", "Learning", "Travel"),
)  # fmt: skip
_SUFFIX = {
    "eu": ("GmbH", "SAS", "BV", "Ltd"),
    "us": ("Inc", "LLC", "Corp"),
    "apac": ("Pte Ltd", "KK", "Pty Ltd"),
}
_REASONS = {
    "declining": ("low usage", "switched vendor", "budget cuts"),
    "key_user_loss": ("champion left", "low usage", "switched vendor"),
    "dark": ("switched vendor", "project cancelled", "budget cuts"),
    "no_signal": ("budget cuts", "switched vendor", "acquired", "company closed", "price"),
    "thin": ("low usage", "price"),
    "failed_onboarding": ("never adopted", "missing feature", "too complex"),
}


def _draft(rng: random.Random, i: int, cal: Calendar, source: str) -> tuple[SimAccount, bool, float]:
    """An account's facts and rhythm (no users yet); returns it, whether it is new, its adoption."""
    start_ms, end_ms = cal.start_ms, cal.end_ms
    region = rng.choices(("eu", "us", "apac"), (0.45, 0.4, 0.15))[0]
    new = rng.random() < 0.25
    if new:
        started = work_time(rng, rng.randrange(start_ms, end_ms - 21 * DAY_MS), region)
        started = cal.past_outages(source, "subscription_started", started)
    else:
        tenure = math.exp(rng.uniform(math.log(60), math.log(2500))) * DAY_MS
        started = work_time(rng, start_ms - int(tenure), region)
    seats = min(500, max(3, round(math.exp(rng.gauss(math.log(12), 1.25)))))
    # The segment follows the company's size, which the seat count only hints at.
    size = math.log(seats) + rng.gauss(0, 0.5)
    segment = "smb" if size < math.log(20) else "mid-market" if size < math.log(100) else "enterprise"
    plans, weights = _PLANS[segment]
    plan = rng.choices(plans, weights)[0]
    thin = not new and rng.random() < 0.2
    adoption = rng.uniform(0.15, 0.4) if thin else 0.2 + 0.75 * rng.betavariate(2.5, 1.8)
    level = rng.uniform(0.2, 0.45) if thin else min(2.2, max(0.5, rng.lognormvariate(0, 0.35)))
    breadth = {"starter": rng.randint(3, 6), "pro": rng.randint(5, 9), "enterprise": rng.randint(7, 11)}[plan]
    name = f"{rng.choice(_WORDS[0])} {rng.choice(_WORDS[1])} {rng.choice(_SUFFIX[region])}"
    acct = SimAccount(
        idx=i,
        account_id=f"acc-{i:04d}",
        name=name,
        shape="b2b",
        region=region,
        source=source,
        started_ms=started,
        seats=seats,
        plan=plan,
        segment=segment,
        owner=rng.choice(_OWNERS[segment]),
        features=choose_features(rng, max(3, breadth - (2 if thin else 0)), B2B_POPULARITY),
        level=level,
        weekend=rng.uniform(0.05, 0.2),
        lull=rng.uniform(0.1, 0.25) if rng.random() < 0.85 else rng.uniform(0.3, 0.6),
        holiday=rng.uniform(0.1, 0.3),
        seats_end=seats,
        mood=min(9.5, max(3.0, rng.gauss(7.6, 1.2))) - (0.8 if thin else 0.0),
        nps_answer=rng.uniform(0.08, 0.35) * (0.6 if thin else 1.0),
        login_first=rng.uniform(0.2, 0.9),
    )
    acct.archetype = "thin" if thin else "steady"
    return acct, new, adoption


def _failed_onboarding(rng: random.Random, acct: SimAccount, cal: Calendar) -> None:
    """A new account that never ramps up: one to three users, few features, fading, then cancels."""
    acct.archetype = "failed_onboarding"
    acct.features = acct.features[: rng.randint(2, 4)]
    acct.level = rng.uniform(0.3, 0.6)
    for role in ("champion", "member", "member")[: rng.randint(1, 3)]:
        stories.add_user(rng, acct, role, acct.started_ms, B2B_POPULARITY)
    cancel = acct.started_ms + rng.randrange(30 * DAY_MS, 120 * DAY_MS)
    acct.cancel_ms = cal.past_outages(
        acct.source, "subscription_cancelled", work_time(rng, cancel, acct.region)
    )
    acct.signal_ms = acct.started_ms
    stories.onboarding(rng, acct, rng.uniform(7, 21), 0.5)
    fade = acct.started_ms + int((acct.cancel_ms - acct.started_ms) * rng.uniform(0.3, 0.6))
    floor = rng.uniform(0.1, 0.4)
    acct.trend.append((fade, acct.cancel_ms, 1.0, floor, floor))
    acct.episodes.append(("fade", fade, acct.cancel_ms, round(floor, 3)))
    if rng.random() < 0.3:
        stories.dark(acct, acct.cancel_ms - rng.randrange(7 * DAY_MS, 21 * DAY_MS), acct.cancel_ms)
    acct.unhappy_from = acct.started_ms + 14 * DAY_MS


def _solve_rate(exposures: list[tuple[float, float]], target: float) -> float:
    """The yearly base hazard r with sum(1 - exp(-r * weight * years)) == target (bisection)."""
    if target <= 0:
        return 0.0
    lo, hi = 0.0, 50.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(1 - math.exp(-mid * w * y) for w, y in exposures) < target:
            lo = mid
        else:
            hi = mid
    return lo


def _churn_story(rng: random.Random, acct: SimAccount, cancel: int, lo: int, end_ms: int) -> bool:
    """Give a hazard churner its archetype and story; False if nothing of it shows in the history."""
    if acct.archetype == "thin" and rng.random() < 0.6:
        kind = "thin"
    else:
        kind = rng.choices(("declining", "key_user_loss", "dark", "no_signal"), (0.38, 0.18, 0.18, 0.26))[0]
    if kind == "key_user_loss" and len(acct.users) < 3:
        kind = "declining"
    lead_days = {"declining": (30, 120), "key_user_loss": (30, 90), "dark": (14, 60)}.get(kind)
    signal = acct.started_ms if kind == "thin" else None
    if lead_days is not None:
        lead = rng.randrange(lead_days[0] * DAY_MS, lead_days[1] * DAY_MS)
        signal = max(cancel - lead, acct.started_ms + 30 * DAY_MS)
    if cancel >= end_ms and (signal is None or signal >= end_ms):
        return False
    acct.archetype, acct.cancel_ms, acct.signal_ms = kind, cancel, signal
    stories.turnover(rng, acct, lo, min(end_ms, cancel if signal is None else signal), 0.12, B2B_POPULARITY)
    if kind == "declining" and signal is not None:
        stories.declining(rng, acct, signal, cancel)
    elif kind == "key_user_loss" and signal is not None:
        stories.key_user_loss(rng, acct, signal, cancel)
    elif kind == "dark" and signal is not None:
        stories.dark(acct, signal, cancel)
    elif kind == "thin":
        acct.unhappy_from = acct.started_ms
    return True


def _stayer_story(
    rng: random.Random, acct: SimAccount, new: bool, adoption: float, lo: int, end_ms: int
) -> None:
    if new:
        acct.archetype = "onboarding_success"
        return
    if acct.archetype == "thin":
        acct.archetype = "steady"
        return
    kinds = ("steady", "dip", "growing", "seasonal", "champion_change", "downsized", "broken_tracking")
    kind = rng.choices(kinds, (0.5, 0.15, 0.13, 0.09, 0.05, 0.05, 0.03))[0]
    if kind == "champion_change" and len(acct.users) < 2:
        kind = "steady"
    acct.archetype = kind
    if kind == "dip":
        s = between(rng, lo + 14 * DAY_MS, end_ms - 14 * DAY_MS)
        stories.dip(acct, s, s + rng.randrange(7 * DAY_MS, 28 * DAY_MS), rng.uniform(0.5, 0.9))
    elif kind == "seasonal":
        s = between(rng, lo + 7 * DAY_MS, end_ms - 35 * DAY_MS)
        for year in range(ms_datetime(lo).year, ms_datetime(end_ms).year + 1):
            summer = date_ms(date(year, 6, 20))
            if lo <= summer and summer + 60 * DAY_MS <= end_ms:
                s = summer + rng.randrange(25 * DAY_MS)
        stories.seasonal_dip(acct, s, s + rng.randrange(28 * DAY_MS, 56 * DAY_MS), rng.uniform(0.4, 0.8))
    elif kind == "growing":
        stories.growth(rng, acct, lo, end_ms, adoption, B2B_POPULARITY)
        if acct.plan != "enterprise" and rng.random() < 0.3:
            at_ms = acct.fact_changes[-1][0]
            acct.fact_changes.append((at_ms, {"plan": "pro" if acct.plan == "starter" else "enterprise"}))
    elif kind == "champion_change":
        stories.champion_change(
            rng, acct, between(rng, lo + 14 * DAY_MS, end_ms - 30 * DAY_MS), B2B_POPULARITY
        )
    elif kind == "downsized":
        stories.downsize(rng, acct, between(rng, lo + 14 * DAY_MS, end_ms - 30 * DAY_MS))
    elif kind == "broken_tracking":
        s = between(rng, lo + 7 * DAY_MS, end_ms - 14 * DAY_MS)
        stories.tracking_gap(acct, s, s + rng.randrange(3 * DAY_MS, 10 * DAY_MS))


def build_b2b(params: PortfolioParams, cal: Calendar, sources: list[str]) -> tuple[list[SimAccount], float]:
    """Build the b2b accounts of a history; returns them and the annual churn rate used."""
    start_ms, end_ms = cal.start_ms, cal.end_ms
    years = (end_ms - start_ms) / YEAR_MS
    churn = (
        params.churn_rate
        if params.churn_rate is not None
        else random.Random(f"{params.seed}/b2b/churn").uniform(0.15, 0.2)
    )
    rngs = [random.Random(f"{params.seed}/b2b/{i}") for i in range(params.accounts)]
    drafts = [_draft(rngs[i], i, cal, sources[i]) for i in range(params.accounts)]
    failed = 0
    exposures: list[tuple[float, float]] = []
    weights: list[float] = []
    for (acct, new, adoption), rng in zip(drafts, rngs, strict=True):
        if new and rng.random() < 0.16:
            _failed_onboarding(rng, acct, cal)
            failed += int((acct.cancel_ms or end_ms) < end_ms)
            weights.append(0.0)
            continue
        stories.add_user(rng, acct, "champion", acct.started_ms, B2B_POPULARITY)
        n_users = max(1, round(acct.seats * adoption))
        if n_users >= 4 and rng.random() < 0.5:
            stories.add_user(rng, acct, "deputy", acct.started_ms, B2B_POPULARITY)
        while len(acct.users) < n_users:
            stories.add_user(rng, acct, "member", acct.started_ms, B2B_POPULARITY)
        tenure_years = (start_ms - acct.started_ms) / YEAR_MS
        w = _HAZARD[acct.segment] * (1.15 if acct.plan == "starter" else 1.0)
        # Engagement (how much of the account uses the product, how much) drives the hazard most.
        w *= min(3.5, max(0.4, (acct.level * adoption / 0.6) ** -0.8))
        w *= 1.4 if tenure_years < 1 else 1.0 if tenure_years < 2 else 0.75
        w *= rng.lognormvariate(0, 0.4)
        weights.append(w)
        exposure_start = max(start_ms, acct.started_ms + 60 * DAY_MS)
        exposures.append((w, max(0, end_ms - exposure_start) / YEAR_MS))
    rate = _solve_rate(exposures, churn * years * params.accounts - failed)
    for (acct, new, adoption), rng, w in zip(drafts, rngs, weights, strict=True):
        if acct.archetype == "failed_onboarding":
            continue
        lo = max(start_ms, acct.started_ms + 30 * DAY_MS)
        if new:
            stories.onboarding(rng, acct, rng.uniform(14, 56), rng.uniform(0.3, 0.6))
        exposure_start = max(start_ms, acct.started_ms + 60 * DAY_MS)
        cancel = exposure_start + int(rng.expovariate(rate * w) * YEAR_MS) if rate > 0 else 2**62
        if cancel < end_ms + _TAIL_MS and rng.random() < 0.45:
            # Contracts renew yearly; many customers leave at the renewal nearest their decision.
            years_in = round((cancel - acct.started_ms) / YEAR_MS)
            renewal = acct.started_ms + max(1, years_in) * YEAR_MS - rng.randrange(14 * DAY_MS)
            cancel = renewal if renewal >= exposure_start else cancel
        churns = cancel < end_ms + _TAIL_MS
        if churns:
            cancel = cal.past_outages(
                acct.source, "subscription_cancelled", work_time(rng, cancel, acct.region)
            )
            churns = _churn_story(rng, acct, cancel, lo, end_ms)
        if not churns:
            stories.turnover(rng, acct, lo, end_ms, 0.12, B2B_POPULARITY)
            _stayer_story(rng, acct, new, adoption, lo, end_ms)
        if rng.random() < 0.08:
            acct.fact_changes.append((between(rng, lo, end_ms), {"owner": rng.choice(_OWNERS[acct.segment])}))
    for acct, _, _ in drafts:
        acct.cancel_reason = rngs[acct.idx].choice(_REASONS.get(acct.archetype, ("budget cuts",)))
        acct.tickets_per_month = 0.1 + 0.1 * len(acct.users) ** 0.5
    return [a for a, _, _ in drafts], churn
