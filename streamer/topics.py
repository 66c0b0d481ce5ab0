"""Create churnwatch's topics explicitly, with the partition count we mean.

Faust would auto-create topics with whatever defaults the broker has; a changelog-backed table then
fails with ``PartitionsMismatch`` when its source topic disagrees. So every topic is created here
first, co-partitioned, and an existing topic with the wrong partition count is reported, not ignored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.settings import WorkerSettings

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    """A topic and the configuration churnwatch relies on."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


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
    ]


class TopicMismatchError(RuntimeError):
    """An existing topic has a different partition count than the one configured."""


async def ensure_topics(settings: WorkerSettings, specs: list[TopicSpec] | None = None) -> None:
    """Create missing topics; verify the partition count of existing ones."""
    specs = specs if specs is not None else topic_specs(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        # Describing a missing topic is a metadata request, which a broker with auto-creation on
        # answers by creating it with its default partition count: only describe what exists.
        names = set(await admin.list_topics())
        known = [s.name for s in specs if s.name in names]
        existing = await admin.describe_topics(known) if known else []
        partitions = {
            t["topic"]: len(t["partitions"])
            for t in existing
            if t.get("error_code", 0) == 0 and t["partitions"]
        }
        missing = [s for s in specs if s.name not in partitions]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            s.name,
                            num_partitions=s.partitions,
                            replication_factor=settings.replication_factor,
                            topic_configs=s.config,
                        )
                        for s in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another worker raced us to it; the check below still applies
            for s in missing:
                log.info("created topic %s with %d partitions", s.name, s.partitions)
            partitions = await _wait_for_leaders(admin, [s.name for s in specs])
        wrong = [
            f"{s.name} has {partitions[s.name]}"
            for s in specs
            if partitions.get(s.name, s.partitions) != s.partitions
        ]
        if wrong:
            raise TopicMismatchError(
                f"topics must have {settings.partitions} partitions (CHURNWATCH_PARTITIONS): "
                + ", ".join(wrong)
            )
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30
) -> dict[str, int]:
    # Right after creation, metadata can list a topic before every partition has a leader; a consumer
    # that snapshots it then sees fewer partitions, and Faust reports a false PartitionsMismatch.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        ready = {
            t["topic"]: len(t["partitions"])
            for t in described
            if t.get("error_code", 0) == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
        }
        if len(ready) == len(names) or loop.time() > deadline:
            return ready
        await asyncio.sleep(0.2)


def main() -> None:
    """Create the topics named by the environment's settings."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(ensure_topics(WorkerSettings()))


if __name__ == "__main__":
    main()
