"""Shared set-up for worker tests: a topic set, a rules file, and readers of what the worker wrote."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streamer.core.state import AccountState, decode_state
from streamer.worker.processor import ACTIVITY_KEY_PREFIX
from tests.integration.kafkautil import latest_by_key, read_all
from tests.integration.workers import Worker

TOPIC_ROLES = ("events", "alerts", "health", "dlq", "clock")


async def make_topics(topic_factory: Any, partitions: int) -> dict[str, str]:
    """One fresh topic per role, all with the same partition count."""
    return {role: await topic_factory(role, partitions) for role in TOPIC_ROLES}


def rules_file(tmp_path: Path, quiet_after_s: float, extra: str = "") -> Path:
    """A rules file with a quiet threshold of a few seconds, so that tests run in real time."""
    path = tmp_path / "rules.toml"
    path.write_text(f"[alerts]\nquiet_after_days = {quiet_after_s / 86400!r}\n{extra}")
    return path


def now_ms() -> int:
    """Wall time in epoch milliseconds."""
    return int(time.time() * 1000)


def event(account: str, event_id: str, at_ms: int, name: str = "login", user: str = "u1") -> bytes:
    """A valid native event."""
    return orjson.dumps(
        {"event_id": event_id, "account_id": account, "event": name, "timestamp": at_ms, "user_id": user}
    )


@dataclass(frozen=True)
class AlertSeen:
    """The identity of an alert, as compared between runs."""

    alert_id: str
    kind: str
    account_id: str
    detected_at: str


async def alerts(bootstrap: str, topic: str) -> list[AlertSeen]:
    """Every alert on ``topic`` so far."""
    out = []
    for rec in await read_all(bootstrap, topic):
        doc = orjson.loads(rec.value)
        out.append(AlertSeen(doc["alert_id"], doc["kind"], doc["account_id"], doc["detected_at"]))
    return out


async def states(bootstrap: str, app_id: str) -> dict[str, AccountState]:
    """The account states a worker group stored, read from its table's changelog."""
    latest = latest_by_key(await read_all(bootstrap, f"{app_id}-accounts-changelog"))
    return {
        key.decode(): decode_state(value)
        for key, value in latest.items()
        if not key.decode().startswith(ACTIVITY_KEY_PREFIX)  # the partition's activity record
    }


def counted_events(state: AccountState) -> int:
    """Counted activity events in the state's buckets."""
    return sum(bucket.events for bucket in state.days.values())


def scrape(port: str | int, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels on a local Prometheus endpoint (0 when absent)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def metric(worker: Worker, name: str, **labels: str) -> float:
    """A sample from the worker's Prometheus endpoint (0 when absent)."""
    return scrape(worker.env["CHURNWATCH_METRICS_PORT"], name, **labels)


async def wait_clocks(worker: Worker, partitions: int, at_least_ms: int, timeout_s: float) -> None:
    """Wait until every partition's event-time clock on ``worker`` has reached ``at_least_ms``.

    What the worker would raise up to that instant it has raised by then: a condition to wait on
    before asserting that nothing more comes, instead of a fixed sleep.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        clocks = [
            metric(worker, "churnwatch_partition_clock_seconds", partition=str(p)) for p in range(partitions)
        ]
        if min(clocks) * 1000 >= at_least_ms:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"partition clocks stayed below {at_least_ms}")


async def wait_metric(worker: Worker, name: str, at_least: float, timeout_s: float, **labels: str) -> None:
    """Wait until a worker metric reaches ``at_least``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metric(worker, name, **labels) >= at_least:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{name}{labels} stayed below {at_least}: {metric(worker, name, **labels)}")
