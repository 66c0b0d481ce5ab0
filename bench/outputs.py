"""A digest of everything the partition processor writes, to show that a change to it changed no output.

    .venv/bin/python -m bench.outputs [--events N --accounts N --days D --seeded N --live ...]

The benchmark's event mix (``bench.processor``) with a few invalid records, at fixed event times and
a fixed wall clock per batch, then a few days of hourly clock ticks (quiet deadlines and midnights
fire), then the snapshots still waiting to settle. It prints a SHA-256 of the alerts, the health
snapshots, the dead letters, the outcomes, every flush's writes and the final store, in order.
Run it with the same arguments (and the same ``PYTHONHASHSEED``: a set's order decides the order of
some snapshots) on two trees; the ``ALL`` lines must be equal.
"""

from __future__ import annotations

import argparse
import hashlib

from bench import workload
from bench.processor import processor
from streamer.worker.processor import BatchOutput, MemoryStore, Record

END_MS = 1_790_000_000_000  # fixed: both trees see the same event times
HOUR_MS = 3_600_000


def main() -> None:
    """Run the workload and print the digests."""
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--accounts", type=int, default=20_000)
    p.add_argument("--days", type=float, default=1.0, help="event time the events span")
    p.add_argument("--cache", type=int, default=2_500)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--live", action="store_true", help="publish health every batch")
    p.add_argument("--seeded", type=int, default=0, help="accounts stored with 35 days of history first")
    p.add_argument("--tick-days", type=int, default=10, help="days of hourly clock ticks after the events")
    p.add_argument("--step-ms", type=int, default=400, help="wall time per batch")
    a = p.parse_args()
    start = END_MS - int(a.days * 86_400_000)
    mix = list(workload.events(a.events, a.accounts, start, END_MS, 1))
    for j in range(0, len(mix), 5000):  # a few invalid records, for the dead letters
        mix[j] = (b"x", b'{"event": "login", "timestamp": "soon"}' if j % 10000 else b"not json")
    recs = [Record(0, i, k, v) for i, (k, v) in enumerate(mix)]
    proc = processor(a.cache)
    store = MemoryStore()
    store.data.update(workload.encoded_states(a.seeded, start))
    parts = {k: hashlib.sha256() for k in ("alerts", "health", "dead", "writes", "outcomes")}
    counts = dict.fromkeys(parts, 0)

    def eat(out: BatchOutput) -> None:
        for _, raw in out.encoded_alerts:
            parts["alerts"].update(raw + b"\n")
            counts["alerts"] += 1
        for account_id, raw in out.health:
            parts["health"].update(account_id.encode() + b"\0" + raw + b"\n")
            counts["health"] += 1
        for rec, reason in out.dead_letters:
            parts["dead"].update(f"{rec.offset}\0{reason}\n".encode())
            counts["dead"] += 1
        parts["outcomes"].update(repr(sorted(out.outcomes.items())).encode())
        parts["outcomes"].update(repr(sorted(out.poison.items())).encode())
        counts["outcomes"] += 1

    def flush(now: int) -> None:
        writes = proc.flush(now)
        for key in sorted(writes):
            parts["writes"].update(key.encode() + b"\0" + writes[key] + b"\n")
            counts["writes"] += 1
        store.data.update(writes)

    now = END_MS + 60_000
    for i in range(0, len(recs), a.batch):
        now += a.step_ms
        eat(proc.process(recs[i : i + a.batch], store, now, backlog=not a.live))
        if proc.flush_due(now):
            flush(now)
    for _ in range(1, 24 * a.tick_days):  # caught up: the clock moves on wall time
        now += HOUR_MS
        eat(proc.tick(now - 5_000, store, now))
        if proc.flush_due(now):
            flush(now)
    eat(proc.publish_pending(store, now))
    flush(now)
    final = hashlib.sha256()
    for key in sorted(store.data):
        final.update(key.encode() + b"\0" + store.data[key] + b"\n")
    everything = hashlib.sha256()
    for name, digest in parts.items():
        print(f"{name:9} {counts[name]:7} {digest.hexdigest()[:16]}")
        everything.update(digest.digest())
    print(f"store     {len(store.data):7} {final.hexdigest()[:16]}")
    everything.update(final.digest())
    print(f"bands {sorted(proc.bands.items())}")
    print(f"ALL {everything.hexdigest()}")


if __name__ == "__main__":
    main()
