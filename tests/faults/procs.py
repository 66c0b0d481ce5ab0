"""Processes the fault tests start and kill: Kafka nodes of their own, and the API."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.workers import REPO, free_port

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def cluster_id() -> str:
    """A KRaft cluster id (16 random bytes, URL-safe base64 without padding).

    Like Kafka's own ``random-uuid``, never one that begins with "-": command-line parsers take
    such a value for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass
class KafkaNode:
    """One KRaft node (broker + controller) run by ``deploy/kafka/kafka.sh`` with its own data dir."""

    home: Path
    node_id: int = 1
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    quorum: str = ""
    cluster: str = field(default_factory=cluster_id)
    replication: int = 1
    min_isr: int = 1

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
        env.update(
            KAFKA_HOME=str(self.home),
            KAFKA_LIBS=str(REPO / ".local" / "kafka" / "libs"),
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            KAFKA_NODE_ID=str(self.node_id),
            KAFKA_QUORUM=self.quorum or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            KAFKA_CLUSTER_ID=self.cluster,
            KAFKA_REPLICATION=str(self.replication),
            KAFKA_MIN_ISR=str(self.min_isr),
            KAFKA_HEAP="384m",
        )
        return env

    async def _run(self, command: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            str(KAFKA_SH),
            command,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise AssertionError(f"kafka.sh {command} (node {self.node_id}) failed:\n{out.decode()[-3000:]}")

    async def start(self) -> None:
        await self._run("start")

    async def stop(self) -> None:
        """SIGTERM: a clean broker shutdown, data dir kept."""
        await self._run("stop")

    def kill(self) -> None:
        """SIGKILL the node's JVM."""
        pidfile = self.home / f"broker-{self.port}.pid"
        os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        pidfile.unlink()


async def start_cluster(nodes: list[KafkaNode]) -> None:
    """Start every node together; when one fails, stop the others before raising its error."""
    results = await asyncio.gather(*(n.start() for n in nodes), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        raise failed[0]


def three_node_cluster(base: Path) -> list[KafkaNode]:
    """Three nodes of one cluster: replication factor 3, min.insync.replicas 2."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    quorum = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
    cid = cluster_id()
    return [
        KafkaNode(base / f"node{i + 1}", i + 1, p, c, quorum, cid, replication=3, min_isr=2)
        for i, (p, c) in enumerate(ports)
    ]


API_KEY = "faults-admin-key"
READ_KEY = "faults-read-key"
INGEST_KEY = "faults-ingest-key"
# The API keys the fault tests run ``python -m api`` with (plain key -> name and scopes).
KEYS: dict[str, dict[str, Any]] = {
    API_KEY: {"name": "admin", "scopes": ["events:write", "health:read", "alerts:read"]},
    READ_KEY: {"name": "reader", "scopes": ["health:read"]},
    INGEST_KEY: {"name": "ingest", "scopes": ["events:write"]},
}
