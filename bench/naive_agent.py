"""The comparison every Faust user writes first: one event at a time, one table write per event.

    python -m bench.naive_agent worker     (topic, app id and progress file from BENCH_* variables)

It parses each event and counts it in a RocksDB-backed, changelogged table keyed by account. It
writes ``<monotonic seconds> <events>`` to ``BENCH_PROGRESS`` every 10,000 events.
"""

from __future__ import annotations

import os
import time
from typing import Any

import faust
import orjson

BOOTSTRAP = os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
app = faust.App(
    os.environ.get("BENCH_APP_ID", "naive-bench"),
    broker=f"kafka://{BOOTSTRAP}",
    store="rocksdb://",
    datadir=os.environ.get("BENCH_DATA_DIR", ".local/naive-bench"),
    web_enabled=False,
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "8")),
    consumer_auto_offset_reset="earliest",
)
topic = app.topic(os.environ.get("BENCH_TOPIC", "usage-events"), key_serializer="raw", value_serializer="raw")
counts: Any = app.Table("counts", default=int, partitions=int(os.environ.get("BENCH_PARTITIONS", "8")))
PROGRESS = os.environ.get("BENCH_PROGRESS", "naive-progress.txt")


@app.agent(topic)
async def count(stream: Any) -> None:
    """Parse each event and count it per account, one event and one table write at a time."""
    seen = 0
    async for value in stream:
        doc = orjson.loads(value)
        account = doc.get("account_id") or (doc.get("context") or {}).get("groupId") or "?"
        counts[account] += 1
        seen += 1
        if seen % 10_000 == 0:
            with open(PROGRESS, "a") as out:  # noqa: PTH123
                out.write(f"{time.monotonic()} {seen}\n")


if __name__ == "__main__":
    app.main()
