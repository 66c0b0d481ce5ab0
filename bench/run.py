"""``make bench``: churnwatch's figures on this machine, each measured beside its comparison.

    .venv/bin/python -m bench.run [--only SECTION ...] [--quick] [--out FILE]

Sections (every key they write is documented in bench/README.md):

* ``throughput``  the worker, a raw aiokafka consumer and a naive Faust agent on the same topic
* ``latency``     event → health under a steady load; quiet deadline → alert with many accounts
* ``state``       worker memory per tracked account and restart time, with seeded account states
* ``api``         health lookups at a paced 1,000 req/s (wrk) and batch ingest (wrk)
* ``read_side``   the API's read store, SQLite and PostgreSQL: fill, restart, memory, lookups, lists

Needs the local broker (``make kafka-up``) or CHURNWATCH_KAFKA_BOOTSTRAP; the Makefile target
starts and stops it. Results go to bench/results/latest.json after every section, so an interrupted
run keeps what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import workload
from bench.harness import (
    BOOTSTRAP,
    REPO,
    ApiProcess,
    PostgresServer,
    Stack,
    WorkerProcess,
    produce,
    quantile,
    terminate,
)
from streamer.core.policy import DAY_MS
from streamer.kafka.partitioner import kafka_partitioner

if TYPE_CHECKING:
    import httpx

RESULTS = REPO / "bench" / "results" / "latest.json"
TARGETS = {
    "throughput.worker_events_per_s": (">=", 100_000),
    "throughput.worker_vs_raw": (">=", 0.5),
    "latency.event_to_health_p99_ms_20k": ("<=", 1000),
    "latency.event_to_health_p99_ms_2k": ("<=", 300),
    "latency.deadline_to_alert_p99_ms": ("<=", 1000),
    "state.rss_per_account_bytes_100k": ("<=", 1024),
    "state.rss_per_account_bytes_1m": ("<=", 1024),
    "state.restart_seconds_1m": ("<=", 10),
    "state.cold_start_seconds_1m": ("<=", 30),
    "backtest.events_per_s": (">=", 100_000),
    "api.lookup_p99_ms": ("<=", 5),
    "api.ingest_events_per_s": (">=", 50_000),
    "api.segment_events_per_s": (">=", 50_000),
}
# The read store's, at 1,000,000 accounts, for each store.
READ_STORES = ("sqlite", "postgresql")
for _store in READ_STORES:
    TARGETS |= {
        f"read_side.{_store}_1m.ready_fresh_s": ("<=", 120),
        f"read_side.{_store}_1m.ready_restart_s": ("<=", 10),
        f"read_side.{_store}_1m.rss_mb": ("<=", 300),
        f"read_side.{_store}_1m.lookup_p99_ms": ("<=", 5),
        f"read_side.{_store}_1m.list_p99_ms_max": ("<=", 50),
        f"read_side.{_store}_1m.portfolio_p99_ms": ("<=", 100),
        f"read_side.{_store}_1m.at_risk_p99_ms": ("<=", 100),
    }


def say(msg: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: T201


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def size_label(n: int) -> str:
    """``100k``, ``1m``: how a size names its figures."""
    return f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    jars = sorted((REPO / ".local" / "kafka" / "libs").glob("kafka_2.13-*.jar"))
    kafka = jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "external"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kafka": kafka,
        "os": platform.platform(),
        "bootstrap": BOOTSTRAP,
    }


# -- throughput --------------------------------------------------------------------------------


async def raw_consume(topic: str, n: int) -> float:
    """Events/s of a bare aiokafka consumer that only reads and parses ``n`` records of ``topic``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - started)


def naive_agent(stack: Stack, seconds: float) -> float:
    """Events/s of the naive Faust agent over its first ``seconds`` of processing."""
    data_dir = Path(tempfile.mkdtemp(prefix="cw-naive-"))
    progress = data_dir / "progress.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env |= {
        "CHURNWATCH_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "BENCH_APP_ID": f"{stack.prefix}-naive",
        "BENCH_TOPIC": stack.topics["events"],
        "BENCH_PARTITIONS": str(stack.partitions),
        "BENCH_DATA_DIR": str(data_dir),
        "BENCH_PROGRESS": str(progress),
    }
    log = (data_dir / "naive.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bench.naive_agent", "worker", "-l", "warn"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 120 + seconds
        while time.monotonic() < deadline:
            lines = progress.read_text().split("\n")[:-1] if progress.exists() else []
            if len(lines) >= 2:
                t0, n0 = map(float, lines[0].split())
                t1, n1 = map(float, lines[-1].split())
                if t1 - t0 >= seconds:
                    return (n1 - n0) / (t1 - t0)
            if proc.poll() is not None:
                raise RuntimeError(f"naive agent exited with {proc.returncode}; see {data_dir}/naive.log")
            time.sleep(1)
        raise RuntimeError(f"naive agent made no measurable progress; see {data_dir}/naive.log")
    finally:
        terminate(proc)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def run_worker_to_end(worker: WorkerProcess, n: int, timeout_s: float = 3600) -> dict[str, float]:
    """Start ``worker`` and time it from its first to its ``n``-th processed record."""
    worker.start()
    first = last = 0.0
    deadline = time.monotonic() + timeout_s
    done = 0.0
    while time.monotonic() < deadline:
        worker.check_alive()
        done = worker.processed()
        now = time.perf_counter()
        if done and not first:
            first = now
        if done >= n:
            last = now
            break
        time.sleep(0.5)  # a scrape costs the worker CPU: poll gently
    if not last:
        raise RuntimeError(f"worker processed {done:.0f} of {n} records in {timeout_s:.0f}s")
    metrics = worker.metrics()
    outcomes = {k.split('"')[1]: v for k, v in metrics.items() if k.startswith("churnwatch_events_total{")}
    return {
        "events_per_s": n / (last - first),
        "seconds": last - first,
        **{f"outcome_{k}": v for k, v in outcomes.items()},
    }


def section_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Worker vs raw consumer vs naive Faust agent, all over the same pre-filled topic."""
    stack = Stack(partitions=8, name="bench-tp")
    n, accounts = args.events, args.accounts
    asyncio.run(stack.create())
    try:
        end = now_ms() - 60_000
        days = args.days
        say(f"throughput: producing {n:,} events over {accounts:,} accounts ({days:g} days of event time)")
        produced = asyncio.run(
            produce(stack.topics["events"], workload.events(n, accounts, end - int(days * 86_400_000), end))
        )
        say("throughput: raw aiokafka consumer")
        raw = asyncio.run(raw_consume(stack.topics["events"], produced))
        say(f"throughput: raw {raw:,.0f} events/s; naive Faust agent for {args.naive_seconds}s")
        naive = naive_agent(stack, args.naive_seconds)
        say(f"throughput: naive {naive:,.0f} events/s; the worker over all {produced:,} events")
        worker = WorkerProcess(stack)
        try:
            result = run_worker_to_end(worker, produced)
            result["rss_bytes_end"] = worker.rss_bytes()
        finally:
            worker.stop()
            shutil.rmtree(worker.data_dir, ignore_errors=True)
        say(f"throughput: worker {result['events_per_s']:,.0f} events/s")
        return {
            "events": produced,
            "accounts": accounts,
            "partitions": stack.partitions,
            "raw_events_per_s": round(raw),
            "naive_faust_events_per_s": round(naive),
            "worker_events_per_s": round(result["events_per_s"]),
            "worker_seconds": round(result["seconds"], 1),
            "worker_vs_raw": round(result["events_per_s"] / raw, 4),
            "worker_vs_naive": round(result["events_per_s"] / naive, 2),
            "worker_outcomes": {
                k.removeprefix("outcome_"): v for k, v in result.items() if k.startswith("outcome_")
            },
            "worker_rss_bytes_end": result["rss_bytes_end"],
        }
    finally:
        asyncio.run(stack.delete())


# -- latency -------------------------------------------------------------------------------------


async def steady_load(
    topic: str, rate: float, seconds: float, accounts: int, probe_every_s: float
) -> tuple[int, dict[bytes, int]]:
    """Produce ``rate`` events/s for ``seconds``, plus a probe event for a new account every so often.

    Returns the events sent and each probe account's record timestamp (its CreateTime, in ms).
    """
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks=1)
    await producer.start()
    probes: dict[bytes, int] = {}
    sent = 0
    step = 0.01
    started = time.monotonic()
    next_probe = started
    i = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) - sent
            at = now_ms()
            for _ in range(max(0, due)):
                acct = workload.account_id(sent % accounts).encode()
                value = orjson.dumps(
                    {
                        "event_id": f"l{sent}",
                        "account_id": acct.decode(),
                        "event": "login",
                        "timestamp": at,
                        "user_id": f"u{sent % 7}",
                    }
                )
                await producer.send(topic, value, key=acct)
                sent += 1
            if time.monotonic() >= next_probe:
                key = f"probe-{i:06d}".encode()
                value = orjson.dumps(
                    {"event_id": f"p{i}", "account_id": key.decode(), "event": "login", "timestamp": now_ms()}
                )
                meta = await (await producer.send(topic, value, key=key))
                probes[key] = meta.timestamp
                i += 1
                next_probe += probe_every_s
            await asyncio.sleep(step)
        await producer.flush()
    finally:
        await producer.stop()
    return sent, probes


async def read_topic(
    topic: str, partitions: int, until: Callable[[list[Any]], bool], timeout_s: float
) -> list[Any]:
    """Every record of ``topic`` from the beginning, until ``until(records)`` or the timeout."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


def wait_ready(worker: WorkerProcess, timeout_s: float = 120) -> float:
    """Seconds until the worker reports a consumer lag for its partitions (assigned and fetching)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        if worker.lag() is not None:
            return time.monotonic() - worker.started_at
        time.sleep(0.1)
    raise RuntimeError("worker not ready")


def wait_caught_up(worker: WorkerProcess, timeout_s: float) -> float:
    """Seconds until the worker's total lag is zero."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        worker.check_alive()
        if worker.lag() == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"worker did not catch up within {timeout_s}s")


def pauses(m: dict[str, float]) -> dict[str, Any]:
    """What stops the worker's loop, from its histograms: batches, state commits and GC, over 100 ms."""

    def hist(name: str, le: str = "0.1") -> dict[str, float]:
        count = sum(v for k, v in m.items() if k.startswith(f"{name}_count"))
        total = sum(v for k, v in m.items() if k.startswith(f"{name}_sum"))
        under = sum(v for k, v in m.items() if k.startswith(f"{name}_bucket") and f'le="{le}"' in k)
        return {"count": count, "seconds": round(total, 2), "over_100ms": count - under}

    return {
        "batch": hist("churnwatch_batch_seconds"),
        "commit": hist("churnwatch_commit_seconds"),
        "gc": hist("churnwatch_gc_pause_seconds"),
    }


def event_to_health(rate: int, seconds: int) -> dict[str, Any]:
    """Event produced → its health on account-health, under a steady load of ``rate`` events/s."""
    stack = Stack(partitions=8, name="bench-lh")
    asyncio.run(stack.create())
    worker = WorkerProcess(stack)
    try:
        worker.start()
        wait_ready(worker)
        say(f"latency: {rate:,} events/s for {seconds}s with a probe every 100 ms")
        sent, probes = asyncio.run(steady_load(stack.topics["events"], rate, seconds, 20_000, 0.1))
        lag_end = worker.lag()
        stalls = pauses(worker.metrics())

        def all_probes(records: list[Any]) -> bool:
            return len({r.key for r in records if r.key in probes}) >= len(probes)

        health = asyncio.run(read_topic(stack.topics["health"], stack.partitions, all_probes, 60))
        first_seen: dict[bytes, int] = {}
        for rec in health:
            if rec.key in probes and rec.key not in first_seen:
                first_seen[rec.key] = rec.timestamp
        warm = sorted(probes)[int(len(probes) * 0.1) :]  # the first 10% are the warm-up
        lat = [first_seen[k] - probes[k] for k in warm if k in first_seen]
        out = {
            "load_events_per_s_target": rate,
            "load_events_per_s_achieved": round(sent / seconds),
            "event_to_health_probes": len(warm),
            "event_to_health_missing": len(warm) - len(lat),
            "event_to_health_p50_ms": quantile([float(x) for x in lat], 0.5),
            "event_to_health_p99_ms": quantile([float(x) for x in lat], 0.99),
            "event_to_health_max_ms": max(lat) if lat else None,
            "lag_at_end_of_load": lag_end,
            "pauses": stalls,
        }
        say(
            f"latency: event → health p50 {out['event_to_health_p50_ms']} ms"
            f" p99 {out['event_to_health_p99_ms']} ms"
        )
        return out
    finally:
        worker.stop()
        shutil.rmtree(worker.data_dir, ignore_errors=True)
        asyncio.run(stack.delete())


def section_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Event → health under steady loads, and quiet deadline → alert with many tracked accounts."""
    out: dict[str, Any] = {}
    # 1. event produced → its health on account-health, at each steady load (the first one's figures
    # are also the section's top-level keys).
    for i, rate in enumerate(args.load_rate):
        figures = event_to_health(rate, args.load_seconds)
        out[f"at_{rate}"] = figures
        out[f"event_to_health_p99_ms_{rate // 1000}k"] = figures["event_to_health_p99_ms"]
        if i == 0:
            out |= figures

    # 2. quiet deadline → alert on churn-alerts, with many tracked accounts.
    stack = Stack(partitions=8, name="bench-la")
    asyncio.run(stack.create())
    accounts, quiet_s = args.alert_accounts, 300
    rules = Path(tempfile.mkdtemp(prefix="cw-rules-")) / "rules.toml"
    rules.write_text(f"[alerts]\nquiet_after_days = {quiet_s / 86400:.9f}\n")
    worker = WorkerProcess(stack, env={"CHURNWATCH_RULES_FILE": str(rules)})
    try:
        t0 = now_ms()

        # Two events per account, the last one between t0 - 290 s and t0: deadlines fall between
        # t0 + 10 s and t0 + 300 s, so alerts keep coming at a steady rate while we measure.
        def history() -> Any:
            for i in range(accounts):
                acct = workload.account_id(i)
                last = t0 - 290_000 + (290_000 * i) // accounts
                for j, at in enumerate((last - 60_000, last)):
                    doc = {
                        "event_id": f"h{i}-{j}",
                        "account_id": acct,
                        "event": "login",
                        "timestamp": at,
                        "user_id": "u1",
                    }
                    yield acct.encode(), orjson.dumps(doc)

        say(f"latency: {accounts:,} accounts with quiet deadlines over the next {quiet_s - 10} s")
        asyncio.run(produce(stack.topics["events"], history()))
        worker.start()
        wait_ready(worker)
        caught_up = wait_caught_up(worker, 300)
        measure_from = now_ms() + 2_000
        window_s = args.alert_window_s
        say(f"latency: caught up in {caught_up:.1f}s; measuring alerts for {window_s}s")
        time.sleep(window_s + 5)

        def enough(_: list[Any]) -> bool:
            return False

        alerts = asyncio.run(read_topic(stack.topics["alerts"], stack.partitions, enough, 15))
        alert_lat: list[float] = []
        for rec in alerts:
            doc = orjson.loads(rec.value)
            if doc["kind"] != "account_quiet":
                continue
            detected = int(
                dt.datetime.fromisoformat(doc["detected_at"].replace("Z", "+00:00")).timestamp() * 1000
            )
            if measure_from <= detected <= measure_from + window_s * 1000:
                alert_lat.append(float(rec.timestamp - detected))
        out |= {
            "tracked_accounts": accounts,
            "catch_up_seconds": round(caught_up, 1),
            "quiet_alerts_measured": len(alert_lat),
            "deadline_to_alert_p50_ms": quantile(alert_lat, 0.5),
            "deadline_to_alert_p99_ms": quantile(alert_lat, 0.99),
            "deadline_to_alert_max_ms": max(alert_lat) if alert_lat else None,
        }
        say(
            f"latency: deadline → alert p50 {out['deadline_to_alert_p50_ms']} ms"
            f" p99 {out['deadline_to_alert_p99_ms']} ms"
        )
    finally:
        worker.stop()
        shutil.rmtree(worker.data_dir, ignore_errors=True)
        asyncio.run(stack.delete())
    return out


# -- state: memory and restart ---------------------------------------------------------------------


def probe_round(stack: Stack, worker: WorkerProcess, timeout_s: float) -> float:
    """Seconds until one new event on every partition has come back as health (the worker processes)."""
    partition_for = kafka_partitioner(stack.partitions)
    keys: dict[int, bytes] = {}
    i = 0
    while len(keys) < stack.partitions:
        key = f"probe-{uuid.uuid4().hex[:6]}-{i}".encode()
        keys.setdefault(partition_for(key.decode()), key)
        i += 1
    started = time.monotonic()
    records = [
        (
            key,
            orjson.dumps(
                {
                    "event_id": key.decode(),
                    "account_id": key.decode(),
                    "event": "login",
                    "timestamp": now_ms(),
                }
            ),
        )
        for key in keys.values()
    ]
    asyncio.run(produce(stack.topics["events"], records))
    wanted = set(keys.values())

    def done(recs: list[Any]) -> bool:
        return wanted <= {r.key for r in recs}

    while time.monotonic() - started < timeout_s:
        worker.check_alive()
        recs = asyncio.run(read_topic(stack.topics["health"], stack.partitions, done, 5))
        if done(recs):
            return time.monotonic() - started
    raise RuntimeError("probes did not come back as health")


# Accounts sent one event each before the in-service memory is read: twice the worker's default
# decoded-state cache (state_cache_accounts), so the cache is full and evicting, as in service.
BUSY_ACCOUNTS = 40_000


def touch_accounts(stack: Stack, worker: WorkerProcess, count: int, timeout_s: float) -> float:
    """One usage event to each of the stored accounts ``0 .. count - 1``; seconds until all were processed."""
    before = worker.processed()
    at = now_ms()
    records = (
        (
            workload.account_id(i).encode(),
            orjson.dumps(
                {
                    "event_id": f"busy-{i}",
                    "account_id": workload.account_id(i),
                    "event": "report_viewed",
                    "timestamp": at,
                    "user_id": f"u{i % 97}-1",
                }
            ),
        )
        for i in range(count)
    )
    started = time.monotonic()
    asyncio.run(produce(stack.topics["events"], records, partition_for=kafka_partitioner(stack.partitions)))
    while worker.processed() < before + count:
        worker.check_alive()
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the worker processed {worker.processed() - before:.0f} of {count} events")
        time.sleep(0.2)
    return time.monotonic() - started


def wait_tracked(worker: WorkerProcess, accounts: int, timeout_s: float) -> float | None:
    """Seconds from the worker's start until it tracks ``accounts`` accounts: every stored account read
    and scheduled (a restarted worker serves while it reads them); None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.metrics().get("churnwatch_tracked_accounts", 0.0) >= accounts:
            return round(time.monotonic() - worker.started_at, 1)
        time.sleep(0.2)
    return None


def measure_state(accounts: int) -> dict[str, Any]:
    """Seed ``accounts`` full states into a fresh worker's changelog; measure memory and restarts."""
    stack = Stack(partitions=8, name=f"bench-st{accounts // 1000}k")
    asyncio.run(stack.create())
    out: dict[str, Any] = {"accounts": accounts}
    worker = WorkerProcess(stack)
    try:
        # The baseline: the same worker, ready and processing, with no accounts.
        worker.start()
        wait_ready(worker)
        probe_round(stack, worker, 120)
        out["rss_bytes_empty"] = worker.rss_bytes()
        worker.stop()
        # Seed the changelog with full 35-day states, partitioned as the worker partitions accounts.
        say(f"state: encoding and producing {accounts:,} full account states to the changelog")
        partition_for = kafka_partitioner(stack.partitions)
        started = time.monotonic()
        states = ((a.encode(), v) for a, v in workload.encoded_states(accounts, now_ms()))
        asyncio.run(produce(stack.changelog, states, partition_for=partition_for))
        out["seed_seconds"] = round(time.monotonic() - started, 1)
        # Cold start: an empty data dir, so the worker restores every state from the changelog.
        shutil.rmtree(worker.data_dir, ignore_errors=True)
        worker.data_dir.mkdir(parents=True)
        say("state: cold start (restore from the changelog)")
        worker.start()
        ready = wait_ready(worker, 900)
        probed = probe_round(stack, worker, 900)
        out["cold_start_seconds"] = round(time.monotonic() - worker.started_at, 1)
        out["cold_start_ready_seconds"] = round(ready, 1)
        out["cold_start_scheduled_seconds"] = wait_tracked(worker, accounts, 900)
        tracked = worker.metrics().get("churnwatch_tracked_accounts", 0.0)
        out["tracked_accounts"] = tracked
        out["rss_bytes_peak_after_cold_start"] = worker.rss_bytes()
        # The worker hands freed memory back every 30 s; measure once that has happened.
        time.sleep(35)
        idle = worker.rss_bytes()
        out["rss_bytes_idle"] = idle
        out["rss_idle_per_account_bytes"] = round(idle / accounts)
        say(
            f"state: cold start {out['cold_start_seconds']}s (probe {probed:.1f}s), RSS"
            f" {out['rss_bytes_peak_after_cold_start'] / 2**20:.0f} MiB, 35 s later {idle / 2**20:.0f} MiB"
        )
        # In service: accounts have events, so the worker holds decoded states in its cache (full and
        # evicting) as well as every account's due point. Measured once the freed memory is handed back.
        busy = min(accounts, BUSY_ACCOUNTS)
        out["busy_accounts"] = busy
        out["busy_seconds"] = round(touch_accounts(stack, worker, busy, 900), 1)
        time.sleep(35)
        rss = worker.rss_bytes()
        out["rss_bytes"] = rss
        out["rss_per_account_bytes"] = round(rss / accounts)
        out["rss_marginal_per_account_bytes"] = round((rss - out["rss_bytes_empty"]) / accounts)
        say(f"state: {busy:,} accounts had an event ({out['busy_seconds']}s), RSS {rss / 2**20:.0f} MiB")
        worker.stop()
        # Restart: same data dir, as after a deploy or a crash.
        say("state: restart on the same data dir")
        worker.start()
        wait_ready(worker, 900)
        probe_round(stack, worker, 900)
        out["restart_seconds"] = round(time.monotonic() - worker.started_at, 1)
        out["restart_scheduled_seconds"] = wait_tracked(worker, accounts, 900)
        out["rss_bytes_after_restart"] = worker.rss_bytes()
        time.sleep(35)
        out["rss_bytes_after_restart_settled"] = worker.rss_bytes()
        say(f"state: restart {out['restart_seconds']}s")
    finally:
        worker.stop()
        shutil.rmtree(worker.data_dir, ignore_errors=True)
        asyncio.run(stack.delete())
    return out


def section_state(args: argparse.Namespace) -> dict[str, Any]:
    """Memory per tracked account and restart times at each size in ``--state-accounts``."""
    out: dict[str, Any] = {}
    for accounts in args.state_accounts:
        label = size_label(accounts)
        m = measure_state(accounts)
        out[f"at_{label}"] = m
        out[f"rss_per_account_bytes_{label}"] = m["rss_per_account_bytes"]
        out[f"restart_seconds_{label}"] = m["restart_seconds"]
        out[f"cold_start_seconds_{label}"] = m["cold_start_seconds"]
    return out


# -- API -----------------------------------------------------------------------------------------

# Paced on a schedule, not by a fixed pause after each answer: request k is due at start + k / rate
# (whichever connection is free takes it), so slower answers do not lower the rate offered. A fixed
# pause of connections / rate after each answer capped the rate at connections / (pause + latency):
# 939 req/s at 1.3 ms, 528 at 17.9 ms.
LOOKUP_CONNECTIONS = 20
LOOKUP_LUA = """
local ffi = require("ffi")
ffi.cdef[[ typedef struct {{ long tv_sec; long tv_nsec; }} cw_timespec;
           int clock_gettime(int clk_id, cw_timespec *tp); ]]
local ts = ffi.new("cw_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local n = {accounts}
local key = "{key}"
local interval = {interval_ms}
local start, k = nil, 0
math.randomseed(7)
request = function()
  return wrk.format("GET", "/v1/accounts/acct-" .. string.format("%07d", math.random(0, n - 1)) .. "/health",
                    {{["Authorization"] = "Bearer " .. key}})
end
delay = function()
  local t = now_ms()
  if start == nil then start = t end
  k = k + 1
  local due = start + k * interval
  if due <= t then return 0 end
  return due - t
end
"""

INGEST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{authorization}"
wrk.body = io.open("{body}"):read("*a")
"""
# Segment batches: the route's largest (1,000 messages, as /v1/events is measured) and analytics-python's
# default (upload_size 100; analytics-node sends 15 at most), where the per-request cost weighs more.
SEGMENT_BATCHES = (1000, 100)


def segment_batch(at_ms: int, size: int) -> dict[str, Any]:
    """A Segment /v1/batch body as an SDK sends it: tracks of users of 500 accounts, half of them with
    ``context.groupId``, half naming only their user (stored keyed by the user for the worker to
    attribute), and a group call."""
    stamp = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).isoformat()
    batch: list[dict[str, Any]] = []
    for j in range(size - 1):
        account = workload.account_id(j % 500)
        message: dict[str, Any] = {
            "type": "track",
            "messageId": f"m{j}",
            "userId": f"{account}-u{j % 9}",
            "event": "Report Exported",
            "properties": {"format": "csv"},
            "timestamp": stamp,
        }
        if j % 2:
            message["context"] = {
                "groupId": account,
                "library": {"name": "analytics-python", "version": "2.4.0"},
            }
        batch.append(message)
    account = workload.account_id(0)
    batch.append(
        {
            "type": "group",
            "messageId": "g0",
            "userId": f"{account}-u0",
            "groupId": account,
            "timestamp": stamp,
        }
    )
    return {"batch": batch, "sentAt": stamp}


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk with ``script``; returns requests/s and latency quantiles in ms."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout  # noqa: S603
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def ms(value: str) -> float:
        m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
        if m is None:
            raise ValueError(f"wrk printed an unexpected latency: {value!r}")
        return float(m.group(1)) * units[m.group(2)]

    out = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for q in ("50", "99"):
        out[f"p{q}_ms"] = ms(re.search(rf"\s{q}%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return out


def paced_lookups(api: ApiProcess, accounts: int, rate: int, seconds: int) -> dict[str, float]:
    """Health lookups of random accounts among ``accounts`` paced at ``rate`` req/s for ``seconds`` (wrk,
    :data:`LOOKUP_CONNECTIONS` connections)."""
    script = api.data_dir / "lookup.lua"
    script.write_text(LOOKUP_LUA.format(accounts=accounts, key=api.key, interval_ms=1000 / rate))
    return wrk(api.base, script, seconds, LOOKUP_CONNECTIONS)


def section_api(args: argparse.Namespace) -> dict[str, Any]:
    """Health lookups at a paced rate, and batch ingest, against one API process."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs it with apt-get)")
    from streamer.core.policy import load_policy
    from streamer.core.scoring import score
    from streamer.core.snapshot import account_snapshot

    stack = Stack(partitions=8, name="bench-api")
    asyncio.run(stack.create())
    accounts = args.api_accounts
    policy = load_policy(None).for_account(None, None)
    at = now_ms()

    def snapshots() -> Any:
        for i in range(accounts):
            state = workload.full_state(i, at)
            doc = account_snapshot(state, score(state, at, policy), policy, None)
            yield state.account_id.encode(), orjson.dumps(doc)

    say(f"api: {accounts:,} health snapshots")
    asyncio.run(
        produce(stack.topics["health"], snapshots(), partition_for=kafka_partitioner(stack.partitions))
    )
    tmp = Path(tempfile.mkdtemp(prefix="cw-api-"))
    # The API's read store in the temporary directory: never the demo's default one.
    api = ApiProcess(stack, f"sqlite:///{tmp}/read-store.db", tmp)
    key, base = api.key, api.base
    try:
        api.start()
        api.wait_ready(120)
        rate = args.api_rate
        say(
            f"api: lookups at {rate} req/s for {args.api_seconds}s"
            f" (wrk, {LOOKUP_CONNECTIONS} connections, paced)"
        )
        look = paced_lookups(api, accounts, rate, args.api_seconds)
        body = tmp / "batch.json"
        batch = [
            {
                "event_id": f"i{j}",
                "account_id": workload.account_id(j % 500),
                "event": "login",
                "timestamp": at,
                "user_id": f"u{j % 9}",
            }
            for j in range(1000)
        ]
        body.write_bytes(orjson.dumps(batch))
        ingest = tmp / "ingest.lua"
        ingest.write_text(INGEST_LUA.format(authorization=f"Bearer {key}", body=body))
        say(f"api: ingest, batches of 1,000 events, for {args.api_seconds}s (wrk, 8 connections)")
        ing = wrk(f"{base}/v1/events", ingest, args.api_seconds, 8)
        basic = base64.b64encode(f"{key}:".encode()).decode()
        segment: dict[int, dict[str, float]] = {}
        for size in SEGMENT_BATCHES:
            seg_body = tmp / f"segment-{size}.json"
            seg_body.write_bytes(orjson.dumps(segment_batch(at, size)))
            seg = tmp / f"segment-{size}.lua"
            seg.write_text(INGEST_LUA.format(authorization=f"Basic {basic}", body=seg_body))
            say(f"api: Segment /v1/batch, {size} messages each, {args.api_seconds}s (wrk, 8 connections)")
            segment[size] = wrk(f"{base}/v1/batch", seg, args.api_seconds, 8)
    finally:
        api.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        asyncio.run(stack.delete())
    return {
        "lookup_target_req_per_s": rate,
        "lookup_req_per_s": round(look["requests_per_s"]),
        "lookup_p50_ms": round(look["p50_ms"], 2),
        "lookup_p99_ms": round(look["p99_ms"], 2),
        "lookup_non_2xx": look["non_2xx"],
        "ingest_batch_size": 1000,
        "ingest_requests_per_s": round(ing["requests_per_s"], 1),
        "ingest_events_per_s": round(ing["requests_per_s"] * 1000),
        "ingest_p50_ms": round(ing["p50_ms"], 1),
        "ingest_p99_ms": round(ing["p99_ms"], 1),
        "ingest_non_2xx": ing["non_2xx"],
        # Events/s with batches of 1,000 (the target), then of 100 (the SDK's default).
        "segment_events_per_s": round(segment[1000]["requests_per_s"] * 1000),
        "segment_p50_ms": round(segment[1000]["p50_ms"], 1),
        "segment_p99_ms": round(segment[1000]["p99_ms"], 1),
        "segment_non_2xx": segment[1000]["non_2xx"],
        "segment_100_events_per_s": round(segment[100]["requests_per_s"] * 100),
        "segment_100_p50_ms": round(segment[100]["p50_ms"], 1),
        "segment_100_p99_ms": round(segment[100]["p99_ms"], 1),
        "segment_100_non_2xx": segment[100]["non_2xx"],
        "accounts": accounts,
    }


# -- read side: the API's read store ------------------------------------------------------------

OWNERS = [f"owner{i:02d}@example.com" for i in range(50)]
QUIET_AFTER_MS = 7 * DAY_MS


def list_queries(at_ms: int) -> dict[str, dict[str, Any]]:
    """The lists measured (``GET /v1/accounts``, 100 a page): each filter alone with the default sort (by
    score), and each sort alone. ``quiet_since`` is the middle of the 60 days last activities span."""
    middle = dt.datetime.fromtimestamp((at_ms - 30 * DAY_MS) / 1000, dt.UTC)
    return {
        "band": {"band": "poor"},
        "segment": {"segment": workload.SEGMENTS[2]},
        "plan": {"plan": workload.PLANS[1]},
        "owner": {"owner": OWNERS[7]},
        "score_range": {"min_score": 30, "max_score": 60},
        "quiet_since": {"quiet_since": middle.strftime("%Y-%m-%dT00:00:00Z")},
        "sort_score": {"sort": "score"},
        "sort_score_desc": {"sort": "-score"},
        "sort_last_activity": {"sort": "last_activity_at"},
        "sort_last_activity_desc": {"sort": "-last_activity_at"},
        "sort_account_id": {"sort": "account_id"},
    }


# And a walk 50 pages deep into sort=score, following next_cursor.
LIST_NAMES = (*list_queries(0), "page50")


def p50_p99(ms: list[float]) -> tuple[float, float]:
    """The median and 99th percentile of ``ms``, rounded to 10 µs."""
    return round(quantile(ms, 0.5), 2), round(quantile(ms, 0.99), 2)


def portfolio_documents(
    accounts: int, at_ms: int, alerts: list[tuple[bytes, bytes]], max_alerts: int, seed: int = 5
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of ``accounts`` health snapshots as the worker publishes them on account-health, and
    up to ``max_alerts`` alerts of their open episodes appended to ``alerts`` on the way.

    Sixteen snapshots built by the worker's own code (:func:`streamer.core.snapshot.account_snapshot` over
    full 35-day states, about 2.3 KB each) are the templates; each account gets one with seeded
    facts and figures: score 0-100 and its band, one of 50 owners, 3 segments and 3 plans, its last
    activity (three in four within 2 days, the rest spread over 60), quiet, drop and poor episodes, a
    subscription started in the last three years (8% cancelled in the last year), an NPS answer for 30%.
    """
    from streamer.core.alerts import alert_id
    from streamer.core.alerts import ms_to_rfc3339 as rfc3339
    from streamer.core.policy import load_policy
    from streamer.core.scoring import score
    from streamer.core.snapshot import account_snapshot
    from streamer.wire.documents import HealthDocument

    policy = load_policy(None).for_account(None, None)
    templates = []
    for i in range(16):
        state = workload.full_state(i, at_ms)
        templates.append(account_snapshot(state, score(state, at_ms, policy), policy, None))
    health_fields = tuple(HealthDocument.model_fields)
    rng = random.Random(seed)
    today_ms = at_ms // DAY_MS * DAY_MS
    alert_share = min(1.0, 2.5 * max_alerts / max(1, accounts))
    for i in range(accounts):
        acct = workload.account_id(i)
        points = rng.randrange(101)
        band = "poor" if points < 40 else "average" if points < 70 else "good"
        at = at_ms - rng.randrange(600_000)
        recent = rng.random() < 0.75
        last = at - rng.randrange((2 if recent else 60) * DAY_MS)
        started = today_ms - rng.randrange(3 * 365) * DAY_MS - rng.randrange(DAY_MS)
        cancelled = rng.random() < 0.08
        cancelled_at = max(started + DAY_MS, today_ms - rng.randrange(365) * DAY_MS) if cancelled else None
        # The worker closes a cancelled account's episodes.
        quiet = last + QUIET_AFTER_MS if not cancelled and at - last >= QUIET_AFTER_MS else None
        drop = today_ms - rng.randrange(1, 15) * DAY_MS if not cancelled and rng.random() < 0.1 else None
        poor = band == "poor" and not cancelled
        nps = rng.randrange(11) if rng.random() < 0.3 else None
        change = rng.choice((None, -15, -6, -2, 0, 0, 1, 4, 9))
        trend = "flat" if not change else "up" if change > 0 else "down"
        facts = {
            "name": f"Customer {i}",
            "seats": 5 + rng.randrange(200),
            "plan": rng.choice(workload.PLANS),
            "segment": rng.choice(workload.SEGMENTS),
            "owner": rng.choice(OWNERS),
        }
        doc = {
            **templates[i % len(templates)],
            "account_id": acct,
            "at": rfc3339(at),
            "score": points,
            "band": band,
            "trend": trend,
            "score_change": change,
            "first_seen_at": rfc3339(started - rng.randrange(30) * DAY_MS),
            "last_activity_at": rfc3339(last),
            "facts": facts,
            "nps": {
                "score": nps,
                "at": rfc3339(at - rng.randrange(180 * DAY_MS)) if nps is not None else None,
            },
            "open_tickets": rng.choice((0, 0, 0, 0, 1, 2)),
            "subscription": {
                "status": "cancelled" if cancelled else "active",
                "started_at": rfc3339(started),
                "cancelled_at": rfc3339(cancelled_at) if cancelled_at is not None else None,
            },
            "episodes": {
                "quiet_since": rfc3339(quiet) if quiet is not None else None,
                "drop_since": rfc3339(drop) if drop is not None else None,
                "poor": poor,
            },
        }
        yield acct.encode(), orjson.dumps(doc)
        if len(alerts) >= max_alerts or not (quiet or drop or poor) or rng.random() >= alert_share:
            continue
        if quiet is not None:
            kind, start, detected, reason = "account_quiet", quiet, quiet, "No activity for 7 days"
        elif drop is not None:
            kind, start, detected = "usage_drop", drop, drop + rng.randrange(DAY_MS)
            reason = "Active users fell to 41% of usual"
        else:
            kind, start, detected, reason = "health_degraded", at, at, f"Health score fell to {points}"
        alert = {
            "alert_id": alert_id(acct, kind, start),
            "kind": kind,
            "account_id": acct,
            "detected_at": rfc3339(detected),
            "severity": "high",
            "reason": reason,
            "health": {k: doc[k] for k in health_fields},
            "evidence": {"episode_started_at": rfc3339(start)},
            "account": facts,
        }
        alerts.append((acct.encode(), orjson.dumps(alert)))


def produce_portfolio(stack: Stack, accounts: int, max_alerts: int) -> dict[str, Any]:
    """Fill the stack's health topic with ``accounts`` snapshots and its alert topic with alerts of them."""
    partition_for = kafka_partitioner(stack.partitions)
    alerts: list[tuple[bytes, bytes]] = []
    sizes = [0]

    def counted(records: Any) -> Any:
        for key, value in records:
            sizes[0] += len(value)
            yield key, value

    say(f"read_side: producing {accounts:,} health snapshots and up to {max_alerts:,} alerts")
    started = time.monotonic()
    docs = portfolio_documents(accounts, now_ms(), alerts, max_alerts)
    asyncio.run(produce(stack.topics["health"], counted(docs), partition_for=partition_for))
    asyncio.run(produce(stack.topics["alerts"], alerts, partition_for=partition_for))
    return {
        "accounts": accounts,
        "alerts": len(alerts),
        "snapshot_bytes_mean": round(sizes[0] / max(1, accounts)),
        "produce_seconds": round(time.monotonic() - started, 1),
    }


def timed_gets(client: httpx.Client, path: str, params: dict[str, Any], n: int) -> list[float]:
    """Milliseconds of ``n`` sequential GETs of ``path`` (each answer read whole); fails on any but 200
    and on an empty list, which would measure nothing."""
    out: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        r = client.get(path, params=params)
        out.append((time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"GET {path} {params}: {r.status_code} {r.text[:300]}")
        if len(out) == 1 and path == "/v1/accounts" and not r.json()["items"]:
            raise RuntimeError(f"GET {path} {params} lists no account")
    return out


def page_walks(client: httpx.Client, pages: int, n: int) -> tuple[list[float], int]:
    """Milliseconds of each page of walks ``pages`` pages deep into ``sort=score`` (100 a page, following
    ``next_cursor``), walked again until ``n`` pages were read; and how deep a walk went."""
    out: list[float] = []
    depth = 0
    while len(out) < n:
        cursor = None
        for page in range(1, pages + 1):
            params: dict[str, str | int] = {"sort": "score", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            started = time.perf_counter()
            r = client.get("/v1/accounts", params=params)
            out.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"GET /v1/accounts {params}: {r.status_code} {r.text[:300]}")
            depth = max(depth, page)
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    return out, depth


def store_bytes(store: str, tmp: Path, pg: PostgresServer, database: str | None) -> int:
    """The read store's size on disk: the SQLite file with its WAL, or the PostgreSQL database."""
    if store == "sqlite":
        return sum(f.stat().st_size for f in tmp.glob("read-store.db*"))
    import psycopg

    with psycopg.connect(pg.url(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (database,)).fetchone()
    return int(row[0]) if row else 0


def store_rows(url: str) -> dict[str, int]:
    """Rows per table of the read store at ``url`` (its own count, with no API running on it)."""
    from api.store.sql import SqlReadModel

    model = SqlReadModel(url)
    try:
        return model.counts()
    finally:
        model.close()


def measure_read_side(
    stack: Stack, store: str, accounts: int, pg: PostgresServer, args: argparse.Namespace
) -> dict[str, Any]:
    """One API process on a fresh ``store`` over the stack's topics: fill, restart, lookups, lists."""
    import httpx

    name = f"{store}_{size_label(accounts)}"
    tmp = Path(tempfile.mkdtemp(prefix=f"cw-bench-rs-{store}-"))
    database = None if store == "sqlite" else f"bench_rs_{uuid.uuid4().hex[:8]}"
    api: ApiProcess | None = None
    out: dict[str, Any] = {"accounts": accounts}
    mib = 2**20
    try:
        url = f"sqlite:///{tmp}/read-store.db" if database is None else pg.create_database(database)
        api = ApiProcess(stack, url, tmp)
        say(f"read_side: {name}: filling a fresh store")
        api.start()
        out["ready_fresh_s"] = round(api.wait_ready(args.read_side_ready_timeout), 2)
        out["rss_mb"] = round(api.rss_bytes() / mib, 1)
        api.stop()
        say(f"read_side: {name}: ready in {out['ready_fresh_s']}s, RSS {out['rss_mb']} MiB; restarting")
        api.start()
        out["ready_restart_s"] = round(api.wait_ready(args.read_side_ready_timeout), 2)
        out["rss_mb_restart"] = round(api.rss_bytes() / mib, 1)
        out["store_mb"] = round(store_bytes(store, tmp, pg, database) / mib, 1)
        rate, seconds = args.api_rate, args.read_side_seconds
        say(f"read_side: {name}: ready in {out['ready_restart_s']}s; lookups at {rate} req/s for {seconds}s")
        look = paced_lookups(api, accounts, rate, seconds)
        out |= {
            "lookup_req_per_s": round(look["requests_per_s"]),
            "lookup_p50_ms": round(look["p50_ms"], 2),
            "lookup_p99_ms": round(look["p99_ms"], 2),
            "lookup_non_2xx": look["non_2xx"],
        }
        n = args.read_side_requests
        lists = list_queries(now_ms())
        say(f"read_side: {name}: {len(lists)} lists, {n} requests each, a walk 50 pages deep, portfolio")
        p50: dict[str, float] = {}
        p99: dict[str, float] = {}
        with httpx.Client(base_url=api.base, headers=api.headers, timeout=60) as client:
            for label, params in lists.items():
                ms = timed_gets(client, "/v1/accounts", params | {"limit": 100}, n)
                p50[label], p99[label] = p50_p99(ms)
            ms, out["page50_pages"] = page_walks(client, 50, n)
            p50["page50"], p99["page50"] = p50_p99(ms)
            figures = client.get("/v1/portfolio").json()
            out["served_accounts"] = figures["accounts"]
            out["served_open_alerts"] = figures["open_alerts"]
            if figures["accounts"] != accounts:
                say(
                    f"read_side: {name}: the portfolio counts {figures['accounts']:,} accounts,"
                    f" not {accounts:,}"
                )
            few = max(1, n // 2)
            ms = timed_gets(client, "/v1/portfolio", {}, few)
            out["portfolio_p50_ms"], out["portfolio_p99_ms"] = p50_p99(ms)
            ms = timed_gets(client, "/dashboard/fragments/at-risk", {}, few)
            out["at_risk_p50_ms"], out["at_risk_p99_ms"] = p50_p99(ms)
        slowest = max(p99, key=lambda k: p99[k])
        out |= {
            "list_p50_ms": p50,
            "list_p99_ms": p99,
            "list_p99_ms_max": p99[slowest],
            "list_slowest": slowest,
            "rss_mb_end": round(api.rss_bytes() / mib, 1),
        }
        api.stop()
        out["store_rows"] = store_rows(url)
        say(
            f"read_side: {name}: lookup p99 {out['lookup_p99_ms']} ms, slowest list {slowest}"
            f" p99 {p99[slowest]} ms, portfolio p99 {out['portfolio_p99_ms']} ms,"
            f" at-risk p99 {out['at_risk_p99_ms']} ms"
        )
        return out
    finally:
        if api is not None:
            api.stop()
        if database is not None:
            try:
                pg.drop_database(database)
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the failure
                say(f"read_side: could not drop database {database}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)


def section_read_side(args: argparse.Namespace) -> dict[str, Any]:
    """The API's read store, each of SQLite and PostgreSQL, at each size in ``--read-side-accounts``:
    both stores read the same topics."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs it with apt-get)")
    out: dict[str, Any] = {"stores": list(READ_STORES), "sizes": list(args.read_side_accounts)}
    pg = PostgresServer()
    try:
        say("read_side: starting a throw-away PostgreSQL server")
        pg.start()
        for accounts in args.read_side_accounts:
            label = size_label(accounts)
            stack = Stack(partitions=8, name=f"bench-rs{label}")
            try:
                asyncio.run(stack.create())
                out[f"topics_{label}"] = produce_portfolio(stack, accounts, args.read_side_alerts)
                # The broker's gigabytes written back to disk first: a store is filled from a topic
                # written earlier, not while the kernel flushes it (fsyncs waited on that writeback).
                os.sync()
                for store in READ_STORES:
                    out[f"{store}_{label}"] = measure_read_side(stack, store, accounts, pg, args)
            finally:
                asyncio.run(stack.delete())
    finally:
        pg.stop()
    return out


# -- report --------------------------------------------------------------------------------------


def section_backtest(args: argparse.Namespace) -> dict[str, Any]:
    """``churnwatch backtest`` over a seeded portfolio's history: events per second on one core."""
    tmp = Path(tempfile.mkdtemp(prefix="cw-bench-bt-"))
    try:
        history, report = tmp / "history.jsonl", tmp / "backtest.json"
        days = args.backtest_days
        say(f"backtest: simulating {args.backtest_accounts} accounts over {days} days")
        cli = [sys.executable, "-m", "streamer.cli"]
        simulate = [*cli, "simulate", "--accounts", str(args.backtest_accounts), "--seed", "3"]
        simulate += ["--start", "2026-01-01T00:00:00Z", "--horizon-days", str(days)]
        simulate += ["--duration", str(days * 86_400), "--speed", "0", "--jsonl", str(history)]
        subprocess.run([*simulate, "--no-progress"], check=True, cwd=REPO, capture_output=True)  # noqa: S603
        with history.open("rb") as f:
            events = sum(1 for _ in f)
        say(f"backtest: replaying {events:,} events (--every month)")
        backtest = [*cli, "backtest", str(history), "--every", "month", "--json", str(report)]
        started = time.monotonic()
        subprocess.run([*backtest, "--no-progress"], check=True, cwd=REPO, capture_output=True)  # noqa: S603
        wall = time.monotonic() - started
        settings = json.loads(report.read_text())["settings"]
        out = {
            "accounts": args.backtest_accounts,
            "days": days,
            "events": events,
            "events_per_s": settings["events_per_second"],
            "replay_seconds": settings["seconds"],
            "wall_seconds": round(wall, 1),
        }
        say(f"backtest: {out['events_per_s']:,} events/s")
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "throughput": section_throughput,
    "latency": section_latency,
    "state": section_state,
    "api": section_api,
    "read_side": section_read_side,
    "backtest": section_backtest,
}


def lookup(figures: dict[str, Any], dotted: str) -> Any:
    """``figures['a']['b']`` for ``'a.b'``, or None."""
    node: Any = figures
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def table(results: dict[str, Any]) -> str:
    """The targets, what was measured, and whether it met them."""
    lines = [f"{'figure':44} {'measured':>14} {'target':>12}  met", "-" * 78]
    for key, (op, target) in TARGETS.items():
        value = lookup(results["figures"], key)
        if value is None:
            lines.append(f"{key:44} {'(not run)':>14} {op + ' ' + format(target, ','):>12}")
            continue
        met = value >= target if op == ">=" else value <= target
        lines.append(f"{key:44} {value:>14,} {op + ' ' + format(target, ','):>12}  {'yes' if met else 'NO'}")
    return "\n".join(lines)


READ_SIDE_ROWS = (
    "ready_fresh_s",
    "ready_restart_s",
    "rss_mb",
    "rss_mb_end",
    "store_mb",
    "lookup_req_per_s",
    "lookup_p50_ms",
    "lookup_p99_ms",
    *(f"list_p99_ms.{name}" for name in LIST_NAMES),
    "portfolio_p99_ms",
    "at_risk_p99_ms",
    "store_rows.portfolio_counts",
)


def read_side_table(figures: dict[str, Any]) -> str:
    """The read side's figures, a column for each store and size measured."""
    runs = [k for k in figures if k.split("_")[0] in READ_STORES]
    lines = [f"{'read_side':36}" + "".join(f"{run:>16}" for run in runs), "-" * (36 + 16 * len(runs))]
    for row in READ_SIDE_ROWS:
        values = [lookup(figures, f"{run}.{row}") for run in runs]
        lines.append(f"{row:36}" + "".join(f"{'-' if v is None else format(v, ','):>16}" for v in values))
    return "\n".join(lines)


def main() -> None:
    """Run the chosen sections and write the results file."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that the bench runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--naive-seconds", type=float, default=40)
    parser.add_argument("--days", type=float, default=1.0, help="event time the throughput topic spans")
    parser.add_argument("--load-rate", type=int, nargs="+", default=[20_000, 2_000])
    parser.add_argument("--load-seconds", type=int, default=30)
    parser.add_argument("--alert-accounts", type=int, default=100_000)
    parser.add_argument("--alert-window-s", type=int, default=60)
    parser.add_argument("--state-accounts", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--api-accounts", type=int, default=10_000)
    parser.add_argument("--api-rate", type=int, default=1000)
    parser.add_argument("--api-seconds", type=int, default=30)
    parser.add_argument("--read-side-accounts", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--read-side-alerts", type=int, default=3000)
    parser.add_argument("--read-side-seconds", type=int, default=20, help="of paced lookups")
    parser.add_argument("--read-side-requests", type=int, default=200, help="per list (half per portfolio)")
    parser.add_argument("--read-side-ready-timeout", type=float, default=1800)
    parser.add_argument("--backtest-accounts", type=int, default=100)
    parser.add_argument("--backtest-days", type=int, default=120)
    args = parser.parse_args()
    if args.quick:
        args.events, args.accounts, args.naive_seconds = 50_000, 5_000, 10
        args.load_rate, args.load_seconds, args.alert_accounts, args.alert_window_s = [2_000], 10, 5_000, 15
        args.backtest_accounts, args.backtest_days = 20, 60
        args.state_accounts, args.api_accounts, args.api_seconds = [5_000], 1_000, 5
        args.read_side_accounts, args.read_side_alerts, args.read_side_seconds = [2_000, 10_000], 500, 5
    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
        "figures": {},
    }
    if args.out.exists() and set(args.only) != set(SECTIONS):
        # A partial run updates its sections and keeps the others' last figures.
        previous = json.loads(args.out.read_text())
        results["figures"] = previous.get("figures", {})
    for name in args.only:
        started = time.monotonic()
        say(f"== {name}")
        figures = SECTIONS[name](args)
        figures["section_seconds"] = round(time.monotonic() - started, 1)
        figures["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results["figures"][name] = figures
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))  # noqa: T201
    if "read_side" in args.only:
        print(f"\n{read_side_table(results['figures']['read_side'])}")  # noqa: T201
    print(f"\nwritten to {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
