"""Where accepted events go: a small producer protocol and its idempotent Kafka implementation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from api.settings import ApiSettings
from streamer.kafka.batches import send_in_batches
from streamer.kafka.partitioner import partition_of

log = logging.getLogger("churnwatch.api.producer")

# How often the producer asks the broker for metadata to know whether it can still reach it.
PROBE_INTERVAL_S = 2.0
# Keys whose partition index is remembered (then forgotten all at once): about 10 MB at most.
PARTITION_CACHE_MAX = 100_000


class EventProducer(Protocol):
    """Sends keyed records and returns only once all of them are acknowledged."""

    @property
    def unreachable(self) -> str | None:
        """Why the broker cannot be reached now, or None while it can."""

    async def start(self) -> None:
        """Connect."""

    async def stop(self) -> None:
        """Flush and disconnect."""

    async def send_batch(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` pairs to ``topic`` and wait for every acknowledgement."""


async def watch_reachability(
    probe: Callable[[], Awaitable[bool]],
    report: Callable[[str | None], None],
    *,
    timeout_s: float,
    interval_s: float,
    what: str,
) -> None:
    """Probe ``what`` every ``interval_s`` for ever and report each outcome (None: reachable).

    A probe that does not answer within ``timeout_s`` counts as a failure; a probe that raises too.
    """
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                ok = await probe()
            reason = None if ok else f"{what} does not answer metadata requests"
        except TimeoutError:
            reason = f"{what} did not answer a metadata request within {timeout_s:g} s"
        except Exception as err:  # any failure of the probe means "not reachable"
            reason = f"{what} is not reachable ({type(err).__name__})"
        report(reason)
        await asyncio.sleep(interval_s)


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    # A batch whose request timed out may still fail later; nobody awaits it any more.
    if not future.cancelled():
        future.exception()


class KafkaEventProducer:
    """An idempotent producer (acks=all), so retries after a lost acknowledgement add no duplicates.

    A background task asks the broker for metadata every :data:`PROBE_INTERVAL_S`; while that
    fails, :attr:`unreachable` says why, ``/readyz`` reports not ready and ingest answers 503 at once.
    """

    def __init__(self, settings: ApiSettings) -> None:
        """Prepare a producer for the broker named in ``settings``; it connects in :meth:`start`."""
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._watch: asyncio.Task[None] | None = None
        self._unreachable: str | None = None
        self._partition_cache: dict[bytes, int] = {}  # key → index among the topic's partitions
        self._cached_for = 0  # the partition count those indexes are for

    @property
    def unreachable(self) -> str | None:  # see EventProducer
        return self._unreachable

    def _report(self, reason: str | None) -> None:
        if reason != self._unreachable:
            if reason is None:
                log.info("Kafka at %s is reachable again", self._settings.kafka_bootstrap)
            else:
                log.warning("%s: ingest answers 503 and /readyz 503 until it is back", reason)
        self._unreachable = reason

    async def start(self) -> None:  # see EventProducer
        # aiokafka binds to the running event loop, so the client is made here, not in __init__.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
        )
        await self._producer.start()
        client = self._producer.client
        self._watch = asyncio.create_task(
            watch_reachability(
                client.force_metadata_update,
                self._report,
                timeout_s=self._settings.ingest_timeout_s,
                interval_s=PROBE_INTERVAL_S,
                what=f"Kafka at {self._settings.kafka_bootstrap}",
            ),
            name="churnwatch-producer-probe",
        )

    async def stop(self) -> None:  # see EventProducer
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
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
        count = len(partitions)
        # Apps send the same accounts and users again and again: murmur2 in Python (1.6 µs) once per key.
        cache = self._partition_cache
        if self._cached_for != count:  # the topic grew: every key moves
            cache.clear()
            self._cached_for = count
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            index = cache.get(key)
            if index is None:
                index = partition_of(key, count)
                if len(cache) >= PARTITION_CACHE_MAX:
                    cache.clear()
                cache[key] = index
            by_partition.setdefault(partitions[index], []).append((key, value))
        futures: list[asyncio.Future[Any]] = []
        for partition, items in by_partition.items():
            sent = await send_in_batches(producer, topic, partition, ((k, v, ()) for k, v in items))
            futures += [future for future, _ in sent]
        for future in futures:
            future.add_done_callback(_retrieve_exception)
        # wait(), not gather(): when the caller's timeout cancels this wait, gather() would cancel
        # aiokafka's own delivery futures too.
        if futures:
            await asyncio.wait(futures)
        for future in futures:
            future.result()
