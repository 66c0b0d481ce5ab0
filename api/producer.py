"""Where accepted events go: a small producer protocol and its idempotent Kafka implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from api.settings import ApiSettings
from streamer.batches import send_in_batches


class EventProducer(Protocol):
    """Sends keyed records and returns only once all of them are acknowledged."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Flush and disconnect."""

    async def send_batch(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` pairs to ``topic`` and wait for every acknowledgement."""


class KafkaEventProducer:
    """An idempotent producer (acks=all), so retries after a lost acknowledgement add no duplicates."""

    def __init__(self, settings: ApiSettings) -> None:
        """Prepare a producer for the broker named in ``settings``; it connects in :meth:`start`."""
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:  # see EventProducer
        # aiokafka binds to the running event loop, so the client is made here, not in __init__.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )
        await self._producer.start()

    async def stop(self) -> None:  # see EventProducer
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send_batch(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self._producer is None:
            raise ConnectionError("the producer is not started")
        producer = self._producer
        # One record batch per partition instead of one send (and one future) per event: the per-event
        # path cost more than validating the events. Partitions follow Kafka's default partitioner
        # (murmur2 of the key), the one the worker expects.
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            by_partition.setdefault(partition, []).append((key, value))
        futures = []
        for partition, items in by_partition.items():
            sent = await send_in_batches(producer, topic, partition, ((k, v, ()) for k, v in items))
            futures += [future for future, _ in sent]
        await asyncio.gather(*futures)
