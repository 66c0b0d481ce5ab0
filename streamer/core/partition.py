"""Activity of a whole partition: what is normal for it, and when its data has a gap.

When a large share of a portfolio goes silent or drops together, the cause is rarely the customers:
a tracking outage in the product app, a holiday. Judged account by account, such a day raises an
alert storm. A partition therefore keeps its own rhythm, and a gap in it makes the missing time
*excluded*: silence inside it does not count towards a quiet alert, and its days leave the
baselines and the drop tests (see :mod:`streamer.core.rhythm`).

* **Rhythm**: events per hour of the week (168 slots), learnt as an exponentially weighted mean
  (``rate = 3/4 rate + 1/4 this week's count``) from the hours that are not in a gap, used once a
  slot has seen two weeks. Events come in bursts (a session is several events), so counts are
  judged as quasi-Poisson: the learnt dispersion ``phi`` (variance over mean of an hour's count
  around its rate) turns ``n`` events into ``n / phi`` independent ones.
* **Gap in progress**, judged at the end of each hour, either of:

  - *silence*: no event since the last one, while the rhythm expected at least ``silence_min``
    (12) independent events in that time (a chance of ``e^-12`` that it is normal); it covers a
    complete outage, at night or at weekends too;
  - *lull*: the trailing six hours hold at most a quarter of the events expected, that many is
    improbable (quasi-Poisson, below 1e-4) and at least ``lull_min`` (20) independent events were
    expected; it ends when the trailing six hours are back to 60% (so a partial recovery does not
    flicker). A gap longer than ``max_gap_days`` (10) is taken as the new normal: it ends and the
    rhythm is learnt afresh, two weeks before anything is judged again.
* Gaps less than three days apart are one *episode*: one ``data_gap`` alert, whose id is the week
  the episode began, so that every partition of one outage or holiday raises the same id.
* **Gap day**: a UTC day whose events were less than half what its 24 hours expected, improbably
  so, with at least ``day_min`` (20) independent events expected. Its whole day is excluded, also
  for the baselines of later weeks.

Everything moves only when it is told the time (:meth:`observe`, :meth:`advance`), in the order of
the partition's records, so a replay and a live worker see the same gaps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamer.core.rhythm import poisson_cdf

__all__ = [
    "EMPTY_CONTEXT",
    "Context",
    "GapChange",
    "PartitionActivity",
    "decode_activity",
    "encode_activity",
    "merge_spans",
]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_HOURS = 168
_LEARN = 0.25
_LEARN_PHI = 0.01
_TRUST_AFTER = 2  # weeks a slot must have been learnt from before it is used
_UNLIKELY = 1e-4
_TRAIL_HOURS = 6
_EPISODE_MS = 3 * DAY_MS
_KEEP_MS = 42 * DAY_MS  # gaps and days remembered, past the longest window that reads them


def _how(hour: int) -> int:
    """Hour of the week (0 = Monday 00:00 UTC) of an epoch hour; 1970-01-01 was a Thursday."""
    return (hour + 72) % WEEK_HOURS


def _mostly_excluded_days(spans: tuple[tuple[int, int], ...], until_ms: int) -> frozenset[int]:
    days: dict[int, int] = {}
    for start, end in spans:
        end = min(end, until_ms)
        day = start // DAY_MS
        while day * DAY_MS < end:
            lo, hi = max(start, day * DAY_MS), min(end, (day + 1) * DAY_MS)
            days[day] = days.get(day, 0) + hi - lo
            day += 1
    return frozenset(d for d, ms in days.items() if ms > DAY_MS // 2)


def merge_spans(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``[start, end)`` spans, sorted, with overlapping and touching ones merged into one."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class Context:
    """What the partition tells the engine about time: spans to leave out, and whether a gap is open."""

    # Sorted, disjoint [start, end) spans of excluded time: past gaps, gap days and the gap in progress
    # (open-ended at the far future while it lasts).
    excluded: tuple[tuple[int, int], ...] = ()
    gap_since_ms: int | None = None
    # UTC days that lie for the most part (over 12 hours) in excluded time, up to the clock.
    excluded_days: frozenset[int] = frozenset()

    def excluded_between(self, start_ms: int, end_ms: int) -> int:
        """Milliseconds of ``[start_ms, end_ms)`` that are excluded."""
        total = 0
        for lo, hi in self.excluded:
            if hi <= start_ms:
                continue
            if lo >= end_ms:
                break
            total += min(hi, end_ms) - max(lo, start_ms)
        return total

    def shift(self, start_ms: int, duration_ms: int) -> int:
        """The instant by which ``duration_ms`` of time that is not excluded has passed since ``start_ms``."""
        t, left = start_ms, duration_ms
        for lo, hi in self.excluded:
            if hi <= t:
                continue
            if lo >= t + left:
                break
            if lo > t:
                left -= lo - t
            t = hi
        return t + left


EMPTY_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class GapChange:
    """A gap that began or ended when the clock moved."""

    started: bool
    at_ms: int  # when the gap began (for an end too)
    ended_ms: int | None = None
    judged_ms: int = 0  # the end of the hour at which the change was judged
    # Gaps a few days apart are one episode (a holiday season, an outage and its aftershocks): when
    # the episode began, and whether this gap continues one.
    episode_ms: int = 0
    continued: bool = False
    expected: float = 0.0
    observed: int = 0


@dataclass(slots=True)
class PartitionActivity:
    """The rhythm, gaps and gap days of one partition (see the module docstring)."""

    silence_min: float = 12.0
    lull_min: float = 20.0
    day_min: float = 20.0
    max_gap_days: float = 10.0
    # Whether new gaps may open: the partition's owner says so (enough accounts behind its traffic).
    judging: bool = True
    rate: list[float] = field(default_factory=lambda: [0.0] * WEEK_HOURS)
    learnt: list[int] = field(
        default_factory=lambda: [0] * WEEK_HOURS
    )  # weeks each slot learnt from (max 255)
    phi: float = 4.0  # dispersion of hourly counts, learnt; starts cautious
    hour: int = -1  # the epoch hour being counted
    hour_count: int = 0
    recent: list[int] = field(default_factory=list)  # counts of the closed hours before ``hour``, newest last
    recent_gap: list[bool] = field(default_factory=list)
    day_count: int = 0
    last_event_ms: int | None = None
    clock_ms: int = 0
    applied_offset: int = -1
    gap_since_ms: int | None = None
    episode_ms: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # closed gaps, oldest first
    gap_days: list[int] = field(default_factory=list)

    def expected(self, hour: int) -> float:
        """Events the rhythm expects in an epoch hour (0 until its slot has been learnt for two weeks)."""
        slot = _how(hour)
        return self.rate[slot] if self.learnt[slot] >= _TRUST_AFTER else 0.0

    def observe(self, at_ms: int) -> None:
        """Count one event; its hour is the current one, or the current one if it is already closed."""
        if self.hour < 0:
            self.hour = at_ms // HOUR_MS
        self.hour_count += 1
        self.day_count += 1
        if self.last_event_ms is None or at_ms > self.last_event_ms:
            self.last_event_ms = at_ms

    def advance(self, clock_ms: int) -> list[GapChange]:
        """Move the clock to ``clock_ms``: close the hours and days it passed and update the gap."""
        changes: list[GapChange] = []
        if clock_ms <= self.clock_ms:
            return changes
        if self.hour < 0:
            self.hour = clock_ms // HOUR_MS
        if clock_ms - (self.hour + 1) * HOUR_MS > self.max_gap_days * DAY_MS:
            # Longer than any gap: the history's start (facts dated years back) or a partition that
            # was empty. Nothing to judge hour by hour; counting starts again at the clock's hour.
            if self.gap_since_ms is not None:
                self.gaps.append((self.gap_since_ms, clock_ms))
                changes.append(
                    GapChange(
                        False,
                        self.gap_since_ms,
                        ended_ms=clock_ms,
                        judged_ms=clock_ms,
                        episode_ms=self.episode_ms,
                    )
                )
                self.gap_since_ms = None
            self.hour, self.hour_count, self.day_count = clock_ms // HOUR_MS, 0, 0
            self.recent.clear()
            self.recent_gap.clear()
        while (self.hour + 1) * HOUR_MS <= clock_ms:
            # Judged at the end of each hour only: a jump over a long silence opens the gap where the
            # silence became improbable, and a replay and a ticking live clock judge at the same instants.
            changes += self._update_gap((self.hour + 1) * HOUR_MS)
            self._close_hour()
        self.clock_ms = clock_ms
        return changes

    def _close_hour(self) -> None:
        in_gap = self.gap_since_ms is not None and self.gap_since_ms < (self.hour + 1) * HOUR_MS
        if not in_gap:
            slot = _how(self.hour)
            r, n = self.rate[slot], self.hour_count
            if self.learnt[slot] >= _TRUST_AFTER and r >= 1:
                self.phi = (1 - _LEARN_PHI) * self.phi + _LEARN_PHI * max(1.0, (n - r) ** 2 / r)
            self.rate[slot] = float(n) if self.learnt[slot] == 0 else (1 - _LEARN) * r + _LEARN * n
            self.learnt[slot] = min(255, self.learnt[slot] + 1)
        self.recent.append(self.hour_count)
        self.recent_gap.append(in_gap)
        del self.recent[:-_TRAIL_HOURS]
        del self.recent_gap[:-_TRAIL_HOURS]
        self.hour += 1
        self.hour_count = 0
        if self.hour % 24 == 0:
            self._close_day(self.hour // 24 - 1)

    def _close_day(self, day: int) -> None:
        expected = sum(self.expected(h) for h in range(day * 24, day * 24 + 24))
        if self.judging and self._improbably_low(self.day_count, expected, 0.5, self.day_min):
            self.gap_days.append(day)
        self.day_count = 0
        horizon = day - _KEEP_MS // DAY_MS
        self.gap_days = [d for d in self.gap_days if d > horizon]
        self.gaps = [g for g in self.gaps if g[1] > (day + 1) * DAY_MS - _KEEP_MS]

    def _trailing(self, at_ms: int) -> tuple[int, float]:
        """Events and expected events in the six hours before ``at_ms`` (the current hour in part)."""
        frac = (at_ms - self.hour * HOUR_MS) / HOUR_MS
        observed = self.hour_count + sum(self.recent[-(_TRAIL_HOURS - 1) :])
        expected = frac * self.expected(self.hour)
        expected += sum(self.expected(self.hour - i) for i in range(1, _TRAIL_HOURS))
        expected += (1 - frac) * self.expected(self.hour - _TRAIL_HOURS)
        return observed, expected

    def _silence_expected(self, at_ms: int) -> float:
        last = self.last_event_ms
        if last is None or last >= at_ms:
            return 0.0
        expected, t = 0.0, max(last, at_ms - int(self.max_gap_days * DAY_MS))
        while t < at_ms and expected < self.silence_min * self.phi:
            hour = t // HOUR_MS
            end = min(at_ms, (hour + 1) * HOUR_MS)
            expected += self.expected(hour) * (end - t) / HOUR_MS
            t = end
        return expected

    def _improbably_low(self, observed: float, expected: float, share: float, minimum: float) -> bool:
        phi = self.phi
        return (
            expected / phi >= minimum
            and observed <= share * expected
            and poisson_cdf(observed / phi, expected / phi) < _UNLIKELY
        )

    def _update_gap(self, at_ms: int) -> list[GapChange]:
        observed, expected = self._trailing(at_ms)
        if self.gap_since_ms is None:
            if not self.judging:
                return []
            silent = self._silence_expected(at_ms) / self.phi >= self.silence_min
            lull = self._improbably_low(observed, expected, 0.25, self.lull_min)
            if not (silent or lull):
                return []
            if silent and self.last_event_ms is not None:
                self.gap_since_ms = self.last_event_ms
            else:
                self.gap_since_ms = at_ms - _TRAIL_HOURS * HOUR_MS
            continued = bool(self.gaps) and self.gap_since_ms - self.gaps[-1][1] < _EPISODE_MS
            if not continued:
                self.episode_ms = self.gap_since_ms
            return [
                GapChange(
                    True,
                    self.gap_since_ms,
                    judged_ms=at_ms,
                    episode_ms=self.episode_ms,
                    continued=continued,
                    expected=round(expected, 1),
                    observed=observed,
                )
            ]
        too_long = at_ms - self.gap_since_ms > self.max_gap_days * DAY_MS
        recovered = observed >= 0.6 * expected and observed > 0
        if not (too_long or recovered):
            return []
        since, self.gap_since_ms = self.gap_since_ms, None
        self.gaps.append((since, at_ms))
        if too_long:
            # The new normal: the rhythm is learnt afresh (two weeks) from what the partition does now.
            self.learnt = [0] * WEEK_HOURS
        return [
            GapChange(
                False,
                since,
                ended_ms=at_ms,
                judged_ms=at_ms,
                episode_ms=self.episode_ms,
                expected=round(expected, 1),
                observed=observed,
            )
        ]

    def context(self) -> Context:
        """The excluded time as the engine reads it."""
        spans = list(self.gaps)
        spans += [(d * DAY_MS, (d + 1) * DAY_MS) for d in self.gap_days]
        if self.gap_since_ms is not None:
            spans.append((self.gap_since_ms, 2**62))
        excluded = merge_spans(spans)
        return Context(excluded, self.gap_since_ms, _mostly_excluded_days(excluded, self.clock_ms))


_HEAD = struct.Struct("<BqqiqqqqIIdq")
_NONE = -(2**63)


def encode_activity(a: PartitionActivity) -> bytes:
    """The compact binary form of a partition's activity, stored beside its accounts."""
    head = _HEAD.pack(
        1,
        a.hour,
        a.clock_ms,
        a.hour_count,
        _NONE if a.last_event_ms is None else a.last_event_ms,
        a.applied_offset,
        _NONE if a.gap_since_ms is None else a.gap_since_ms,
        a.day_count,
        len(a.gaps),
        len(a.gap_days),
        a.phi,
        a.episode_ms,
    )
    # Doubles: an activity read back from the store must judge exactly as the one kept in memory.
    rates = struct.pack(f"<{WEEK_HOURS}d{WEEK_HOURS}B", *a.rate, *a.learnt)
    recent = struct.pack(f"<B{len(a.recent)}i{len(a.recent)}?", len(a.recent), *a.recent, *a.recent_gap)
    gaps = struct.pack(f"<{2 * len(a.gaps)}q", *(v for g in a.gaps for v in g))
    days = struct.pack(f"<{len(a.gap_days)}i", *a.gap_days)
    return head + rates + recent + gaps + days


def decode_activity(b: bytes) -> PartitionActivity:
    """Read what :func:`encode_activity` wrote.

    Raises:
        ValueError: On an unknown version or a truncated value.
    """
    try:
        v, hour, clock, hour_count, last, offset, gap, day_count, n_gaps, n_days, phi, episode = (
            _HEAD.unpack_from(b)
        )
        if v != 1:
            raise ValueError(f"unsupported partition activity version {v}")
        pos = _HEAD.size
        rate = list(struct.unpack_from(f"<{WEEK_HOURS}d", b, pos))
        learnt = list(struct.unpack_from(f"<{WEEK_HOURS}B", b, pos + 8 * WEEK_HOURS))
        pos += 9 * WEEK_HOURS
        (n,) = struct.unpack_from("<B", b, pos)
        recent = list(struct.unpack_from(f"<{n}i", b, pos + 1))
        recent_gap = list(struct.unpack_from(f"<{n}?", b, pos + 1 + 4 * n))
        pos += 1 + 5 * n
        flat = struct.unpack_from(f"<{2 * n_gaps}q", b, pos)
        pos += 16 * n_gaps
        days = list(struct.unpack_from(f"<{n_days}i", b, pos))
    except struct.error as err:
        raise ValueError(f"corrupt partition activity: {err}") from None
    return PartitionActivity(
        rate=rate,
        learnt=learnt,
        phi=phi,
        episode_ms=episode,
        hour=hour,
        hour_count=hour_count,
        recent=recent,
        recent_gap=recent_gap,
        day_count=day_count,
        last_event_ms=None if last == _NONE else last,
        clock_ms=clock,
        applied_offset=offset,
        gap_since_ms=None if gap == _NONE else gap,
        gaps=[(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)],
        gap_days=days,
    )
