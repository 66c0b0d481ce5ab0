"""Record batches sent with ``streamer.kafka.batches.send_in_batches`` arrive whole and in order."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

from streamer.kafka.batches import send_in_batches
from tests.integration.kafkautil import read_all


async def test_records_split_over_batches_arrive_in_order_with_headers(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = await topic_factory("batches", 2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=4096, acks="all")
    await producer.start()
    try:
        records = [(f"k{i}".encode(), b"v" * (i % 300), [("n", str(i).encode())]) for i in range(2_000)]
        big: tuple[bytes, bytes, list[tuple[str, bytes]]] = (
            b"big",
            b"x" * 20_000,
            [],
        )  # larger than a batch: sent in a batch of its own
        sent = await send_in_batches(producer, topic, 1, [*records[:1000], big, *records[1000:]])
        metadata = await asyncio.gather(*(future for future, _ in sent))
    finally:
        await producer.stop()

    assert len(sent) > 10  # 2,000 records of up to 300 bytes do not fit in one 4 KiB batch
    assert sum(count for _, count in sent) == 2_001
    assert [m.partition for m in metadata] == [1] * len(sent)
    # Each future resolves with the offset of its batch's first record.
    firsts = [m.offset for m in metadata]
    assert firsts == sorted(firsts) and firsts[0] == 0
    assert [firsts[i + 1] - firsts[i] for i in range(len(sent) - 1)] == [c for _, c in sent[:-1]]

    got = await read_all(kafka_bootstrap, topic)
    assert all(rec.partition == 1 for rec in got)
    want = [*records[:1000], big, *records[1000:]]
    assert [(r.key, r.value) for r in got] == [(k, v) for k, v, _ in want]
    assert [list(r.headers) for r in got] == [list(h) for _, _, h in want]
