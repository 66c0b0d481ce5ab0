"""The partitions' clock ticks: how wall time reaches a partition that has nothing left to read.

A partition's clock is its own (:class:`streamer.worker.processor.PartitionProcessor` keeps it):
while it has a backlog it is the newest event time less the allowed lateness, so a replay is judged
by its own time. Once it has caught up, the worker (in ``wall`` mode) writes a :class:`Tick` to the
partition of the internal clock topic every tick interval: "wall time was ``clock_ms`` when the
partition's events had been read up to offset ``upto``". Ticks go through Kafka rather than straight
to the processor so that they are ordered with the partition's own records for whoever owns it
next, and a restarted worker meets them in the same order.

A tick read again after a crash, before the restarted worker has re-processed the events up to
``upto``, would move the clock past events still to be re-applied (they would count as late): such
a tick is not usable. Everything here is told the time; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Tick", "idle_tick", "newest_usable"]

_UNREADABLE_UPTO = 2**63  # an unreadable tick requires an offset no partition reaches


@dataclass(frozen=True, slots=True)
class Tick:
    """Wall time ``clock_ms``, valid once a partition's events are processed up to offset ``upto``."""

    clock_ms: int
    upto: int

    def encode(self) -> bytes:
        """The record value on the clock topic: ``b"<clock ms> <upto>"``."""
        return f"{self.clock_ms} {self.upto}".encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Tick:
        """Read a tick; an unreadable one is never usable."""
        try:
            clock, upto = (value or b"").split()
            return cls(int(clock), int(upto))
        except ValueError:
            return cls(0, _UNREADABLE_UPTO)


def idle_tick(now_ms: int, grace_ms: int, highwater: int) -> Tick:
    """The tick for a caught-up partition at wall time ``now_ms``, trailing it by ``grace_ms``.

    The grace leaves room for events in flight: produced before ``now_ms`` but not yet readable.
    """
    return Tick(now_ms - grace_ms, highwater)


def newest_usable(ticks: Iterable[Tick], processed_next: int) -> int | None:
    """The latest clock among ``ticks`` that a partition processed up to ``processed_next`` may use."""
    usable = [t.clock_ms for t in ticks if t.upto <= processed_next]
    return max(usable) if usable else None
