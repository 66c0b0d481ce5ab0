"""The Faust application: topics, the account table, the agent and the clock timer.

Everything here decodes, calls ``PartitionProcessor`` (which calls the pure core) and writes.
Faust traps this module works around, each verified against faust-streaming 0.15:

* Faust's buffered changelog path (``table[key] = value``) is slow at thousands of writes per batch
  and flushed only best-effort. ``TableStore`` writes the partition's store and changelog directly.
* ``isolated_partitions=True`` would give one actor per partition, but its actors crash the worker
  on the first rebalance (faust-streaming #529); one agent groups each batch by partition instead.
* ``take_events`` acks a batch even when its body raises (the batch would be lost), and after a
  rebalance its buffer task stopped delivering events in our tests. The agent batches a manual-ack
  stream itself and acks only after a batch is written; an unexpected failure exits the process
  without acking, and the restarted worker replays the batch.
* ``app.topic(value_type=bytes)`` still decodes JSON; topics name the raw serializer explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import faust
import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2
from faust.types import TP, EventT, StreamT

from streamer import metrics
from streamer.core.alerts import alert_to_dict
from streamer.core.policy import PolicySet
from streamer.processor import BatchOutput, PartitionProcessor, Record, dead_letter
from streamer.settings import WorkerSettings

log = logging.getLogger("churnwatch.worker")
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


def partitioner(partitions: int) -> Any:
    """Kafka's default partitioner (murmur2 of the key), the one every keyed producer uses."""

    def partition_for(account_id: str) -> int:
        return int(murmur2(account_id.encode()) & 0x7FFFFFFF) % partitions

    return partition_for


class TableStore:
    """The account table seen from one partition, read and written straight in its store.

    Faust's own table writes go through a per-message buffer whose flush gives up after 100 ms
    without progress; at thousands of writes per batch that path was the worker's bottleneck
    and made the flush before an offset commit best-effort. Writes here go to the local store
    and to the changelog through the producer directly, so the producer flush that precedes
    every offset commit covers them.
    """

    def __init__(self, table: Any, partition: int) -> None:
        self._store = table.data
        self.partition = partition
        self._db = None
        if hasattr(self._store, "_db_for_partition"):
            # RocksDB: Table.get() would read twice (contains, then get) and search every partition.
            self._db = self._store._db_for_partition(partition)

    def get(self, account_id: str) -> bytes | None:
        key = account_id.encode()
        value = self._db.get(key) if self._db is not None else self._store.data.get(key)
        return bytes(value) if value is not None else None

    def put(self, key: bytes, value: bytes) -> None:
        if self._db is not None:
            self._db.put(key, value)
        else:
            self._store.data[key] = value
            self._store._key_partition[key] = self.partition  # lets revocation drop it

    def scan(self) -> Iterable[tuple[str, bytes]]:
        if self._db is not None:
            items: Iterable[tuple[bytes, bytes]] = self._store._visible_items(self._db)
        else:
            items = list(self._store.data.items())
        for key, value in items:
            if value is not None:
                yield key.decode(), bytes(value)


def _records(events: list[EventT[Any]]) -> Iterator[Record]:
    for ev in events:
        msg = ev.message
        headers = msg.headers.items() if isinstance(msg.headers, Mapping) else msg.headers or ()
        yield Record(msg.partition, msg.offset, msg.key, msg.value, tuple(headers))


class WorkerApp(faust.App):
    """The Faust app, re-reading its input partitions from their committed offsets after a rebalance.

    Faust's consumer drops messages fetched while the flow is suspended during recovery but still
    marks them read; its post-recovery seek only moves partitions whose committed offset is above 0.
    Events produced to a never-committed partition during a rebalance were lost that way in our
    two-worker tests. Seeking every input partition back to its committed offset (or the start)
    re-delivers them; whatever was already applied is skipped by the per-account applied offsets.
    """

    input_topics: frozenset[str] = frozenset()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        self.loop.create_task(self._reread_uncommitted())

    async def _reread_uncommitted(self) -> None:
        consumer: Any = self.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic in self.input_topics]
        if not tps:
            return
        committed = getattr(consumer, "_committed_offset", {})
        thread = consumer._thread  # the aiokafka consumer lives in its own thread: seek through it
        client = thread._ensure_consumer()
        fresh = [TopicPartition(tp.topic, tp.partition) for tp in tps if not committed.get(tp)]
        known = [TopicPartition(tp.topic, tp.partition) for tp in tps if committed.get(tp)]
        if fresh:
            # Not seek_to_beginning: it leaves the position unset until a reset request returns, and
            # Faust's livelock check reads it in that window and crashes the consumer (AssertionError
            # in aiokafka's position; seen when a second worker joined mid-stream).
            async def rewind() -> None:
                starts = await client.beginning_offsets(fresh)
                for tp in fresh:
                    client.seek(tp, starts[tp])

            await thread.call_thread(rewind)
        if known:
            await thread.call_thread(client.seek_to_committed, *known)
        for tp in tps:
            consumer._read_offset[tp] = None  # accept the re-read records instead of dropping them


def create_app(settings: WorkerSettings, policies: PolicySet) -> faust.App:
    """Build the worker's Faust app for ``settings`` and the rules in ``policies``."""
    n = settings.partitions
    app = WorkerApp(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        store=settings.store,
        datadir=str(settings.data_dir),
        web_enabled=False,
        topic_partitions=n,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_ms / 3000),
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,
    )
    events = app.topic(settings.events_topic, settings.clock_topic, partitions=n, **RAW)
    app.input_topics = frozenset({settings.events_topic, settings.clock_topic})
    alerts_topic, health_topic, dlq_topic = settings.alerts_topic, settings.health_topic, settings.dlq_topic
    accounts: Any = app.Table(
        "accounts", default=None, partitions=n, key_type=bytes, value_type=bytes, help="Account state."
    )
    partition_for = partitioner(n)
    processors: dict[int, PartitionProcessor] = {}

    def processor(partition: int) -> PartitionProcessor:
        proc = processors.get(partition)
        if proc is None:
            proc = processors[partition] = PartitionProcessor(
                partition,
                policies,
                partition_for,
                allowed_lateness_ms=settings.allowed_lateness_ms,
                max_future_ms=settings.max_future_ms,
                backlog_publish_interval_ms=settings.backlog_publish_interval_ms,
            )
        return proc

    async def write(work: list[tuple[BatchOutput, TableStore, PartitionProcessor]]) -> None:
        producer = app.producer
        sends = []
        for out, _, _ in work:
            for rec, reason in out.dead_letters:
                key, value, headers = dead_letter(rec, reason, settings.events_topic)
                sends.append(await producer.send(dlq_topic, key, value, None, None, headers))
            for rec, target in out.rekeyed:
                sends.append(
                    await producer.send(
                        settings.events_topic, None, rec.value, target, None, list(rec.headers)
                    )
                )
            for alert in out.alerts:
                value = orjson.dumps(alert_to_dict(alert))
                headers = [("churnwatch.kind", alert.kind.encode())]
                key = alert.account_id.encode()
                sends.append(await producer.send(alerts_topic, key, value, None, None, headers))
            for account_id, snapshot in out.health:
                value = orjson.dumps(snapshot)
                sends.append(await producer.send(health_topic, account_id.encode(), value, None, None, None))
        # What the states record as sent (alerts, published health) is acknowledged before the states
        # are written: a crash in between re-sends it with the same ids instead of losing it.
        await asyncio.gather(*sends)
        changelog = accounts.changelog_topic_name
        for out, store, proc in work:
            last: Any = None
            for account_id, value in out.writes.items():
                key = account_id.encode()
                store.put(key, value)
                last = await producer.send(changelog, key, value, store.partition, None, None)
            if last is not None:
                tp = TP(changelog, store.partition)
                last.add_done_callback(functools.partial(_persisted, accounts, tp))
            proc.flushed(out.writes)
            _observe(out, proc)

    def apply(
        tp: TP, events: list[EventT[Any]], now_ms: int
    ) -> tuple[BatchOutput, TableStore, PartitionProcessor]:
        proc = processor(tp.partition)
        store = TableStore(accounts, tp.partition)
        if tp.topic == settings.clock_topic:
            clock_ms = max(int(ev.message.value or b"0") for ev in events)
            return proc.tick(clock_ms, store, now_ms), store, proc
        highwater = app.consumer.highwater(tp)
        backlog = highwater is not None and highwater - events[-1].message.offset > settings.batch_max
        return proc.process(_records(events), store, now_ms, backlog), store, proc

    async def flush(batch: list[EventT[Any]]) -> None:
        started = time.perf_counter()
        try:
            by_partition: dict[TP, list[EventT[Any]]] = {}
            for ev in batch:
                by_partition.setdefault(ev.message.tp, []).append(ev)
            now_ms = int(time.time() * 1000)
            await write([apply(tp, events, now_ms) for tp, events in by_partition.items()])
        except Exception:
            # Exit without acknowledging the batch; the restarted worker replays it and the applied
            # offsets keep the counts exact. Letting the exception escape could ack it unprocessed.
            log.exception("unexpected failure processing a batch; exiting so that it is replayed")
            logging.shutdown()
            os._exit(70)
        for ev in batch:
            ev.ack()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    @app.agent(events, name="track_engagement")
    async def track_engagement(stream: StreamT[Any]) -> None:
        """Apply usage events and clock ticks in batches, partition by partition.

        A batch is whatever has arrived, up to ``batch_max`` events: it is processed once the channel
        has had nothing more waiting for ``batch_linger_ms``, so batches grow with load and latency
        stays low when idle.
        Events are acknowledged (and so become committable) only after their batch is written.
        """
        manual = stream.noack()  # type: ignore[attr-defined]
        channel = manual.channel
        linger_s = settings.batch_linger_ms / 1000
        batch: list[EventT[Any]] = []
        async for ev in manual.events():
            batch.append(ev)
            if len(batch) < settings.batch_max and channel.empty():
                # Faust hands records over one at a time; a short pause lets the fetcher queue the rest
                # of what it has, so a backlog is processed in large batches instead of many tiny ones.
                waited = 0.0
                while channel.empty() and waited < linger_s:
                    await asyncio.sleep(0.002)
                    waited += 0.002
            if len(batch) >= settings.batch_max or channel.empty():
                await flush(batch)
                batch = []

    @app.timer(settings.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
    async def advance_idle_clocks() -> None:
        """Tick the clock of every owned input partition that has caught up with its backlog."""
        now_ms = int(time.time() * 1000)
        tick = str(now_ms - settings.idle_grace_ms).encode()
        for tp in _owned(app, settings.events_topic):
            lag = _lag(app, tp, processors.get(tp.partition))
            if lag is None:
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)
            if lag == 0:
                await app.producer.send(settings.clock_topic, None, tick, tp.partition, None, None)
        bands: Counter[str] = Counter()
        for proc in processors.values():
            bands.update(proc.bands)
        for band in ("good", "average", "poor"):
            metrics.ACCOUNTS_BY_BAND.labels(band).set(bands[band])
        metrics.TRACKED_ACCOUNTS.set(sum(proc.tracked for proc in processors.values()))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(_app: Any, revoked: set[TP], **_kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == settings.events_topic:
                processors.pop(tp.partition, None)
                for gauge in (metrics.CONSUMER_LAG, metrics.PARTITION_CLOCK):
                    with contextlib.suppress(KeyError):
                        gauge.remove(str(tp.partition))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def announce_assigned(_app: Any, assigned: set[TP], **_kwargs: Any) -> None:
        owned = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        log.info("churnwatch worker ready: owns partitions %s of %s", owned, settings.events_topic)

    return app


def _owned(app: faust.App, topic: str) -> list[TP]:
    return [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]


def _lag(app: faust.App, tp: TP, proc: PartitionProcessor | None) -> int | None:
    """Records not yet processed on ``tp``; None while the consumer has not fetched it yet."""
    consumer = app.consumer
    highwater = consumer.highwater(tp)
    if highwater is None:
        return None
    committed = getattr(consumer, "_committed_offset", {}).get(tp) or 0
    processed_next = max(committed, proc.last_offset + 1 if proc is not None else 0)
    return max(0, int(highwater) - processed_next)


def _persisted(table: Any, tp: TP, fut: asyncio.Future[Any]) -> None:
    # Recovery after a restart only replays the changelog past this offset into the local store.
    if not fut.cancelled() and fut.exception() is None:
        table.data.set_persisted_offset(tp, fut.result().offset)


def _observe(out: BatchOutput, proc: PartitionProcessor) -> None:
    for outcome, count in out.outcomes.items():
        if outcome.startswith("alert:"):
            metrics.ALERTS.labels(outcome[6:]).inc(count)
        else:
            metrics.EVENTS.labels(outcome).inc(count)
    for lag_ms in out.event_lag_ms[:: max(1, len(out.event_lag_ms) // 64)]:
        metrics.EVENT_LAG.observe(lag_ms / 1000)
    metrics.PARTITION_CLOCK.labels(str(proc.partition)).set(proc.clock_ms / 1000)
