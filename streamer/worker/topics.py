"""The worker's topics, co-partitioned with its input (created by :mod:`streamer.kafka.topics`)."""

from __future__ import annotations

import asyncio
import logging

from streamer.kafka.topics import TopicSpec
from streamer.kafka.topics import ensure_topics as ensure_kafka_topics
from streamer.worker.settings import WorkerSettings

__all__ = ["ensure_topics", "topic_specs"]

DAY_MS = 86_400_000


def topic_specs(settings: WorkerSettings) -> list[TopicSpec]:
    """All topics the worker reads or writes, co-partitioned with the input."""
    n = settings.partitions
    return [
        TopicSpec(settings.events_topic, n),
        TopicSpec(settings.dlq_topic, n, {"retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.alerts_topic, n, {"retention.ms": str(90 * DAY_MS)}),
        # The latest snapshot per account is all a reader needs: compaction keeps exactly that.
        TopicSpec(settings.health_topic, n, {"cleanup.policy": "compact", "segment.ms": str(3_600_000)}),
        # Ticks only matter for a few seconds; an hour of them is plenty for a restart to catch up.
        TopicSpec(settings.clock_topic, n, {"retention.ms": str(3_600_000)}),
        # user → account: the latest link of each user is all a worker loads.
        TopicSpec(settings.users_topic_name, n, {"cleanup.policy": "compact"}),
    ]


async def ensure_topics(settings: WorkerSettings, specs: list[TopicSpec] | None = None) -> None:
    """Create the worker's missing topics; verify the partition count of existing ones."""
    await ensure_kafka_topics(
        settings.kafka_bootstrap,
        specs if specs is not None else topic_specs(settings),
        settings.replication_factor,
        "CHURNWATCH_PARTITIONS",
    )


def main() -> None:
    """Create the topics named by the environment's settings."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(ensure_topics(WorkerSettings()))


if __name__ == "__main__":
    main()
