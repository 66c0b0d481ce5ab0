"""``python -m streamer.delivery``: deliver alerts from ``churn-alerts`` to Slack and signed webhooks.

Delivery is a separate process from the scoring worker, with its own consumer group
(``<app_id>-delivery``), because a slow or failing destination must never delay scoring: the worker
only writes alerts to Kafka, and however long a receiver is down, its alerts wait in the topic, not
in the worker. It also scales and restarts independently: a config change or a crash here does not
rebalance the stateful worker, and the number of delivery processes can follow the number of
destinations rather than the event volume.

Delivery is at-least-once with deduplication. A compacted ledger topic records, per destination
and alert, that it was delivered (or dead-lettered); it is read fully at start, an alert already
in it is skipped, and an alert's offset is committed only after every destination's ledger record
was acknowledged. A crash between a receiver's 2xx and the ledger write can still deliver that
alert once more; it then carries the same ``webhook-id`` (the alert id), so receivers drop it by
that id. A planned stop (SIGTERM) lets requests in flight finish first, so it does not re-deliver.
A destination that answers 410 Gone is disabled until its configuration (name, type, URL or
secret) changes, across restarts; its alerts go to the DLQ with the reason
``destination disabled (410)``.

With ``CHURNWATCH_DIGEST_ENABLED=true`` it also follows ``account-health`` and sends each owner a
daily digest through the same senders and ledger (:mod:`streamer.delivery.digests`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Sequence

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from streamer.cliutil import parser_for
from streamer.delivery.config import DeliveryConfig, load_delivery_config
from streamer.delivery.service import DeliveryService, ensure_delivery_topics, health_partitions
from streamer.delivery.settings import DeliverySettings
from streamer.logfilter import downgrade_transient_kafka_errors, rate_limit_logging

log = logging.getLogger("churnwatch.delivery")


async def _serve(settings: DeliverySettings, config: DeliveryConfig) -> None:
    # The Kafka clients bind to the running loop, so the service is built inside it.
    service = build_service(settings, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.run(stop)


def build_service(settings: DeliverySettings, config: DeliveryConfig) -> DeliveryService:
    """The service with its production clients: httpx, an idempotent producer and two consumers."""
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.delivery_timeout_s, connect=settings.delivery_connect_timeout_s),
        headers={"user-agent": "churnwatch-delivery"},
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-delivery",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    # Only built when used: an aiokafka client that is never started or closed warns when collected.
    health = (
        AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        if settings.digest_enabled
        else None
    )
    return DeliveryService(
        settings,
        config,
        http=http,
        producer=producer,
        consumer=consumer,
        reader=reader,
        ensure_topics=functools.partial(ensure_delivery_topics, settings),
        health_reader=health,
        health_partitions=functools.partial(health_partitions, settings),
    )


DESCRIPTION = """\
Deliver alerts from the alert topic to Slack and signed webhooks (Standard Webhooks), as routed by
the delivery file (CHURNWATCH_DELIVERY_FILE). At least once, deduplicated through a compacted ledger
topic; retries with backoff and Retry-After; a destination answering 410 stays disabled until its
configuration changes. With CHURNWATCH_DIGEST_ENABLED=true, also each owner's daily digest, once a
day at CHURNWATCH_DIGEST_HOUR in CHURNWATCH_DIGEST_TIME_ZONE. Stops on SIGTERM or SIGINT after
requests in flight finish."""


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Load the settings and the delivery file, serve metrics, deliver until SIGTERM or SIGINT."""
    parser_for(prog or "python -m streamer.delivery", DESCRIPTION, DeliverySettings).parse_args(argv)
    settings = DeliverySettings()
    logging.basicConfig(level=settings.log_level, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    # A broker or destination outage repeats the same errors many times a second.
    rate_limit_logging()
    downgrade_transient_kafka_errors()  # its group's coordinator election is not an error
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    # Request lines would log every delivery twice; our own log says what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.delivery_file is None:
        raise SystemExit("CHURNWATCH_DELIVERY_FILE is required: the TOML file of destinations and routes")
    config = load_delivery_config(settings.delivery_file.read_text(encoding="utf-8"))
    if settings.delivery_metrics_port:
        start_http_server(settings.delivery_metrics_port, addr=settings.metrics_host)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.delivery_metrics_port)
    try:
        asyncio.run(_serve(settings, config))
    except KafkaError as err:
        sys.exit(f"churnwatch delivery: cannot reach Kafka at {settings.kafka_bootstrap} ({err})")


if __name__ == "__main__":
    main()
