"""What changed in an account's health over the last week: plain functions over the days it was scored.

The worker keeps, per account, the health of the last :data:`KEPT` UTC days it evaluated the account
on (:func:`remember`, one per day, the day's last evaluation), in the state. Evaluations run at the
account's due points (each UTC midnight while it has activity in its window, its quiet deadline) and
after events that can lower the score or come late, never by a clock, so a replay, a live run, any
cutting into batches and a restart remember the same days. (Not at publication: when a snapshot is
published depends on batches and the wall clock.)

:func:`what_changed` compares a health with the day :data:`WEEK_DAYS` before it, the same way the API
compares its stored history's latest day with it (:func:`compare`, :func:`week_before`).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from streamer.core.policy import DAY_MS
from streamer.core.scoring import Component, Health
from streamer.core.state import SCORED_COMPONENTS, AccountState, Scored

__all__ = [
    "KEPT",
    "MOVED_MOST",
    "WEEK_DAYS",
    "compare",
    "date_of",
    "remember",
    "scored",
    "scored_parts",
    "week_before",
    "what_changed",
]

WEEK_DAYS = 7  # "what changed" compares with the day this many days before
# Scored days kept: one a day, so a week back and the day itself.
KEPT = WEEK_DAYS + 1
MOVED_MOST = 3  # components listed as those that moved most
_ABSENT = -(2**15)
_PARTS = struct.Struct(f"<{2 * len(SCORED_COMPONENTS)}h")
_INDEX = {name: i for i, name in enumerate(SCORED_COMPONENTS)}
_EPOCH = date(1970, 1, 1)


def date_of(day: int) -> date:
    """The date of a UTC day number (days since 1970-01-01)."""
    return _EPOCH + timedelta(days=day)


def scored(day: int, score: int, components: Iterable[Component]) -> Scored:
    """A day's health, packed: each component's value and contribution in tenths (both are rounded
    to tenths when scored, so nothing is lost).

    Raises:
        ValueError: For a component not in :data:`~streamer.core.state.SCORED_COMPONENTS`.
    """
    tenths = [_ABSENT] * (2 * len(SCORED_COMPONENTS))
    for c in components:
        i = _INDEX.get(c.name)
        if i is None:
            raise ValueError(f"unknown component {c.name!r}")
        tenths[2 * i], tenths[2 * i + 1] = round(10 * c.value), round(10 * c.contribution)
    return Scored(day, score, _PARTS.pack(*tenths))


def scored_parts(entry: Scored) -> dict[str, tuple[float, float]]:
    """The components of a scored day: name to (value, contribution)."""
    tenths = _PARTS.unpack(entry.parts)
    return {
        name: (tenths[2 * i] / 10, tenths[2 * i + 1] / 10)
        for i, name in enumerate(SCORED_COMPONENTS)
        if tenths[2 * i] != _ABSENT
    }


def remember(state: AccountState, health: Health) -> None:
    """Keep ``health`` as the score of its UTC day: it replaces one already kept for that day, and the
    oldest day goes once :data:`KEPT` are kept. A health older than the newest kept is ignored (the
    engine's evaluations only move forward)."""
    day = health.at_ms // DAY_MS
    kept = state.scored
    if kept and kept[-1].day > day:
        return
    entry = scored(day, health.score, health.components)
    if kept and kept[-1].day == day:
        kept[-1] = entry
        return
    kept.append(entry)
    if len(kept) > KEPT:
        del kept[: len(kept) - KEPT]


def week_before(days: Sequence[int], today: int) -> tuple[int, int] | None:
    """The day to compare with and which of ``days`` (UTC day numbers, ascending) it shows.

    The day is :data:`WEEK_DAYS` before the latest of ``today`` and the last of ``days``, or the first
    of ``days`` when that is later (a shorter history); it shows the last of ``days`` on or before it.

    Returns:
        ``(since, index)``, or None when ``days`` is empty.
    """
    if not days:
        return None
    since = max(max(today, days[-1]) - WEEK_DAYS, days[0])
    return since, bisect.bisect_right(days, since) - 1


def _points_lost(c: Component) -> float:
    # A component's share of 100 less what it contributes: the points of the score it costs.
    return round(100 * c.weight - c.contribution, 1)


def compare(
    since: date,
    before_score: int,
    before: Mapping[str, tuple[float, float]],
    score: int,
    components: Sequence[Component],
) -> dict[str, Any]:
    """What moved from an earlier day (its score, and its components' value and contribution by name)
    to a health (its score and components), and which component costs that health most.

    Components are compared by the points of the score they add (their contribution), so a small
    component moving a lot ranks below a heavy one moving less; only components scored on both days
    are compared (one that appears or goes away changes every weight). The top detractor is the
    component whose share of 100 less its contribution is largest (the first of equals), if any costs.

    Returns:
        A JSON-ready dict: ``since`` (ISO date), ``score_change``, ``moved`` (at most
        :data:`MOVED_MOST`: ``name``, ``before``, ``after``, ``change``, ``points``, largest move of
        points first) and ``top_detractor`` (``name``, ``value``, ``points``, ``explanation``, or None).
    """
    moved: list[dict[str, Any]] = []
    for c in components:
        old = before.get(c.name)
        if old is None:
            continue
        value, contribution = old
        change = round(c.value - value, 1)
        points = round(c.contribution - contribution, 1)
        if change or points:
            moved.append(
                {
                    "name": c.name,
                    "before": float(value),
                    "after": float(c.value),
                    "change": change,
                    "points": points,
                }
            )
    moved.sort(key=lambda m: (-abs(m["points"]), -abs(m["change"]), m["name"]))
    detractor = None
    if components:
        lost, worst = max(((_points_lost(c), c) for c in components), key=lambda item: item[0])
        if lost > 0:
            detractor = {
                "name": worst.name,
                "value": float(worst.value),
                "points": lost,
                "explanation": worst.explanation,
            }
    return {
        "since": since.isoformat(),
        "score_change": score - before_score,
        "moved": moved[:MOVED_MOST],
        "top_detractor": detractor,
    }


def what_changed(kept: Sequence[Scored], health: Health) -> dict[str, Any] | None:
    """What changed from the kept day :data:`WEEK_DAYS` before ``health``'s day (or the first kept,
    when fewer are kept) to ``health``; None when no day is kept. See :func:`compare`."""
    found = week_before([entry.day for entry in kept], health.at_ms // DAY_MS)
    if found is None:
        return None
    since, i = found
    before = kept[i]
    return compare(date_of(since), before.score, scored_parts(before), health.score, health.components)
