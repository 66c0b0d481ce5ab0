"""The global calendar of a portfolio: holidays, tracking outages and NPS survey waves.

Holidays change behaviour (each account applies its own activity factor); outages remove data
(events that happened are simply missing from the history). Both are global facts recorded in the
truth file, so that a backtest can tell alerts caused by a holiday or a broken pipeline from alerts
about customers. All times are epoch milliseconds, UTC.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from streamer.sim.truth import CalendarEntry, CalendarKind, Scope, Shape

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "REGIONS",
    "SECONDS",
    "Calendar",
    "Day",
    "Outage",
    "add_months",
    "build_calendar",
    "date_ms",
    "day_minutes",
    "ms_datetime",
    "timestamp",
    "weekday",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
# Hours east of UTC of each region's working day (Central Europe, US Eastern, Singapore).
REGIONS = {"eu": 1, "us": -5, "apac": 8}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GLOBAL_OUTAGE_HOURS = 36
PARTIAL_OUTAGE_DAYS = 3


# "SS.mmmZ" for each millisecond of a minute: with Day.minutes, a timestamp is two lookups.
SECONDS = tuple(f"{ms // 1000:02d}.{ms % 1000:03d}Z" for ms in range(60_000))


def day_minutes(day_start_ms: int) -> tuple[str, ...]:
    """The "YYYY-MM-DDTHH:MM:" prefixes of the 1440 minutes of a UTC day."""
    prefix = ms_datetime(day_start_ms).strftime("%Y-%m-%dT")
    return tuple(f"{prefix}{m // 60:02d}:{m % 60:02d}:" for m in range(1440))


def timestamp(at_ms: int) -> str:
    """RFC 3339 UTC with milliseconds (the form every generated event carries)."""
    day = at_ms // DAY_MS * DAY_MS
    minute, rest = divmod(at_ms - day, 60_000)
    return f"{ms_datetime(day).strftime('%Y-%m-%dT')}{minute // 60:02d}:{minute % 60:02d}:" + SECONDS[rest]


def date_ms(d: date) -> int:
    """Epoch ms of midnight UTC starting ``d``."""
    return (d - date(1970, 1, 1)).days * DAY_MS


def ms_datetime(ms: int) -> datetime:
    """An epoch-ms instant as an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


def weekday(ms: int) -> int:
    """Day of the week of an instant, 0 = Monday (1970-01-01 was a Thursday)."""
    return (ms // DAY_MS + 3) % 7


def add_months(d: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end (Jan 31 + 1 = Feb 28)."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    for day in range(d.day, 27, -1):
        try:
            return date(year, month, day)
        except ValueError:
            continue
    return date(year, month, min(d.day, 28))


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _first_weekday(year: int, month: int, wd: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(wd - first.weekday()) % 7)


@dataclass(frozen=True, slots=True)
class Outage:
    """Events in [start_ms, end_ms) are missing for the sources and events named (empty: all)."""

    start_ms: int
    end_ms: int
    sources: tuple[str, ...] = ()
    events: tuple[str, ...] = ()

    def covers(self, source: str, event: str, at_ms: int) -> bool:
        """Whether an event of ``source`` named ``event`` at ``at_ms`` is lost to this outage."""
        return (
            self.start_ms <= at_ms < self.end_ms
            and (not self.sources or source in self.sources)
            and (not self.events or event in self.events)
        )


@dataclass(frozen=True, slots=True)
class Day:
    """What the calendar says about one UTC day of the history."""

    start_ms: int
    minutes: tuple[str, ...]  # "YYYY-MM-DDTHH:MM:" of each minute of the day, to stamp events quickly
    weekend: bool
    lull: bool
    holiday_regions: tuple[str, ...]
    outages: tuple[Outage, ...]  # outages overlapping the day


@dataclass(frozen=True, slots=True)
class Calendar:
    """Holidays, outages and survey waves of a history [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    entries: tuple[CalendarEntry, ...]
    lulls: tuple[tuple[int, int], ...]
    holidays: tuple[tuple[int, tuple[str, ...]], ...]  # (day start, regions)
    outages: tuple[Outage, ...]
    surveys: tuple[int, ...]

    def days(self) -> Iterator[Day]:
        """Every day of the history, in order (made one at a time: each holds 1,440 stamps)."""
        for start in range(self.start_ms, self.end_ms, DAY_MS):
            regions: tuple[str, ...] = ()
            for day, names in self.holidays:
                if day == start:
                    regions += names
            yield Day(
                start_ms=start,
                minutes=day_minutes(start),
                weekend=weekday(start) >= 5,
                lull=any(s <= start < e for s, e in self.lulls),
                holiday_regions=regions,
                outages=tuple(o for o in self.outages if o.start_ms < start + DAY_MS and o.end_ms > start),
            )

    def blocked(self, source: str, event: str, at_ms: int) -> bool:
        """Whether an event would be lost to an outage."""
        return any(o.covers(source, event, at_ms) for o in self.outages)

    def past_outages(self, source: str, event: str, at_ms: int) -> int:
        """``at_ms``, or the first instant after the outages covering it (billing systems resend)."""
        moved = True
        while moved:
            moved = False
            for o in self.outages:
                if o.covers(source, event, at_ms):
                    at_ms, moved = o.end_ms + 17 * MINUTE_MS, True
        return at_ms


def _entry(
    kind: CalendarKind,
    name: str,
    start: int,
    end: int,
    scope: Scope,
    activity: tuple[float, float] | None = None,
) -> CalendarEntry:
    return CalendarEntry(kind, name, ms_datetime(start), ms_datetime(end), scope, activity)


def _quiet_day(rng: random.Random, lo: int, hi: int, avoid: list[tuple[int, int]], span_ms: int) -> int:
    """A day start in [lo, hi) whose span, with a week's margin, avoids every ``avoid`` window."""
    days = [
        d
        for d in range(lo, hi, DAY_MS)
        if all(d + span_ms + 7 * DAY_MS <= s or d >= e + 7 * DAY_MS for s, e in avoid)
    ]
    return rng.choice(days) if days else lo


def build_calendar(
    shape: Shape, start_ms: int, end_ms: int, rng: random.Random, segment_accounts: bool
) -> Calendar:
    """Draw the calendar of a history: fixed holidays, two outages at random times, survey waves.

    * The Christmas lull, Dec 24 to Jan 1, for every year the history touches: b2b accounts work at
      10-25% (a few at 30-60%), consumers use the product differently but not less (40-170%).
    * Regional Monday holidays: Easter Monday in ``eu`` and Labor Day in ``us``.
    * A 36-hour global tracking outage (no events from anyone) and a 3-day partial one (either every
      Segment-sourced account, or every ``login`` event), both away from holidays and each other.
    * An NPS survey wave on the first Tuesday of February, May, August and November.
    """
    entries: list[CalendarEntry] = []
    lulls: list[tuple[int, int]] = []
    holidays: list[tuple[int, tuple[str, ...]]] = []
    first, last = ms_datetime(start_ms).year, ms_datetime(end_ms).year
    lull_range = (0.1, 0.6) if shape == "b2b" else (0.4, 1.7)
    for year in range(first - 1, last + 1):
        s, e = date_ms(date(year, 12, 24)), date_ms(date(year + 1, 1, 2))
        if s < end_ms and e > start_ms:
            lulls.append((s, e))
            entries.append(_entry("holiday", "Christmas and New Year", s, e, Scope(), lull_range))
    holiday_range = (0.1, 0.3) if shape == "b2b" else (0.8, 1.3)
    for year in range(first, last + 1):
        for name, day, region in (
            ("Easter Monday", _easter(year) + timedelta(days=1), "eu"),
            ("Labor Day", _first_weekday(year, 9, 0), "us"),
        ):
            s = date_ms(day)
            if start_ms <= s < end_ms:
                holidays.append((s, (region,)))
                entries.append(
                    _entry("holiday", name, s, s + DAY_MS, Scope(regions=(region,)), holiday_range)
                )
    span = end_ms - start_ms
    lo = start_ms + (span // 5) // DAY_MS * DAY_MS
    hi = start_ms + (4 * span // 5) // DAY_MS * DAY_MS
    avoid = list(lulls) + [(d, d + DAY_MS) for d, _ in holidays]
    global_start = _quiet_day(rng, lo, hi, avoid, 2 * DAY_MS) + rng.randrange(24) * HOUR_MS
    global_end = global_start + GLOBAL_OUTAGE_HOURS * HOUR_MS
    avoid.append((global_start, global_end))
    partial_start = _quiet_day(rng, lo, hi, avoid, PARTIAL_OUTAGE_DAYS * DAY_MS) + rng.randrange(24) * HOUR_MS
    partial_end = partial_start + PARTIAL_OUTAGE_DAYS * DAY_MS
    by_source = segment_accounts and rng.random() < 0.5
    partial = (
        Outage(partial_start, partial_end, ("segment",), ())
        if by_source
        else Outage(partial_start, partial_end, (), ("login",))
    )
    outages = (Outage(global_start, global_end), partial)
    entries.append(_entry("tracking_outage", "Global tracking outage", global_start, global_end, Scope()))
    partial_name = "Segment source outage" if by_source else "login events not tracked"
    entries.append(
        _entry(
            "tracking_outage",
            partial_name,
            partial_start,
            partial_end,
            Scope(sources=partial.sources, events=partial.events),
        )
    )
    surveys = []
    for year in range(first, last + 1):
        for month in (2, 5, 8, 11):
            s = date_ms(_first_weekday(year, month, 1)) + 14 * HOUR_MS
            if start_ms <= s < end_ms:
                surveys.append(s)
                entries.append(_entry("nps_survey", "Quarterly NPS survey", s, s + 14 * DAY_MS, Scope()))
    entries.sort(key=lambda c: (c.start, c.kind, c.name))
    return Calendar(start_ms, end_ms, tuple(entries), tuple(lulls), tuple(holidays), outages, tuple(surveys))
