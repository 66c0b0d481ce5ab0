"""The clock on real Kafka: a replay at full speed raises what live traffic raised; workers share it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from streamer.kafka.partitioner import kafka_partitioner
from tests.integration.kafkautil import produce, wait_until
from tests.integration.pipeline import alerts, event, make_topics, metric, now_ms, rules_file, wait_clocks
from tests.integration.workers import Worker, WorkerFactory

QUIET_S = 2.5

# Seconds after the start at which each account is active; silences longer than QUIET_S make
# quiet episodes, activity after one makes a recovery.
SCHEDULE: dict[str, list[float]] = {
    "steady": [i * 0.5 for i in range(17)],
    "stops-early": [0.0, 0.5, 1.0],
    "comes-back": [0.0, 0.4, 4.5, 5.0],
    "single": [0.2],
    "stops-late": [i * 0.5 for i in range(12)],
}


async def _play_live(bootstrap: str, topic: str) -> int:
    """Produce the schedule in real time, each event stamped when it is sent; returns the end."""
    timeline = sorted((at, account) for account, times in SCHEDULE.items() for at in times)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        start = time.monotonic()
        for n, (at, account) in enumerate(timeline):
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            value = event(account, f"{account}-{n}", now_ms())
            await producer.send_and_wait(topic, value, key=account.encode())
    finally:
        await producer.stop()
    return now_ms()


async def test_replay_at_full_speed_raises_the_same_alerts_as_live_traffic(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    rules = str(rules_file(tmp_path, QUIET_S))
    live_topics = await make_topics(topic_factory, partitions=2)
    live = worker_factory.create(live_topics, 2, f"live-{unique_id}", rules_file=rules)
    await live.start()
    await live.wait_ready()
    end = await _play_live(kafka_bootstrap, live_topics["events"])
    # Every account's last deadline is behind the live worker's clocks.
    settled_ms = end + int(QUIET_S * 1000) + 1000
    await wait_clocks(live, 2, settled_ms, QUIET_S + 30)
    live_alerts = await alerts(kafka_bootstrap, live_topics["alerts"])
    await live.stop()

    replay_topics = {**(await make_topics(topic_factory, partitions=2)), "events": live_topics["events"]}
    replay = worker_factory.create(replay_topics, 2, f"replay-{unique_id}", rules_file=rules)
    await replay.start()

    async def replay_done() -> bool:
        return len(await alerts(kafka_bootstrap, replay_topics["alerts"])) >= len(live_alerts)

    await wait_until(replay_done, 90, "the replay to raise as many alerts as live traffic did")
    await wait_clocks(replay, 2, settled_ms, 60)  # and no more than that, once its clocks are as far
    replay_alerts = await alerts(kafka_bootstrap, replay_topics["alerts"])

    kinds = sorted(a.kind for a in live_alerts)
    assert kinds.count("account_quiet") == 6, kinds  # comes-back is quiet twice
    assert kinds.count("account_recovered") == 1, kinds
    assert sorted(replay_alerts, key=str) == sorted(live_alerts, key=str)


def _owned(worker: Worker) -> list[int]:
    found = re.findall(r"owns partitions \[([0-9, ]*)\]", worker.log_text())
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []


async def test_two_workers_sharing_partitions_each_raise_quiet_alerts_for_their_own_accounts(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    partitions = 4
    topics = await make_topics(topic_factory, partitions)
    rules = str(rules_file(tmp_path, QUIET_S))
    first = worker_factory.create(topics, partitions, f"pair-{unique_id}", rules_file=rules)
    second = worker_factory.create(topics, partitions, f"pair-{unique_id}", rules_file=rules)
    await first.start()
    await first.wait_ready()
    await second.start()

    async def shared() -> bool:
        a, b = _owned(first), _owned(second)
        return bool(a) and bool(b) and sorted(a + b) == list(range(partitions))

    await wait_until(shared, 60, "both workers to own partitions")
    partition_for = kafka_partitioner(partitions)
    accounts: dict[int, list[str]] = {p: [] for p in range(partitions)}
    n = 0
    while any(len(v) < 2 for v in accounts.values()):
        name = f"acct-{n}"
        if len(accounts[partition_for(name)]) < 2:
            accounts[partition_for(name)].append(name)
        n += 1
    names = [name for group in accounts.values() for name in group]
    at = now_ms()
    await produce(kafka_bootstrap, topics["events"], [(a.encode(), event(a, f"{a}-1", at)) for a in names])

    async def all_quiet() -> bool:
        seen = await alerts(kafka_bootstrap, topics["alerts"])
        return {a.account_id for a in seen if a.kind == "account_quiet"} == set(names)

    # Produced the moment the rebalance is announced: none may be lost while the workers recover.
    await wait_until(all_quiet, QUIET_S + 30, "a quiet alert for every account on every partition")
    assert metric(first, "churnwatch_alerts_total", kind="account_quiet") > 0
    assert metric(second, "churnwatch_alerts_total", kind="account_quiet") > 0
    assert metric(first, "churnwatch_alerts_total", kind="account_quiet") + metric(
        second, "churnwatch_alerts_total", kind="account_quiet"
    ) == len(names)
