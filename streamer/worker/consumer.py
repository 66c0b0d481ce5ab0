"""A Faust consumer that hands each fetch of the worker's input topics over whole, not message by message.

Faust delivers every record through ``Consumer._drain_messages``: a ``Message`` object, a conductor
callback, a channel queue and a stream iteration each, and one ``wait_first`` (two tasks) per
message. Measured on the worker, that path capped it near 2,000 events/s whatever the processing
cost. For the topics in ``batch_topics`` this consumer skips all of it: the records of one fetch,
grouped by partition, go to ``on_batch`` in one call, and their offsets are acknowledged in Faust's
own bookkeeping (``ack_offsets``) once the caller has written what they caused, so Faust's periodic
commit (which flushes the producer first) commits them as usual. Every other topic (the table
changelogs during recovery) still goes through Faust's conductor message by message, but with one
``wait_first`` per fetch instead of one per message.

The drain loop keeps Faust's rules: it fetches only while the flow is active, drops records below
the partition's read offset (a seek moved it back), records offset gaps (compaction, transaction
markers) so commits can pass them, and stops on a generation change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

BatchHandler = Callable[[dict[TP, list[Any]]], Awaitable[None]]


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for ``batch_topics``."""

    batch_topics: frozenset[str] = frozenset()
    on_batch: BatchHandler | None = None

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
