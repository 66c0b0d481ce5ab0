"""The portfolio over time: accounts and ARR per band and accounts per lifecycle status, per ISO week.

The stores keep, per scope (all accounts, an owner's, a segment's, both's) and UTC day, how the counts
changed that day (``portfolio_days``): an account whose snapshot moves it from one band to another
takes one from the first and adds one to the second on the day of its new snapshot. The figures as of
a day are the sum of the changes up to it. Plain functions over those rows and an explicit "today";
nothing here reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from api.portfolio import BANDS, PortfolioKey, arr_at_risk, portfolio_key
from api.query import Lifecycle
from api.restrictions import AccountScope

__all__ = [
    "DEFAULT_WEEKS",
    "MAX_WEEKS",
    "WEEKS_KEPT",
    "Counted",
    "DayKey",
    "counted_of",
    "day_deltas",
    "day_of_ms",
    "fold_before",
    "kept_from",
    "scope_of",
    "scopes_of",
    "week_end",
    "week_start",
    "week_starts",
    "weekly_figures",
]

DEFAULT_WEEKS = 12
MAX_WEEKS = 52
# The stores keep the changes of this many weeks (the current one included), counted back from the
# newest day they hold; older ones are summed into one row, the day before the first week kept.
WEEKS_KEPT = 53
# What the weeks count, of the marginals of :meth:`PortfolioKey.marginals`.
DIMENSIONS = ("band", "arr_band", "lifecycle")

Scope = tuple[bool, str | None, bool, str | None]
# (by_owner, owner, by_segment, segment, day, dimension, value): one row of ``portfolio_days``.
DayKey = tuple[bool, str | None, bool, str | None, str, str, str]


@dataclass(frozen=True, slots=True)
class Counted:
    """How an account counts in ``portfolio_days`` now: its snapshot's time, owner, segment and key."""

    at_ms: int
    owner: str | None
    segment: str | None
    key: PortfolioKey


def week_start(day: date) -> date:
    """The Monday of ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


def week_starts(today: date, weeks: int) -> list[date]:
    """The Mondays of the ``weeks`` ISO weeks ending with ``today``'s, oldest first."""
    current = week_start(today)
    return [current - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]


def week_end(monday: date, today: date) -> date:
    """The day a week's figures are as of: its Sunday, or ``today`` for the week holding it."""
    return min(monday + timedelta(days=6), today)


def kept_from(newest: date) -> date:
    """The first day whose changes a store keeps apart when its newest is ``newest``: the Monday
    :data:`WEEKS_KEPT` weeks back, counting ``newest``'s week."""
    return week_start(newest) - timedelta(weeks=WEEKS_KEPT - 1)


def scopes_of(owner: str | None, segment: str | None) -> tuple[Scope, ...]:
    """The scopes an account of ``owner`` and ``segment`` counts in: all accounts, its owner's, its
    segment's and both's."""
    return (
        (False, None, False, None),
        (True, owner, False, None),
        (False, None, True, segment),
        (True, owner, True, segment),
    )


def scope_of(scope: AccountScope) -> Scope:
    """The rows of ``portfolio_days`` a key of ``scope`` reads."""
    return (scope.owner is not None, scope.owner, scope.segment is not None, scope.segment)


def day_of_ms(at_ms: int) -> str:
    """The UTC day (``YYYY-MM-DD``) of an instant in ms since the epoch."""
    return (date(1970, 1, 1) + timedelta(days=at_ms // 86_400_000)).isoformat()


def counted_of(doc: Mapping[str, Any], at_ms: int) -> Counted:
    """How the snapshot ``doc``, taken at ``at_ms``, counts."""
    facts = doc.get("facts") or {}
    owner, segment = facts.get("owner"), facts.get("segment")
    return Counted(
        at_ms,
        owner if isinstance(owner, str) else None,
        segment if isinstance(segment, str) else None,
        portfolio_key(doc),
    )


# (owner, segment, day, dimension, value): a change before it is counted in each of its scopes.
_Change = tuple[str | None, str | None, str, str, str]


def _add(changes: dict[_Change, list[int]], counted: Counted, day: str, sign: int) -> None:
    key = counted.key
    for dim, value in key.marginals():
        if dim in DIMENSIONS:
            held = changes.setdefault((counted.owner, counted.segment, day, dim, value), [0, 0])
            held[0] += sign
            held[1] += sign * key.arr_of(dim)


def day_deltas(
    snapshots: Sequence[tuple[str, Counted | None]], counted: Mapping[str, Counted]
) -> tuple[Counter[DayKey], Counter[DayKey], dict[str, Counted | None]]:
    """How a run of snapshots, applied in order, changes ``portfolio_days``.

    Args:
        snapshots: (account id, how its snapshot counts) in the order read; None for a tombstone.
        counted: How each account of the run counts before it (absent: not counted).

    Returns:
        The change of accounts and of ARR of each row, and how each account of the run counts after
        it (None: not at all). A snapshot older than the one counted changes nothing (a replay); a
        newer one moves the account on its own day; a tombstone takes the account out on the day of
        the snapshot it counted by.
    """
    state: dict[str, Counted | None] = {account: counted.get(account) for account, _ in snapshots}
    # Summed by owner and segment first, then spread over the scopes: a batch's accounts share them.
    changes: dict[_Change, list[int]] = {}
    for account, new in snapshots:
        held = state[account]
        if new is None:
            if held is not None:
                _add(changes, held, day_of_ms(held.at_ms), -1)
            state[account] = None
            continue
        if held is not None and new.at_ms < held.at_ms:
            continue
        day = day_of_ms(new.at_ms)
        if held is not None:
            _add(changes, held, day, -1)
        _add(changes, new, day, 1)
        state[account] = new
    deltas: Counter[DayKey] = Counter()
    sums: Counter[DayKey] = Counter()
    for (owner, segment, day, dim, value), (accounts, arr) in changes.items():
        if accounts or arr:
            for scope in scopes_of(owner, segment):
                deltas[*scope, day, dim, value] += accounts
                sums[*scope, day, dim, value] += arr
    return deltas, sums, state


def fold_before(rows: Iterable[tuple[DayKey, int, int]], first: date) -> dict[DayKey, tuple[int, int]]:
    """The rows dated before ``first`` summed into one per scope, dimension and value, dated the day
    before ``first``: the figures of every day from then on stay the same."""
    base = (first - timedelta(days=1)).isoformat()
    out: dict[DayKey, tuple[int, int]] = {}
    for key, accounts, arr in rows:
        folded = (*key[:4], base, *key[5:])
        n, a = out.get(folded, (0, 0))
        out[folded] = (n + accounts, a + arr)
    return out


def _figures(by: Mapping[str, Counter[str]]) -> dict[str, Any]:
    bands = by.get("band", Counter())
    lifecycle = by.get("lifecycle", Counter())
    return {
        "accounts": sum(bands.get(band, 0) for band in BANDS),
        "by_band": {band: bands.get(band, 0) for band in BANDS},
        "arr": arr_at_risk(by),
        "lifecycle": {status.value: lifecycle.get(status.value, 0) for status in Lifecycle},
    }


def weekly_figures(
    rows: Iterable[tuple[str, str, str, int, int]], weeks: int, today: date
) -> list[dict[str, Any]]:
    """The figures of each of the ``weeks`` ISO weeks ending with ``today``'s, oldest first.

    Args:
        rows: (day, dimension, value, change of accounts, change of ARR) of one scope, any order.
        weeks: How many weeks.
        today: The current UTC day: the last week's figures are as of it.

    Returns:
        Per week: ``week`` (its Monday), ``as_of`` (the day its figures are as of, see
        :func:`week_end`; None when no row is that old, and then every figure is zero), ``accounts``,
        ``by_band``, ``arr`` (``at_risk`` and ``by_band``, currency to whole units) and ``lifecycle``.
    """
    held = sorted((r for r in rows if r[0] <= today.isoformat()), key=lambda r: r[0])
    by: dict[str, Counter[str]] = {}
    out: list[dict[str, Any]] = []
    i = 0
    for monday in week_starts(today, weeks):
        end = week_end(monday, today)
        while i < len(held) and held[i][0] <= end.isoformat():
            _day_, dim, value, accounts, arr = held[i]
            by.setdefault(dim, Counter())[value] += arr if dim.startswith("arr_") else accounts
            i += 1
        out.append({"week": monday, "as_of": end if i else None, **_figures(by)})
    return out
