"""Backfill in event time: a history produced by ``churnwatch backfill`` into a worker with
``CHURNWATCH_CLOCK=event`` yields exactly the alerts ``churnwatch backtest`` reports for the same file."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from streamer.backtest.history import read_history
from streamer.backtest.replay import replay
from streamer.core.policy import DAY_MS, load_policy
from streamer.sim.seeded import Simulation, make_accounts
from tests.integration.kafkautil import read_all, wait_committed
from tests.integration.pipeline import make_topics, now_ms
from tests.integration.workers import REPO, WorkerFactory

PARTITIONS = 3
# 1970-01-01 was a Thursday: Mondays are 4 days into each week counted from the epoch.
_MONDAY = 4 * DAY_MS
RULES = "[alerts]\nquiet_after_days = 2\n[onboarding]\ndays = 5\n"


def _history(path: Path, days: int) -> int:
    """A seeded simulated history of ``days`` days that ended in the last week; the number of events.

    It starts on a Monday at midnight UTC: the simulation's rhythm follows the time of day and the
    weekday, so the same seed then gives the same history (and alerts) whatever the day of the run."""
    week = 7 * DAY_MS
    start = (now_ms() - days * DAY_MS - week) // week * week + _MONDAY
    sim = Simulation(make_accounts(40, 5, start, days * DAY_MS), 5, start)
    lines = [orjson.dumps(e) for e in sim.until(start + days * DAY_MS)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


async def test_a_backfilled_topic_yields_exactly_the_backtests_alerts(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    events = _history(history, 60)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    topics = await make_topics(topic_factory, PARTITIONS)

    # The documented procedure: churnwatch backfill, then a worker in event-time mode reads it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "backfill",
        str(history),
        "--bootstrap",
        kafka_bootstrap,
        "--topic",
        topics["events"],
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert f"produced {events:,} events" in out.decode()

    group = f"backfill-{unique_id}"
    await worker_factory.ready(topics, PARTITIONS, group, clock="event", rules_file=str(rules))
    await wait_committed(kafka_bootstrap, group, topics["events"], events, 180)
    # Committed means written: the alerts of every committed record are on the topic.
    seen = sorted(
        (doc["alert_id"], doc["kind"], doc["account_id"], doc["detected_at"])
        for doc in (orjson.loads(r.value) for r in await read_all(kafka_bootstrap, topics["alerts"]))
    )

    read = read_history(history)
    try:
        expected = replay(read, load_policy(RULES), [], partitions=PARTITIONS)
    finally:
        read.close()
    want = sorted(
        (doc["alert_id"], doc["kind"], doc["account_id"], doc["detected_at"])
        for doc in (orjson.loads(value) for _, value in expected.alerts)
    )
    assert len(want) >= 20, "the history should raise alerts of its own"
    assert {kind for _, kind, _, _ in want} >= {"account_quiet", "usage_drop", "account_recovered"}
    assert seen == want
