"""Throughput of the partition processor alone (decode, dedup, windows, scoring, encoding), no Kafka.

    .venv/bin/python -m bench.processor [--events N] [--accounts N] [--batch N] [--live]

Without --live the batches are treated as a backlog (health snapshots deferred), as in a replay.
The processor's clock advances ``--step-ms`` per batch rather than with the wall clock, so that the
work done (flushes, settled snapshots) is the same whatever the speed: two implementations, or two
runs, are compared on the same work.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from bench import workload
from streamer.core.policy import load_policy
from streamer.worker.processor import PartitionProcessor, Record


class Store:
    """An in-memory stand-in for the account table."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, account_id: str) -> bytes | None:
        return self.data.get(account_id)

    def scan(self) -> Iterable[tuple[str, bytes]]:
        return iter(())


def records(n: int, accounts: int, days: float, seed: int = 1) -> list[Record]:
    """The benchmark's event mix over ``days`` of event time ending a minute ago."""
    end = int(time.time() * 1000) - 60_000
    mix = workload.events(n, accounts, end - int(days * 86_400_000), end, seed)
    return [Record(0, i, key, value) for i, (key, value) in enumerate(mix)]


def processor(cache_max: int, flush_interval_ms: int = 5_000) -> PartitionProcessor:
    """Partition 0's processor as the benchmarks run it (default rules, every account on partition 0)."""
    return PartitionProcessor(
        0,
        load_policy(None),
        lambda _: 0,
        allowed_lateness_ms=30_000,
        max_future_ms=300_000,
        cache_max=cache_max,
        flush_interval_ms=flush_interval_ms,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--live", action="store_true", help="publish health every batch")
    parser.add_argument(
        "--cache", type=int, default=2_500, help="decoded states kept (the worker's per partition)"
    )
    parser.add_argument("--flush-interval-ms", type=int, default=5_000)
    parser.add_argument("--days", type=float, default=1.0, help="event time the events span")
    parser.add_argument("--step-ms", type=int, default=250, help="processor clock per batch")
    args = parser.parse_args()
    recs = records(args.events, args.accounts, args.days)
    proc = processor(args.cache, args.flush_interval_ms)
    store = Store()
    published = 0
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for i in range(0, len(recs), args.batch):
        now += args.step_ms
        out = proc.process(recs[i : i + args.batch], store, now, backlog=not args.live)
        if proc.flush_due(now):
            store.data.update(proc.flush(now))
        published += len(out.health)
    elapsed = time.perf_counter() - started
    mode = "live" if args.live else "backlog"
    print(f"{args.events / elapsed:,.0f} events/s ({mode}, batch {args.batch}, {published} snapshots)")


if __name__ == "__main__":
    main()
