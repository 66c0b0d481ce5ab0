"""In-process fakes of the interfaces the worker's handler and checkpoint write through.

Each has the methods production uses and nothing else: the producer those of aiokafka's record
batches, the acker that of the consumer's bookkeeping, the store that of a table partition. They all
append to one shared ``log``, so a test can assert the order of writes across them.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.worker.checkpoint import TopicPartition as TP
from streamer.worker.handler import ConsumerView


@dataclass
class Metadata:
    offset: int


class FakeBatch:
    """aiokafka's ``BatchBuilder``: appends until ``capacity`` records."""

    def __init__(self, capacity: int) -> None:
        self.records: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]] = []
        self.capacity = capacity

    def append(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        timestamp: Any,  # noqa: ARG002 - aiokafka's signature; the broker sets the time
        headers: Any,
    ) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, tuple(headers)))
        return object()

    def record_count(self) -> int:
        return len(self.records)


@dataclass
class FakeProducer:
    """Record batches into in-memory topics; ``hold`` leaves acknowledgements pending until ``release``."""

    log: list[tuple[Any, ...]]
    capacity: int = 1000
    hold: bool = False
    fail: BaseException | None = None
    topics: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]]] = (
        field(default_factory=lambda: defaultdict(list))
    )
    pending: list[Callable[[], None]] = field(default_factory=list)

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.fail is not None:
            raise self.fail
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def acknowledge() -> None:
            records = self.topics[(topic, partition)]
            offset = len(records)
            records.extend(batch.records)
            self.log.append(("acked", topic, partition, len(batch.records)))
            future.set_result(Metadata(offset))

        if self.hold:
            self.pending.append(acknowledge)
        else:
            acknowledge()
        return future

    def release(self) -> None:
        for acknowledge in self.pending:
            acknowledge()
        self.pending.clear()

    def values(self, topic: str, partition: int) -> list[bytes | None]:
        return [value for _, value, _ in self.topics[(topic, partition)]]


@dataclass
class FakeAcker:
    log: list[tuple[Any, ...]]
    acked: dict[Any, list[int]] = field(default_factory=lambda: defaultdict(list))

    def ack_offsets(self, tp: Any, offsets: Sequence[int]) -> None:
        self.acked[tp].extend(offsets)
        self.log.append(("offsets", tp.topic, tp.partition, list(offsets)))


@dataclass
class FakeStore:
    log: list[tuple[Any, ...]]
    partition: int
    data: dict[str, bytes] = field(default_factory=dict)

    def get(self, account_id: str) -> bytes | None:
        return self.data.get(account_id)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key.decode()] = value
        self.log.append(("put", self.partition, key.decode()))

    def scan(self) -> Iterable[tuple[str, bytes]]:
        return list(self.data.items())


@dataclass
class FakeConsumer(ConsumerView):
    """Ownership and offsets as a test sets them."""

    owns: list[TP] = field(default_factory=list)
    highwaters: dict[TP, int] = field(default_factory=dict)
    commits: dict[TP, int] = field(default_factory=dict)

    def owned(self) -> Sequence[TP]:
        return list(self.owns)

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters.get(tp)

    confirms: dict[TP, int] | None = None  # as committed unless a test sets them apart

    def committed(self, tp: Any) -> int | None:
        return self.commits.get(tp)

    def confirmed(self, tp: Any) -> int | None:
        return self.commits.get(tp) if self.confirms is None else self.confirms.get(tp)


@dataclass(frozen=True)
class ConsumerRecord:
    """What aiokafka hands over per record (the fields the handler reads)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
