"""An account's reserved events: subscription, facts, NPS answers, support tickets, cancellation.

These are few (tens per account per year), so they are drawn up front for the whole history and
merged into the day-by-day product events. Events lost to an outage or to the account's own
tracking gap are dropped, as in a real pipeline; the subscription start and the cancellation were
already moved out of outages when the account was built, so each one is in the history.
"""

from __future__ import annotations

import math
import random

from streamer.sim.calendar import DAY_MS, HOUR_MS, MINUTE_MS, Calendar
from streamer.sim.encode import reserved_line
from streamer.sim.model import SimAccount, SimUser, work_time

__all__ = ["reserved_events"]

MONTH_MS = 30 * DAY_MS
_PRIORITIES = ("low", "normal", "normal", "normal", "high", "urgent")
_TOPICS = {
    "b2b": ("billing", "bug", "how-to", "integration", "permissions", "performance", "feature request"),
    "consumer": ("billing", "bug", "how-to", "account access", "refund"),
}


def _active(users: list[SimUser], at_ms: int) -> list[SimUser]:
    return [u for u in users if u.from_ms <= at_ms < u.until_ms]


def _someone(rng: random.Random, acct: SimAccount, at_ms: int) -> str | None:
    """A user active at ``at_ms``, the busier ones more likely; None if nobody is."""
    users = _active(acct.users, at_ms)
    if not users:
        return None
    return rng.choices(users, [u.p * u.m for u in users])[0].user_id


def _nps(rng: random.Random, acct: SimAccount, survey_ms: int) -> list[tuple[int, str, int]]:
    """Answers to one survey wave: (time, user, score). Unhappy accounts answer less, and lower."""
    if survey_ms >= acct.dark_from or not _active(acct.users, survey_ms):
        return []
    unhappy = survey_ms >= acct.unhappy_from
    if rng.random() >= acct.nps_answer * (0.5 if unhappy else 1.0):
        return []
    answers = []
    respondents = 1 + int(rng.expovariate(1.0) * math.log1p(len(acct.users)) / 2)
    for _ in range(respondents):
        at_ms = survey_ms + min(int(rng.expovariate(1 / (2 * DAY_MS))), 14 * DAY_MS - 1)
        user = _someone(rng, acct, at_ms)
        if user is None:
            continue
        mood = acct.mood - (rng.uniform(1.5, 4.0) if at_ms >= acct.unhappy_from else 0.0)
        answers.append((at_ms, user, min(10, max(0, round(mood + rng.gauss(0, 1.5))))))
    return answers


def _tickets(
    rng: random.Random, acct: SimAccount, lo_ms: int, hi_ms: int
) -> list[tuple[int, str, dict[str, object]]]:
    """Tickets opened and closed: a Poisson process, twice as frequent while the account is unhappy."""
    out: list[tuple[int, str, dict[str, object]]] = []
    peak = 2 * acct.tickets_per_month / MONTH_MS
    at_ms = lo_ms
    n = 0
    while True:
        at_ms += max(1, int(rng.expovariate(peak)))
        if at_ms >= hi_ms:
            return out
        factor = (2.0 if at_ms >= acct.unhappy_from else 1.0) * (0.2 if at_ms >= acct.dark_from else 1.0)
        if rng.random() * 2.0 >= factor:
            continue
        opened = work_time(rng, at_ms, acct.region) if acct.shape == "b2b" else at_ms
        n += 1
        ticket: dict[str, object] = {
            "ticket_id": f"T-{acct.idx}-{n}",
            "priority": rng.choice(_PRIORITIES),
            "topic": rng.choice(_TOPICS[acct.shape]),
        }
        out.append((opened, "support_ticket_opened", ticket))
        closed = opened + min(
            14 * DAY_MS, max(30 * MINUTE_MS, int(rng.lognormvariate(math.log(20 * HOUR_MS), 1.2)))
        )
        out.append((closed, "support_ticket_closed", {"ticket_id": ticket["ticket_id"]}))


def reserved_events(acct: SimAccount, cal: Calendar, seed: int) -> list[tuple[int, str]]:
    """Every reserved event of ``acct`` as (time, JSON line), in no particular order.

    The subscription start and first facts may predate the history (accounts that existed before
    it); everything else falls inside it, before the account's cancellation.
    """
    rng = random.Random(f"{seed}/reserved/{acct.idx}")
    start_ms, end_ms = cal.start_ms, cal.end_ms
    stop = acct.stop_ms
    out: list[tuple[int, str]] = []
    seq = 0

    def emit(at_ms: int, name: str, user: str | None, props: dict[str, object]) -> None:
        nonlocal seq
        if at_ms >= end_ms or at_ms < acct.started_ms or (at_ms >= stop and name != "subscription_cancelled"):
            return
        if cal.blocked(acct.source, name, at_ms) or any(s <= at_ms < e for s, e in acct.gaps):
            return
        seq += 1
        out.append((at_ms, reserved_line(acct.source, seq, acct.account_id, name, at_ms, user, props)))

    champion = acct.users[0].user_id if acct.users else None
    if acct.shape == "b2b":
        terms: dict[str, object] = {"plan": acct.plan, "seats": acct.seats, "term": "annual"}
    else:
        terms = {"plan": acct.plan, "billing": acct.plan}
    emit(acct.started_ms, "subscription_started", champion, terms)
    facts = acct.facts()
    emit(acct.started_ms + 1000, "account_updated", champion, dict(facts))
    for at_ms, change in sorted(acct.fact_changes, key=lambda c: c[0]):
        facts.update(change)
        emit(at_ms, "account_updated", _someone(rng, acct, at_ms), dict(facts))
    for survey in cal.surveys:
        if acct.started_ms < survey < stop:
            for at_ms, user, score in _nps(rng, acct, survey):
                emit(at_ms, "nps_response", user, {"score": score})
    for at_ms, name, props in _tickets(rng, acct, max(start_ms, acct.started_ms), min(end_ms, stop)):
        emit(at_ms, name, _someone(rng, acct, at_ms) if name.endswith("opened") else None, props)
    if acct.cancel_ms is not None:
        emit(
            acct.cancel_ms,
            "subscription_cancelled",
            _someone(rng, acct, acct.cancel_ms - 1),
            {"reason": acct.cancel_reason, "plan": acct.plan},
        )
    return out
