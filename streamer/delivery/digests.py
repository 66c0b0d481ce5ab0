"""The daily digest adapter: follow ``account-health``; once a day, hand each owner's digest to the senders.

The content is :mod:`streamer.delivery.digest`'s; this module reads, asks what is due and writes.
Exactly once per owner, destination and local date, across restarts:

1. Every digest has a deterministic id (``digest:<date>:owner:<owner>``), which is its
   ``webhook-id`` and its ledger key part. A digest already in the ledger is not sent again; one not
   in it (a crash before sending) is composed and sent after the restart.
2. The digests go through the destinations' senders like alerts: the same backoff, ``Retry-After``,
   410 handling, DLQ and ledger record (acks=all) after the 2xx.
3. Only once every digest of the day is finished (delivered, dead-lettered or snoozed) are the
   accounts' new baselines written to the ledger topic, so a crash before that composes the same
   "got worse" again after the restart.

Only the process that owns partition 0 of the alert topic (in the delivery group) sends digests,
so several delivery replicas send one digest, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import orjson
from aiokafka import TopicPartition

from streamer.delivery import metrics
from streamer.delivery.digest import (
    BASELINE_PREFIX,
    Baseline,
    DigestBook,
    Schedule,
    compose,
    digest_date,
    digest_document,
    digest_targets,
    for_destination,
)
from streamer.delivery.ports import LedgerReader, Record
from streamer.delivery.slack import digest_slack_message

if TYPE_CHECKING:
    from streamer.delivery.service import DeliveryService

__all__ = ["DigestRunner", "HealthPartitions", "schedule_of"]

log = logging.getLogger("churnwatch.delivery")

HealthPartitions = Callable[[], Awaitable[int]]
"""Returns the partition count of the health topic (waiting until it exists)."""


def schedule_of(service: DeliveryService) -> Schedule:
    """The digest schedule from the delivery settings."""
    s = service.settings
    return Schedule(
        hour=s.digest_hour,
        zone=ZoneInfo(s.digest_time_zone),
        renewal_days=s.digest_renewal_days,
        min_score_drop=s.digest_min_score_drop,
    )


class DigestRunner:
    """Reads the health topic into a :class:`DigestBook` and sends each day's digests once."""

    def __init__(
        self,
        service: DeliveryService,
        reader: LedgerReader,
        partitions: HealthPartitions,
        clock: Callable[[], datetime],
    ) -> None:
        """Wire the runner; :meth:`run` starts the reader, the service stops it.

        Args:
            service: The delivery service whose senders, ledger and producer it uses.
            reader: A group-less consumer for the health topic.
            partitions: The health topic's partition count.
            clock: The current time (timezone-aware).
        """
        self.service = service
        self.reader = reader
        self.partitions = partitions
        self.clock = clock
        self.schedule = schedule_of(service)
        self.book = DigestBook(max_accounts=service.settings.digest_max_accounts)
        self.done: date | None = None
        self.started = False

    def apply_baseline(self, key: bytes, value: bytes | None) -> None:
        """Apply a ``baseline:<account>`` record of the ledger topic."""
        account_id = key.decode()[len(BASELINE_PREFIX) :]
        baseline = None
        if value is not None:
            try:
                baseline = Baseline.from_json(orjson.loads(value))
            except orjson.JSONDecodeError:
                baseline = None
        self.book.apply_baseline(account_id, baseline)

    def _apply(self, records: list[Record]) -> None:
        for rec in records:
            if rec.key is not None:
                self.book.apply_snapshot(rec.key.decode(errors="replace"), rec.value)

    async def load(self) -> bool:
        """Read the health topic to its end (the reader then follows it); False when stopped first."""
        topic = self.service.settings.health_topic
        # The topic may not exist yet (the worker creates it): a stop must not wait for it.
        counting = asyncio.ensure_future(self.partitions())
        stopping = asyncio.ensure_future(self.service.stopping.wait())
        await asyncio.wait({counting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not counting.done():
            counting.cancel()
            return False
        tps = [TopicPartition(topic, p) for p in range(counting.result())]
        reader = self.reader
        await reader.start()
        self.started = True
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        while any([await reader.position(tp) < end[tp] for tp in tps]):
            for records in (await reader.getmany(*tps, timeout_ms=500)).values():
                self._apply(list(records))
        self._report()
        return True

    def _report(self) -> None:
        book = self.book
        metrics.DIGEST_ACCOUNTS.set(len(book.views))
        metrics.DIGEST_UNTRACKED.set(book.untracked)
        log.info(
            "digest: %d accounts, %d baselines (%d not tracked past the bound, %d invalid snapshots)",
            len(book.views),
            len(book.baselines),
            book.untracked,
            book.invalid,
        )

    def _leads(self) -> bool:
        return any(tp.partition == 0 for tp in self.service.consumer.assignment())

    async def run(self) -> None:
        """Follow the health topic; whenever a day's digests are due and not done, send them."""
        svc = self.service
        if not await self.load():
            return
        while not svc.stopping.is_set():
            for records in (await self.reader.getmany(timeout_ms=200)).values():
                self._apply(list(records))
            day = digest_date(self.clock(), self.schedule)
            if day is not None and day != self.done and self._leads():
                await self.send_day(day)

    async def send_day(self, day: date) -> None:
        """Compose the day's digests, queue those not yet finished, wait for them, then roll baselines."""
        svc, now = self.service, self.clock()
        now_ms = round(now.timestamp() * 1000)
        pending: list[tuple[str, str]] = []
        counts = {"queued": 0, "already": 0, "snoozed": 0, "empty": 0}
        for digest in compose(self.book, day, now, self.schedule):
            for target in digest_targets(svc.config, digest, now_ms):
                name = target.destination
                if target.snoozed:
                    counts["snoozed"] += 1
                    metrics.DIGESTS.labels(name, "snoozed").inc()
                    continue
                if svc.ledger.finished(name, digest.digest_id):
                    counts["already"] += 1
                    continue
                shown = for_destination(svc.config, digest, name, now_ms)
                if shown.empty:
                    counts["empty"] += 1
                    metrics.DIGESTS.labels(name, "empty").inc()
                    continue
                doc = digest_document(shown, svc.settings.digest_max_items)
                sender = svc.senders[name]
                slack = (
                    digest_slack_message(doc, svc.settings.public_url)
                    if sender.dest.type == "slack"
                    else None
                )
                svc.queue_digest(name, digest.owner or "", digest.digest_id, orjson.dumps(doc), slack, now_ms)
                pending.append((name, digest.digest_id))
                counts["queued"] += 1
                metrics.DIGESTS.labels(name, "queued").inc()
        log.info(
            "daily digest %s: %d queued, %d sent before, %d snoozed, %d with nothing to say",
            day,
            counts["queued"],
            counts["already"],
            counts["snoozed"],
            counts["empty"],
        )
        while pending and not svc.stopping.is_set():
            pending = [(n, i) for n, i in pending if not svc.ledger.finished(n, i)]
            if pending:
                await asyncio.sleep(0.1)
        if pending:
            return  # stopping: the next run sends the rest, and rolls the baselines after them
        # Sent together and acknowledged together: a first digest writes one record per account.
        topic, at_ms = svc.settings.delivery_ledger_topic, svc.now_ms()
        acks = [
            await svc.producer.send(
                topic, key=(BASELINE_PREFIX + account_id).encode(), value=orjson.dumps(b.to_json(at_ms))
            )
            for account_id, b in self.book.roll(day)
        ]
        await asyncio.gather(*acks)
        self._report()
        self.done = day
        log.info("daily digest %s finished", day)
