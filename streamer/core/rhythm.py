"""An account's usual week, and how unlikely its recent behaviour is under it.

Accounts differ by orders of magnitude: a team that works in the product every weekday, a consumer
who opens it twice a week, a customer that logs in at month end. Fixed thresholds ("7 days without
activity", "half of the baseline week") are wrong for most of them, so the engine judges each
account against its own rhythm, measured in **user-days** (the distinct users active on a day; an
event without a user counts as one anonymous user), which do not depend on how many events a
product sends per action:

* **Rhythm**: per weekday, the share of the baseline days the account was active (with a prior
  of half an active day in one, so four Mondays never make a certainty) and its mean user-days.
  Excluded days (holidays, data gaps: :mod:`streamer.core.partition`) are left out.
* **Missed active days**: over a silence, the sum of the active shares of the days it covered, less
  excluded time: how many active days the account would normally have had. Five missed active
  days are five weekdays for a daily team, and two to three weeks for a twice-weekly user.
* **Drop test**: the user-days of a week against the baseline's same weekdays, as a quasi-Poisson
  count (the baseline's own day-to-day variance sets the dispersion): the probability of seeing
  so few if nothing had changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from streamer.core.state import USER_BITS, DayBucket, estimate_distinct

_rhythm_parts: Callable[..., tuple[int, int, tuple[float, ...], tuple[float, ...], float, float]] | None
try:  # compiled (native/, built by `make install`): every score computes three or four rhythms
    from churnwatch_native import rhythm_parts as _rhythm_parts
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _rhythm_parts = None

_native_gamma_q: Callable[[float, float], float | None] | None
try:  # compiled (native/, built by `make install`): three drop tests in every score
    from churnwatch_native import gamma_q as _native_gamma_q
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _native_gamma_q = None


__all__ = [
    "DropStat",
    "Rhythm",
    "at_level",
    "day_units",
    "drop_stat",
    "missed_active_days",
    "poisson_cdf",
    "python_rhythm",
    "rhythm",
    "time_of_missed",
    "units",
    "weekday",
]

DAY_MS = 86_400_000
_MAX_SHARE = 0.95


def weekday(day: int) -> int:
    """0 for Monday .. 6 for Sunday, of an epoch day (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def units(b: DayBucket | None) -> float:
    """User-days of a bucket: its distinct users (an anonymous user counts as one), 0 without events."""
    if b is None or b.events <= 0:
        return 0.0
    return _UNITS[b.users.bit_count()]


_UNITS = tuple(max(1.0, estimate_distinct((1 << ones) - 1, USER_BITS)) for ones in range(USER_BITS + 1))


# Not frozen: built several times per score, and a frozen dataclass sets each field through
# object.__setattr__ (four times slower to construct). Treated as immutable all the same.
@dataclass(slots=True)
class Rhythm:
    """An account's usual week over a window of days."""

    days: int  # days observed (not excluded, not before the account existed)
    active_days: int
    share: tuple[float, ...]  # per weekday, Monday first: the share of days it was active
    mean: tuple[float, ...]  # per weekday: mean user-days
    dispersion: float  # variance over mean of daily user-days around the weekday means (at least 1)
    total: float = 0.0  # user-days over the window

    @property
    def weekly(self) -> float:
        """User-days in a usual week."""
        return sum(self.mean)


def day_units(days: Mapping[int, DayBucket]) -> dict[int, float]:
    """User-days of every bucket, by day (computed once per evaluation, read by the functions below)."""
    return {day: units(b) for day, b in days.items()}


def rhythm(u: Mapping[int, float], first: int, last: int, excluded: Collection[int], since: int) -> Rhythm:
    """The rhythm of the days ``first..last`` (inclusive), less excluded days and days before ``since``.

    Computed by compiled code where it is installed (the same floats as :func:`python_rhythm`).
    """
    if _rhythm_parts is not None and type(u) is dict:
        return Rhythm(*_rhythm_parts(u, first, last, excluded, since))
    return python_rhythm(u, first, last, excluded, since)


def python_rhythm(
    u: Mapping[int, float], first: int, last: int, excluded: Collection[int], since: int
) -> Rhythm:
    """:func:`rhythm` in Python: the reference of the compiled one, which must agree to the last bit."""
    n = [0] * 7
    active = [0] * 7
    total = [0.0] * 7
    ws: list[int] = []
    xs: list[float] = []
    # Run for every score and quiet deadline: the weekday steps along instead of being recomputed, and
    # the sums are taken in the same order as ever (the same floats to the last bit).
    get = u.get
    add_w, add_x = ws.append, xs.append
    start = max(first, since)
    w = weekday(start)
    for day in range(start, last + 1):
        if not excluded or day not in excluded:
            x = get(day, 0.0)
            n[w] += 1
            total[w] += x
            if x > 0:
                active[w] += 1
            add_w(w)
            add_x(x)
        w = w + 1 if w < 6 else 0
    observed = sum(n)
    overall = (sum(active) + 0.5) / (observed + 1)
    share = tuple(
        [min(_MAX_SHARE, (active[w] + 0.5 * overall) / (n[w] + 0.5)) if n[w] else overall for w in range(7)]
    )
    overall_mean = sum(total) / observed if observed else 0.0
    mean = tuple([total[w] / n[w] if n[w] else overall_mean for w in range(7)])
    dispersion = 1.0
    if len(xs) > 7 and overall_mean > 0:
        # Seven weekday means were fitted: the residual variance has len(values) - 7 degrees of freedom.
        residual = sum([(x - mean[w]) ** 2 for w, x in zip(ws, xs, strict=True)]) / (len(xs) - 7)
        dispersion = max(1.0, residual / overall_mean)
    return Rhythm(observed, sum(active), share, mean, dispersion, sum(total))


def missed_active_days(r: Rhythm, last_day: int, until_ms: int, excluded: Collection[int]) -> float:
    """Active days the account would normally have had after its last active day, up to ``until_ms``."""
    end_day = until_ms // DAY_MS
    missed = 0.0
    for day in range(last_day + 1, end_day + 1):
        if day in excluded:
            continue
        part = 1.0 if day < end_day else (until_ms - day * DAY_MS) / DAY_MS
        missed += r.share[weekday(day)] * part
    return missed


def time_of_missed(r: Rhythm, last_day: int, target: float, excluded: Collection[int], limit_ms: int) -> int:
    """When :func:`missed_active_days` reaches ``target`` (at most ``limit_ms``)."""
    missed = 0.0
    day = last_day + 1
    while day * DAY_MS < limit_ms:
        if day not in excluded:
            share = r.share[weekday(day)]
            if missed + share >= target:
                return min(limit_ms, day * DAY_MS + int((target - missed) / share * DAY_MS))
            missed += share
        day += 1
    return limit_ms


def poisson_cdf(k: float, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam), continuous in k (the regularized upper gamma Q(k + 1, lam))."""
    if lam <= 0:
        return 1.0
    if k < 0:
        return 0.0
    if _native_gamma_q is not None:
        q = _native_gamma_q(k + 1.0, lam)
        if q is not None:
            return q
    return python_gamma_q(k + 1.0, lam)


def python_gamma_q(a: float, x: float) -> float:
    """The regularized upper gamma Q(a, x): the reference of the compiled one, which must agree to the
    last bit (it declines what it cannot answer so, and this answers)."""
    # Numerical Recipes' gammq: the series below a + 1, the continued fraction above it.
    gln = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-12:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - gln))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - gln) * h)


def at_level(r: Rhythm, rate: float | None, total: float) -> Rhythm:
    """``r``'s weekdays at a higher level: ``rate`` user-days a day, learnt from ``total`` user-days.

    The account's level of the months before (its weekly history) can be above the weeks just
    before a test window: a gradual decline has already lowered those. A test against the higher of
    the two levels sees the decline; the weekday shape stays the recent one.
    """
    own = r.total / r.days if r.days else 0.0
    if rate is None or own <= 0 or rate <= own:
        return r
    f = rate / own
    return Rhythm(r.days, r.active_days, r.share, tuple(m * f for m in r.mean), r.dispersion, total)


# Not frozen: built several times per score, and a frozen dataclass sets each field through
# object.__setattr__ (four times slower to construct). Treated as immutable all the same.
@dataclass(slots=True)
class DropStat:
    """A week of user-days against what the baseline expected for the same weekdays."""

    observed: float
    expected: float
    p_value: float  # the probability of at most ``observed`` if nothing had changed

    @property
    def ratio(self) -> float:
        """Observed over expected (1 when nothing was expected)."""
        return self.observed / self.expected if self.expected > 0 else 1.0


def drop_stat(
    u: Mapping[int, float], base: Rhythm, first: int, last: int, excluded: Collection[int]
) -> DropStat:
    """The days ``first..last`` (inclusive, excluded days left out) tested against ``base``.

    The expectation is itself estimated from the baseline's days, so its own error widens the test:
    the dispersion grows by ``expected / baseline total`` (the two-sample comparison of rates, in the
    quasi-Poisson approximation). A baseline with no total (a frozen one) adds nothing.
    """
    observed = expected = 0.0
    for day in range(first, last + 1):
        if day in excluded:
            continue
        observed += u.get(day, 0.0)
        expected += base.mean[weekday(day)]
    phi = base.dispersion * (1 + expected / base.total) if base.total > 0 else base.dispersion
    return DropStat(round(observed, 2), round(expected, 2), poisson_cdf(observed / phi, expected / phi))
