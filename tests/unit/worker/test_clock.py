"""Clock ticks: their format, and which of them a partition may use."""

from __future__ import annotations

import pytest

from streamer.worker.clock import Tick, idle_tick, newest_usable


@pytest.mark.parametrize(
    ("value", "tick"),
    [
        (b"1767225600000 42", Tick(1767225600000, 42)),  # clock ms, then the offset it requires
        (b"1767225600000 0", Tick(1767225600000, 0)),  # a partition that never had an event
        (b"garbage", Tick(0, 2**63)),  # unreadable: requires an offset no partition reaches
        (b"1 2 3", Tick(0, 2**63)),  # too many fields
        (b"", Tick(0, 2**63)),  # empty value
        (None, Tick(0, 2**63)),  # tombstone
    ],
)
def test_a_tick_is_read_back_as_written_and_anything_else_is_never_usable(
    value: bytes | None, tick: Tick
) -> None:
    assert Tick.decode(value) == tick
    if tick.upto < 2**63:
        assert tick.encode() == value


@pytest.mark.parametrize(
    ("ticks", "processed_next", "clock"),
    [
        ([Tick(100, 5), Tick(200, 5)], 5, 200),  # the newest of the usable ones
        ([Tick(100, 5), Tick(200, 9)], 5, 100),  # sent after events this partition has not re-applied
        ([Tick(200, 9)], 5, None),  # read again after a crash, before the replay caught up: skipped
        ([Tick(300, 5), Tick(200, 5)], 6, 300),  # order within a fetch does not matter
        ([], 5, None),  # nothing to use
    ],
)
def test_a_partition_uses_only_ticks_sent_when_it_was_no_further_than_now(
    ticks: list[Tick], processed_next: int, clock: int | None
) -> None:
    assert newest_usable(ticks, processed_next) == clock


def test_an_idle_tick_trails_wall_time_by_the_grace_and_requires_the_highwater() -> None:
    assert idle_tick(now_ms=10_000, grace_ms=300, highwater=17) == Tick(9_700, 17)
