"""Delivery settings: one typed, frozen object built at the entry point from ``CHURNWATCH_*`` variables."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from streamer.kafka.settings import KafkaSettings


class DeliverySettings(KafkaSettings):
    """Everything the delivery process can be told."""

    app_id: str = Field("churnwatch", description="The consumer group is '<app_id>-delivery'.")
    delivery_dlq_topic: str = Field("churn-alerts-dlq", description="Alerts that could not be delivered.")
    delivery_ledger_topic: str = Field(
        "churn-alerts-deliveries", description="Compacted: the final status per destination and alert."
    )
    delivery_ledger_max_entries: int = Field(
        100_000, ge=1, description="Finished (destination, alert) pairs remembered; the oldest go first."
    )
    delivery_ledger_max_age_s: float = Field(
        30 * 86_400.0, gt=0, description="A finished pair older than this is forgotten (default 30 days)."
    )
    partitions: int = Field(8, ge=1, description="Partitions of the DLQ and ledger topics when created.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of the topics delivery creates.")
    delivery_file: Path | None = Field(None, description="TOML file of destinations, routes and snoozes.")
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Externally reachable base URL of the API, for links."
    )
    delivery_max_attempts: int = Field(8, ge=1, description="Attempts per alert and destination.")
    delivery_base_delay_s: float = Field(1.0, gt=0, description="Backoff ceiling after the first failure.")
    delivery_max_delay_s: float = Field(60.0, gt=0, description="Largest wait between attempts.")
    delivery_connect_timeout_s: float = Field(5.0, gt=0, description="Connect timeout of one request.")
    delivery_timeout_s: float = Field(10.0, gt=0, description="Read/write timeout of one request.")
    delivery_max_in_flight: int = Field(
        10_000, ge=1, description="Consumed but unfinished alerts before consumption pauses."
    )
    delivery_commit_interval_ms: int = Field(
        500, ge=10, description="How often delivered offsets are committed."
    )
    delivery_shutdown_grace_s: float = Field(
        10.0, ge=0, description="On SIGTERM, how long requests in flight may finish."
    )
    delivery_seed: int | None = Field(None, description="Seed of the backoff jitter (tests).")
    metrics_host: str = Field("127.0.0.1", description="Interface of the metrics endpoint.")
    delivery_metrics_port: int = Field(9103, ge=0, description="Prometheus metrics port; 0 disables it.")
    health_topic: str = Field(
        "account-health", description="Latest health snapshot per account, read by the daily digest."
    )
    digest_enabled: bool = Field(False, description="Send each owner a daily digest (off by default).")
    digest_hour: int = Field(8, ge=0, le=23, description="Local hour at which the daily digest is due.")
    digest_time_zone: str = Field("UTC", description="IANA time zone of the digest hour and dates.")
    digest_renewal_days: int = Field(30, ge=0, description="Renewals due within this many days are listed.")
    digest_min_score_drop: int = Field(
        10, ge=1, description="A score fall of this many points since the last digest is 'got worse'."
    )
    digest_max_items: int = Field(50, ge=1, description="Entries per section of a digest webhook.")
    digest_max_accounts: int = Field(
        200_000, ge=1, description="Accounts the digest keeps in memory; further ones are not tracked."
    )

    @field_validator("digest_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value
