"""Portfolio figures over the latest snapshots: bands, monthly churn and retention, NPS, open alerts, ARR,
lifecycle statuses, onboarding statuses and cohorts.

Pure functions of the snapshots and an explicit ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.query import Lifecycle, OnboardingStatus, arr_units, lifecycle_of, onboarding_of
from streamer.core.policy import Band

MONTHS = 12
BANDS = tuple(Band)
AT_RISK_BANDS = (Band.AVERAGE, Band.POOR)
# ISO 4217's code for "no currency": the ARR of accounts that did not say their currency.
NO_CURRENCY = "XXX"
_ALERT_FLAGS = (("account_quiet", "quiet"), ("usage_drop", "dropping"), ("health_degraded", "poor"))


def month_starts(now: datetime, months: int = MONTHS) -> list[datetime]:
    """First instants (UTC) of the ``months`` calendar months ending with the one holding ``now``."""
    now = now.astimezone(UTC)
    year, month = now.year, now.month
    out = []
    for _ in range(months):
        out.append(datetime(year, month, 1, tzinfo=UTC))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def _next_month(start: datetime) -> datetime:
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def instant(value: object) -> datetime | None:
    """An RFC 3339 instant with its offset; None for anything else (no offset, not a date-time)."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def instant_ms(value: object) -> int | None:
    """An RFC 3339 instant (see :func:`instant`) in ms since the epoch; None for anything else."""
    at = instant(value)
    return None if at is None else int(at.timestamp() * 1000)


def month_of(value: object) -> str | None:
    """The UTC calendar month (YYYY-MM) of an RFC 3339 instant; None for anything else."""
    at = instant(value)
    if at is None:
        return None
    at = at.astimezone(UTC)
    return f"{at.year:04d}-{at.month:02d}"


def monthly_churn(
    subscriptions: Iterable[tuple[datetime | None, datetime | None]], now: datetime
) -> list[dict[str, Any]]:
    """Churn and retention per calendar month.

    Churn of a month = subscriptions lost in it / (active at its start + started in it).

    Args:
        subscriptions: (started_at, cancelled_at) per account; tz-aware.
        now: The current instant; the last month is the one holding it (so far).

    Returns:
        One row per month, oldest first: month (YYYY-MM), active_at_start, new, lost, churn_rate
        and retention_rate (both None when the month had no subscriptions at all).
    """
    months = Counter(
        (month_of(s.isoformat()), month_of(c.isoformat()) if c is not None else None)
        for s, c in subscriptions
        if s is not None
    )
    return churn_by_month(((s, c, n) for (s, c), n in months.items()), now)


def churn_by_month(
    subscriptions: Iterable[tuple[str | None, str | None, int]], now: datetime
) -> list[dict[str, Any]]:
    """:func:`monthly_churn` from counts of subscriptions by (start month, cancel month), months as
    YYYY-MM in UTC: a subscription started before a month began if its start month is earlier, and so on.
    """
    subs = [(s, c, n) for s, c, n in subscriptions if s is not None]
    rows = []
    for start in month_starts(now):
        month = f"{start.year:04d}-{start.month:02d}"
        active = sum(n for s, c, n in subs if s < month and (c is None or c >= month))
        new = sum(n for s, _, n in subs if s == month)
        lost = sum(n for _, c, n in subs if c == month)
        base = active + new
        churn = round(lost / base, 4) if base else None
        rows.append(
            {
                "month": month,
                "active_at_start": active,
                "new": new,
                "lost": lost,
                "churn_rate": churn,
                "retention_rate": None if churn is None else round(1 - churn, 4),
            }
        )
    return rows


# What a start month's cohort counts of an account: its onboarding is complete, or still in progress
# (in its first onboarding days and not complete).
COMPLETED = "completed"
IN_PROGRESS = "in_progress"


def onboarding_cohorts(
    started: Mapping[str, int], progress: Mapping[tuple[str, str], int], now: datetime
) -> list[dict[str, Any]]:
    """Onboarding per month of subscription start, over the calendar months of :func:`month_starts`.

    Args:
        started: Accounts per start month (YYYY-MM, UTC).
        progress: Accounts per (start month, :data:`COMPLETED` or :data:`IN_PROGRESS`).
        now: The current instant; the last month is the one holding it.

    Returns:
        One row per month, oldest first: month, started, completed, completed_share (of started,
        None when none started) and in_progress.
    """
    rows = []
    for start in month_starts(now):
        month = f"{start.year:04d}-{start.month:02d}"
        n = started.get(month, 0)
        completed = progress.get((month, COMPLETED), 0)
        rows.append(
            {
                "month": month,
                "started": n,
                "completed": completed,
                "completed_share": round(completed / n, 4) if n else None,
                "in_progress": progress.get((month, IN_PROGRESS), 0),
            }
        )
    return rows


NPS_CLASSES = ("promoter", "passive", "detractor")


def nps_class(score: object) -> str | None:
    """Promoter (9-10), passive (7-8) or detractor (0-6); None without an answer."""
    if not isinstance(score, int) or isinstance(score, bool):
        return None
    return "promoter" if score >= 9 else "detractor" if score <= 6 else "passive"


def nps(scores: Iterable[int]) -> dict[str, Any]:
    """Net promoter score: % promoters (9-10) minus % detractors (0-6), None without responses."""
    return nps_of(Counter(nps_class(v) for v in scores))


def nps_of(classes: Mapping[Any, int]) -> dict[str, Any]:
    """:func:`nps` from the number of answers of each class."""
    promoters, passives, detractors = (classes.get(c, 0) for c in NPS_CLASSES)
    responses = promoters + passives + detractors
    if not responses:
        return {"score": None, "responses": 0, "promoters": 0, "passives": 0, "detractors": 0}
    return {
        "score": round(100 * (promoters - detractors) / responses, 1),
        "responses": responses,
        "promoters": promoters,
        "passives": passives,
        "detractors": detractors,
    }


@dataclass(frozen=True, slots=True)
class PortfolioKey:
    """What the portfolio figures count of one account: accounts with equal keys count alike."""

    band: str
    started_month: str | None
    cancelled_month: str | None
    nps_class: str | None
    quiet: bool
    dropping: bool
    poor: bool
    # ARR in whole units of ``currency`` (see :func:`arr_units`), None when unknown.
    arr: int | None = None
    currency: str = NO_CURRENCY
    # The lifecycle status on the day of the account's snapshot, None when it tells none.
    lifecycle: str | None = None
    # The onboarding milestone status, None when the snapshot tells none; whether in its first days.
    onboarding_status: str | None = None
    onboarding_active: bool = False

    def onboarding_progress(self) -> str | None:
        """:data:`COMPLETED`, :data:`IN_PROGRESS` or None: what the account's start month counts of it."""
        if self.onboarding_status == OnboardingStatus.COMPLETE:
            return COMPLETED
        return IN_PROGRESS if self.onboarding_active else None

    def marginals(self) -> list[tuple[str, str]]:
        """What the account adds to the portfolio figures, as (dimension, value) pairs, each counted
        once: the figures are sums over accounts of these, never of combinations of them. An account
        with ARR adds its ARR to the sum of each ``arr_…`` pair (:meth:`arr_of`), by currency."""
        out = [("accounts", ""), ("band", self.band)]
        if self.started_month is not None:
            out.append(("subscription", f"{self.started_month}|{self.cancelled_month or ''}"))
        if self.nps_class is not None:
            out.append(("nps", self.nps_class))
        if self.lifecycle is not None:
            out.append(("lifecycle", self.lifecycle))
        if self.onboarding_status is not None:
            out.append(("onboarding", self.onboarding_status))
        progress = self.onboarding_progress()
        if self.started_month is not None and progress is not None:
            # Only accounts with a progress add a pair: rows stored before onboarding was kept add none.
            out.append(("onboarding_cohort", f"{self.started_month}|{progress}"))
        flags = [flag for flag in ("quiet", "dropping", "poor") if getattr(self, flag)]
        out.extend((flag, "") for flag in flags)
        if self.arr is not None:
            out.append(("arr_band", f"{self.band}|{self.currency}"))
            out.extend((f"arr_{flag}", self.currency) for flag in flags)
        return out

    def arr_of(self, dimension: str) -> int:
        """What the account adds to the ARR sum of its pair of ``dimension``."""
        return self.arr if self.arr is not None and dimension.startswith("arr_") else 0


def currency_of(value: object) -> str:
    """The currency the portfolio counts an account's ARR in: its code, else :data:`NO_CURRENCY`."""
    return value if isinstance(value, str) and value else NO_CURRENCY


def portfolio_key(doc: Mapping[str, Any]) -> PortfolioKey:
    """The :class:`PortfolioKey` of a snapshot."""
    sub = doc.get("subscription") or {}
    episodes = doc.get("episodes") or {}
    facts = doc.get("facts") or {}
    onboarding = onboarding_of(doc)
    return PortfolioKey(
        band=str(doc.get("band")),
        started_month=month_of(sub.get("started_at")),
        cancelled_month=month_of(sub.get("cancelled_at")),
        nps_class=nps_class((doc.get("nps") or {}).get("score")),
        quiet=bool(episodes.get("quiet_since")),
        dropping=bool(episodes.get("drop_since")),
        poor=bool(episodes.get("poor")),
        arr=arr_units(facts.get("arr")),
        currency=currency_of(facts.get("currency")),
        lifecycle=lifecycle_of(doc)[0],
        onboarding_status=onboarding[1],
        onboarding_active=onboarding[0],
    )


def portfolio_figures(snapshots: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Every portfolio figure from the latest snapshot per account.

    Args:
        snapshots: Latest snapshot per account.
        now: The current instant (tz-aware).

    Returns:
        ``accounts``, ``by_band``, ``churn`` (monthly rows), ``nps``, ``open_alerts`` by kind and
        ``arr`` (by band, at risk and by open alert kind, each by currency), ``lifecycle`` (accounts
        per lifecycle status, each as of its snapshot's day) and ``onboarding`` (accounts per onboarding
        status, ``by_status``, and per start month, ``cohorts``: see :func:`onboarding_cohorts`).
    """
    counts: Counter[tuple[str, str]] = Counter()
    sums: Counter[tuple[str, str]] = Counter()
    for d in snapshots:
        key = portfolio_key(d)
        for dim, value in key.marginals():
            counts[dim, value] += 1
            sums[dim, value] += key.arr_of(dim)
    return figures_from_marginals(
        ((dim, value, n, sums[dim, value]) for (dim, value), n in counts.items()), now
    )


def arr_at_risk(by: Mapping[str, Counter[str]]) -> dict[str, Any]:
    """ARR ``at_risk`` (bands average and poor) and ``by_band``, each currency to whole units, from the
    ``arr_band`` counts (``band|currency``) of ``by``."""
    by_band: dict[str, Counter[str]] = {band: Counter() for band in BANDS}
    for pair, amount in by.get("arr_band", Counter()).items():
        band, _, currency = pair.partition("|")
        if band in by_band:
            by_band[band][currency] += amount
    at_risk: Counter[str] = Counter()
    for band in AT_RISK_BANDS:
        at_risk.update(by_band[band])
    return {
        "at_risk": _amounts(at_risk),
        "by_band": {band: _amounts(amounts) for band, amounts in by_band.items()},
    }


def _arr_figures(by: Mapping[str, Counter[str]]) -> dict[str, Any]:
    return {
        **arr_at_risk(by),
        "by_open_alert": {kind: _amounts(by.get(f"arr_{flag}", Counter())) for kind, flag in _ALERT_FLAGS},
    }


def _amounts(amounts: Mapping[str, int]) -> dict[str, int]:
    # Currencies in code order; one whose accounts all left (or have ARR 0) is left out.
    return {currency: amounts[currency] for currency in sorted(amounts) if amounts[currency]}


def figures_from_marginals(counts: Iterable[tuple[str, str, int, int]], now: datetime) -> dict[str, Any]:
    """:func:`portfolio_figures` from how many accounts have each (dimension, value) of
    :meth:`PortfolioKey.marginals`, and the sum of their ARR (:meth:`PortfolioKey.arr_of`)."""
    by: dict[str, Counter[str]] = {}
    for dim, value, n, arr in counts:
        by.setdefault(dim, Counter())[value] += arr if dim.startswith("arr_") else n
    bands = by.get("band", Counter())
    lifecycle = by.get("lifecycle", Counter())
    subs = []
    started_in: Counter[str] = Counter()
    for pair, n in by.get("subscription", Counter()).items():
        started, cancelled = pair.split("|")
        subs.append((started, cancelled or None, n))
        started_in[started] += n
    progress: Counter[tuple[str, str]] = Counter()
    for pair, n in by.get("onboarding_cohort", Counter()).items():
        month, _, state = pair.partition("|")
        progress[month, state] += n
    onboarding = by.get("onboarding", Counter())
    flags = {flag: by.get(flag, Counter()).get("", 0) for flag in ("quiet", "dropping", "poor")}
    return {
        "as_of": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "accounts": by.get("accounts", Counter()).get("", 0),
        "by_band": {band: bands.get(band, 0) for band in BANDS},
        "churn": churn_by_month(subs, now),
        "nps": nps_of(by.get("nps", Counter())),
        "open_alerts": {
            "account_quiet": flags["quiet"],
            "usage_drop": flags["dropping"],
            "health_degraded": flags["poor"],
        },
        "arr": _arr_figures(by),
        "lifecycle": {status.value: lifecycle.get(status.value, 0) for status in Lifecycle},
        "onboarding": {
            "by_status": {status.value: onboarding.get(status.value, 0) for status in OnboardingStatus},
            "cohorts": onboarding_cohorts(started_in, progress, now),
        },
    }
