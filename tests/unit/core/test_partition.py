"""A partition's rhythm and its data gaps: outages, lulls, gap days, episodes, the context."""

from __future__ import annotations

import random

import pytest

from streamer.core.partition import (
    Context,
    GapChange,
    PartitionActivity,
    decode_activity,
    encode_activity,
)

HOUR = 3_600_000
DAY = 24 * HOUR
MONDAY = 20_458 * DAY  # 2026-01-05T00:00Z


def traffic(
    activity: PartitionActivity, start: int, end: int, per_hour: float, seed: int = 1
) -> list[GapChange]:
    """Events at about ``per_hour`` an hour (in bursts of 3, as sessions come), the clock 30 s behind."""
    rng = random.Random(seed)
    changes: list[GapChange] = []
    t = start
    while t < end:
        t += int(rng.expovariate(per_hour / 3) * HOUR)
        if t >= end:
            break
        for i in range(3):
            changes += activity.advance(t + i * 1000 - 30_000)
            activity.observe(t + i * 1000)
    changes += activity.advance(end)
    return changes


def learnt(weeks: int = 3, per_hour: float = 60.0) -> PartitionActivity:
    a = PartitionActivity()
    assert traffic(a, MONDAY, MONDAY + weeks * 7 * DAY, per_hour) == []
    return a


def test_nothing_is_judged_until_each_hour_of_the_week_was_seen_for_two_weeks() -> None:
    a = PartitionActivity()
    traffic(a, MONDAY, MONDAY + 3 * DAY, 60.0)
    # Two silent days in the first week: no gap, no hour of the week has been seen twice.
    assert a.advance(MONDAY + 5 * DAY) == [] and a.gap_since_ms is None
    assert a.expected(MONDAY // HOUR) == 0.0


def test_steady_bursty_traffic_never_opens_a_gap_and_learns_its_dispersion() -> None:
    a = learnt(weeks=4)
    assert a.gaps == [] and a.gap_days == [] and a.gap_since_ms is None
    assert a.expected((MONDAY + 28 * DAY) // HOUR) == pytest.approx(60, rel=0.25)
    assert 3.0 < a.phi < 7.0  # sessions of three events (and a learnt rate) make counts over-dispersed


def test_a_complete_outage_opens_a_gap_at_the_last_event_and_closes_when_traffic_is_back() -> None:
    a = learnt()
    now = MONDAY + 21 * DAY
    last = a.last_event_ms
    assert last is not None
    outage_end = now + 36 * HOUR
    # Nothing arrives for 36 hours: the clock moves (live ticks, or the next event in a replay).
    opened = a.advance(outage_end)
    assert [(c.started, c.at_ms, c.continued) for c in opened] == [(True, last, False)]
    # Found at the end of the hour in which 12 dispersed events' worth of silence had passed.
    assert opened[0].judged_ms - last < 3 * HOUR
    assert a.context().gap_since_ms == last
    closed = traffic(a, outage_end, outage_end + 12 * HOUR, 60.0, seed=2)
    assert [(c.started, c.at_ms) for c in closed] == [(False, last)]
    (start, end) = a.gaps[-1]
    assert start == last and outage_end < end < outage_end + 8 * HOUR
    ctx = a.context()
    assert ctx.gap_since_ms is None and (start, end) in ctx.excluded
    assert {outage_end // DAY - 1} <= ctx.excluded_days


def test_a_lull_is_a_gap_and_its_low_days_are_gap_days() -> None:
    a = learnt()
    start = MONDAY + 21 * DAY
    changes = traffic(a, start, start + 3 * DAY, 10.0, seed=3)  # a sixth of the usual
    assert [c.started for c in changes][:1] == [True]
    assert a.gap_days == [start // DAY, start // DAY + 1, start // DAY + 2]


def test_gaps_a_few_days_apart_are_one_episode() -> None:
    a = learnt()
    start = MONDAY + 21 * DAY
    first = [c for c in a.advance(start + 12 * HOUR) if c.started]
    traffic(a, start + 12 * HOUR, start + DAY + 12 * HOUR, 60.0, seed=4)
    second = [c for c in a.advance(start + 2 * DAY) if c.started]
    assert [c.continued for c in first + second] == [False, True]
    assert second[0].episode_ms == first[0].episode_ms


def test_a_gap_longer_than_max_gap_days_becomes_the_new_normal() -> None:
    a = learnt()
    start = MONDAY + 21 * DAY
    traffic(a, start, start + 12 * DAY, 6.0, seed=5)  # a tenth of the usual, for twelve days
    # Ten days of gap, then the rhythm is learnt afresh: no gap while it does.
    assert a.gap_since_ms is None
    assert a.gaps[-1][1] - a.gaps[-1][0] > 9 * DAY
    assert a.expected((start + 12 * DAY) // HOUR) == 0.0


def test_a_jump_over_years_starts_counting_again_without_judging_hour_by_hour() -> None:
    a = learnt()
    years_later = MONDAY + 3 * 365 * DAY
    assert a.advance(years_later) == [] or a.gap_since_ms is None
    assert a.hour == years_later // HOUR and a.recent == []


@pytest.mark.parametrize(
    ("spans", "start", "duration", "expected"),
    [
        ((), 0, 10, 10),  # nothing excluded
        (((5, 8),), 0, 10, 13),  # a span inside the silence pushes it by its length
        (((0, 8),), 2, 10, 18),  # starting inside a span: counting starts at its end
        (((5, 8), (20, 30)), 0, 20, 33),  # two spans
        (((15, 2**62),), 0, 20, 2**62 + 5),  # a gap still open: never, in effect
    ],
)
def test_the_context_shifts_a_duration_past_excluded_time(
    spans: tuple[tuple[int, int], ...], start: int, duration: int, expected: int
) -> None:
    ctx = Context(spans)
    assert ctx.shift(start, duration) == expected
    assert ctx.excluded_between(start, expected) == expected - start - duration


def test_the_activity_round_trips_through_its_encoding() -> None:
    a = learnt()
    traffic(a, MONDAY + 21 * DAY, MONDAY + 23 * DAY, 10.0)
    a.applied_offset = 12345
    b = decode_activity(encode_activity(a))
    assert b == a
    with pytest.raises(ValueError):
        decode_activity(encode_activity(a)[:-3])
