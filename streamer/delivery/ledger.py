"""The delivery ledger and offset tracking: what was already sent, and how far it is safe to commit.

Pure bookkeeping; the Kafka reads and writes live in :mod:`streamer.delivery.service`.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from streamer.core.alerts import ms_to_rfc3339

__all__ = [
    "BASELINE_PREFIX",
    "DEAD",
    "DELIVERED",
    "DISABLED",
    "Ledger",
    "OffsetTracker",
    "disabled_key",
    "disabled_value",
    "ledger_key",
    "ledger_value",
]

DELIVERED = "delivered"
DEAD = "dead"
DISABLED = "disabled"
_DISABLED_PREFIX = "disabled:"
BASELINE_PREFIX = "baseline:"
"""Keys of the daily digest's account baselines (:mod:`streamer.delivery.digest`), not deliveries."""


def ledger_key(destination: str, alert_id: str) -> str:
    """The ledger record key of one alert at one destination."""
    return f"{destination}|{alert_id}"


def ledger_value(status: str, at_ms: int) -> bytes:
    """The ledger record value: the final status and when it was reached."""
    return orjson.dumps({"status": status, "at": ms_to_rfc3339(at_ms)})


def disabled_key(fingerprint: str) -> str:
    """The ledger record key saying that the destination with this configuration answered 410.

    It has no ``|``, so it never collides with a delivery key, whatever the destination is called.
    """
    return _DISABLED_PREFIX + fingerprint


def disabled_value(destination: str, at_ms: int) -> bytes:
    """The value of a disabled-destination record (the name is for people reading the topic)."""
    return orjson.dumps({"status": DISABLED, "destination": destination, "at": ms_to_rfc3339(at_ms)})


@dataclass
class Ledger:
    """Keys of (destination, alert) pairs that are finished: delivered, or dead-lettered.

    Bounded, so that memory stays flat for the life of the process: a pair is forgotten once it is
    older than ``max_age_ms`` or when ``max_entries`` newer pairs followed it. The ledger only has to
    outlive the window in which an alert can be consumed again (records after the last commit at a
    crash or a rebalance, an alert the worker emits twice), which is minutes, not months. A pair
    forgotten too early costs at most one repeated delivery with the same ``webhook-id``.

    The fingerprints of destinations disabled by 410 Gone are kept apart and never evicted: they
    are few, and forgetting one would call a receiver that asked not to be called again.
    """

    max_entries: int = 100_000
    max_age_ms: int = 30 * 86_400_000
    # key -> when the pair finished (epoch ms); insertion order is (nearly) time order.
    _done: OrderedDict[str, int] = field(default_factory=OrderedDict, repr=False)
    disabled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_age_ms < 1:
            raise ValueError("max_entries and max_age_ms must be positive")

    def __len__(self) -> int:
        """Finished pairs currently remembered (disabled destinations not counted)."""
        return len(self._done)

    def finished(self, destination: str, alert_id: str) -> bool:
        """Whether the alert needs nothing more at this destination."""
        return ledger_key(destination, alert_id) in self._done

    def record(self, destination: str, alert_id: str, at_ms: int) -> None:
        """Note a finished pair at ``at_ms`` (when it was delivered or dead-lettered)."""
        self._add(ledger_key(destination, alert_id), at_ms, at_ms)

    def apply(self, key: bytes | None, value: bytes | None, at_ms: int, now_ms: int) -> None:
        """Apply one record read from the ledger topic; a tombstone forgets the key.

        Args:
            key: The record key.
            value: The record value, None for a tombstone.
            at_ms: The record's timestamp (when it was written).
            now_ms: The current time, for the age bound: older records are not remembered.
        """
        if key is None:
            return
        text = key.decode()
        if text.startswith(BASELINE_PREFIX):
            return
        if text.startswith(_DISABLED_PREFIX):
            fingerprint = text[len(_DISABLED_PREFIX) :]
            if value is not None and _status(value) == DISABLED:
                self.disabled.add(fingerprint)
            else:
                self.disabled.discard(fingerprint)
        elif value is None:
            self._done.pop(text, None)
        else:
            self._add(text, at_ms, now_ms)

    def disable(self, fingerprint: str) -> None:
        """Note that the destination with this fingerprint is disabled (after its record was written)."""
        self.disabled.add(fingerprint)

    def _add(self, key: str, at_ms: int, now_ms: int) -> None:
        horizon = now_ms - self.max_age_ms
        if at_ms < horizon:
            return
        done = self._done
        done[key] = at_ms
        done.move_to_end(key)
        while len(done) > self.max_entries:
            done.popitem(last=False)
        # Records arrive in nearly time order (several ledger partitions interleave), so the oldest
        # are at the front; an older one stuck behind a newer one goes with the count bound.
        while done:
            oldest_key = next(iter(done))
            if done[oldest_key] >= horizon:
                break
            del done[oldest_key]


def _status(value: bytes) -> str | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    status = doc.get("status") if isinstance(doc, dict) else None
    return status if isinstance(status, str) else None


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
