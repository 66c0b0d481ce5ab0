"""Sending record batches through a producer that gives up early on a busy partition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder

from streamer.kafka import batches
from streamer.kafka.batches import send_in_batches


class BusyProducer:
    """Refuses the first ``refusals`` batches as aiokafka does when its drain wait runs out."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.queued: list[tuple[str, int, int]] = []

    def create_batch(self) -> Any:
        return BatchBuilder(16_384, 0)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.refusals:
            self.refusals -= 1
            raise KafkaTimeoutError()
        self.queued.append((topic, partition, batch.record_count()))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_a_batch_refused_for_a_busy_partition_is_queued_again_once() -> None:
    producer = BusyProducer(refusals=3)
    sent = await send_in_batches(producer, "events", 2, [(b"k", b"v%d" % i, ()) for i in range(5)])
    assert producer.queued == [("events", 2, 5)]
    assert [count for _, count in sent] == [5]


async def test_past_the_deadline_the_refusal_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches, "ENQUEUE_TIMEOUT_S", 0.0)
    producer = BusyProducer(refusals=1)
    with pytest.raises(KafkaTimeoutError):
        await send_in_batches(producer, "events", 0, [(b"k", b"v", ())])
    assert producer.queued == []
