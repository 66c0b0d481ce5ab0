"""The worker's wiring: the Faust app, the account table, the handler, the checkpoint and the timers.

Nothing here decides anything: :class:`~streamer.worker.handler.BatchHandler` applies fetches and
ticks the clocks, :class:`~streamer.worker.checkpoint.Checkpoint` writes in the order that keeps
counts exact, and :mod:`streamer.worker.faust_compat` is the only place that knows Faust.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from streamer import gctuning
from streamer.core.policy import PolicySet
from streamer.core.users import UserDirectory
from streamer.kafka.partitioner import kafka_partitioner
from streamer.kafka.restore import restore_changelog
from streamer.worker.checkpoint import Checkpoint, OutputTopics
from streamer.worker.crashguard import CrashGuard
from streamer.worker.faust_compat import (
    FaustConsumerView,
    RocksChangelogSink,
    TableStore,
    WorkerApp,
    accounts_table,
    acker,
    batch_producer,
    before_recovery,
    make_app,
    persisted_offset_setter,
)
from streamer.worker.handler import BatchHandler
from streamer.worker.settings import WorkerSettings
from streamer.worker.users import UsersFeed

__all__ = ["create_app", "wall_ms"]

log = logging.getLogger("churnwatch.worker")


def wall_ms() -> int:
    """Wall time in epoch milliseconds: the worker's only clock reading, passed to the handler."""
    return int(time.time() * 1000)


def create_app(
    settings: WorkerSettings, policies: PolicySet, now_ms: Callable[[], int] = wall_ms
) -> WorkerApp:
    """Build the worker's Faust app for ``settings`` and the rules in ``policies``."""
    app = make_app(settings)
    table = accounts_table(app, settings)
    producer = batch_producer(app)

    def store_for(partition: int) -> TableStore:
        return TableStore(table, partition)

    topics = OutputTopics(
        events=settings.events_topic,
        dlq=settings.dlq_topic,
        alerts=settings.alerts_topic,
        health=settings.health_topic,
        changelog=table.changelog_topic_name,
        users=settings.users_topic_name,
    )
    checkpoint = Checkpoint(
        producer,
        acker(app),
        topics,
        store_for,
        persisted_offset_setter(table),
        users_partitions=settings.partitions,
    )
    users = UserDirectory(settings.max_users)
    feed = UsersFeed(settings.kafka_bootstrap, settings.users_topic_name, settings.partitions, users)
    handler = BatchHandler(
        settings,
        policies,
        checkpoint,
        store_for,
        FaustConsumerView(app, app.input_topics),
        producer,
        kafka_partitioner(settings.partitions),
        CrashGuard(settings.data_dir / f"{settings.app_id}-crashes"),
        now_ms,
        users=users,
    )
    app.handler = handler
    sink = RocksChangelogSink(table) if settings.bulk_restore and RocksChangelogSink.supports(table) else None

    async def prepare(partitions: list[int]) -> None:
        """Load the user directory (once); bring the owned partitions' stores up to their changelogs."""
        await feed.ready()
        if sink is None or not partitions:
            return
        try:
            await restore_changelog(settings.kafka_bootstrap, table.changelog_topic_name, partitions, sink)
        except Exception:  # Faust's own recovery still restores everything, only slower
            log.warning("bulk restore of the account table failed; Faust recovers it", exc_info=True)

    before_recovery(app, table, prepare)

    @app.timer(settings.tick_interval_ms / 1000)  # type: ignore[untyped-decorator]
    async def advance_idle_clocks() -> None:
        """Tick the clock of every owned partition that has caught up (wall mode); update the gauges."""
        await handler.tick_idle()

    @app.timer(30.0)  # type: ignore[untyped-decorator]
    async def return_freed_memory() -> None:
        """Hand memory freed by the allocator back to the system.

        Restoring a large changelog allocates and frees gigabytes of record values; glibc keeps the
        freed pages, so the worker's resident memory stayed at the peak of its recovery.
        """
        gctuning.return_freed_memory()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def announce_assigned(_app: Any, assigned: set[Any], **_kwargs: Any) -> None:
        owned = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        log.info("churnwatch worker ready: owns partitions %s of %s", owned, settings.events_topic)

    return app
