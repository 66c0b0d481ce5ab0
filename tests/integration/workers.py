"""Real worker and API processes for integration tests: started, signalled and stopped like in production."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.auth import hash_key

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port P such that P and P + 1 were both free a moment ago (a broker and its controller)."""
    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@dataclass
class Worker:
    """One ``python -m streamer`` process."""

    name: str
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        """Start the process (again) with the same settings and state directory."""
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamer", cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        log.close()

    def log_text(self) -> str:
        """The worker's log so far."""
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, needle: str, timeout_s: float = 90.0, after_start: bool = True) -> None:
        """Wait until the log (since the latest start) contains ``needle``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_text()
            if after_start:
                text = text.rsplit(f"===== start {self.starts} =====", 1)[-1]
            if needle in text:
                return
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"worker {self.name} exited ({self.proc.returncode}):\n{text[-4000:]}")
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"worker {self.name}: no {needle!r} within {timeout_s}s:\n{self.log_text()[-4000:]}"
        )

    async def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Wait until the worker owns partitions and runs its agents."""
        await self.wait_for_log("churnwatch worker ready", timeout_s)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL when it does not stop in time."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()


@dataclass
class WorkerFactory:
    """Creates workers that share one test's topics and consumer group."""

    bootstrap: str
    tmp_path: Path
    workers: list[Worker] = field(default_factory=list)

    def create(self, topics: dict[str, str], partitions: int, group: str, **settings: str) -> Worker:
        """A worker (not yet started) on the given topics; extra settings are CHURNWATCH_* values."""
        name = f"w{len(self.workers)}"
        data_dir = self.tmp_path / name
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")},
            "CHURNWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "CHURNWATCH_APP_ID": group,
            "CHURNWATCH_EVENTS_TOPIC": topics["events"],
            "CHURNWATCH_ALERTS_TOPIC": topics["alerts"],
            "CHURNWATCH_HEALTH_TOPIC": topics["health"],
            "CHURNWATCH_DLQ_TOPIC": topics["dlq"],
            "CHURNWATCH_CLOCK_TOPIC": topics["clock"],
            "CHURNWATCH_PARTITIONS": str(partitions),
            "CHURNWATCH_STORE": "rocksdb://",
            "CHURNWATCH_DATA_DIR": str(data_dir),
            "CHURNWATCH_METRICS_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"CHURNWATCH_{k.upper()}": v for k, v in settings.items()})
        worker = Worker(name, env, self.tmp_path / f"{name}.log")
        self.workers.append(worker)
        return worker

    async def ready(self, topics: dict[str, str], partitions: int, group: str, **settings: str) -> Worker:
        """A worker as :meth:`create` makes it, started and ready (it owns its partitions)."""
        worker = self.create(topics, partitions, group, **settings)
        await worker.start()
        await worker.wait_ready()
        return worker

    async def stop_all(self) -> None:
        """Stop every worker of this test."""
        await asyncio.gather(*(w.stop() for w in self.workers))


@dataclass
class ApiProcess:
    """``python -m api`` on a free port, the way ``make demo`` runs it: settings from the environment.

    ``keys`` maps each plain API key to its name and scopes; the process gets their hashes.
    """

    bootstrap: str
    topics: dict[str, str]
    keys: dict[str, dict[str, Any]]
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
            CHURNWATCH_API_KEYS=json.dumps({hash_key(k): v for k, v in self.keys.items()}),
            PYTHONUNBUFFERED="1",
        )
        # Its own read store next to its log, unless the test names one.
        env["CHURNWATCH_STORE_URL"] = f"sqlite:///{self.log_path.with_suffix('.db')}"
        env.update({f"CHURNWATCH_{k.upper()}": v for k, v in self.settings.items()})
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api", "--port", str(self.port), cwd=REPO, env=env, stdout=log, stderr=log
        )
        log.close()

    def status(self, path: str, key: str | None = None, timeout_s: float = 2.0) -> int:
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
