"""What every churnwatch process is told the same way: where Kafka is, the topics they share, logging."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaSettings"]


class KafkaSettings(BaseSettings):
    """The base of the worker's, the API's and delivery's settings: one frozen object per process.

    Read from ``CHURNWATCH_*`` variables; unknown ones are ignored (the three processes share an
    environment in most deployments).
    """

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    alerts_topic: str = Field("churn-alerts", description="Alerts: the worker writes, the others read.")
    log_level: str = Field("INFO", description="Log level of the process.")
