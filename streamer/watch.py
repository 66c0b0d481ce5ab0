"""``python -m streamer.watch``: follow the alert topic in a terminal, one line per alert."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamer.cliutil import quiet_logger
from streamer.worker.settings import WorkerSettings


def describe(doc: dict[str, object]) -> str:
    """One readable line for an alert document."""
    health: dict[str, object] = doc["health"] if isinstance(doc.get("health"), dict) else {}  # type: ignore[assignment]
    evidence: dict[str, object] = doc["evidence"] if isinstance(doc.get("evidence"), dict) else {}  # type: ignore[assignment]
    return (
        f"{doc.get('detected_at')}  {str(doc.get('severity')).upper():6} {doc.get('kind'):18} "
        f"{doc.get('account_id')}  score {health.get('score')} ({health.get('band')})  "
        f"last activity {evidence.get('last_activity_at')}"
    )


async def follow(bootstrap: str, topic: str, from_beginning: bool) -> None:
    """Print alerts as they arrive until interrupted.

    Raises:
        KafkaError: When no broker at ``bootstrap`` answers (``KafkaConnectionError``), or Kafka
            refuses the consumer.
    """
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest" if from_beginning else "latest"
    )
    try:
        with quiet_logger("aiokafka"):  # its connection errors would precede ours, with less to say
            await consumer.start()
    except BaseException:
        await consumer.stop()  # a consumer that failed to start still holds its client
        raise
    sys.stdout.write(f"following alerts on {topic} (Ctrl-C stops watching; `make down` stops all)\n")
    sys.stdout.flush()
    try:
        async for record in consumer:
            sys.stdout.write(describe(orjson.loads(record.value)) + "\n")
            sys.stdout.flush()
    finally:
        await consumer.stop()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Parse arguments and follow the alert topic."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m streamer.watch",
        description="Follow churnwatch alerts on the alert topic, one line each, until Ctrl-C.",
    )
    parser.add_argument("--from-beginning", action="store_true", help="every alert kept, then new ones")
    args = parser.parse_args(argv)
    settings = WorkerSettings()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(follow(settings.kafka_bootstrap, settings.alerts_topic, args.from_beginning))
    except KafkaError as err:
        reason = "no broker answered" if isinstance(err, KafkaConnectionError) else str(err) or repr(err)
        sys.exit(
            f"{parser.prog}: cannot reach Kafka at {settings.kafka_bootstrap}: {reason} "
            "— start it with `make kafka-up`, or set CHURNWATCH_KAFKA_BOOTSTRAP to a broker"
        )


if __name__ == "__main__":
    main()
