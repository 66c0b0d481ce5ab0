"""The simulator into Kafka: the events of its JSONL output, keyed by account, never in the future."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from streamer.core.alerts import ms_to_rfc3339
from streamer.core.events import parse_event
from tests.integration.kafkautil import read_all
from tests.integration.workers import REPO

# One simulated day that ended a day ago: finite and entirely in the past, whatever the weekday.
ARGS = ("--accounts", "12", "--seed", "11", "--speed", "0", "--duration", "86400")


async def run_simulator(bootstrap: str, topic: str, start: str, *extra: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env |= {"CHURNWATCH_KAFKA_BOOTSTRAP": bootstrap, "CHURNWATCH_EVENTS_TOPIC": topic}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.simulate",
        *ARGS,
        "--start",
        start,
        *extra,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out


async def test_simulator_produces_keyed_valid_events_to_kafka(
    kafka_bootstrap: str, topic_factory: Any
) -> None:
    topic = await topic_factory("sim", partitions=3)
    started_ms = int(time.time() * 1000)
    start_ms = started_ms // 1000 * 1000 - 2 * 86_400_000
    start = ms_to_rfc3339(start_ms)

    await run_simulator(kafka_bootstrap, topic, start)
    finished_ms = int(time.time() * 1000)
    records = await read_all(kafka_bootstrap, topic)
    jsonl = await run_simulator(kafka_bootstrap, topic, start, "--jsonl", "-")

    assert len(records) > 24  # at least facts and a subscription start per account
    events = [parse_event(rec.value) for rec in records]
    assert all(rec.key == ev.account_id.encode() for rec, ev in zip(records, events, strict=True))
    assert len({ev.event_id for ev in events}) == len(events)
    assert all(start_ms <= ev.occurred_at_ms <= min(finished_ms, start_ms + 86_400_000) for ev in events)
    # Per account (one partition each), events arrive in time order.
    by_account: dict[str, list[int]] = {}
    for ev in events:
        by_account.setdefault(ev.account_id, []).append(ev.occurred_at_ms)
    assert all(times == sorted(times) for times in by_account.values())
    assert {ev.name for ev in events} >= {"account_updated", "subscription_started", "login"}
    # The same run written as JSONL holds the same events (Kafka orders them per partition only).
    lines = jsonl.splitlines()
    assert sorted(lines) == sorted(rec.value for rec in records)
    for account, times in by_account.items():
        in_file = [parse_event(ln) for ln in lines]
        assert [e.occurred_at_ms for e in in_file if e.account_id == account] == times
