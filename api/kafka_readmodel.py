"""A read model loaded from Kafka and kept current.

The snapshots and alerts are applied to a store (:class:`api.store.sql.SqlReadModel`, or an
:class:`api.readmodel.InMemoryReadModel` with ``store_url=memory``) in batches, each with the offsets it
was read up to; a restart resumes from them. A store filled from another cluster or other topics, or
whose offsets are past the topics' ends (the topics were re-created), is emptied and filled again.
While a store fills, other processes decode and check the snapshots and build their rows
(:mod:`api.fill`); the loader fetches and writes.

No consumer group is used: every partition of both topics is assigned explicitly, so any number of API
replicas can run side by side, each with the whole picture. ``ready`` turns True once every partition
reached the end offset seen at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from api.errors import first_line
from api.fill import FillPool, Rejected, check_snapshot, rejection
from api.query import AccountFilters, AccountSort
from api.readmodel import Batch, Doc, InMemoryReadModel, Page, ReadModel
from api.restrictions import AccountScope
from api.settings import ApiSettings
from streamer.gctuning import return_freed_memory
from streamer.wire.documents import AlertDocument

log = logging.getLogger("churnwatch.api.readmodel")


# Batches fetched and being decoded by the fill processes beyond the one being written.
_FILL_AHEAD = 3


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("read model stopped loading", exc_info=task.exception())


def _skip(topic: str, why: Rejected) -> None:
    # One bad record must not stop the API from serving everything else.
    if why.where is None:
        log.warning("skipping undecodable record on %s", topic)
    else:
        log.warning(
            "skipping a record on %s that is not a churnwatch document (%s: %s)",
            topic,
            why.where,
            why.problem,
        )


class Fetched(Protocol):
    """What the loader uses of a record it fetched."""

    @property
    def key(self) -> bytes | None:
        """The record's key."""

    @property
    def value(self) -> bytes | None:
        """The record's value (None: a tombstone)."""

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""


# A fetch, and its batch being decoded.
_Fetch = tuple[Mapping[TopicPartition, Sequence[Fetched]], "asyncio.Future[Batch]"]


class LoadableStore(ReadModel, Protocol):
    """A read model a loader fills: batches in, with the positions they were read up to."""

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each (topic, partition) the store holds the records before."""

    def claim(self, source: str) -> bool:
        """Make the store the projection of ``source``, emptying one of another; whether it was emptied."""

    def clear(self) -> None:
        """Empty the store."""

    def begin_fill(self) -> bool:
        """Prepare an empty store, or one whose fill was cut short, for a fill (e.g. drop indexes to
        build at the end); whether it is filling."""

    def finish_fill(self) -> list[str]:
        """Build what :meth:`begin_fill` put off, or a crash left missing; the names of the indexes
        created."""

    async def apply_batch(self, batch: Batch) -> None:
        """Apply a batch and its positions."""


def open_store(settings: ApiSettings) -> LoadableStore:
    """The store ``settings.store_url`` names."""
    url = settings.store_url.get_secret_value()
    if url == "memory":
        return InMemoryReadModel(settings.alert_buffer, ready=False, history_days=settings.history_days)
    from api.store.sql import SqlReadModel  # noqa: PLC0415 - SQLAlchemy and Alembic only when used

    return SqlReadModel(
        url,
        alert_buffer=settings.alert_buffer,
        history_days=settings.history_days,
        ready=False,
    )


class KafkaReadModel:
    """Feeds a store from ``account-health`` and ``churn-alerts``."""

    retry_delay_s = 0.5  # the first wait before writing a failed batch again (doubling up to 30 s)

    def __init__(self, settings: ApiSettings, store: LoadableStore | None = None) -> None:
        """Prepare (but do not start) loading the topics named in ``settings`` into ``store`` (the one
        ``settings.store_url`` names when omitted)."""
        self._settings = settings
        self._store: LoadableStore = store if store is not None else open_store(settings)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_ends: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._caught_up = False
        self._write_failures = 0
        self._decoding: FillPool | None = None  # the fill processes, while a fill has them

    @property
    def ready(self) -> bool:  # see ReadModel
        return self._caught_up

    @property
    def write_failures(self) -> int:  # see ReadModel
        return self._write_failures

    @property
    def lag(self) -> int:  # see ReadModel
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for tp, pos in self._positions.items():
            high = consumer.highwater(tp)
            if high is not None:
                total += max(0, high - pos)
        return total

    async def start(self) -> None:
        """Connect and start loading in the background."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 << 20,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(self._consumer), name="churnwatch-readmodel")
        self._task.add_done_callback(_log_failure)

    async def stop(self) -> None:
        """Stop loading and close the consumer."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        await self._store.stop()

    async def _partitions(self) -> tuple[str, list[TopicPartition]]:
        topics = [self._settings.health_topic, self._settings.alerts_topic]
        admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap)
        await admin.start()
        try:
            while True:
                names = await admin.list_topics()
                missing = [t for t in topics if t not in names]
                if not missing:
                    described = await admin.describe_topics(topics)
                    cluster = (await admin.describe_cluster()).get("cluster_id")
                    source = orjson.dumps({"cluster": cluster, "topics": topics}).decode()
                    return source, [
                        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
                    ]
                log.info("waiting for topics %s to exist", missing)
                await asyncio.sleep(1.0)
        finally:
            await admin.close()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        source, tps = await self._partitions()
        store = self._store
        if await asyncio.to_thread(store.claim, source):
            log.warning("the read store was filled from other topics or another cluster: filling it again")
        starts = await consumer.beginning_offsets(tps)
        self._start_ends = await consumer.end_offsets(tps)
        stored = store.positions()
        if any(stored.get((tp.topic, tp.partition), 0) > end for tp, end in self._start_ends.items()):
            log.warning("the read store is ahead of its topics (re-created?): filling it again")
            await asyncio.to_thread(store.clear)
            stored = {}
        filling = await asyncio.to_thread(store.begin_fill)
        if filling:
            log.info(
                "%s: its indexes and portfolio counts are built when it has caught up",
                "resuming a fill of the read store cut short" if stored else "filling an empty read store",
            )
        # Positions are set as the partitions are assigned, before the consumer's fetcher can run: a
        # partition the store has nothing of starts at its beginning (auto_offset_reset).
        consumer.assign(tps)
        resumed = 0
        for tp in tps:
            at = stored.get((tp.topic, tp.partition))
            if at is not None and at >= starts[tp]:
                consumer.seek(tp, at)
                resumed += 1
        self._positions = {tp: await consumer.position(tp) for tp in tps}
        log.info("read model loading %d partitions (%d resumed from the store)", len(tps), resumed)
        # While a fill lasts, other processes decode and check the snapshots and build their rows.
        pool = None
        processes = self._settings.fill_processes
        if filling and processes:
            pool = FillPool(processes)
            log.info(
                "the snapshots are decoded and checked by %d fill process%s",
                processes,
                "" if processes == 1 else "es",
            )
        try:
            await self._follow(consumer, tps, pool)
        finally:
            if pool is not None:
                pool.close(wait=False)  # a no-op once the fill is done

    async def _follow(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], pool: FillPool | None
    ) -> None:
        store = self._store
        # A task of its own writes the batches in the order fetched, one at a time, each as soon as the
        # one before it is written; meanwhile this loop goes on fetching and, while a fill lasts, hands
        # the snapshots of up to _FILL_AHEAD batches to the fill processes. Otherwise one batch waits,
        # decoded, while another is written.
        self._decoding = pool
        queue: asyncio.Queue[_Fetch] = asyncio.Queue(_FILL_AHEAD if pool is not None else 1)
        writer = asyncio.create_task(self._write_in_order(queue), name="churnwatch-readmodel-write")
        put: asyncio.Future[None] | None = None
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=5000)
                put = asyncio.ensure_future(queue.put((fetched, asyncio.ensure_future(self._batch(fetched)))))
                # The writer ends only by raising: this loop must not wait for room it will never make.
                await asyncio.wait((put, writer), return_when=asyncio.FIRST_COMPLETED)
                if writer.done():
                    writer.result()
                if self._caught_up:
                    continue
                # position() also moves past transaction markers, which never arrive as records.
                positions = {tp: await consumer.position(tp) for tp in tps}
                if not all(positions[tp] >= end for tp, end in self._start_ends.items()):
                    continue
                await queue.join()
                started = time.monotonic()
                built = await asyncio.to_thread(store.finish_fill)
                if built:
                    log.info(
                        "built %d indexes of the read store in %.1f s",
                        len(built),
                        time.monotonic() - started,
                    )
                if self._decoding is not None:
                    # What follows is applied snapshot by snapshot, counted as it goes.
                    await asyncio.to_thread(self._decoding.close)
                    self._decoding = None
                # A fill allocated and freed gigabytes of documents: the process keeps none.
                return_freed_memory()
                self._caught_up = True
                log.info("read model caught up (%d partitions)", len(tps))
        finally:
            for task in (put, writer):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_in_order(self, queue: asyncio.Queue[_Fetch]) -> None:
        """Write the batches put in ``queue``, in order, each once it is decoded."""
        while True:
            fetched, decoding = await queue.get()
            try:
                batch = await decoding
            except BrokenProcessPool:
                # A fill process was killed (out of memory?): the API goes on with the fill itself.
                if self._decoding is not None:
                    log.error("a fill process ended unexpectedly: the rest of the fill is decoded in the API")
                    self._decoding.close(wait=False)
                    self._decoding = None
                batch = await self._batch(fetched)
            if batch.positions:
                await self._apply(batch)
            queue.task_done()

    async def _batch(self, fetched: Mapping[TopicPartition, Sequence[Fetched]]) -> Batch:
        """The batch of what was fetched: decoded and checked here, or its snapshots by the fill
        processes while a fill has them."""
        pool = self._decoding
        batch = Batch()
        snapshots: list[tuple[bytes, bytes | None]] = []  # for the pool, in the order read
        for tp, records in fetched.items():
            for rec in records:
                if pool is None or tp.topic != self._settings.health_topic:
                    self._decode(tp.topic, rec.key, rec.value, batch)
                elif rec.key is not None:
                    snapshots.append((rec.key, rec.value))
            if records:
                self._positions[tp] = records[-1].offset + 1
                batch.positions[tp.topic, tp.partition] = records[-1].offset + 1
        if pool is not None:
            for item in await pool.prepare(snapshots):
                if isinstance(item, Rejected):
                    _skip(self._settings.health_topic, item)
                else:
                    batch.rows.append(item)
        return batch

    async def _apply(self, batch: Batch) -> None:
        """Apply a batch, retrying while the store fails (a database restart): nothing is skipped."""
        delay = self.retry_delay_s
        while True:
            try:
                await self._store.apply_batch(batch)
            except Exception as exc:  # noqa: BLE001 - any failure of the database: the batch waits
                self._write_failures += 1
                log.error("writing to the read store failed, retrying in %.1f s: %s", delay, first_line(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            else:
                return

    def _decode(self, topic: str, key: bytes | None, value: bytes | None, batch: Batch) -> None:
        try:
            # Documents are held to the contract the API answers with (streamer.wire.documents) as they
            # arrive: one that is not cannot make a route fail later, for this account or for the feed.
            if topic == self._settings.health_topic:
                if key is not None:
                    account_id, snapshot, text = check_snapshot(key, value)
                    if text is not None:
                        batch.texts[len(batch.snapshots)] = text
                    batch.snapshots.append((account_id, snapshot))
            elif value is not None:
                doc = orjson.loads(value)
                AlertDocument.model_validate(doc)
                batch.alerts.append(doc)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            _skip(topic, Rejected())
        except ValidationError as err:
            _skip(topic, rejection(err))

    async def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:  # see ReadModel
        return await self._store.get_account(account_id, scope=scope)

    def list_accounts(  # see ReadModel
        self,
        filters: AccountFilters,
        sort: AccountSort,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        return self._store.list_accounts(filters, sort, cursor, limit, scope=scope)

    def portfolio(self, now: datetime, *, scope: AccountScope) -> Doc:  # see ReadModel
        return self._store.portfolio(now, scope=scope)

    def portfolio_history(
        self, weeks: int, now: datetime, *, scope: AccountScope
    ) -> list[dict[str, Any]]:  # see ReadModel
        return self._store.portfolio_history(weeks, now, scope=scope)

    def owners(self, *, scope: AccountScope) -> list[str]:  # see ReadModel
        return self._store.owners(scope=scope)

    def alerts(  # see ReadModel
        self,
        since: datetime | None,
        kind: str | None,
        account: str | None,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        return self._store.alerts(since, kind, account, cursor, limit, scope=scope)

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[dict[str, Any], None]:  # see ReadModel
        return self._store.subscribe(scope=scope)

    def history(  # see ReadModel
        self, account_id: str, days: int, now: datetime, *, scope: AccountScope
    ) -> list[Doc] | None:
        return self._store.history(account_id, days, now, scope=scope)
