"""``make bench``: churnwatch's figures on this machine, each measured beside its comparison.

    .venv/bin/python -m bench.run [--only SECTION ...] [--quick] [--out FILE]

Sections (every key they write is documented in bench/README.md):

* ``throughput``  the worker, a raw aiokafka consumer and a naive Faust agent on the same topic
* ``latency``     event → health under a steady load; quiet deadline → alert with many accounts
* ``state``       worker memory per tracked account and restart time, with seeded account states
* ``api``         health lookups at a paced 1,000 req/s (wrk) and batch ingest (wrk)

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
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import workload
from bench.harness import BOOTSTRAP, REPO, Stack, WorkerProcess, free_port, produce, quantile
from streamer.kafka.partitioner import kafka_partitioner

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


def say(msg: str) -> None:
    """Progress on stderr; the table goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: T201


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


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
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
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
        rss = worker.rss_bytes()
        out["rss_bytes"] = rss
        out["rss_per_account_bytes"] = round(rss / accounts)
        out["rss_marginal_per_account_bytes"] = round((rss - out["rss_bytes_empty"]) / accounts)
        say(
            f"state: cold start {out['cold_start_seconds']}s (probe {probed:.1f}s), RSS"
            f" {out['rss_bytes_peak_after_cold_start'] / 2**20:.0f} MiB, 35 s later {rss / 2**20:.0f} MiB"
        )
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
        label = f"{accounts // 1_000_000}m" if accounts >= 1_000_000 else f"{accounts // 1000}k"
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


def section_api(args: argparse.Namespace) -> dict[str, Any]:
    """Health lookups at a paced rate, and batch ingest, against one API process."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs it with apt-get)")
    from api.auth import hash_key
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
    key = uuid.uuid4().hex
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env |= stack.env() | {
        "CHURNWATCH_API_KEYS": json.dumps(
            {hash_key(key): {"name": "bench", "scopes": ["health:read", "events:write", "alerts:read"]}}
        ),
        "CHURNWATCH_RATE_LIMIT_PER_S": "1000000",
        "CHURNWATCH_RATE_LIMIT_BURST": "1000000",
    }
    tmp = Path(tempfile.mkdtemp(prefix="cw-api-"))
    log = (tmp / "api.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "api", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(
                    f"{base}/v1/accounts/{workload.account_id(accounts - 1)}/health",
                    headers={"Authorization": f"Bearer {key}"},
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"API not serving; see {tmp}/api.log")
            time.sleep(0.5)
        conns, rate = 20, args.api_rate
        lookup = tmp / "lookup.lua"
        lookup.write_text(LOOKUP_LUA.format(accounts=accounts, key=key, interval_ms=1000 / rate))
        say(f"api: lookups at {rate} req/s for {args.api_seconds}s (wrk, {conns} connections, paced)")
        look = wrk(base, lookup, args.api_seconds, conns)
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
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
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
    parser.add_argument("--backtest-accounts", type=int, default=100)
    parser.add_argument("--backtest-days", type=int, default=120)
    args = parser.parse_args()
    if args.quick:
        args.events, args.accounts, args.naive_seconds = 50_000, 5_000, 10
        args.load_rate, args.load_seconds, args.alert_accounts, args.alert_window_s = [2_000], 10, 5_000, 15
        args.backtest_accounts, args.backtest_days = 20, 60
        args.state_accounts, args.api_accounts, args.api_seconds = [5_000], 1_000, 5
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
    print(f"\nwritten to {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
