"""Produce many small records to one partition as whole record batches.

``AIOKafkaProducer.send`` costs a future, a partitioner call and a batch lookup per record; for the
worker's changelog and the API's ingest that per-record path cost more than the work itself. Here
records are appended to aiokafka record batches and each full batch is sent with one future.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaTimeoutError

Record = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]

# How long a batch may wait for its partition's previous batch to drain before the send fails.
ENQUEUE_TIMEOUT_S = 40.0


class BatchProducer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]: ...


async def send_in_batches(
    producer: BatchProducer, topic: str, partition: int, records: Iterable[Record]
) -> list[tuple[asyncio.Future[Any], int]]:
    """Send ``(key, value, headers)`` records to one partition, in order, a record batch at a time.

    Returns ``(future, records in the batch)`` per batch sent; a future resolves with the batch's
    metadata once the broker acknowledges it. A record larger than the producer's batch size
    (``max_batch_size``) goes in a batch of its own (aiokafka always accepts a batch's first record);
    the broker may still refuse it, through that batch's future.
    """
    sent: list[tuple[asyncio.Future[Any], int]] = []
    batch = producer.create_batch()
    for key, value, headers in records:
        if batch.append(key=key, value=value, timestamp=None, headers=list(headers)) is None:
            sent.append((await _enqueue(producer, batch, topic, partition), batch.record_count()))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=list(headers))
    if batch.record_count():
        sent.append((await _enqueue(producer, batch, topic, partition), batch.record_count()))
    return sent


async def _enqueue(producer: BatchProducer, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    """``producer.send_batch``, tried again while aiokafka gives up early on a busy partition.

    aiokafka waits for the partition's previous batch to drain, up to its request timeout, but takes the
    time waited so far off the timeout again on every turn of its wait loop: with many sends queued on
    one partition (the API under load) it raised KafkaTimeoutError long before that timeout, and the API
    answered 503 to a request Kafka would have taken. The batch was not queued then, so it is sent again,
    for at most ``ENQUEUE_TIMEOUT_S`` in all.
    """
    deadline = time.monotonic() + ENQUEUE_TIMEOUT_S
    while True:
        try:
            return await producer.send_batch(batch, topic, partition=partition)
        except KafkaTimeoutError:
            if time.monotonic() >= deadline:
                raise
