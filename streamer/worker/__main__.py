"""``churnwatch worker`` (or ``python -m streamer``): run a churnwatch worker."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from streamer.cliutil import parser_for, quiet_logger
from streamer.core.policy import PolicyError, load_policy
from streamer.core.state import NATIVE_CODEC
from streamer.gctuning import tune_gc
from streamer.kafka.topics import TopicMismatchError
from streamer.logfilter import downgrade_transient_kafka_errors, rate_limit_logging
from streamer.worker import metrics
from streamer.worker.app import create_app
from streamer.worker.faust_compat import run_worker
from streamer.worker.settings import WorkerSettings
from streamer.worker.topics import ensure_topics

log = logging.getLogger("churnwatch.worker")


DESCRIPTION = """\
Run a churnwatch worker: consume usage events, keep each account's state, publish health snapshots
and alerts. Creates its topics when missing. Scale out with partitions and more workers (same
CHURNWATCH_APP_ID). Stops on SIGTERM or SIGINT after committing what it processed."""


def warn_removed_settings(settings: WorkerSettings, environ: Mapping[str, str]) -> None:
    """Say so when a setting the worker no longer reads is set, and what replaced it."""
    if "CHURNWATCH_ROCKSDB_CACHE_MB" in environ:
        log.warning(
            "CHURNWATCH_ROCKSDB_CACHE_MB (a cache per partition) is no longer read: RocksDB's memory is one"
            " budget for the worker, CHURNWATCH_ROCKSDB_MEMORY_MB (now %d MiB)",
            settings.rocksdb_memory_mb,
        )


def say_which_codec(native: bool) -> None:
    """Log whether states are encoded by the compiled codec or, more slowly, by the Python one."""
    if native:
        log.info("state codec: compiled (churnwatch_native)")
    else:
        log.warning(
            "state codec: Python, churnwatch_native is not installed (`make install` builds it with cargo);"
            " the worker is slower on accounts that leave its cache"
        )


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Create the topics, serve metrics and run the Faust worker until it is told to stop."""
    parser_for(prog or "python -m streamer", DESCRIPTION, WorkerSettings).parse_args(argv)
    settings = WorkerSettings()
    logging.basicConfig(level=settings.log_level, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    rate_limit_logging()  # until the worker sets up its own handlers (topics, metrics)
    downgrade_transient_kafka_errors()  # the coordinator election at a start is not an error
    warn_removed_settings(settings, os.environ)
    try:
        policies = load_policy(settings.rules_text())
    except (OSError, PolicyError) as err:
        sys.exit(f"churnwatch worker: rules file {settings.rules_file}: {err}")
    try:
        with quiet_logger("aiokafka"):  # its connection errors would precede ours, with less to say
            asyncio.run(ensure_topics(settings))
    except KafkaError as err:
        sys.exit(f"churnwatch worker: cannot reach Kafka at {settings.kafka_bootstrap} ({err})")
    except TopicMismatchError as err:
        sys.exit(f"churnwatch worker: {err}")
    say_which_codec(NATIVE_CODEC is not None)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    metrics.watch_gc()
    app = create_app(settings, policies)
    tune_gc()
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    run_worker(app, settings.log_level)


if __name__ == "__main__":
    main()
