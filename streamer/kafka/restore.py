"""Restore a state store from its changelog in bulk: record batches straight into the local store.

Faust restores a table record by record (a message object, a queue, a buffer and a timed wait per
record): about 200 µs per account, 207 s for a million. Here one plain consumer reads each changelog
partition from the local store's persisted offset to the high-water mark it had when the restore
began, and every fetch is written as one batch, with the new persisted offset. Faust's own recovery
runs afterwards as usual and finds only what was written since (usually nothing).

It changes nothing about what is restored, only how fast: the same records, in offset order, the
latest value of each key winning, a null value deleting its key; the persisted offset moves only
after the batch it covers is written, so an interrupted restore resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["ChangelogSink", "RestoreReport", "restore_changelog"]

log = logging.getLogger("churnwatch.restore")


class ChangelogSink(Protocol):
    """Where a partition's changelog is restored to (the worker's RocksDB store of that partition)."""

    def persisted_offset(self, partition: int) -> int | None:
        """The offset of the last changelog record already in the store, or None."""

    def write(self, partition: int, records: Iterable[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Write ``(key, value)`` pairs (None deletes the key) and ``last_offset``, atomically."""

    def finish(self, partition: int) -> None:
        """Make everything written to ``partition`` durable (called once its restore is complete)."""


@dataclass
class RestoreReport:
    """What a restore did: records written per partition, and how long it took."""

    records: dict[int, int]
    seconds: float

    @property
    def total(self) -> int:
        """Records written over all partitions."""
        return sum(self.records.values())


async def restore_changelog(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    sink: ChangelogSink,
    *,
    max_records: int = 20_000,
    stall_s: float = 10.0,
    client_options: dict[str, Any] | None = None,
) -> RestoreReport:
    """Bring every partition of ``topic`` in ``partitions`` in ``sink`` up to its current high-water mark."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        **(client_options or {}),
    )
    await consumer.start()
    written: dict[int, int] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(set(partitions))]
        if not tps:
            return RestoreReport({}, 0.0)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        todo: dict[TopicPartition, int] = {}
        for tp in tps:
            persisted = sink.persisted_offset(tp.partition)
            start = max(begins[tp], persisted + 1 if persisted is not None else 0)
            if start < ends[tp]:
                consumer.seek(tp, start)
                todo[tp] = ends[tp]
            else:
                consumer.pause(tp)
        last_progress = time.monotonic()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=1000, max_records=max_records)
            if fetched:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_s:
                # Faust's own recovery, which runs next, reads whatever is left.
                log.warning("restore of %s stalled for %.0f s; recovery reads the rest", topic, stall_s)
                for tp in todo:
                    if tp.partition in written:
                        sink.finish(tp.partition)
                break
            for tp, recs in fetched.items():
                end = todo.get(tp)
                if end is None:
                    continue
                batch = [(r.key, r.value) for r in recs if r.offset < end and r.key is not None]
                last = min(recs[-1].offset, end - 1)
                if batch or recs:
                    sink.write(tp.partition, batch, last)
                    written[tp.partition] = written.get(tp.partition, 0) + len(batch)
            # Done with a partition once the consumer's position reached the high-water mark of the
            # start (compaction and transaction markers leave offsets without records).
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
                    consumer.pause(tp)
                    if tp.partition in written:
                        sink.finish(tp.partition)
    finally:
        await consumer.stop()
    report = RestoreReport(written, round(time.monotonic() - started, 3))
    if report.total:
        log.info(
            "restored %d changelog records of %s into the local store in %.1f s",
            report.total,
            topic,
            report.seconds,
        )
    return report
