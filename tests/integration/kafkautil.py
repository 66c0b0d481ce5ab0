"""Small helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def broker_answers(bootstrap: str, timeout_s: float) -> bool:
    """True when a metadata request succeeds within the timeout."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
) -> None:
    """Produce (key, value) pairs and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v, partition=partition) for k, v in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def event_json(**fields: object) -> bytes:
    """Encode an event as the worker expects it."""
    return orjson.dumps(fields)


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``done(records)`` or the timeout; returns all records."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if done(records):
                return records
        return records
    finally:
        await consumer.stop()


async def read_all(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` up to its end offsets at the time of the call."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    if not tps:
        return []  # the topic does not exist (yet)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


def latest_by_key(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[bytes, bytes]:
    """The newest value per key, as a compacted topic would keep it."""
    out: dict[bytes, bytes] = {}
    for rec in records:
        if rec.key is not None and rec.value is not None:
            out[rec.key] = rec.value
    return out


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll an async predicate every 0.25 s; fail with ``what`` when it stays false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (0 before any commit)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - no group yet, a broker away or moving: no progress known
        return 0
    finally:
        await admin.close()
    return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == topic)


async def wait_committed(bootstrap: str, group: str, topic: str, records: int, timeout_s: float) -> None:
    """Wait until ``group`` has committed ``records`` offsets of ``topic``.

    The worker commits input offsets only after the states they changed are flushed and
    acknowledged, so once committed, the stored states cover those records.
    """

    async def done() -> bool:
        return await committed(bootstrap, group, topic) >= records

    await wait_until(done, timeout_s, f"{group} to commit {records} records of {topic}")
