"""Real worker processes for integration tests: started, signalled and stopped like in production."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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
