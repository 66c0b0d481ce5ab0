"""Create topics explicitly, with the partition count and configuration we mean.

Faust (and brokers with auto-creation on) would create topics with whatever defaults the broker has;
a changelog-backed table then fails with ``PartitionsMismatch`` when its source topic disagrees, and
a compacted topic created as a deleting one silently loses data. So every process creates its topics
here first, and an existing topic with the wrong partition count is reported, not ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

__all__ = ["TopicMismatchError", "TopicSpec", "ensure_topics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic and the configuration churnwatch relies on."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


class TopicMismatchError(RuntimeError):
    """An existing topic has a different partition count than the one configured."""


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], replication_factor: int, setting: str = "the configuration"
) -> None:
    """Create missing topics; verify the partition count of existing ones.

    Raises:
        TopicMismatchError: An existing topic has another partition count than its spec; the message
            names ``setting``, where the count comes from.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
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
                            replication_factor=replication_factor,
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
            expected = ", ".join(f"{s.name} {s.partitions}" for s in specs)
            raise TopicMismatchError(
                f"existing topics disagree with the partition counts of {setting} ({expected}): "
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
