"""Account filters, sort orders and opaque cursors, independent of where the accounts live."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import BeforeValidator

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AccountSort(StrEnum):
    """Orders in which accounts can be listed."""

    SCORE = "score"
    SCORE_DESC = "-score"
    LAST_ACTIVITY = "last_activity_at"
    LAST_ACTIVITY_DESC = "-last_activity_at"
    ACCOUNT_ID = "account_id"
    # ARR, largest first (accounts without ARR last); renewal, soonest first (without one last).
    ARR_DESC = "-arr"
    RENEWAL = "renewal_at"
    # Overdue days of the worst missing onboarding milestone, most first (accounts missing none last).
    ONBOARDING_OVERDUE_DESC = "-onboarding_overdue"


NO_ARR = -1
"""The ARR sort key of an account without ARR: last by ARR (descending)."""
NO_RENEWAL_MS = 2**62
"""The renewal sort key of an account without a renewal: last by renewal (ascending)."""


def arr_units(value: object) -> int | None:
    """ARR in whole currency units (half to even), as lists sort and the portfolio sums it; None when
    not a number. Whole units keep every sum exact in any order of additions and removals, in memory and
    in SQL."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**53:
        return None
    return round(value)


def arr_key(doc: dict[str, Any]) -> int:
    """The ARR an account is listed by: :func:`arr_units` of its ``facts.arr``, else :data:`NO_ARR`."""
    units = arr_units((doc.get("facts") or {}).get("arr"))
    return NO_ARR if units is None else units


def renewal_key(doc: dict[str, Any]) -> int:
    """The renewal an account is listed by, in ms since the epoch, else :data:`NO_RENEWAL_MS`."""
    at = (doc.get("facts") or {}).get("renewal_at")
    if not isinstance(at, str):
        return NO_RENEWAL_MS
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        return NO_RENEWAL_MS
    if when.tzinfo is None:
        return NO_RENEWAL_MS
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class Lifecycle(StrEnum):
    """Lifecycle statuses an account list can be filtered on (the snapshot's ``lifecycle.status``)."""

    NEW = "new"
    RETURNING = "returning"
    RESURRECTING = "resurrecting"
    DORMANT = "dormant"


_STATUSES = frozenset(Lifecycle)


def _count(value: object, most: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        return None
    return value


def lifecycle_of(doc: Mapping[str, Any]) -> tuple[str | None, int | None, int | None]:
    """A snapshot's lifecycle status and active days of 7 and of 28, as lists filter and the portfolio
    counts them; None for each that the snapshot does not tell (written before lifecycles, or 28 days
    when its policy keeps fewer)."""
    block = doc.get("lifecycle")
    if not isinstance(block, Mapping):
        return None, None, None
    status = block.get("status")
    return (
        status if status in _STATUSES else None,
        _count(block.get("active_days_7"), 7),
        _count(block.get("active_days_28"), 28),
    )


class OnboardingStatus(StrEnum):
    """Onboarding statuses an account list can be filtered on (the snapshot's ``onboarding.status``)."""

    ON_TRACK = "on_track"
    BEHIND = "behind"
    STUCK = "stuck"
    COMPLETE = "complete"


_ONBOARDING_STATUSES = frozenset(OnboardingStatus)
_MOST_DAYS = 2**31 - 1  # what an integer column holds
NO_OVERDUE = -1
"""The onboarding sort key of an account missing no milestone: last by overdue days (descending)."""


def onboarding_active(doc: Mapping[str, Any]) -> bool:
    """Whether a snapshot's account is in its first ``onboarding.days``: the ``onboarding`` boolean of
    snapshots written before milestones, or the ``active`` of the object that replaced it."""
    value = doc.get("onboarding")
    if isinstance(value, Mapping):
        value = value.get("active")
    return value is True


def onboarding_of(doc: Mapping[str, Any]) -> tuple[bool, str | None, int | None]:
    """A snapshot's onboarding: whether it is active (:func:`onboarding_active`), its milestone status
    and the overdue days of its worst missing milestone, as lists filter and sort and the portfolio
    counts them; None for each that the snapshot does not tell (a boolean ``onboarding``, no status,
    no missing milestone)."""
    block = doc.get("onboarding")
    if not isinstance(block, Mapping):
        return onboarding_active(doc), None, None
    status = block.get("status")
    missing = block.get("missing")
    overdue = [
        days
        for m in (missing if isinstance(missing, list) else ())
        if isinstance(m, Mapping) and (days := _count(m.get("overdue_days"), _MOST_DAYS)) is not None
    ]
    return (
        onboarding_active(doc),
        status if status in _ONBOARDING_STATUSES else None,
        max(overdue) if overdue else None,
    )


def overdue_key(doc: Mapping[str, Any]) -> int:
    """The overdue days an account is listed by: :func:`onboarding_of`'s, else :data:`NO_OVERDUE`."""
    overdue = onboarding_of(doc)[2]
    return NO_OVERDUE if overdue is None else overdue


class InvalidCursor(ValueError):
    """The cursor was not produced by this API (or belongs to another sort order)."""


@dataclass(frozen=True, slots=True)
class AccountFilters:
    """Conditions an account must all meet to be listed."""

    band: str | None = None
    segment: str | None = None
    plan: str | None = None
    owner: str | None = None
    min_score: int | None = None
    max_score: int | None = None
    quiet_since: datetime | None = None
    lifecycle: str | None = None
    min_active_days_7: int | None = None
    max_active_days_7: int | None = None
    min_active_days_28: int | None = None
    max_active_days_28: int | None = None
    onboarding_status: str | None = None
    # Only accounts in their first onboarding days (the dashboard's onboarding view; no query parameter).
    onboarding_active: bool | None = None

    def active_days_bounds(self) -> list[tuple[int, int | None, int | None]]:
        """(7 or 28, at least, at most) for each count of active days with a bound."""
        return [
            (days, low, high)
            for days, low, high in (
                (7, self.min_active_days_7, self.max_active_days_7),
                (28, self.min_active_days_28, self.max_active_days_28),
            )
            if low is not None or high is not None
        ]

    def matches(self, doc: dict[str, Any]) -> bool:
        """Whether a snapshot meets every condition."""
        facts = doc.get("facts") or {}
        for key in ("segment", "plan", "owner"):
            want = getattr(self, key)
            if want is not None and facts.get(key) != want:
                return False
        score = doc.get("score", 0)
        if self.band is not None and doc.get("band") != self.band:
            return False
        if self.min_score is not None and score < self.min_score:
            return False
        if self.max_score is not None and score > self.max_score:
            return False
        if self.quiet_since is not None:
            last = doc.get("last_activity_at")
            if last is None or datetime.fromisoformat(last) > self.quiet_since:
                return False
        if self.onboarding_status is not None or self.onboarding_active is not None:
            onboarding, onboarding_status, _ = onboarding_of(doc)
            if self.onboarding_status is not None and onboarding_status != self.onboarding_status:
                return False
            if self.onboarding_active is not None and onboarding != self.onboarding_active:
                return False
        if self.lifecycle is None and not self.active_days_bounds():
            return True
        status, *active = lifecycle_of(doc)
        if self.lifecycle is not None and status != self.lifecycle:
            return False
        for days, low, high in self.active_days_bounds():
            # An unknown count meets no bound, as a NULL compares in SQL.
            count = active[0 if days == 7 else 1]
            if count is None or (low is not None and count < low) or (high is not None and count > high):
                return False
        return True


def encode_cursor(payload: list[Any]) -> str:
    """Opaque URL-safe cursor for ``payload``."""
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Inverse of :func:`encode_cursor`.

    Raises:
        InvalidCursor: If the text is not a cursor.
    """
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidCursor("malformed cursor") from None
    if not isinstance(payload, list):
        raise InvalidCursor("malformed cursor")
    return payload


def sort_cursor(cursor: str, sort: AccountSort) -> list[Any]:
    """The sort key a list cursor of ``sort`` ends after (see :func:`sort_key`).

    Raises:
        InvalidCursor: If it is malformed or was made for another sort order.
    """
    payload = decode_cursor(cursor)
    if len(payload) != 2 or payload[0] != sort.value or not isinstance(payload[1], list):
        raise InvalidCursor("cursor does not belong to this sort order")
    return payload[1]


def alerts_cursor(cursor: str) -> tuple[int, int]:
    """The feed position (detection time in ms, arrival number) an alert-feed cursor ends before.

    Raises:
        InvalidCursor: If it is malformed or is not an alert-feed cursor.
    """
    payload = decode_cursor(cursor)
    if len(payload) != 3 or payload[0] != "alerts" or any(type(v) is not int for v in payload[1:]):
        raise InvalidCursor("cursor does not belong to the alert feed")
    return int(payload[1]), int(payload[2])


def alert_position(detected_ms: int, seq: int) -> str:
    """The cursor of the feed's page that ends with the alert detected at ``detected_ms``, ``seq``-th
    to arrive (pages go newest first by detection time, then by arrival)."""
    return encode_cursor(["alerts", detected_ms, seq])


def sort_key(doc: dict[str, Any], sort: AccountSort) -> list[Any]:
    account = str(doc.get("account_id", ""))
    if sort in (AccountSort.SCORE, AccountSort.SCORE_DESC):
        return [int(doc.get("score", 0)), account]
    if sort in (AccountSort.LAST_ACTIVITY, AccountSort.LAST_ACTIVITY_DESC):
        # Snapshot instants share one fixed-width UTC format, so text order is time order; never
        # active sorts first.
        return [doc.get("last_activity_at") or "", account]
    if sort is AccountSort.ARR_DESC:
        return [arr_key(doc), account]
    if sort is AccountSort.RENEWAL:
        return [renewal_key(doc), account]
    if sort is AccountSort.ONBOARDING_OVERDUE_DESC:
        return [overdue_key(doc), account]
    return [account]


def page_accounts(
    docs: Iterable[dict[str, Any]], filters: AccountFilters, sort: AccountSort, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Filter, sort and cut one page of snapshots.

    Args:
        docs: All snapshots.
        filters: Conditions to meet.
        sort: Order; ties are broken by account id so the order is total.
        cursor: Where the previous page ended, or None for the first page.
        limit: Page size.

    Returns:
        The page and the cursor of the next one (None on the last page).

    Raises:
        InvalidCursor: If ``cursor`` is malformed or was made for another sort.
    """
    desc = sort.value.startswith("-")
    rows = sorted(
        ((sort_key(d, sort), d) for d in docs if filters.matches(d)), key=lambda r: r[0], reverse=desc
    )
    if cursor is not None:
        after = sort_cursor(cursor, sort)
        try:
            rows = [r for r in rows if (r[0] < after if desc else r[0] > after)]
        except TypeError:
            raise InvalidCursor("malformed cursor") from None
    page = rows[:limit]
    more = len(rows) > limit
    return [d for _, d in page], encode_cursor([sort.value, page[-1][0]]) if more and page else None


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _require_rfc3339(value: object) -> object:
    # Pydantic would also read "0.5" as seconds since the epoch; the API documents RFC 3339 only.
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a UTC offset, e.g. 2025-03-01T00:00:00Z")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_require_rfc3339)]
"""A query parameter that accepts RFC 3339 date-times with an offset, and nothing else."""
