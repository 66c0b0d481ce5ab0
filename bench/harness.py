"""What the benchmarks share: fresh topics, producing and reading them, worker and API processes to
measure, and a throw-away PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from streamer.worker.settings import WorkerSettings
from streamer.worker.topics import ensure_topics

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = (
    os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
)
POSTGRES_SH = REPO / "deploy" / "postgres" / "postgres.sh"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a process still running and wait for it (SIGKILL after 60 s)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Stack:
    """One benchmark's own topics (a fresh prefix) and the worker settings that name them."""

    def __init__(self, partitions: int = 8, name: str = "bench") -> None:
        self.prefix = f"{name}-{uuid.uuid4().hex[:8]}"
        self.partitions = partitions
        self.topics = {
            "events": f"{self.prefix}-events",
            "alerts": f"{self.prefix}-alerts",
            "health": f"{self.prefix}-health",
            "dlq": f"{self.prefix}-dlq",
            "clock": f"{self.prefix}-clock",
        }

    def env(self) -> dict[str, str]:
        """``CHURNWATCH_*`` variables naming this stack's topics."""
        return {
            "CHURNWATCH_KAFKA_BOOTSTRAP": BOOTSTRAP,
            "CHURNWATCH_APP_ID": self.prefix,
            "CHURNWATCH_EVENTS_TOPIC": self.topics["events"],
            "CHURNWATCH_ALERTS_TOPIC": self.topics["alerts"],
            "CHURNWATCH_HEALTH_TOPIC": self.topics["health"],
            "CHURNWATCH_DLQ_TOPIC": self.topics["dlq"],
            "CHURNWATCH_CLOCK_TOPIC": self.topics["clock"],
            "CHURNWATCH_PARTITIONS": str(self.partitions),
        }

    @property
    def changelog(self) -> str:
        """The account table's changelog topic (Faust names it after the app id)."""
        return f"{self.prefix}-accounts-changelog"

    async def create(self) -> None:
        """Create the stack's topics as the worker expects them."""
        settings = WorkerSettings(
            kafka_bootstrap=BOOTSTRAP,
            app_id=self.prefix,
            events_topic=self.topics["events"],
            alerts_topic=self.topics["alerts"],
            health_topic=self.topics["health"],
            dlq_topic=self.topics["dlq"],
            clock_topic=self.topics["clock"],
            partitions=self.partitions,
        )
        await ensure_topics(settings)

    async def delete(self) -> None:
        """Delete every topic of the stack (best effort: a benchmark leaves no gigabytes behind)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            mine = [t for t in existing if t.startswith(self.prefix)]
            if mine:
                await admin.delete_topics(mine)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the figures
            print(f"  (could not delete topics of {self.prefix}: {exc})", file=sys.stderr)  # noqa: T201
        finally:
            await admin.close()


async def produce(
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partition_for: Any = None,
    max_batch_bytes: int = 1024 * 1024,
) -> int:
    """Produce ``records`` (key, value) as fast as the producer takes them; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        linger_ms=20,
        max_batch_size=max_batch_bytes,
        max_request_size=8 * 1024 * 1024,
        acks=1,
    )
    await producer.start()
    sent = 0
    pending = []
    try:
        for key, value in records:
            partition = partition_for(key.decode()) if partition_for is not None and key else None
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{label="value",...}': value}, parsed by prometheus_client."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


class WorkerProcess:
    """A real ``python -m streamer`` process on a stack's topics, watched through its metrics endpoint."""

    profiled = 0  # workers started under py-spy so far (BENCH_PROFILE)

    def __init__(self, stack: Stack, env: dict[str, str] | None = None, data_dir: Path | None = None) -> None:
        self.stack = stack
        self.port = free_port()
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="cw-bench-"))
        self.extra = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        """Start the process; its output goes to ``worker.log`` in its data dir."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
        env |= self.stack.env() | {
            "CHURNWATCH_DATA_DIR": str(self.data_dir),
            "CHURNWATCH_METRICS_PORT": str(self.port),
            "CHURNWATCH_LOG_LEVEL": "WARNING",
        }
        env |= self.extra
        self.log = self.data_dir / "worker.log"
        self.started_at = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "streamer"], cwd=REPO, env=env, stdout=out, stderr=out
            )
        if os.environ.get("BENCH_PROFILE"):
            # py-spy samples the worker for BENCH_PROFILE_SECONDS into BENCH_PROFILE (collapsed stacks),
            # one file per start of a worker: BENCH_PROFILE.1, .2, ...
            WorkerProcess.profiled += 1
            seconds = os.environ.get("BENCH_PROFILE_SECONDS", "30")
            spy = ["py-spy", "record", "--pid", str(self.proc.pid), "--duration", seconds, "--format", "raw"]
            dest = f"{os.environ['BENCH_PROFILE']}.{WorkerProcess.profiled}"
            subprocess.Popen([*spy, "-o", dest], stdout=subprocess.DEVNULL)  # noqa: S603

    def metrics(self) -> dict[str, float]:
        """The worker's current metrics, or {} while its endpoint does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                return parse_metrics(resp.read().decode())
        except OSError:
            return {}

    def processed(self) -> float:
        """Input records handled so far, whatever their outcome."""
        return sum(v for k, v in self.metrics().items() if k.startswith("churnwatch_events_total{"))

    def lag(self) -> float | None:
        """Total consumer lag over the owned input partitions, or None before any is known."""
        lags = [v for k, v in self.metrics().items() if k.startswith("churnwatch_consumer_lag{")]
        return sum(lags) if lags else None

    def rss_bytes(self) -> int:
        """Resident memory of the worker process."""
        if self.proc is None:
            raise RuntimeError("worker not started")
        return rss_bytes(self.proc.pid)

    def check_alive(self) -> None:
        """Fail with the log's tail if the worker exited."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {self.proc.returncode}; log tail:\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then wait (a clean shutdown commits and closes the store)."""
        terminate(self.proc)


class ApiProcess:
    """A real ``python -m api`` process on a stack's topics and a read store, with one key that may
    do everything (``key``, sent as ``Authorization: Bearer``) and no rate limit to speak of."""

    def __init__(
        self, stack: Stack, store_url: str, data_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        from api.auth import hash_key

        self.stack = stack
        self.store_url = store_url
        self.data_dir = data_dir
        self.key = uuid.uuid4().hex
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        scopes = ["health:read", "events:write", "alerts:read"]
        self.extra = {
            "CHURNWATCH_API_KEYS": json.dumps({hash_key(self.key): {"name": "bench", "scopes": scopes}}),
            "CHURNWATCH_RATE_LIMIT_PER_S": "1000000",
            "CHURNWATCH_RATE_LIMIT_BURST": "1000000",
        } | (env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.log = data_dir / "api.log"

    @property
    def headers(self) -> dict[str, str]:
        """The key's header."""
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> None:
        """Start the process; its output goes to ``api.log`` in its data dir."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
        env |= self.stack.env() | {"CHURNWATCH_STORE_URL": self.store_url} | self.extra
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "api", "--port", str(self.port)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=out,
            )

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from the process's start until ``/readyz`` answers 200 (the read store caught up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return time.monotonic() - self.started_at
            except OSError:  # refused while starting, 503 (HTTPError) while loading
                pass
            time.sleep(0.1)
        raise RuntimeError(f"API not ready within {timeout_s:.0f}s; log tail:\n{self.tail()}")

    def rss_bytes(self) -> int:
        """Resident memory of the API process."""
        if self.proc is None:
            raise RuntimeError("API not started")
        return rss_bytes(self.proc.pid)

    def tail(self) -> str:
        """The end of the process's log."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def check_alive(self) -> None:
        """Fail with the log's tail if the process exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"API exited with {self.proc.returncode}; log tail:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, then wait (uvicorn finishes its requests and the store closes)."""
        terminate(self.proc)


class PostgresServer:
    """A throw-away PostgreSQL server (``deploy/postgres/postgres.sh``) in a temporary directory on a
    free port of 127.0.0.1: superuser ``churnwatch``, trust authentication, no durability."""

    USER = "churnwatch"

    def __init__(self) -> None:
        # Under root the server runs as a user of its own, which must reach the directory: one made
        # under the system temp directory is reachable.
        self.dir = Path(tempfile.mkdtemp(prefix="cw-bench-pg-"))
        self.port = free_port()

    def _run(self, *args: str) -> None:
        result = subprocess.run(  # noqa: S603
            [str(POSTGRES_SH), *args], capture_output=True, text=True, timeout=180, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"postgres.sh {' '.join(args)}: {result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start the server (installing Debian's package first if needed and allowed)."""
        try:
            self._run("start", str(self.dir), str(self.port))
        except BaseException:
            self.stop()
            raise

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str) -> str:
        """Create an empty database called ``name``; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop the database ``name``, closing the connections still open to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server and remove its directory (best effort: fine when it is down)."""
        subprocess.run([str(POSTGRES_SH), "stop", str(self.dir)], capture_output=True, check=False)  # noqa: S603
        shutil.rmtree(self.dir, ignore_errors=True)
