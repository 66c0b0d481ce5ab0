"""Everything churnwatch needs from Faust, and every private name of Faust it touches: this module only.

Faust is kept for what it does well for a stateful stream processor: consumer-group membership and
rebalancing, table recovery from the changelog into RocksDB, timers, and its commit loop (which
flushes the producer before it commits offsets). It is replaced where its per-message machinery was
the bottleneck or its guarantees were best-effort: delivery of the input topics (a fetch at a time,
:class:`BatchConsumer`), table writes (:class:`TableStore`, straight to the store and the changelog)
and acknowledgements (:meth:`BatchConsumer.ack_offsets`). Each override names the faust-streaming
0.15 internals it relies on; an upgrade of Faust is checked here and nowhere else.

Traps worked around, each verified against faust-streaming 0.15:

* Faust's buffered changelog path (``table[key] = value``) is slow at thousands of writes per batch
  and flushed only best-effort: :class:`TableStore` writes the partition's store directly and the
  checkpoint produces the changelog records itself.
* ``isolated_partitions=True`` would give one actor per partition, but its actors crash the worker
  on the first rebalance (faust-streaming #529); one handler groups each fetch by partition instead.
* Faust's per-message delivery (a ``Message``, a conductor callback, a channel queue and a
  ``wait_first`` with two tasks per record) capped the worker near 2,000 events/s.
* ``app.topic(value_type=bytes)`` still decodes JSON; topics name the raw serializer explicitly.

:class:`BatchConsumer`: for the topics in ``batch_topics`` the records of one fetch, grouped by
partition, go to ``on_batch`` in one call, and their offsets are acknowledged in Faust's own
bookkeeping (``ack_offsets``) once the caller has written what they caused, so Faust's periodic
commit commits them as usual. Every other topic (the table changelogs during recovery) still goes
through Faust's conductor message by message, but with one ``wait_first`` per fetch instead of one
per message. The drain loop keeps Faust's rules: it fetches only while the flow is active, drops
records below the partition's read offset (a seek moved it back), records offset gaps (compaction,
transaction markers) so commits can pass them, and stops on a generation change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.stores.rocksdb import RocksDBOptions
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamer.kafka.batches import BatchProducer
from streamer.logfilter import rate_limit_logging
from streamer.worker.handler import BatchHandler, ConsumerView
from streamer.worker.settings import WorkerSettings

__all__ = [
    "TP",
    "BatchConsumer",
    "FaustConsumerView",
    "RocksChangelogSink",
    "TableStore",
    "WorkerApp",
    "accounts_table",
    "before_recovery",
    "make_app",
    "persisted_offset_setter",
    "raw_producer",
    "run_worker",
]

RAW: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}


FetchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for ``batch_topics``."""

    batch_topics: frozenset[str] = frozenset()
    on_batch: FetchHandler | None = None

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        # Faust records every commit as done, even one a rebalance refused (it returns False):
        # ``confirmed`` keeps only those the broker took (of partitions assigned: Faust leaves out others).
        assigned = self.assignment()
        done = bool(await super()._commit(offsets))
        if done:
            confirmed = self.__dict__.setdefault("confirmed_offsets", {})
            for tp, offset in offsets.items():
                if tp in assigned:
                    confirmed[tp] = max(offset, confirmed.get(tp, offset))
        return done

    async def _drain_messages(self, fetcher: Any) -> None:
        stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # Fetched while a rebalance suspended the flow: not ours to deliver now. Faust's own
                    # loop drops them and seeks back only partitions with a committed offset, which lost
                    # them on never-committed partitions; seek each partition back to what we drop.
                    await self._unread(records)
                    continue
                await self._deliver(records, active)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _unread(self, records: Mapping[Any, list[Any]]) -> None:
        for key, recs in records.items():
            if recs:
                with contextlib.suppress(Exception):  # no longer assigned: the new owner reads it
                    await self.seek(TP(key.topic, key.partition), recs[0].offset)

    async def _deliver(self, records: Mapping[Any, list[Any]], active: set[TP] | None) -> None:
        generation = self.app.consumer_generation_id
        batches: dict[TP, list[Any]] = {}
        others: list[tuple[TP, Any]] = []
        for key, recs in records.items():
            tp = TP(key.topic, key.partition)
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            read = self._read_offset[tp]
            if read is not None and recs and recs[0].offset < read:
                recs = [r for r in recs if r.offset >= read]
            if not recs:
                continue
            if tp.topic in self.batch_topics:
                await self._note_gaps(tp, read, recs)
                batches[tp] = recs
            else:
                others.extend((tp, r) for r in recs)
        if batches and self.on_batch is not None:
            await self.on_batch(batches)
            for tp, recs in batches.items():
                self._read_offset[tp] = recs[-1].offset
        if others:
            # One wait_first per fetch rather than per message: a suspended flow (a rebalance) still
            # abandons the rest of the fetch, and the read offsets say how far delivery got.
            await self.wait_first(self._deliver_each(others, generation), self.suspend_flow.wait())

    async def _deliver_each(self, messages: list[tuple[TP, Any]], generation: int) -> None:
        for tp, rec in messages:
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            await self.callback(self._to_message(tp, rec))
            self._read_offset[tp] = rec.offset

    async def _note_gaps(self, tp: TP, read: int | None, recs: Sequence[Any]) -> None:
        previous = read
        for rec in recs:
            if previous is not None and rec.offset - previous > 1:
                await self._add_gap(tp, previous + 1, rec.offset - 1)
            previous = rec.offset

    def ack_offsets(self, tp: TP, offsets: Sequence[int]) -> None:
        """Mark ``offsets`` of ``tp`` processed and written, so that the next commit may include them."""
        with faust_consumer.ack_lock:  # type: ignore[attr-defined]
            committed = self._committed_offset[tp]
            if committed is not None:
                offsets = [o for o in offsets if o >= committed]
            index = self._acked_index[tp]
            fresh = [o for o in offsets if o not in index]
            index.update(fresh)
            self._acked[tp].extend(fresh)


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


class RocksChangelogSink:
    """The account table's RocksDB stores as a :class:`~streamer.kafka.restore.ChangelogSink`.

    Each fetch of changelog records is one ``WriteBatch`` that also holds the new persisted offset,
    under the key Faust's own recovery reads (``Store.persisted_offset``), so Faust resumes after it.
    The batches skip RocksDB's write-ahead log (the changelog is the log); ``finish`` flushes the
    memtables to disk, so the restored states are durable before the worker writes anything else. A
    crash before that loses restored batches together with their offsets, and the next start restores
    them again.
    """

    def __init__(self, table: Any) -> None:
        import rocksdict  # only with the RocksDB store

        self._store = table.data
        self._topic = table.changelog_topic_name
        self._rocksdict = rocksdict
        self._options = rocksdict.WriteOptions()
        # A property at run time, though rocksdict's stubs declare a method.
        self._options.disable_wal = True  # type: ignore[method-assign,assignment]

    @staticmethod
    def supports(table: Any) -> bool:
        """Whether ``table`` is in RocksDB through rocksdict (a memory store always recovers in full)."""
        return bool(getattr(table.data, "use_rocksdict", False)) and hasattr(table.data, "_db_for_partition")

    def persisted_offset(self, partition: int) -> int | None:
        offset: int | None = self._store.persisted_offset(TP(self._topic, partition))
        return offset

    def write(self, partition: int, records: Iterable[tuple[bytes, bytes | None]], last_offset: int) -> None:
        batch = self._rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(self._store.offset_key, str(last_offset).encode())
        self._store._db_for_partition(partition).write(batch, self._options)

    def finish(self, partition: int) -> None:
        self._store._db_for_partition(partition).flush(True)


class WorkerApp(faust.App):
    """The Faust app, with the batch consumer for its input topics and a revocation that waits for it."""

    input_topics: frozenset[str] = frozenset()
    handler: BatchHandler | None = None

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
        consumer.on_batch = self.handler.handle if self.handler is not None else None
        return consumer

    async def _on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.handler is None:
            await super()._on_partitions_revoked(revoked)
            return
        # The lock is held until Faust has revoked the partitions: no fetch is applied to them meanwhile.
        async with self.handler.lock:
            await self.handler.revoke(revoked)
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


def before_recovery(app: faust.App, table: Any, hook: Callable[[list[int]], Awaitable[None]]) -> None:
    """Run ``hook(changelog partitions)`` in Faust's recovery, before it reads the table's changelog.

    Not in the rebalance callback: aiokafka sends no heartbeats while that runs, and a bulk restore of
    a million accounts outlasted the session timeout, so the coordinator expelled the worker mid-way
    and it never recovered. Faust's recovery runs after the callback, with the input paused until it
    is over (``Recovery._resume_streams``), so nothing is applied to a store before it is restored.
    Hooks ``Recovery._build_offsets`` (faust-streaming 0.15), called for the active partitions with
    the offsets recovery starts from; they are raised to what the hook persisted.
    """
    tables: Any = app.tables
    recovery: Any = tables.recovery
    changelog = table.changelog_topic_name
    build_offsets = recovery._build_offsets

    async def _build_offsets(consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        if title == "active":
            await hook(sorted(tp.partition for tp in tps if tp.topic == changelog))
            for tp in tps:
                if tp.topic == changelog:
                    persisted = table.data.persisted_offset(tp)
                    if persisted is not None:
                        destination[tp] = persisted
        await build_offsets(consumer, tps, destination, title)

    recovery._build_offsets = _build_offsets


class FaustConsumerView(ConsumerView):
    """Ownership, high-water marks and committed offsets, as the Faust app's consumer knows them."""

    def __init__(self, app: faust.App, topics: frozenset[str]) -> None:
        """Answer for ``topics`` of ``app``."""
        self.app = app
        self.topics = topics

    def owned(self) -> Sequence[TP]:
        return [tp for tp in self.app.assignor.assigned_actives() if tp.topic in self.topics]

    def highwater(self, tp: Any) -> int | None:
        value = self.app.consumer.highwater(tp)
        return None if value is None else int(value)

    def committed(self, tp: Any) -> int | None:
        value = getattr(self.app.consumer, "_committed_offset", {}).get(tp)
        return None if value is None else int(value)

    def confirmed(self, tp: Any) -> int | None:
        value = getattr(self.app.consumer, "confirmed_offsets", {}).get(tp)
        return None if value is None else int(value)


class _Acker:
    """Acknowledgements to the app's consumer (created when the app starts, so looked up each time)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def ack_offsets(self, tp: Any, offsets: Sequence[int]) -> None:
        consumer: Any = self.app.consumer
        consumer.ack_offsets(tp, offsets)


class _Producer:
    """The app's aiokafka producer (created when the app starts, so looked up each time)."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def create_batch(self) -> Any:
        return raw_producer(self.app).create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await raw_producer(self.app).send_batch(
            batch, topic, partition=partition
        )
        return future


def raw_producer(app: faust.App) -> Any:
    """The aiokafka producer under Faust's producer, for record batches."""
    return app.producer._ensure_producer()  # type: ignore[attr-defined]


def batch_producer(app: faust.App) -> BatchProducer:
    """A producer of record batches through the app's own producer."""
    return _Producer(app)


def acker(app: faust.App) -> _Acker:
    """Offset acknowledgements to the app's consumer."""
    return _Acker(app)


def make_app(settings: WorkerSettings) -> WorkerApp:
    """The worker's Faust app, subscribed to its input topics (delivered to the handler a fetch at a time)."""
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
    app.topics.add(inputs)  # subscribed without an agent: BatchConsumer delivers it to the handler
    app.input_topics = frozenset({settings.events_topic, settings.clock_topic})
    return app


MIB = 1024 * 1024


class BoundedRocksDBOptions(RocksDBOptions):
    """RocksDB options whose memory is one budget for the worker, not an amount per partition.

    Faust gives every partition's database its own 2 GiB block cache and three 64 MiB write buffers:
    restoring 1,000,000 accounts grew the worker to 2.4 GB, and a worker taking over the partitions of
    a lost one multiplied its memory by theirs. Here every database of the process shares one LRU block
    cache of ``memory_bytes``, which also holds their index and filter blocks and is charged with
    their memtables through one write buffer manager (at most half of it), as Kafka Streams' bounded
    memory configuration does.
    """

    def __init__(self, *, memory_bytes: int, write_buffer_bytes: int, use_rocksdict: bool) -> None:
        super().__init__(
            write_buffer_size=write_buffer_bytes,
            max_write_buffer_number=2,
            block_cache_size=memory_bytes,  # Faust's own cache, replaced in as_options: bounded all the same
            use_rocksdict=use_rocksdict,
        )
        import rocksdict  # only with the RocksDB store

        self.cache = rocksdict.Cache(memory_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory_bytes // 2, False, self.cache
        )

    def as_options(self) -> Any:
        """Faust's options for one database, with the shared write buffer manager and block cache."""
        import rocksdict

        if not self.use_rocksdict:
            raise RuntimeError("the RocksDB store needs rocksdict (python-rocksdb is not supported)")
        options = super().as_options()
        options.set_write_buffer_manager(self.write_buffers)
        # Faust's table factory again, with the shared cache instead of its own.
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        # Index and filter blocks in the cache too, so they count against the budget (at 1,000,000
        # accounts they would otherwise grow outside it), pinned at level 0 for reads to stay quick.
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options


def accounts_table(app: faust.App, settings: WorkerSettings) -> Any:
    """The account table: RocksDB (or memory) per partition, with its changelog topic."""
    table = app.Table(
        "accounts",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        help="Account state.",
    )
    if settings.store.startswith("rocksdb"):
        data: Any = table.data
        data.rocksdb_options = BoundedRocksDBOptions(
            memory_bytes=settings.rocksdb_memory_mb * MIB,
            write_buffer_bytes=settings.rocksdb_write_buffer_mb * MIB,
            use_rocksdict=data.use_rocksdict,
        )
    return table


def persisted_offset_setter(table: Any) -> Callable[[int, int], None]:
    """Tell the table up to which changelog offset a partition's states are in Kafka.

    Recovery after a restart only replays the changelog past this offset into the local store.
    """
    changelog = table.changelog_topic_name

    def persisted(partition: int, offset: int) -> None:
        table.data.set_persisted_offset(TP(changelog, partition), offset)

    return persisted


class _RateLimitedLogsWorker(faust.Worker):
    """A Faust worker whose log handlers pass at most 20 records per message template a minute.

    Faust replaces the root logger's handlers when the worker starts, so the filter goes on the
    handlers it sets up, not on those set up before. In a broker outage the worker otherwise wrote
    thousands of identical aiokafka errors a second.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        rate_limit_logging()


def run_worker(app: faust.App, log_level: str) -> None:
    """Run the app until SIGTERM or SIGINT (Faust's worker: signals, logging, graceful stop)."""
    worker = _RateLimitedLogsWorker(app, loglevel=log_level, redirect_stdouts=False)
    # The terminal spinner hooks a handler into every log call; a service writing to a log file has no
    # use for it, and it made the root logger format debug records of aiokafka on the hot path.
    worker.spinner = None
    worker.execute_from_commandline()
