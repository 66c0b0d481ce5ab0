"""Bulk changelog restore on the real broker: the same records land as Faust's recovery would write them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import rocksdict
from aiokafka import AIOKafkaProducer

from streamer.kafka.restore import restore_changelog
from tests.integration.conftest import TopicFactory


class DictSink:
    """A ChangelogSink over one rocksdict database per partition, as the worker's RocksDB store is."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbs: dict[int, rocksdict.Rdict] = {}
        self.offsets: dict[int, int] = {}
        self.writes: list[tuple[int, int, int]] = []  # (partition, records, last offset)
        self.finished: list[int] = []

    def db(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.dbs:
            self.dbs[partition] = rocksdict.Rdict(
                str(self.root / str(partition)), options=rocksdict.Options(raw_mode=True)
            )
        return self.dbs[partition]

    def persisted_offset(self, partition: int) -> int | None:
        return self.offsets.get(partition)

    def write(self, partition: int, records: Iterable[tuple[bytes, bytes | None]], last_offset: int) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        n = 0
        for key, value in records:
            n += 1
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db(partition).write(batch)
        self.offsets[partition] = last_offset
        self.writes.append((partition, n, last_offset))

    def finish(self, partition: int) -> None:
        self.db(partition).flush(True)
        self.finished.append(partition)

    def contents(self, partition: int) -> dict[bytes, bytes]:
        return {bytes(k): bytes(v) for k, v in self.db(partition).items()}  # type: ignore[arg-type]


async def _produce(bootstrap: str, topic: str, records: Sequence[tuple[int, bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def test_restore_writes_the_latest_value_of_each_key_and_resumes_after_its_offset(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = await topic_factory("restore", partitions=3)
    first: list[tuple[int, bytes, bytes | None]] = [
        (p, f"acct-{p}-{i % 40}".encode(), f"v1-{p}-{i}".encode()) for p in (0, 1) for i in range(100)
    ]
    # A tombstone deletes a key; partition 2 stays empty.
    first += [(0, b"acct-0-5", None)]
    await _produce(kafka_bootstrap, topic, first)
    sink = DictSink(tmp_path)

    report = await restore_changelog(kafka_bootstrap, topic, [0, 1, 2], sink, max_records=37)

    expected: dict[int, dict[bytes, bytes]] = {0: {}, 1: {}, 2: {}}
    for p, key, value in first:
        if value is None:
            expected[p].pop(key, None)
        else:
            expected[p][key] = value
    assert {p: sink.contents(p) for p in (0, 1, 2)} == expected
    assert len(expected[0]) == 39 and len(expected[1]) == 40
    assert sink.offsets == {0: 100, 1: 99}
    assert sorted(sink.finished) == [0, 1]  # made durable once each, after its last batch
    assert report.records == {0: 101, 1: 100}
    # Written a fetch at a time (at most 37 records each), never record by record.
    assert all(n <= 37 for _, n, _ in sink.writes) and len(sink.writes) < 20

    # Later records only: a second restore starts after the persisted offsets.
    later = [(1, b"acct-1-0", b"v2"), (2, b"acct-2-0", b"v2")]
    await _produce(kafka_bootstrap, topic, later)
    sink.writes.clear()
    report = await restore_changelog(kafka_bootstrap, topic, [0, 1, 2], sink)
    assert report.records == {1: 1, 2: 1}
    assert sink.contents(1)[b"acct-1-0"] == b"v2" and sink.contents(2) == {b"acct-2-0": b"v2"}
    assert sink.offsets == {0: 100, 1: 100, 2: 0}


async def test_restore_of_partitions_already_current_reads_nothing(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = await topic_factory("restore-current", partitions=1)
    await _produce(kafka_bootstrap, topic, [(0, b"a", b"1"), (0, b"b", b"2")])
    sink = DictSink(tmp_path)
    sink.offsets[0] = 1
    report = await restore_changelog(kafka_bootstrap, topic, [0], sink)
    assert report.records == {} and sink.writes == [] and sink.finished == []
