"""The producer's reachability probe, with fake probes instead of a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.producer import KafkaEventProducer, watch_reachability
from api.settings import ApiSettings
from streamer.kafka.partitioner import partition_of


async def _reports(probe: Callable[[], Awaitable[bool]], count: int) -> list[str | None]:
    reports: list[str | None] = []
    done = asyncio.Event()

    def report(reason: str | None) -> None:
        reports.append(reason)
        if len(reports) == count:
            done.set()

    task = asyncio.create_task(
        watch_reachability(probe, report, timeout_s=0.05, interval_s=0, what="Kafka at k:1")
    )
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return reports[:count]  # with no interval, a few more probes may run before the task is cancelled


async def test_each_probe_is_reported_reachable_or_with_the_reason() -> None:
    answers = iter([True, False, True])

    async def probe() -> bool:
        return next(answers, True)

    assert await _reports(probe, 3) == [None, "Kafka at k:1 does not answer metadata requests", None]


async def test_a_probe_that_hangs_is_unreachable_after_the_timeout() -> None:
    async def probe() -> bool:
        await asyncio.Event().wait()
        return True

    assert await _reports(probe, 1) == ["Kafka at k:1 did not answer a metadata request within 0.05 s"]


async def test_a_probe_that_raises_is_unreachable_and_probing_goes_on() -> None:
    calls = 0

    async def probe() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError
        return True

    assert await _reports(probe, 2) == ["Kafka at k:1 is not reachable (ConnectionRefusedError)", None]


class _Topic:
    """The part of AIOKafkaProducer send_batch uses, over a topic whose partition count a test sets."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.sent: dict[int, list[bytes]] = {}

    async def partitions_for(self, _topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> Any:
        return _Batch()

    async def send_batch(self, batch: Any, _topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.setdefault(partition, []).extend(batch.keys)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class _Batch:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    def append(self, *, key: bytes, **_record: Any) -> object:
        self.keys.append(key)
        return object()  # room left

    def record_count(self) -> int:
        return len(self.keys)


async def test_each_key_goes_where_kafkas_partitioner_puts_it_before_and_after_the_topic_grows() -> None:
    producer = KafkaEventProducer(ApiSettings())
    topic = _Topic(4)
    producer._producer = topic
    keys = [f"acct-{i}".encode() for i in range(50)] * 2  # each key twice: the second from the cache

    await producer.send_batch("events", [(key, b"{}") for key in keys])
    assert topic.sent == {p: [k for k in keys if partition_of(k, 4) == p] for p in range(4)}

    topic.partitions, topic.sent = 6, {}
    await producer.send_batch("events", [(key, b"{}") for key in keys])
    assert topic.sent == {p: [k for k in keys if partition_of(k, 6) == p] for p in range(6)}
