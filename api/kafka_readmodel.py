"""A read model loaded from Kafka and kept current.

No consumer group is used: every partition of both topics is assigned explicitly and read from
the beginning, so any number of API replicas can run side by side, each with the whole picture.
``ready`` turns True once every partition reached the end offset seen at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from api.query import AccountFilters, AccountSort
from api.readmodel import Doc, InMemoryReadModel, Page
from api.restrictions import AccountScope
from api.settings import ApiSettings
from streamer.wire.documents import AlertDocument, SnapshotDocument

log = logging.getLogger("churnwatch.api.readmodel")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("read model stopped loading", exc_info=task.exception())


class KafkaReadModel:
    """Feeds an :class:`InMemoryReadModel` from ``account-health`` and ``churn-alerts``."""

    def __init__(self, settings: ApiSettings) -> None:
        """Prepare (but do not start) loading the topics named in ``settings``."""
        self._settings = settings
        self._memory = InMemoryReadModel(settings.alert_buffer, ready=False)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_ends: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._caught_up = False

    @property
    def ready(self) -> bool:  # see ReadModel
        return self._caught_up

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
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
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

    async def _partitions(self) -> list[TopicPartition]:
        topics = [self._settings.health_topic, self._settings.alerts_topic]
        admin = AIOKafkaAdminClient(bootstrap_servers=self._settings.kafka_bootstrap)
        await admin.start()
        try:
            while True:
                names = await admin.list_topics()
                missing = [t for t in topics if t not in names]
                if not missing:
                    described = await admin.describe_topics(topics)
                    return [
                        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
                    ]
                log.info("waiting for topics %s to exist", missing)
                await asyncio.sleep(1.0)
        finally:
            await admin.close()

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        tps = await self._partitions()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._start_ends = await consumer.end_offsets(tps)
        self._positions = {tp: await consumer.position(tp) for tp in tps}
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    self._apply(tp.topic, rec.key, rec.value)
                self._positions[tp] = records[-1].offset + 1 if records else self._positions[tp]
            if not self._caught_up:
                # position() also moves past transaction markers, which never arrive as records.
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= end for tp, end in self._start_ends.items()):
                    self._caught_up = True
                    log.info("read model caught up (%d partitions)", len(tps))

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        try:
            # Documents are held to the contract the API answers with (streamer.wire.documents) as they
            # arrive: one that is not cannot make a route fail later, for this account or for the feed.
            if topic == self._settings.health_topic:
                if key is not None:
                    snapshot = None if value is None else orjson.loads(value)
                    if snapshot is not None:
                        SnapshotDocument.model_validate(snapshot)
                    self._memory.apply_health(key.decode(), snapshot)
            elif value is not None:
                doc = orjson.loads(value)
                AlertDocument.model_validate(doc)
                self._memory.apply_alert(doc)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            # One bad record must not stop the API from serving everything else.
            log.warning("skipping undecodable record on %s", topic)
        except ValidationError as err:
            first = err.errors()[0]
            log.warning(
                "skipping a record on %s that is not a churnwatch document (%s: %s)",
                topic,
                ".".join(map(str, first["loc"])),
                first["msg"],
            )

    def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:  # see ReadModel
        return self._memory.get_account(account_id, scope=scope)

    def list_accounts(  # see ReadModel
        self,
        filters: AccountFilters,
        sort: AccountSort,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        return self._memory.list_accounts(filters, sort, cursor, limit, scope=scope)

    def portfolio(self, now: datetime, *, scope: AccountScope) -> Doc:  # see ReadModel
        return self._memory.portfolio(now, scope=scope)

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
        return self._memory.alerts(since, kind, account, cursor, limit, scope=scope)

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[dict[str, Any], None]:  # see ReadModel
        return self._memory.subscribe(scope=scope)
