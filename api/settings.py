"""API settings: one typed, frozen object from ``CHURNWATCH_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Everything the API can be told; documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "usage-events"
    alerts_topic: str = "churn-alerts"
    health_topic: str = "account-health"
    api_host: str = Field("127.0.0.1", description="Interface the API binds to.")
    api_port: int = Field(8000, ge=1, le=65535)
