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

from api.models import AccountHistory, HistoryPoint, WhatChanged
from api.readmodel import ReadModel
from api.restrictions import AccountScope
from streamer.core.alerts import ms_to_rfc3339
from streamer.core.changes import MOVED_MOST, WEEK_DAYS, compare, date_of, week_before
from streamer.core.scoring import Component

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
_EPOCH = date(1970, 1, 1)

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


def what_changed(rows: Sequence[Row], today: date) -> WhatChanged:
    """What moved between the latest day and the day :data:`WEEK_DAYS` before it (or the first day
    kept, when the history is shorter), and which component costs the score most on the latest day:
    the worker's comparison (:func:`streamer.core.changes.compare`) over the stored days."""
    days = [(date.fromisoformat(str(row["day"])) - _EPOCH).days for row in rows]
    found = week_before(days, (today - _EPOCH).days)
    if found is None:
        return WhatChanged(since=None, score_change=0, moved=[], top_detractor=None)
    since, i = found
    before, after = rows[i], rows[-1]
    return WhatChanged.model_validate(
        compare(
            date_of(since),
            int(before["score"]),
            {str(c["name"]): (float(c["value"]), float(c["contribution"])) for c in before["components"]},
            int(after["score"]),
            [_component(c) for c in after["components"]],
        )
    )


def _component(c: Row) -> Component:
    return Component(
        str(c["name"]),
        float(c["value"]),
        float(c["weight"]),
        float(c["contribution"]),
        str(c.get("explanation", "")),
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
