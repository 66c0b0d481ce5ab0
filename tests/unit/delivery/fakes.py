"""In-process stand-ins for the Kafka clients the delivery service uses, and a harness around it.

Only the methods of :mod:`streamer.delivery.ports` are implemented, with the semantics the service
relies on: per-partition logs with offsets, group commits that survive a restart, pause/resume,
and ``getmany`` waiting (up to its timeout) for records to arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition

from streamer.delivery.config import DeliveryConfig
from streamer.delivery.service import DeliveryService, RetryWait
from streamer.delivery.settings import DeliverySettings

ALERTS, DLQ, LEDGER, HEALTH = "alerts", "alerts-dlq", "deliveries", "health"


@dataclass(frozen=True)
class FakeRecord:
    """A record as a consumer returns it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeBroker:
    """Topics (lists of records per partition) and committed group offsets; outlives a service."""

    topics: dict[str, list[list[FakeRecord]]] = field(default_factory=dict)
    committed: dict[tuple[str, TopicPartition], int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def create(self, topic: str, partitions: int = 1) -> None:
        """Create a topic (no-op when it exists)."""
        self.topics.setdefault(topic, [[] for _ in range(partitions)])

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        partition: int | None = None,
    ) -> FakeRecord:
        """Append one record (to partition 0 unless given) and wake waiting consumers."""
        log = self.topics[topic][partition or 0]
        rec = FakeRecord(topic, partition or 0, len(log), key, value, int(time.time() * 1000), tuple(headers))
        log.append(rec)
        self.changed.set()
        return rec

    def records(self, topic: str) -> list[FakeRecord]:
        """Every record of a topic, partition by partition."""
        return [rec for part in self.topics[topic] for rec in part]

    def produce_alerts(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Produce alerts keyed by account id, as the worker does."""
        for doc in docs:
            self.append(ALERTS, str(doc["account_id"]).encode(), orjson.dumps(doc))


class FakeProducer:
    """``AIOKafkaProducer``: every send is acknowledged at once."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]:
        assert self.started and not self.stopped, "send on a producer that is not running"
        ack: asyncio.Future[FakeRecord] = asyncio.get_running_loop().create_future()
        ack.set_result(self.broker.append(topic, key, value, headers or ()))
        return ack

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        return await (await self.send(topic, value, key, headers))


class FakeConsumer:
    """``AIOKafkaConsumer``: in a group (subscribe, commit) or group-less (assign, seek)."""

    def __init__(self, broker: FakeBroker, group: str | None = None) -> None:
        self.broker = broker
        self.group = group
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.topics: list[str] = []
        self.listener: ConsumerRebalanceListener | None = None
        self.commits: list[dict[TopicPartition, int]] = []
        self.stopped = False

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        self.topics, self.listener = topics, listener

    async def start(self) -> None:
        pass

    async def _join(self) -> None:
        # The group assigns every partition to this, the only member, on the first poll.
        tps = [TopicPartition(t, p) for t in self.topics for p in range(len(self.broker.topics[t]))]
        for tp in tps:
            self.positions[tp] = self.broker.committed.get((self.group or "", tp), 0)
        assert self.listener is not None
        await self.listener.on_partitions_assigned(tps)
        self.topics = []

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0

    async def end_offsets(self, partitions: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: len(self.broker.topics[tp.topic][tp.partition]) for tp in partitions}

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    def _fetch(
        self, partitions: Sequence[TopicPartition], max_records: int
    ) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        for tp in partitions or list(self.positions):
            if tp in self.paused:
                continue
            log = self.broker.topics[tp.topic][tp.partition]
            start = self.positions[tp]
            got = log[start : start + max_records - sum(map(len, out.values()))]
            if got:
                out[tp] = got
                self.positions[tp] = start + len(got)
        return out

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[Any]]:
        if self.topics:
            await self._join()
        limit = max_records or 1_000_000
        # Cleared before the fetch, so an append after it still wakes the wait below.
        self.broker.changed.clear()
        got = self._fetch(partitions, limit)
        if not got and timeout_ms:
            try:
                await asyncio.wait_for(self.broker.changed.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            got = self._fetch(partitions, limit)
        return got

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assert self.group is not None, "commit outside a group"
        self.commits.append(dict(offsets))
        for tp, offset in offsets.items():
            self.broker.committed[(self.group, tp)] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)


Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


@dataclass
class Harness:
    """One delivery service on a fake broker, its HTTP going to ``handler`` through MockTransport."""

    broker: FakeBroker
    service: DeliveryService
    http: httpx.AsyncClient
    delays: list[float]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the service in a task."""
        self.task = asyncio.create_task(self.service.run(self.stop))

    async def finish(self, timeout_s: float = 5.0) -> None:
        """Signal stop and wait for the service to return (re-raising what it raised)."""
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout_s)

    @property
    def consumer(self) -> FakeConsumer:
        consumer = self.service.consumer
        assert isinstance(consumer, FakeConsumer)
        return consumer


def harness(
    broker: FakeBroker,
    config: DeliveryConfig,
    handler: Handler,
    retry_wait: RetryWait | None = None,
    clock: Callable[[], datetime] | None = None,
    **settings: Any,
) -> Harness:
    """A service wired to ``broker`` and ``handler``; retry waits are recorded, not slept.

    With ``retry_wait`` given, waits go through it instead (still recorded). With
    ``digest_enabled=True`` the daily digest reads the ``health`` topic, on ``clock`` when given.
    """
    for topic, partitions in ((ALERTS, 2), (DLQ, 1), (LEDGER, 1), (HEALTH, 2)):
        broker.create(topic, partitions)
    values: dict[str, Any] = {
        "alerts_topic": ALERTS,
        "delivery_dlq_topic": DLQ,
        "delivery_ledger_topic": LEDGER,
        "delivery_seed": 7,
        "delivery_commit_interval_ms": 10,
        "delivery_shutdown_grace_s": 5.0,
        "public_url": "https://churnwatch.example.com",
        "health_topic": HEALTH,
        **settings,
    }
    delays: list[float] = []

    async def record_wait(delay_s: float, stopping: asyncio.Event) -> bool:
        delays.append(delay_s)
        if retry_wait is not None:
            return await retry_wait(delay_s, stopping)
        await asyncio.sleep(0)
        return stopping.is_set()

    async def ensure_topics() -> int:
        return len(broker.topics[LEDGER])

    async def health_partitions() -> int:
        return len(broker.topics[HEALTH])

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    service = DeliveryService(
        DeliverySettings(**values),
        config,
        http=http,
        producer=FakeProducer(broker),
        consumer=FakeConsumer(broker, group="churnwatch-delivery"),
        reader=FakeConsumer(broker),
        ensure_topics=ensure_topics,
        retry_wait=record_wait,
        health_reader=FakeConsumer(broker),
        health_partitions=health_partitions,
        **({"clock": clock} if clock is not None else {}),
    )
    return Harness(broker, service, http, delays)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Wait for a condition, yielding to the service between checks."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
