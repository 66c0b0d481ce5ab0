"""Prometheus metrics of the worker (served on ``CHURNWATCH_METRICS_PORT``)."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "churnwatch_events_total",
    "Input records by outcome: counted, duplicate, fact, inactive, late, invalid, poison, rekeyed, replayed,"
    " attributed (a message naming only its user, re-sent to its account).",
    ["outcome"],
)
EVENT_LAG = Histogram(
    "churnwatch_event_time_lag_seconds",
    "Wall time at processing minus the event's own timestamp, for counted events.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)
ALERTS = Counter("churnwatch_alerts_total", "Alerts raised, by kind.", ["kind"])
ACCOUNTS_BY_BAND = Gauge(
    "churnwatch_accounts_by_band", "Tracked accounts by their last health band.", ["band"]
)
TRACKED_ACCOUNTS = Gauge("churnwatch_tracked_accounts", "Accounts with state on this worker's partitions.")
CONSUMER_LAG = Gauge(
    "churnwatch_consumer_lag", "High-water mark minus next offset, per input partition.", ["partition"]
)
PARTITION_CLOCK = Gauge(
    "churnwatch_partition_clock_seconds", "The event-time clock of each owned partition.", ["partition"]
)
BATCH_SECONDS = Histogram(
    "churnwatch_batch_seconds",
    "Time to process one batch, from decode to acknowledged writes.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
COMMIT_SECONDS = Histogram(
    "churnwatch_commit_seconds",
    "Time to encode a partition's changed account states and write them to the store and changelog.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
GC_PAUSE_SECONDS = Histogram(
    "churnwatch_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector, by generation (the whole process stops meanwhile).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
WAITING = Gauge(
    "churnwatch_waiting_messages",
    "Segment messages naming only their user, waiting for the user's group call (then dead-lettered).",
)
KNOWN_USERS = Gauge("churnwatch_known_users", "Users in the worker's user → account directory.")
POISON = Counter(
    "churnwatch_poison_total",
    "Failures isolated to one record or account instead of stopping the worker, by stage: decode, load,"
    " apply, crash (the record is dead-lettered), advance, publish, flush (the account is left as it"
    " was).",
    ["stage"],
)


def watch_gc() -> None:
    """Observe every garbage collection's pause in :data:`GC_PAUSE_SECONDS` (once per process)."""
    started: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            GC_PAUSE_SECONDS.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

    if not any(getattr(cb, "__qualname__", "").startswith("watch_gc.") for cb in gc.callbacks):
        gc.callbacks.append(callback)
