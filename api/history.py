"""An account's daily history and what changed in it: plain functions over the stored days, "today" given.

The store keeps one row per account and UTC day on which a snapshot of it was read (``day``,
``at_ms``, ``score``, ``band``, ``components``; see :meth:`api.readmodel.ReadModel.history`). The
worker republishes a snapshot only when it changes materially, so a day without a row showed what the
row before it says: the daily series repeats it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from api.models import AccountHistory, ComponentMove, Detractor, HistoryPoint, WhatChanged
from api.readmodel import ReadModel
from api.restrictions import AccountScope
from streamer.core.alerts import ms_to_rfc3339

__all__ = [
    "DEFAULT_DAYS",
    "MOVED_MOST",
    "WEEK_DAYS",
    "read_history",
    "daily",
    "daily_points",
    "what_changed",
]

DEFAULT_DAYS = 90  # what a history shows unless asked for another number of days
WEEK_DAYS = 7  # "what changed" compares the latest day with the one this many days before it
MOVED_MOST = 3  # components listed as those that moved most

Row = Mapping[str, Any]


def daily(rows: Sequence[Row], days: int, today: date) -> list[tuple[date, Row]]:
    """Each of the last ``days`` days up to ``today`` (or the newest row's day, if later) that the
    ``rows`` (oldest first) cover, with the row it shows: the latest on or before it."""
    if not rows:
        return []
    held = [(date.fromisoformat(str(row["day"])), row) for row in rows]
    end = max(today, held[-1][0])
    day = max(end - timedelta(days=days - 1), held[0][0])
    out: list[tuple[date, Row]] = []
    shown, i = held[0][1], 0
    while day <= end:
        while i < len(held) and held[i][0] <= day:
            shown, i = held[i][1], i + 1
        out.append((day, shown))
        day += timedelta(days=1)
    return out


def daily_points(rows: Sequence[Row], days: int, today: date) -> list[HistoryPoint]:
    """The points of :func:`daily`: a day's score, band and component values."""
    return [
        HistoryPoint(
            date=day,
            at=ms_to_rfc3339(int(row["at_ms"])),
            score=int(row["score"]),
            band=row["band"],
            components={str(c["name"]): float(c["value"]) for c in row["components"]},
        )
        for day, row in daily(rows, days, today)
    ]


def _points_lost(component: Row) -> float:
    # A component's share of 100 less what it contributes: the points of the score it costs.
    return round(100 * float(component["weight"]) - float(component["contribution"]), 1)


def what_changed(rows: Sequence[Row], today: date) -> WhatChanged:
    """What moved between the latest day and the day :data:`WEEK_DAYS` before it (or the first day
    kept, when the history is shorter), and which component costs the score most on the latest day.

    Components are compared by the points of the score they add (their contribution), so a small
    component moving a lot ranks below a heavy one moving less; only components scored on both days
    are compared (one that appears or goes away changes every weight).
    """
    series = daily(rows, WEEK_DAYS + 1, today)
    if not series:
        return WhatChanged(since=None, score_change=0, moved=[], top_detractor=None)
    (since, before), (_, after) = series[0], series[-1]
    earlier = {str(c["name"]): c for c in before["components"]}
    moved: list[ComponentMove] = []
    for component in after["components"]:
        old = earlier.get(str(component["name"]))
        if old is None:
            continue
        change = round(float(component["value"]) - float(old["value"]), 1)
        points = round(float(component["contribution"]) - float(old["contribution"]), 1)
        if change or points:
            moved.append(
                ComponentMove(
                    name=str(component["name"]),
                    before=float(old["value"]),
                    after=float(component["value"]),
                    change=change,
                    points=points,
                )
            )
    moved.sort(key=lambda m: (-abs(m.points), -abs(m.change), m.name))
    detractor = None
    costs = [(_points_lost(c), c) for c in after["components"]]
    if costs:
        lost, worst = max(costs, key=lambda item: item[0])  # the first of equals, in the snapshot's order
        if lost > 0:
            detractor = Detractor(
                name=str(worst["name"]),
                value=float(worst["value"]),
                points=lost,
                explanation=str(worst.get("explanation", "")),
            )
    return WhatChanged(
        since=since,
        score_change=int(after["score"]) - int(before["score"]),
        moved=moved[:MOVED_MOST],
        top_detractor=detractor,
    )


def read_history(
    model: ReadModel, account_id: str, days: int, now: datetime, *, scope: AccountScope
) -> AccountHistory | None:
    """The last ``days`` days of an account up to ``now`` and what changed in the last week of them;
    None if the account is unknown or outside ``scope``."""
    rows = model.history(account_id, max(days, WEEK_DAYS + 1), now, scope=scope)
    if rows is None:
        return None
    today = now.astimezone(UTC).date()
    return AccountHistory(
        account_id=account_id,
        days=days,
        points=daily_points(rows, days, today),
        what_changed=what_changed(rows, today),
    )
