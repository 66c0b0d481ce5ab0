"""``python -m tests.faults.soak --duration SECONDS``: the full stack at a steady rate, judged as it runs.

Starts a worker, the API and alert delivery (to a local signed-webhook receiver) on fresh topics of
the broker named by ``CHURNWATCH_KAFKA_BOOTSTRAP``, and simulated accounts producing live at a
steady rate (``python -m tests.faults.accounts``, about 0.2 events/s per account).
Every 5 s it samples each process's resident memory and the worker group's true
consumer lag (end offsets minus committed offsets, from the broker), and checks that the API is
ready and no process has exited. At the end the simulator stops and it checks correctness: every
account's stored state counts exactly the distinct events produced for it, and every alert on the
alert topic reached the receiver exactly once.

It fails when
* memory grows linearly: the least-squares slope of a process's RSS over the samples after the
  warm-up (the first quarter of the run, at least 60 s) extrapolates to more than
  ``--max-growth-mib-per-day`` (default 256 MiB per day),
* lag grows without bound: the mean lag of the last quarter exceeds both 2,000 records and twice the
  mean lag of the second quarter,
* any correctness check fails.

The figures go to ``docs/reliability.json`` and ``docs/reliability.md`` (section "Soak").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streamer.core.events import EventKind, parse_event
from tests.faults import report
from tests.faults.procs import KEYS
from tests.integration.kafkautil import committed, read_all
from tests.integration.pipeline import alerts, counted_events, states
from tests.integration.test_delivery import Receiver, Setup, webhook_toml
from tests.integration.workers import REPO, ApiProcess, WorkerFactory, free_port

log = logging.getLogger("soak")
PARTITIONS = 4


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wal_mib(data_dir: Path) -> float:
    """Size of the worker's RocksDB write-ahead logs: what its memtables hold, not yet flushed."""
    return sum(f.stat().st_size for f in data_dir.rglob("*.log") if f.is_file()) / 2**20


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


async def true_lag(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        end = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return int(sum(end.values())) - await committed(bootstrap, group, topic)


async def create_topics(bootstrap: str, names: dict[str, str]) -> None:
    from aiokafka.admin import NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names.values()])
    finally:
        await admin.close()


async def soak(bootstrap: str, duration_s: float, accounts: int, max_growth: float, work: Path) -> bool:
    run = uuid.uuid4().hex[:8]
    commit = report.git_commit()  # the code the processes run, whatever the checkout is at the end
    topics = {r: f"soak-{run}-{r}" for r in ("events", "alerts", "health", "dlq", "clock")}
    extra = {"adlq": f"soak-{run}-alerts-dlq", "ledger": f"soak-{run}-deliveries"}
    await create_topics(bootstrap, {**topics, **extra})
    group = f"soak-{run}"
    factory = WorkerFactory(bootstrap, work)
    rules = work / "rules.toml"
    rules.write_text("[alerts]\nquiet_after_days = 0.000520833\n")  # 45 s, so alerts flow
    worker = factory.create(topics, PARTITIONS, group, rules_file=str(rules))
    # A small alert feed buffer fills within minutes, so a soak of a quarter of an hour can tell a
    # bounded buffer from a leak (at the default of 10,000 alerts it would still be filling).
    api = ApiProcess(bootstrap, topics, KEYS, work / "api.log", settings={"alert_buffer": "500"})
    receiver = Receiver(free_port())
    receiver.start()
    setup = Setup(bootstrap, topics["alerts"], extra["adlq"], extra["ledger"], work)
    delivery = setup.process(webhook_toml(receiver.port), delivery_max_attempts="20")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env.update(CHURNWATCH_KAFKA_BOOTSTRAP=bootstrap, CHURNWATCH_EVENTS_TOPIC=topics["events"])
    simulator: asyncio.subprocess.Process | None = None
    failures: list[str] = []
    figures: dict[str, Any] = {"duration (s)": duration_s, "simulated accounts": accounts}
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    try:
        await worker.start()
        await worker.wait_ready()
        await api.start()
        await api.wait_ready()
        await delivery.start()
        await delivery.wait_log("churnwatch delivery ready")
        with (work / "simulator.log").open("ab") as out:
            simulator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.faults.accounts",
                "--accounts",
                str(accounts),
                "--duration",
                str(duration_s),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=out,
            )
        started = time.monotonic()
        procs = {"worker": worker.proc, "api": api.proc, "delivery": delivery.proc}
        while time.monotonic() - started < duration_s:
            await asyncio.sleep(5)
            sample = {"t": time.monotonic() - started}
            for name, proc in procs.items():
                assert proc is not None
                if proc.returncode is not None:
                    failures.append(f"{name} exited with {proc.returncode}")
                    raise RuntimeError(failures[-1])
                sample[name] = rss_mib(proc.pid)
            sample["rocksdb_wal"] = wal_mib(Path(worker.env["CHURNWATCH_DATA_DIR"]))
            sample["lag"] = await true_lag(bootstrap, group, topics["events"])
            ready = await asyncio.to_thread(api.status, "/readyz", None)
            if ready != 200:
                failures.append(f"API /readyz answered {ready} at {sample['t']:.0f}s")
            samples.append(sample)
            with (work / "samples.jsonl").open("a") as series:
                series.write(json.dumps(sample) + "\n")
            log.info("%s", {k: round(v, 1) for k, v in sample.items()})
        assert simulator is not None
        await simulator.wait()
        # Let the pipeline drain, then check correctness.
        deadline = time.monotonic() + 120
        while await true_lag(bootstrap, group, topics["events"]) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(1)
        produced = await read_all(bootstrap, topics["events"])
        want: dict[str, set[str]] = {}
        for rec in produced:
            event = parse_event(rec.value)
            # Only usage counts in the daily buckets; NPS, tickets, subscriptions and account updates
            # are facts.
            if event.kind is EventKind.ACTIVITY and event.active:
                want.setdefault(event.account_id, set()).add(event.event_id)
        figures["events produced"] = len(produced)
        figures["mean rate (events/s)"] = round(len(produced) / duration_s, 1)
        got: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = {a: counted_events(s) for a, s in (await states(bootstrap, group)).items()}
            if got == {a: len(ids) for a, ids in want.items()}:
                break
            await asyncio.sleep(1)
        wrong = [a for a, ids in want.items() if got.get(a) != len(ids)]
        figures["accounts counted wrong"] = len(wrong)
        if wrong:
            failures.append(f"{len(wrong)} accounts counted wrong, e.g. {wrong[:5]}")
        raised = {a.alert_id for a in await alerts(bootstrap, topics["alerts"])}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not raised <= {h.headers["webhook-id"] for h in receiver.ok()}:
            await asyncio.sleep(1)
        ok = [h.headers["webhook-id"] for h in receiver.ok()]
        figures["alerts raised"] = len(raised)
        figures["alerts delivered (2xx)"] = len(ok)
        if set(ok) != raised or len(ok) != len(set(ok)):
            failures.append(f"delivery: {len(raised - set(ok))} missing, {len(ok) - len(set(ok))} duplicates")
    except Exception as exc:  # noqa: BLE001 - recorded as a failure of the run
        failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        if simulator is not None and simulator.returncode is None:
            simulator.terminate()
            await simulator.wait()
        await delivery.stop()
        await api.stop()
        await factory.stop_all()
        receiver.stop()

    warm = max(60.0, duration_s / 4)
    steady = [s for s in samples if s["t"] >= warm]
    figures["samples (every 5 s)"] = len(samples)
    for name in ("worker", "api", "delivery"):
        if len(steady) < 3:
            break
        xs, ys = [s["t"] for s in steady], [s[name] for s in steady]
        per_day = slope(xs, ys) * 86400
        figures[f"{name} RSS start / end of steady phase (MiB)"] = [round(ys[0], 1), round(ys[-1], 1)]
        figures[f"{name} RSS slope (MiB per day, least squares after warm-up)"] = round(per_day, 1)
        if per_day > max_growth:
            failures.append(f"{name} memory grows {per_day:.0f} MiB/day > {max_growth:.0f}")
    if len(steady) >= 3:
        xs, wal = [s["t"] for s in steady], [s["rocksdb_wal"] for s in steady]
        figures["worker RocksDB WAL (unflushed memtables) start / end of steady phase (MiB)"] = [
            round(wal[0], 1),
            round(wal[-1], 1),
        ]
        figures["worker RocksDB WAL slope (MiB per day)"] = round(slope(xs, wal) * 86400, 1)
        rss = [s["worker"] for s in steady]
        figures["worker RSS slope less the WAL slope (MiB per day)"] = round(
            (slope(xs, rss) - slope(xs, wal)) * 86400, 1
        )
    if len(samples) >= 8:
        q = len(samples) // 4
        second = [s["lag"] for s in samples[q : 2 * q]]
        last = [s["lag"] for s in samples[-q:]]
        figures["lag mean 2nd quarter / last quarter (records)"] = [
            round(sum(second) / len(second), 1),
            round(sum(last) / len(last), 1),
        ]
        figures["lag max (records)"] = max(s["lag"] for s in samples)
        if sum(last) / len(last) > max(2000.0, 2 * sum(second) / len(second)):
            failures.append("consumer lag grows without bound")
    else:
        failures.append("too few samples to judge (run longer)")
    figures["failures"] = failures or "none"
    description = (
        f"`make soak DURATION={duration_s:.0f}`: worker, API and alert delivery (to a local signed-webhook"
        " receiver) with simulated accounts at a steady rate (quiet after 45 s, so alerts flow)."
        " Fails when a process's memory slope after the warm-up (first quarter, at least 60 s)"
        f" extrapolates to more than {max_growth:.0f} MiB per day, when lag grows without bound"
        " (last-quarter mean above 2,000 records and above twice the second quarter's), or when a"
        " correctness check fails (API not ready, a process exited, an account counted wrong, an alert"
        " not delivered exactly once). The worker's RocksDB write-ahead logs are sampled too: their size"
        " is what the memtables hold unflushed (up to `CHURNWATCH_ROCKSDB_WRITE_BUFFER_MB` per buffer,"
        " two buffers per partition), growth that stops at the first flush; the RSS slope less the WAL"
        " slope is the growth not explained by it. Every sample is kept in `samples.jsonl` in the run's"
        " directory under `.local/soak/`."
    )
    outcome = "passed" if not failures else "failed"
    result = report.entry(
        "Soak: the full stack at a steady rate",
        description,
        outcome,
        time.monotonic() - started,
        figures,
        commit=commit,
    )
    report.store({"soak": {**result, "order": 90}})
    for line in failures:
        log.error("soak failed: %s", line)
    return not failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--max-growth-mib-per-day", type=float, default=256.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    bootstrap = os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP") or "127.0.0.1:9092"
    work = REPO / ".local" / "soak" / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    log.info("soak for %.0fs on %s; logs in %s", args.duration, bootstrap, work)
    ok = asyncio.run(soak(bootstrap, args.duration, args.accounts, args.max_growth_mib_per_day, work))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
