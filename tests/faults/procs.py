"""Processes the fault tests start and kill: Kafka nodes of their own, and the API."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from api.auth import hash_key
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


def api_keys() -> str:
    import json

    return json.dumps(
        {
            hash_key(API_KEY): {"name": "admin", "scopes": ["events:write", "health:read", "alerts:read"]},
            hash_key(READ_KEY): {"name": "reader", "scopes": ["health:read"]},
            hash_key(INGEST_KEY): {"name": "ingest", "scopes": ["events:write"]},
        }
    )


@dataclass
class ApiProcess:
    """``python -m api`` on a free port."""

    bootstrap: str
    topics: dict[str, str]
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
        env.update(
            CHURNWATCH_KAFKA_BOOTSTRAP=self.bootstrap,
            CHURNWATCH_EVENTS_TOPIC=self.topics["events"],
            CHURNWATCH_ALERTS_TOPIC=self.topics["alerts"],
            CHURNWATCH_HEALTH_TOPIC=self.topics["health"],
            CHURNWATCH_API_KEYS=api_keys(),
            CHURNWATCH_API_PORT=str(self.port),
            PYTHONUNBUFFERED="1",
        )
        env.update({f"CHURNWATCH_{k.upper()}": v for k, v in self.settings.items()})
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api", cwd=REPO, env=env, stdout=log, stderr=log
        )
        log.close()

    def status(self, path: str, key: str | None = API_KEY, timeout_s: float = 2.0) -> int:
        """The status code of a GET (0 when nothing answers)."""
        req = urllib.request.Request(self.url + path, headers={"X-API-Key": key} if key else {})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"API exited:\n{self.log_path.read_text()[-3000:]}")
            if await asyncio.to_thread(self.status, "/readyz", None) == 200:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"API not ready within {timeout_s}s:\n{self.log_path.read_text()[-3000:]}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
