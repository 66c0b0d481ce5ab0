"""Worker throughput against the raw aiokafka ceiling, measured in the same run on the same topic.

    .venv/bin/python -m bench.worker_throughput [--events N] [--accounts N] [--partitions N]

Fills a fresh topic, then (1) reads and parses it with a bare aiokafka consumer (the Python ceiling
on this machine) and (2) runs the real worker (`python -m streamer`, RocksDB store) over it, timing
from its first to its last processed record via its metrics endpoint. Needs the local broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP") or "127.0.0.1:9092"


async def fill(topic: str, partitions: int, n: int, accounts: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    rng = random.Random(1)
    start = int(time.time() * 1000) - 20 * 86_400_000
    futures = []
    for i in range(n):
        account = f"acct-{rng.randrange(accounts)}"
        value = orjson.dumps(
            {
                "event_id": f"e{i}",
                "account_id": account,
                "event": rng.choice(["login", "report_viewed", "export", "invite_sent"]),
                "timestamp": start + i * (20 * 86_400_000 // n),
                "user_id": f"u{rng.randrange(30)}",
            }
        )
        futures.append(await producer.send(topic, value, key=account.encode()))
        if len(futures) >= 20_000:
            await asyncio.gather(*futures)
            futures = []
    await asyncio.gather(*futures)
    await producer.stop()


async def raw_parse(topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    seen = 0
    started = 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not started and batch:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)
                seen += sum(len(r) for r in batch.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


def processed(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("churnwatch_events_total{")
    )


def run_worker(topic: str, partitions: int, n: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = topic.removesuffix("-events")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env |= {
        "CHURNWATCH_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "CHURNWATCH_APP_ID": prefix,
        "CHURNWATCH_EVENTS_TOPIC": topic,
        "CHURNWATCH_ALERTS_TOPIC": f"{prefix}-alerts",
        "CHURNWATCH_HEALTH_TOPIC": f"{prefix}-health",
        "CHURNWATCH_DLQ_TOPIC": f"{prefix}-dlq",
        "CHURNWATCH_CLOCK_TOPIC": f"{prefix}-clock",
        "CHURNWATCH_PARTITIONS": str(partitions),
        "CHURNWATCH_DATA_DIR": tempfile.mkdtemp(prefix="cw-bench-"),
        "CHURNWATCH_METRICS_PORT": str(port),
        "CHURNWATCH_LOG_LEVEL": "WARNING",
    }
    log = Path(env["CHURNWATCH_DATA_DIR"]) / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamer"], cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        first = last = 0.0
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            done = processed(port)
            now = time.perf_counter()
            if done and not first:
                first = now
            if done >= n:
                last = now
                break
            time.sleep(0.2)
        if not last:
            raise SystemExit(f"worker processed {processed(port):.0f} of {n}; log: {log}")
        return n / (last - first)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    topic = f"bench-{uuid.uuid4().hex[:8]}-events"
    asyncio.run(fill(topic, args.partitions, args.events, args.accounts))
    raw = asyncio.run(raw_parse(topic, args.events))
    worker = run_worker(topic, args.partitions, args.events)
    print(f"events {args.events:,} accounts {args.accounts:,} partitions {args.partitions}")
    print(f"raw aiokafka read+parse: {raw:,.0f} events/s")
    print(f"worker:                  {worker:,.0f} events/s ({worker / raw:.3f}x raw)")


if __name__ == "__main__":
    main()
