"""Portfolio figures over the latest snapshots: bands, monthly churn and retention, NPS, open alerts.

Pure functions of the snapshots and an explicit ``now``; nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from streamer.core.policy import Band

MONTHS = 12
BANDS = tuple(Band)


def _parse(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


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
    subs = [(s, c) for s, c in subscriptions if s is not None]
    rows = []
    for start in month_starts(now):
        end = _next_month(start)
        active = sum(1 for s, c in subs if s < start and (c is None or c >= start))
        new = sum(1 for s, _ in subs if start <= s < end)
        lost = sum(1 for _, c in subs if c is not None and start <= c < end)
        base = active + new
        churn = round(lost / base, 4) if base else None
        rows.append(
            {
                "month": f"{start.year:04d}-{start.month:02d}",
                "active_at_start": active,
                "new": new,
                "lost": lost,
                "churn_rate": churn,
                "retention_rate": None if churn is None else round(1 - churn, 4),
            }
        )
    return rows


def nps(scores: Iterable[int]) -> dict[str, Any]:
    """Net promoter score: % promoters (9-10) minus % detractors (0-6), None without responses."""
    values = list(scores)
    if not values:
        return {"score": None, "responses": 0, "promoters": 0, "passives": 0, "detractors": 0}
    promoters = sum(1 for v in values if v >= 9)
    detractors = sum(1 for v in values if v <= 6)
    return {
        "score": round(100 * (promoters - detractors) / len(values), 1),
        "responses": len(values),
        "promoters": promoters,
        "passives": len(values) - promoters - detractors,
        "detractors": detractors,
    }


def portfolio_figures(snapshots: Iterable[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Every portfolio figure from the latest snapshot per account.

    Args:
        snapshots: Latest snapshot per account.
        now: The current instant (tz-aware).

    Returns:
        ``accounts``, ``by_band``, ``churn`` (monthly rows), ``nps`` and ``open_alerts`` by kind.
    """
    docs = list(snapshots)
    bands = Counter(str(d.get("band")) for d in docs)
    subs = []
    scores = []
    open_alerts = {"account_quiet": 0, "usage_drop": 0, "health_degraded": 0}
    for d in docs:
        sub = d.get("subscription") or {}
        subs.append((_parse(sub.get("started_at")), _parse(sub.get("cancelled_at"))))
        score = (d.get("nps") or {}).get("score")
        if isinstance(score, int):
            scores.append(score)
        episodes = d.get("episodes") or {}
        open_alerts["account_quiet"] += bool(episodes.get("quiet_since"))
        open_alerts["usage_drop"] += bool(episodes.get("drop_since"))
        open_alerts["health_degraded"] += bool(episodes.get("poor"))
    return {
        "as_of": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "accounts": len(docs),
        "by_band": {band: bands.get(band, 0) for band in BANDS},
        "churn": monthly_churn(subs, now),
        "nps": nps(scores),
        "open_alerts": open_alerts,
    }
