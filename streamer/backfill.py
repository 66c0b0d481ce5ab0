"""``churnwatch backfill``: produce a history into ``usage-events`` in event-time order, keyed by account.

For loading months of exported events (Segment or native JSON lines) into a fresh deployment whose
workers run with ``CHURNWATCH_CLOCK=event``: the history is read and sorted by event time exactly as
``churnwatch backtest`` sorts it (invalid lines are skipped and counted), and produced keyed by
account id with Kafka's default partitioner, each partition in event-time order, so each partition's
clock moves as the backtest's does and the alerts are the ones the backtest reports.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamer.backtest.history import read_history
from streamer.cliutil import quiet_logger
from streamer.core.events import parse_event
from streamer.kafka.batches import send_in_batches
from streamer.kafka.partitioner import kafka_partitioner

__all__ = ["add_parser", "backfill"]

_CHUNK = 5000


async def backfill(path: Path, bootstrap: str, topic: str) -> tuple[int, dict[str, int]]:
    """Produce every valid event of ``path`` to ``topic``; ``(events produced, invalid lines by field)``.

    Raises:
        LookupError: When the topic does not exist (a worker creates its topics when it starts).
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
    )
    # Connect before reading: an unreachable broker is reported at once, not after sorting the history.
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    produced = 0
    history = None
    try:
        partitions = await producer.partitions_for(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist: start a worker first, it creates its topics")
        history = read_history(path)
        partition_for = kafka_partitioner(len(partitions))
        pending: dict[int, list[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]]] = {}
        futures: list[asyncio.Future[Any]] = []

        async def flush() -> None:
            for p, records in pending.items():
                futures.extend(f for f, _ in await send_in_batches(producer, topic, p, records))
            pending.clear()
            await asyncio.gather(*futures)
            futures.clear()

        for _, line in history.events():
            account = parse_event(line).account_id
            pending.setdefault(partition_for(account), []).append((account.encode(), line, ()))
            produced += 1
            if produced % _CHUNK == 0:
                await flush()
        await flush()
    finally:
        await producer.stop()
        if history is not None:
            history.close()
    return produced, dict(history.invalid)


def add_parser(sub: Any) -> None:
    """Add the ``backfill`` subcommand."""
    p = sub.add_parser(
        "backfill",
        help="produce a history into usage-events in event-time order, keyed by account",
        description=(
            "Produce a history into the events topic in event-time order, keyed by account, for a fresh\n"
            "deployment whose workers run with CHURNWATCH_CLOCK=event: sorted exactly as `churnwatch\n"
            "backtest` sorts it (invalid lines skipped and counted), each partition in event-time order, so\n"
            "the alerts are the ones the backtest reports. Then wait for consumer lag 0 and switch the\n"
            "workers to CHURNWATCH_CLOCK=wall."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("history", type=Path, help="JSON lines (.jsonl or .jsonl.gz), any order")
    p.add_argument(
        "--bootstrap", default=None, help="Kafka bootstrap servers (default: CHURNWATCH_KAFKA_BOOTSTRAP)"
    )
    p.add_argument("--topic", default=None, help="the events topic (default: CHURNWATCH_EVENTS_TOPIC)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run a backfill; 0 on success, 1 when Kafka refuses, 2 on bad input."""
    from streamer.worker.settings import WorkerSettings

    settings = WorkerSettings()
    if not args.history.exists():
        _error(f"backfill: {args.history}: no such file")
        return 2
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    topic = args.topic or settings.events_topic
    try:
        with quiet_logger("aiokafka"):  # its connection errors would precede ours, with less to say
            produced, invalid = asyncio.run(backfill(args.history, bootstrap, topic))
    except LookupError as err:
        _error(f"backfill: {err}")
        return 2
    except (KafkaError, OSError) as err:
        _error(f"backfill: Kafka at {bootstrap} did not take the events: {err}")
        return 1
    skipped = f"; skipped invalid lines by field: {invalid}" if invalid else ""
    sys.stdout.write(f"backfill: produced {produced:,} events to {topic}{skipped}\n")
    return 0


def _error(message: str) -> None:
    sys.stderr.write(message + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="churnwatch")
    add_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["backfill", *sys.argv[1:]])
    sys.exit(parsed.func(parsed))
