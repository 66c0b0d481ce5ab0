"""Worker settings: one typed, frozen object built at the entry point from ``CHURNWATCH_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streamer.kafka.settings import KafkaSettings


class WorkerSettings(KafkaSettings):
    """Everything the worker can be told. Every field is documented in the README's configuration table."""

    app_id: str = Field("churnwatch", description="Consumer group and prefix of the changelog topics.")
    events_topic: str = Field("usage-events", description="Input: usage events, keyed by account id.")
    health_topic: str = Field("account-health", description="Latest health snapshot per account (compacted).")
    dlq_topic: str = Field("usage-events-dlq", description="Rejected input, with the reason in a header.")
    clock_topic: str = Field("churnwatch-clock", description="Internal: per-partition clock ticks.")
    users_topic: str = Field(
        "",
        description="Which account each user belongs to, from group calls (compacted);"
        " <app id>-users when empty.",
    )
    attribution_wait_ms: int = Field(
        10_000,
        ge=0,
        description="How long a message naming only its user waits for the user's group call before"
        " it is dead-lettered.",
    )
    health_settle_ms: int = Field(
        5_000,
        ge=0,
        description="A change too small to publish a snapshot for (more activity the same UTC day) is"
        " published this long after it anyway, once the partition has caught up; a new day of activity"
        " or an episode opened or closed is published at once.",
    )
    max_users: int = Field(1_000_000, ge=1, description="Users kept in the user → account directory.")
    max_waiting: int = Field(
        10_000, ge=0, description="Messages waiting for their user's account, per partition, at most."
    )
    partitions: int = Field(8, ge=1, description="Partitions of the input and all co-partitioned topics.")
    replication_factor: int = Field(
        1, ge=1, description="Replication factor of the topics the worker creates."
    )
    store: str = Field("rocksdb://", description="Faust table store: rocksdb:// (rocksdict) or memory://.")
    data_dir: Path = Field(Path(".local/worker"), description="Worker state directory (RocksDB).")
    metrics_host: str = Field(
        "127.0.0.1", description="Interface of the metrics endpoint (0.0.0.0 in a pod)."
    )
    metrics_port: int = Field(9102, ge=0, description="Prometheus metrics port; 0 disables it.")
    rules_file: Path | None = Field(None, description="TOML rules file; built-in defaults when unset.")
    batch_max: int = Field(5000, ge=1, description="Most events processed (and written) as one batch.")
    state_cache_accounts: int = Field(
        20_000, ge=100, description="Decoded account states kept in memory between batches, per worker."
    )
    state_flush_interval_ms: int = Field(
        5_000, ge=0, description="How often changed account states are written to the store and changelog."
    )
    bulk_restore: bool = Field(
        True,
        description="Restore the RocksDB account store from its changelog in bulk before Faust's"
        " record-by-record recovery (which then reads only what is left).",
    )
    rocksdb_memory_mb: int = Field(
        64,
        ge=4,
        description=(
            "RocksDB memory of the whole worker, however many partitions it owns, in MiB: one block cache"
            " shared by every partition's database, holding their data, index and filter blocks and charged"
            " with their write buffers."
        ),
    )
    rocksdb_write_buffer_mb: int = Field(
        8,
        ge=1,
        description="RocksDB write buffer of each owned partition, two at most, in MiB (all of them within"
        " half of rocksdb_memory_mb).",
    )
    clock: Literal["wall", "event"] = Field(
        "wall",
        description=(
            "wall: a caught-up partition's clock follows wall time (live); event: it moves only with"
            " event time (a backfill, judged exactly as `churnwatch backtest` judges the same history)."
        ),
    )
    tick_interval_ms: int = Field(200, ge=10, description="How often idle partitions' clocks advance.")
    idle_grace_ms: int = Field(
        300, ge=0, description="On a caught-up partition the clock trails wall time by this much."
    )
    allowed_lateness_ms: int = Field(
        30_000, ge=0, description="Out-of-orderness tolerated before the event-time clock passes an event."
    )
    max_future_ms: int = Field(
        300_000, ge=0, description="Events stamped further than this ahead of wall time go to the DLQ."
    )
    backlog_publish_interval_ms: int = Field(
        30_000, ge=0, description="While catching up a backlog, health snapshots are published this often."
    )
    session_timeout_ms: int = Field(
        10_000, ge=6_000, description="A worker silent this long loses its partitions to the others."
    )

    def rules_text(self) -> str | None:
        """The rules file's text, or None for the built-in defaults."""
        if self.rules_file is None:
            return None
        return self.rules_file.read_text(encoding="utf-8")

    @property
    def users_topic_name(self) -> str:
        """The users topic: ``users_topic``, or ``<app id>-users`` (each worker group its own)."""
        return self.users_topic or f"{self.app_id}-users"
