"""The Faust application: topics, the account table, the agent and the clock timer.

Everything here decodes, calls ``PartitionProcessor`` (which calls the pure core) and writes.
Faust traps this module works around, each verified against faust-streaming 0.15:

* Faust's buffered changelog path (``table[key] = value``) is slow at thousands of writes per batch
  and flushed only best-effort. ``TableStore`` writes the partition's store and changelog directly.
* ``isolated_partitions=True`` would give one actor per partition, but its actors crash the worker
  on the first rebalance (faust-streaming #529); one agent groups each batch by partition instead.
* Faust's per-message delivery (a ``Message``, a conductor callback, a channel queue and a
  ``wait_first`` with two tasks per record) capped the worker near 2,000 events/s. The input topics
  are read by ``streamer.worker.consumer.BatchConsumer`` instead, which hands each fetch over whole; offsets
  are acknowledged only after what a batch caused is written, and an unexpected failure exits the
  process without acknowledging, so the restarted worker replays the batch.
* ``app.topic(value_type=bytes)`` still decodes JSON; topics name the raw serializer explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP

from streamer.core.policy import PolicySet
from streamer.kafka.batches import send_in_batches
from streamer.kafka.partitioner import kafka_partitioner
from streamer.worker import metrics
from streamer.worker.consumer import BatchConsumer
from streamer.worker.crashguard import CrashGuard, split
from streamer.worker.processor import BatchOutput, PartitionProcessor, Record, dead_letter
from streamer.worker.settings import WorkerSettings

log = logging.getLogger("churnwatch.worker")
RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


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


def _records(fetched: Iterable[Any]) -> Iterator[Record]:
    for rec in fetched:
        headers = rec.headers.items() if isinstance(rec.headers, Mapping) else rec.headers or ()
        yield Record(rec.partition, rec.offset, rec.key, rec.value, tuple(headers))


class WorkerApp(faust.App):
    """The Faust app, with the batch consumer for its input topics and a revocation that waits for it."""

    input_topics: frozenset[str] = frozenset()
    on_batch: Any = None
    before_revoke: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Held while a batch is processed and written: a revocation waits for it, so no batch writes
        # to the store or changelog of a partition this worker has already handed over.
        self.processing = asyncio.Lock()

    def _new_consumer(self) -> Any:
        consumer = BatchConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
        consumer.batch_topics = self.input_topics
        consumer.on_batch = self.on_batch
        return consumer

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        async with self.processing:
            if self.before_revoke is not None:
                await self.before_revoke(revoked)
            await super()._on_partitions_revoked(revoked)

    async def _on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # A partition handed back to this worker starts from its committed offset (or the start), not
        # from where this worker stopped reading it last time: forget the old read offsets, or records
        # between the committed offset and the old read offset would be skipped as already read.
        consumer: Any = self.consumer
        for tp in assigned:
            if tp.topic in self.input_topics:
                consumer._read_offset[tp] = None
        await super()._on_partitions_assigned(assigned, generation_id)


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
        broker_max_poll_records=settings.batch_max,
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,
    )
    inputs = app.topic(settings.events_topic, settings.clock_topic, partitions=n, **RAW)
    app.topics.add(inputs)  # subscribed without an agent: BatchConsumer delivers it to on_batch
    app.input_topics = frozenset({settings.events_topic, settings.clock_topic})
    alerts_topic, health_topic, dlq_topic = settings.alerts_topic, settings.health_topic, settings.dlq_topic
    mib = 1024 * 1024
    # Faust's RocksDB defaults give every partition's database a 2 GiB block cache and three 64 MiB
    # write buffers: restoring 1,000,000 accounts grew the worker to 2.4 GB. Bound both.
    rocksdb = {
        "write_buffer_size": settings.rocksdb_write_buffer_mb * mib,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_cache_mb * mib,
        "block_cache_compressed_size": settings.rocksdb_cache_mb * mib,
    }
    accounts: Any = app.Table(
        "accounts",
        default=None,
        partitions=n,
        key_type=bytes,
        value_type=bytes,
        help="Account state.",
        options=rocksdb if settings.store.startswith("rocksdb") else None,
    )
    partition_for = kafka_partitioner(n)
    processors: dict[int, PartitionProcessor] = {}
    guard = CrashGuard(settings.data_dir / f"{settings.app_id}-crashes")

    def processor(partition: int) -> PartitionProcessor:
        proc = processors.get(partition)
        if proc is None:
            owned = max(1, len(_owned(app, settings.events_topic)))
            proc = processors[partition] = PartitionProcessor(
                partition,
                policies,
                partition_for,
                allowed_lateness_ms=settings.allowed_lateness_ms,
                max_future_ms=settings.max_future_ms,
                backlog_publish_interval_ms=settings.backlog_publish_interval_ms,
                cache_max=max(100, settings.state_cache_accounts // owned),
                flush_interval_ms=settings.state_flush_interval_ms,
            )
        return proc

    async def send_batched(
        topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes, Sequence[tuple[str, bytes]]]]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """Produce small records to one partition in record batches: one future per batch, not per record."""
        client: Any = app.producer._ensure_producer()  # type: ignore[attr-defined]
        return await send_in_batches(client, topic, partition, records)

    # Offsets processed but not yet covered by a flush of their partition's states, per partition.
    unacked: dict[int, dict[TP, list[int]]] = {}

    async def write_states(proc: PartitionProcessor, now_ms: int) -> None:
        """Flush the processor's changed states to its store and changelog; acknowledge what they cover."""
        failed = proc.flush_failures
        writes = proc.flush(now_ms)
        if proc.flush_failures > failed:
            metrics.POISON.labels("flush").inc(proc.flush_failures - failed)
        store = TableStore(accounts, proc.partition)
        changelog = accounts.changelog_topic_name
        records = []
        for account_id, value in writes.items():
            key = account_id.encode()
            store.put(key, value)
            records.append((key, value, ()))
        sent = await send_batched(changelog, proc.partition, records)
        if sent:
            last, count = sent[-1]
            last.add_done_callback(
                functools.partial(_persisted, accounts, TP(changelog, proc.partition), count)
            )
        consumer: Any = app.consumer
        for tp, offsets in unacked.pop(proc.partition, {}).items():
            consumer.ack_offsets(tp, offsets)

    async def write(work: list[tuple[BatchOutput, TableStore, PartitionProcessor]]) -> None:
        producer = app.producer
        sends = []
        for out, _, proc in work:
            for rec, reason in out.dead_letters:
                key, value, headers = dead_letter(rec, reason, settings.events_topic)
                sends.append(await producer.send(dlq_topic, key, value, None, None, headers))
            for rec, target in out.rekeyed:
                sends.append(
                    await producer.send(
                        settings.events_topic, None, rec.value, target, None, list(rec.headers)
                    )
                )
            # Alerts and snapshots are of this partition's accounts, so they go to the same partition
            # of their co-partitioned topics (where Kafka's default partitioner would put them too).
            partition = proc.partition
            # An operations alert (data_gap) has no account: it goes unkeyed to its partition.
            alert_records = [
                (
                    a.account_id.encode() if a.account_id else None,
                    value,
                    (("churnwatch.kind", a.kind.encode()),),
                )
                for a, value in out.encoded_alerts
            ]
            sends += [f for f, _ in await send_batched(alerts_topic, partition, alert_records)]
            health_records = [(a.encode(), snapshot, ()) for a, snapshot in out.health]
            sends += [f for f, _ in await send_batched(health_topic, partition, health_records)]
        # What the states record as sent (alerts, published health) is acknowledged before the states
        # are written: a crash in between re-sends it with the same ids instead of losing it.
        await asyncio.gather(*sends)
        for out, _, proc in work:
            _observe(out, proc)

    def apply(tp: TP, fetched: list[Any], now_ms: int) -> tuple[BatchOutput, TableStore, PartitionProcessor]:
        proc = processor(tp.partition)
        store = TableStore(accounts, tp.partition)
        if tp.topic == settings.clock_topic:
            # A tick says "wall time is T and the partition was processed up to offset N". A tick read
            # again after a crash, before the restarted worker has re-processed up to N, would move
            # the clock past events still to be re-applied (they would count as late): skip it.
            ticks = (_parse_tick(rec.value) for rec in fetched)
            valid = [clock for clock, upto in ticks if upto <= proc.last_offset + 1]
            if not valid:
                return BatchOutput(), store, proc
            return proc.tick(max(valid), store, now_ms), store, proc
        highwater = app.consumer.highwater(tp)
        backlog = highwater is not None and highwater - fetched[-1].offset > settings.batch_max
        # Offsets the process died on before are applied one at a time, and a record that killed it
        # alone is dead-lettered unread: a record can never crash-loop the worker (worker.crashguard).
        suspects = guard.suspects(tp.partition, fetched[0].offset, fetched[-1].offset)
        out = BatchOutput()
        for part in split(fetched, suspects.isolate):
            guard.enter(tp.partition, part[0].offset, part[-1].offset)
            out.extend(proc.process(_records(part), store, now_ms, backlog, suspects.skip))
            guard.leave(tp.partition)
        return out, store, proc

    async def on_batch(batches: dict[TP, list[Any]]) -> None:
        """Apply one fetch of usage events and clock ticks, partition by partition, then write it.

        Offsets are acknowledged (and so become committable) only after everything the fetch caused
        is written.
        """
        started = time.perf_counter()
        consumer: Any = app.consumer
        async with app.processing:
            # A rebalance between the fetch and now may have taken partitions away: their new owner
            # reads them from the committed offset.
            owned = consumer.assignment()
            mine = {tp: fetched for tp, fetched in batches.items() if tp in owned}
            try:
                now_ms = int(time.time() * 1000)
                # Events before ticks, so a tick never fires a deadline that an event in the same fetch
                # would have pushed back.
                order = sorted(mine, key=lambda tp: tp.topic == settings.clock_topic)
                await write([apply(tp, mine[tp], now_ms) for tp in order])
            except Exception:
                # Exit without acknowledging; the restarted worker replays the fetch and the applied
                # offsets keep the counts exact.
                log.exception("unexpected failure processing a batch; exiting so that it is replayed")
                logging.shutdown()
                os._exit(70)
            for tp, fetched in mine.items():
                unacked.setdefault(tp.partition, {}).setdefault(tp, []).extend(rec.offset for rec in fetched)
            for tp in order:
                proc = processors[tp.partition]
                # A tick means the partition has caught up: flush, so the store is current while idle.
                if proc.flush_due(now_ms) or (tp.topic == settings.clock_topic and proc.dirty):
                    await write_states(proc, now_ms)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    app.on_batch = on_batch

    async def flush_revoked(revoked: set[TP]) -> None:
        """Write what the revoked partitions' processors hold, so their new owner starts from it."""
        now_ms = int(time.time() * 1000)
        for tp in revoked:
            proc = processors.get(tp.partition) if tp.topic == settings.events_topic else None
            if proc is not None:
                await write_states(proc, now_ms)

    app.before_revoke = flush_revoked

    @app.timer(settings.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
    async def advance_idle_clocks() -> None:
        """Tick the clock of every owned input partition that has caught up with its backlog (wall mode)."""
        now_ms = int(time.time() * 1000)
        clock_ms = now_ms - settings.idle_grace_ms
        for tp in _owned(app, settings.events_topic):
            lag = _lag(app, tp, processors.get(tp.partition))
            if lag is None:
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)
            if lag != 0:
                continue
            if settings.clock == "wall":
                tick = f"{clock_ms} {app.consumer.highwater(tp)}".encode()
                await app.producer.send(settings.clock_topic, None, tick, tp.partition, None, None)
                continue
            # In event-time mode only events move a clock: a backfill is judged by its own time. With
            # no tick to say the partition caught up, the timer writes what its last batch changed.
            proc = processors.get(tp.partition)
            if proc is not None and proc.dirty:
                async with app.processing:
                    if proc.dirty and processors.get(tp.partition) is proc:
                        await write_states(proc, now_ms)
        bands: Counter[str] = Counter()
        for proc in processors.values():
            bands.update(proc.bands)
        for band in ("good", "average", "poor"):
            metrics.ACCOUNTS_BY_BAND.labels(band).set(bands[band])
        metrics.TRACKED_ACCOUNTS.set(sum(proc.tracked for proc in processors.values()))

    @app.timer(30.0)  # type: ignore[untyped-decorator]
    async def return_freed_memory() -> None:
        """Hand memory freed by the allocator back to the system.

        Restoring a large changelog allocates and frees gigabytes of record values; glibc keeps the
        freed pages, so the worker's resident memory stayed at the peak of its recovery.
        """
        _malloc_trim()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_revoked(_app: Any, revoked: set[TP], **_kwargs: Any) -> None:
        for tp in revoked:
            if tp.topic == settings.events_topic:
                processors.pop(tp.partition, None)
                unacked.pop(tp.partition, None)
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


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _parse_tick(value: bytes | None) -> tuple[int, int]:
    """``(clock ms, events offset it requires)`` of a tick; an unreadable tick requires the impossible."""
    try:
        clock, upto = (value or b"").split()
        return int(clock), int(upto)
    except ValueError:
        return 0, 2**63


def _persisted(table: Any, tp: TP, count: int, fut: asyncio.Future[Any]) -> None:
    # Recovery after a restart only replays the changelog past this offset into the local store. A
    # batch's future gives the offset of its first record; ``count`` records were in the batch.
    if not fut.cancelled() and fut.exception() is None:
        table.data.set_persisted_offset(tp, fut.result().offset + count - 1)


def _observe(out: BatchOutput, proc: PartitionProcessor) -> None:
    for outcome, count in out.outcomes.items():
        if outcome.startswith("alert:"):
            metrics.ALERTS.labels(outcome[6:]).inc(count)
        else:
            metrics.EVENTS.labels(outcome).inc(count)
    for stage, count in out.poison.items():
        metrics.POISON.labels(stage).inc(count)
    for lag_ms in out.event_lag_ms[:: max(1, len(out.event_lag_ms) // 64)]:
        metrics.EVENT_LAG.observe(lag_ms / 1000)
    metrics.PARTITION_CLOCK.labels(str(proc.partition)).set(proc.clock_ms / 1000)
