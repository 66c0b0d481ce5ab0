"""What the worker does with each fetch, each revocation and each clock timer, without Faust.

:class:`BatchHandler` owns one :class:`~streamer.worker.processor.PartitionProcessor` per input
partition the worker owns and the :class:`~streamer.worker.checkpoint.Checkpoint` that writes what
they produce. The Faust adapter (:mod:`streamer.worker.app`) only calls it: with the records of a
fetch, with the partitions being revoked, on a timer. It is told the time (``now_ms``) and asks the
adapter what only the consumer knows (ownership, high-water marks, committed offsets), so unit
tests drive it in process with fakes of the same interfaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from streamer.core.policy import Band, PolicySet
from streamer.core.users import UserDirectory
from streamer.kafka.batches import BatchProducer, send_in_batches
from streamer.worker import metrics
from streamer.worker.checkpoint import Checkpoint, TopicPartition, WritableStore
from streamer.worker.clock import Tick, idle_tick, newest_usable
from streamer.worker.crashguard import CrashGuard, split
from streamer.worker.processor import BatchOutput, PartitionProcessor, Record
from streamer.worker.settings import WorkerSettings

__all__ = ["BatchHandler", "ConsumerView"]

log = logging.getLogger("churnwatch.worker")

# Stored accounts read per batch while a partition's schedule is rebuilt after an assignment: about
# 0.1 s of work, so a restarted worker serves at once and has read a million accounts within seconds.
LOAD_BUDGET = 20_000


class ConsumerView:
    """What the handler asks the consumer; the adapter gives it the real one's answers."""

    def owned(self) -> Sequence[Any]:
        """The input partitions (topic, partition) this worker owns now."""
        raise NotImplementedError

    def highwater(self, tp: Any) -> int | None:
        """The offset after the last record of ``tp``, or None before the consumer fetched it."""
        raise NotImplementedError

    def committed(self, tp: Any) -> int | None:
        """The committed offset of ``tp``, or None."""
        raise NotImplementedError

    def confirmed(self, tp: Any) -> int | None:
        """The last offset of ``tp`` a commit by this process succeeded with, or None.

        ``committed`` may run ahead of the broker (Faust records a commit a rebalance refused); what a
        partition's re-sends say about its source (:mod:`streamer.worker.resends`) must not.
        """
        return self.committed(tp)


def _exit_for_replay() -> NoReturn:
    logging.shutdown()
    os._exit(70)


class BatchHandler:
    """Fetches in, writes out: processors per owned partition, the checkpoint, the clock ticks."""

    def __init__(
        self,
        settings: WorkerSettings,
        policies: PolicySet,
        checkpoint: Checkpoint,
        store_for: Callable[[int], WritableStore],
        consumer: ConsumerView,
        producer: BatchProducer,
        partition_for: Callable[[str], int],
        guard: CrashGuard,
        now_ms: Callable[[], int],
        fatal: Callable[[], NoReturn] = _exit_for_replay,
        users: UserDirectory | None = None,
    ) -> None:
        """Build the handler; ``fatal`` ends the process on an unexpected failure (tests replace it)."""
        self.settings = settings
        self.policies = policies
        self.checkpoint = checkpoint
        self.store_for = store_for
        self.consumer = consumer
        self.producer = producer
        self.partition_for = partition_for
        self.guard = guard
        self.now_ms = now_ms
        self.fatal = fatal
        self.users = users
        self.processors: dict[int, PartitionProcessor] = {}
        # Held while a fetch is processed and written: a revocation waits for it, so no batch writes to
        # the store or changelog of a partition this worker has already handed over.
        self.lock = asyncio.Lock()

    def processor(self, partition: int) -> PartitionProcessor:
        """The processor of an owned partition, created on first use."""
        proc = self.processors.get(partition)
        if proc is None:
            s = self.settings
            owned = max(1, sum(tp.topic == s.events_topic for tp in self.consumer.owned()))
            proc = self.processors[partition] = PartitionProcessor(
                partition,
                self.policies,
                self.partition_for,
                allowed_lateness_ms=s.allowed_lateness_ms,
                max_future_ms=s.max_future_ms,
                backlog_publish_interval_ms=s.backlog_publish_interval_ms,
                cache_max=max(100, s.state_cache_accounts // owned),
                flush_interval_ms=s.state_flush_interval_ms,
                load_budget=LOAD_BUDGET,
                users=self.users,
                attribution_wait_ms=s.attribution_wait_ms,
                max_waiting=s.max_waiting,
                settle_ms=s.health_settle_ms,
            )
        return proc

    def apply(self, tp: Any, fetched: Sequence[Any], now_ms: int) -> BatchOutput:
        """Apply one partition's part of a fetch (events or clock ticks) in memory."""
        proc = self.processor(tp.partition)
        store = self.store_for(tp.partition)
        # What the partition re-sends says how far its source is committed (streamer.worker.resends).
        proc.source_floor = (
            self.consumer.confirmed(TopicPartition(self.settings.events_topic, tp.partition)) or 0
        )
        if tp.topic == self.settings.clock_topic:
            # Processed: what this process applied, and what the committed offset says was stored before
            # it started (a restarted worker may have nothing left to read on the partition).
            processed_next = max(proc.source_floor, proc.last_offset + 1)
            clock_ms = newest_usable((Tick.decode(rec.value) for rec in fetched), processed_next)
            return BatchOutput() if clock_ms is None else proc.tick(clock_ms, store, now_ms)
        highwater = self.consumer.highwater(tp)
        backlog = highwater is not None and highwater - fetched[-1].offset > self.settings.batch_max
        # Offsets the process died on before are applied one at a time, and a record that killed it
        # alone is dead-lettered unread: a record can never crash-loop the worker (worker.crashguard).
        suspects = self.guard.suspects(tp.partition, fetched[0].offset, fetched[-1].offset)
        out = BatchOutput()
        for part in split(list(fetched), suspects.isolate):
            self.guard.enter(tp.partition, part[0].offset, part[-1].offset)
            out.extend(proc.process(_records(part), store, now_ms, backlog, suspects.skip))
            self.guard.leave(tp.partition)
        return out

    async def handle(self, batches: Mapping[Any, Sequence[Any]]) -> None:
        """Apply one fetch of usage events and clock ticks, partition by partition, then write it.

        Offsets become committable only once everything the fetch caused is written
        (:mod:`streamer.worker.checkpoint`). An unexpected failure ends the process without
        acknowledging anything, so the restarted worker replays the fetch.
        """
        s = self.settings
        async with self.lock:
            # A rebalance between the fetch and now may have taken partitions away: their new owner
            # reads them from the committed offset.
            owned = set(self.consumer.owned())
            mine = {tp: fetched for tp, fetched in batches.items() if tp in owned and fetched}
            # Events before ticks, so a tick never fires a deadline that an event in the same fetch
            # would have pushed back.
            order = sorted(mine, key=lambda tp: tp.topic == s.clock_topic)
            now_ms = self.now_ms()
            started = time.perf_counter()
            try:
                outputs = [(tp.partition, self.apply(tp, mine[tp], now_ms)) for tp in order]
                await self.checkpoint.produce(outputs)
            except Exception:
                log.exception("unexpected failure processing a batch; exiting so that it is replayed")
                self.fatal()
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            for partition, out in outputs:
                _observe(out, self.processors[partition])
            for tp, (partition, out) in zip(order, outputs, strict=True):
                # Messages waiting for their user's account are committable only once released.
                if tp.topic == s.clock_topic:
                    self.checkpoint.processed(tp, (rec.offset for rec in mine[tp]))
                    if out.released:
                        self.checkpoint.processed(TopicPartition(s.events_topic, partition), out.released)
                else:
                    done = ({rec.offset for rec in mine[tp]} - out.held) | set(out.released)
                    self.checkpoint.processed(tp, sorted(done))
            for tp in order:
                proc = self.processors[tp.partition]
                # A tick means the partition has caught up: commit, so the store is current while idle,
                # and so are the offsets of records that changed no state (dead letters, among them
                # messages released long after their batch once their wait for an account was over).
                if proc.flush_due(now_ms) or tp.topic == s.clock_topic:
                    await self.checkpoint.commit(proc, now_ms)

    async def revoke(self, revoked: Iterable[Any]) -> None:
        """Commit what the revoked partitions hold, so that their new owner starts from it; forget them.

        The caller holds :attr:`lock` until the consumer has given the partitions up, so that no fetch
        is applied to them in between.
        """
        s = self.settings
        now_ms = self.now_ms()
        for tp in revoked:
            if tp.topic != s.events_topic:
                continue
            proc = self.processors.pop(tp.partition, None)
            if proc is not None:
                proc.close()
                # Snapshots waiting to settle are published now: the new owner knows nothing of them.
                pending = proc.publish_pending(self.store_for(tp.partition), now_ms)
                if pending.health:
                    await self.checkpoint.produce([(tp.partition, pending)])
                await self.checkpoint.commit(proc, now_ms)
            self.checkpoint.forget(tp.partition)
            for gauge in (metrics.CONSUMER_LAG, metrics.PARTITION_CLOCK):
                with contextlib.suppress(KeyError):
                    gauge.remove(str(tp.partition))

    def lag(self, tp: Any) -> int | None:
        """Records of ``tp`` not yet processed; None while the consumer has not fetched it yet."""
        highwater = self.consumer.highwater(tp)
        if highwater is None:
            return None
        proc = self.processors.get(tp.partition)
        processed_next = max(
            self.consumer.committed(tp) or 0, proc.last_offset + 1 if proc is not None else 0
        )
        return max(0, int(highwater) - processed_next)

    async def tick_idle(self) -> None:
        """On the clock timer: tick every caught-up owned partition (wall clock), update the gauges.

        In ``event`` mode only events move a clock (a backfill is judged by its own time); with no tick
        to say a partition caught up, the timer commits what its last fetch changed instead.
        """
        s = self.settings
        now_ms = self.now_ms()
        for tp in self.consumer.owned():
            if tp.topic != s.events_topic:
                continue
            lag = self.lag(tp)
            if lag is None:
                continue
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(lag)
            if lag != 0:
                continue
            if s.clock == "wall":
                highwater = self.consumer.highwater(tp)
                tick = idle_tick(now_ms, s.idle_grace_ms, highwater or 0)
                await send_in_batches(self.producer, s.clock_topic, tp.partition, [(None, tick.encode(), ())])
                continue
            proc = self.processors.get(tp.partition)
            if proc is not None and proc.dirty:
                async with self.lock:
                    if proc.dirty and self.processors.get(tp.partition) is proc:
                        await self.checkpoint.commit(proc, now_ms)
        bands: Counter[str] = Counter()
        for proc in self.processors.values():
            bands.update(proc.bands)
        for band in Band:
            metrics.ACCOUNTS_BY_BAND.labels(band).set(bands[band])
        metrics.TRACKED_ACCOUNTS.set(sum(proc.tracked for proc in self.processors.values()))
        metrics.WAITING.set(sum(proc.waiting for proc in self.processors.values()))
        if self.users is not None:
            metrics.KNOWN_USERS.set(len(self.users))


def _records(fetched: Iterable[Any]) -> Iterator[Record]:
    for rec in fetched:
        headers = rec.headers.items() if isinstance(rec.headers, Mapping) else rec.headers or ()
        yield Record(rec.partition, rec.offset, rec.key, rec.value, tuple(headers))


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
