"""The delivery ledger and offset tracking: what was already sent, and how far it is safe to commit.

Pure bookkeeping; the Kafka reads and writes live in :mod:`streamer.delivery.service`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import orjson

from streamer.core.alerts import ms_to_rfc3339

__all__ = ["DEAD", "DELIVERED", "Ledger", "OffsetTracker", "ledger_key", "ledger_value"]

DELIVERED = "delivered"
DEAD = "dead"


def ledger_key(destination: str, alert_id: str) -> str:
    """The ledger record key of one alert at one destination."""
    return f"{destination}|{alert_id}"


def ledger_value(status: str, at_ms: int) -> bytes:
    """The ledger record value: the final status and when it was reached."""
    return orjson.dumps({"status": status, "at": ms_to_rfc3339(at_ms)})


@dataclass
class Ledger:
    """Keys of (destination, alert) pairs that are finished: delivered, or dead-lettered."""

    done: set[str] = field(default_factory=set)

    def finished(self, destination: str, alert_id: str) -> bool:
        """Whether the alert needs nothing more at this destination."""
        return ledger_key(destination, alert_id) in self.done

    def record(self, destination: str, alert_id: str) -> None:
        """Note a finished pair (after its ledger record was acknowledged)."""
        self.done.add(ledger_key(destination, alert_id))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one record read from the ledger topic; a tombstone forgets the key."""
        if key is None:
            return
        text = key.decode()
        if value is None:
            self.done.discard(text)
        else:
            self.done.add(text)


@dataclass
class _Partition:
    epoch: int
    pending: dict[int, int] = field(default_factory=dict)  # offset -> destinations not yet finished
    heap: list[int] = field(default_factory=list)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None


@dataclass
class OffsetTracker:
    """Per partition, the offset up to which every alert is finished at all of its destinations.

    Destinations finish out of order (a slow one lags), so the commit point is the lowest offset
    still pending, never simply the newest finished one.
    """

    partitions: dict[int, _Partition] = field(default_factory=dict)
    _epochs: int = 0

    def assign(self, partition: int) -> int:
        """Start tracking a partition afresh; returns its epoch, which jobs carry."""
        self._epochs += 1
        self.partitions[partition] = _Partition(self._epochs)
        return self._epochs

    def revoke(self, partition: int) -> None:
        """Stop tracking a partition; finishes of its older jobs are then ignored."""
        self.partitions.pop(partition, None)

    def epoch(self, partition: int) -> int:
        """The current epoch of a partition (assigning it when new)."""
        part = self.partitions.get(partition)
        return part.epoch if part is not None else self.assign(partition)

    def add(self, partition: int, offset: int, destinations: int) -> None:
        """Register a consumed alert that awaits ``destinations`` deliveries (0: already finished)."""
        part = self.partitions[partition]
        part.next_offset = max(offset + 1, part.next_offset or 0)
        if destinations > 0:
            part.pending[offset] = destinations
            heapq.heappush(part.heap, offset)

    def finish(self, partition: int, offset: int, epoch: int) -> None:
        """One destination of the alert at ``offset`` is finished."""
        part = self.partitions.get(partition)
        if part is None or part.epoch != epoch or offset not in part.pending:
            return
        part.pending[offset] -= 1
        if part.pending[offset] == 0:
            del part.pending[offset]

    def in_flight(self) -> int:
        """Alerts consumed but not finished, over all partitions."""
        return sum(len(p.pending) for p in self.partitions.values())

    def committable(self) -> dict[int, int]:
        """Per partition, the next offset to commit when it moved since the last commit."""
        out: dict[int, int] = {}
        for number, part in self.partitions.items():
            while part.heap and part.heap[0] not in part.pending:
                heapq.heappop(part.heap)
            target = part.heap[0] if part.heap else part.next_offset
            if target is not None and target != part.committed:
                out[number] = target
        return out

    def committed(self, offsets: dict[int, int]) -> None:
        """Record offsets that Kafka acknowledged as committed."""
        for number, offset in offsets.items():
            part = self.partitions.get(number)
            if part is not None:
                part.committed = offset
