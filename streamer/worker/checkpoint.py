"""The worker's write protocol, in one place: what is written, in which order, before what is committed.

A fetch is applied in memory by its partitions' processors (:mod:`streamer.worker.processor`). Then:

1. **Outputs** — dead letters, re-keyed events, alerts and health snapshots — are produced and
   *acknowledged by the broker* (:meth:`Checkpoint.produce`).
2. The fetch's offsets are noted as processed (:meth:`Checkpoint.processed`); they are not yet
   committable, since the states they changed are still only in memory.
3. When a partition's states are due (its flush interval, the partition caught up, or revoked), they
   are written to the local store and produced to the changelog (:meth:`Checkpoint.commit`), and
4. the offsets those states cover are acknowledged to the consumer, whose next commit flushes the
   producer (so the changelog records are in) before it commits them.

A crash anywhere before 4 makes the next owner replay the records from the last commit: the states'
applied offsets skip what they already hold and the outputs carry ids derived from their content, so
the replay neither counts twice nor loses an alert (what states record as sent was acknowledged in 1
before they were written in 3). Revocation is :meth:`Checkpoint.commit` of each revoked partition.
(The model is quix-streams' ``Checkpoint.commit``.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from streamer.kafka.batches import BatchProducer, Record, send_in_batches
from streamer.kafka.partitioner import partition_of
from streamer.worker import metrics
from streamer.worker.processor import BatchOutput, PartitionProcessor, dead_letter
from streamer.worker.resends import with_source

__all__ = ["Checkpoint", "OffsetAcker", "OutputTopics", "TopicPartition", "WritableStore"]


class TopicPartition(NamedTuple):
    """A topic's partition (equal to, and hashing like, Faust's and aiokafka's own)."""

    topic: str
    partition: int


class WritableStore(Protocol):
    """A partition's state store: the processor's reads, and the writes of a commit."""

    def get(self, account_id: str) -> bytes | None:
        """The encoded state of an account, or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Write an encoded state."""

    def scan(self) -> Iterable[tuple[str, bytes]]:
        """Every (key, encoded state) this partition holds."""


class OffsetAcker(Protocol):
    """The consumer's bookkeeping of processed offsets: acknowledged offsets become committable."""

    def ack_offsets(self, tp: Any, offsets: Sequence[int]) -> None:
        """Mark ``offsets`` of ``tp`` processed and written."""


@dataclass(frozen=True, slots=True)
class OutputTopics:
    """Where a worker writes: its input (for re-keyed events), the DLQ, alerts, health, the changelog."""

    events: str
    dlq: str
    alerts: str
    health: str
    changelog: str
    users: str = ""  # user → account links (none written when empty)


class Checkpoint:
    """Outputs acknowledged → states written → offsets committable, for every partition a worker owns."""

    def __init__(
        self,
        producer: BatchProducer,
        consumer: OffsetAcker,
        topics: OutputTopics,
        store_for: Callable[[int], WritableStore],
        persisted: Callable[[int, int], None] | None = None,
        users_partitions: int = 1,
    ) -> None:
        """Write through ``producer``, acknowledge to ``consumer``, keep states in ``store_for(partition)``.

        ``persisted(partition, offset)`` is told the changelog offset up to which a partition's states
        are in Kafka, once the broker acknowledges them (Faust's recovery starts after it).
        """
        self._producer = producer
        self._consumer = consumer
        self.topics = topics
        self._store_for = store_for
        self._persisted = persisted
        self._users_partitions = users_partitions
        # Offsets processed but not yet covered by a commit of their partition's states.
        self._unacked: dict[int, dict[Any, list[int]]] = {}

    async def produce(self, outputs: Sequence[tuple[int, BatchOutput]]) -> None:
        """Step 1: produce what ``(partition, output)`` pairs ask for; return once all is acknowledged."""
        t = self.topics
        futures: list[asyncio.Future[Any]] = []

        async def send(topic: str, partition: int, records: Sequence[Record]) -> None:
            if records:
                futures.extend(f for f, _ in await send_in_batches(self._producer, topic, partition, records))

        for partition, out in outputs:
            # A dead letter stays in its record's partition, next to the records around it.
            await send(
                t.dlq, partition, [dead_letter(rec, reason, t.events) for rec, reason in out.dead_letters]
            )
            by_target: dict[int, list[Record]] = {}
            # Each says where it was read, so that a copy re-sent again after a crash counts once.
            for rec, target in out.rekeyed:
                headers = with_source(rec.headers, partition, rec.offset, out.source_floor)
                by_target.setdefault(target, []).append((None, rec.value, headers))
            for rec, target, account, value in out.attributed:
                headers = with_source(rec.headers, partition, rec.offset, out.source_floor)
                by_target.setdefault(target, []).append((account.encode(), value, headers))
            for target, records in sorted(by_target.items()):
                await send(t.events, target, records)
            if out.user_links and t.users:
                by_user: dict[int, list[Record]] = {}
                for user, account in out.user_links:
                    key = user.encode()
                    by_user.setdefault(partition_of(key, self._users_partitions), []).append(
                        (key, account.encode(), ())
                    )
                for target, records in sorted(by_user.items()):
                    await send(t.users, target, records)
            # Alerts and snapshots are of this partition's accounts, so they go to the same partition of
            # their co-partitioned topics (where Kafka's default partitioner would put them too). An
            # operations alert (data_gap) has no account: it goes unkeyed to its partition.
            await send(
                t.alerts,
                partition,
                [
                    (
                        a.account_id.encode() if a.account_id else None,
                        value,
                        (("churnwatch.kind", a.kind.encode()),),
                    )
                    for a, value in out.encoded_alerts
                ],
            )
            await send(t.health, partition, [(a.encode(), snapshot, ()) for a, snapshot in out.health])
        await asyncio.gather(*futures)

    def processed(self, tp: Any, offsets: Iterable[int]) -> None:
        """Step 2: note offsets of ``tp`` as processed; they become committable with its states."""
        self._unacked.setdefault(tp.partition, {}).setdefault(tp, []).extend(offsets)

    async def commit(self, proc: PartitionProcessor, now_ms: int) -> None:
        """Steps 3 and 4: write the partition's changed states, then acknowledge the offsets they cover."""
        started = time.perf_counter()
        failed = proc.flush_failures
        writes = proc.flush(now_ms)
        if proc.flush_failures > failed:
            metrics.POISON.labels("flush").inc(proc.flush_failures - failed)
        store = self._store_for(proc.partition)
        records: list[Record] = []
        for account_id, value in writes.items():
            key = account_id.encode()
            store.put(key, value)
            records.append((key, value, ()))
        sent = await send_in_batches(self._producer, self.topics.changelog, proc.partition, records)
        if sent and self._persisted is not None:
            last, count = sent[-1]
            last.add_done_callback(_on_persisted(self._persisted, proc.partition, count))
        for tp, offsets in self._unacked.pop(proc.partition, {}).items():
            self._consumer.ack_offsets(tp, offsets)
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)

    def pending(self, partition: int) -> int:
        """Offsets of ``partition`` processed and not yet committable."""
        return sum(len(offsets) for offsets in self._unacked.get(partition, {}).values())

    def forget(self, partition: int) -> None:
        """Drop what is noted for a partition this worker no longer owns (its new owner replays it)."""
        self._unacked.pop(partition, None)


def _on_persisted(
    persisted: Callable[[int, int], None], partition: int, count: int
) -> Callable[[asyncio.Future[Any]], None]:
    # A batch's future gives the offset of its first record; ``count`` records were in the batch.
    def done(fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            persisted(partition, fut.result().offset + count - 1)

    return done
