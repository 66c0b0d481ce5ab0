"""API settings: one typed, frozen object from ``CHURNWATCH_*`` variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ApiKeySpec(BaseModel):
    """What one API key is called and what it may do; the key itself is only stored as a hash."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    scopes: frozenset[str] = frozenset()


class ApiSettings(BaseSettings):
    """Everything the API can be told; documented in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "usage-events"
    alerts_topic: str = "churn-alerts"
    health_topic: str = "account-health"
    api_host: str = Field("127.0.0.1", description="Interface the API binds to.")
    api_port: int = Field(8000, ge=1, le=65535)
    api_keys: dict[str, ApiKeySpec] = Field(
        default_factory=dict,
        description='JSON: {"<sha256 hex of the key>": {"name": "...", "scopes": ["health:read"]}}.',
    )
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest accepted request body.")
    max_batch_items: int = Field(1000, ge=1, description="Most events accepted in one request.")
    max_future_ms: int = Field(
        300_000, ge=0, description="Events stamped further than this ahead of the API's clock are rejected."
    )
    rate_limit_per_s: float = Field(100.0, gt=0, description="Sustained requests per second per key.")
    rate_limit_burst: int = Field(200, ge=1, description="Requests a key may send at once.")
    auth_failure_limit: int = Field(
        20,
        ge=1,
        description="Failed authentications (401) a client address may have at once, and per window; "
        "past them its requests to routes with a key are 429 until the window refills.",
    )
    auth_failure_window_s: float = Field(
        60.0, gt=0, description="Seconds over which a client address regains its failed authentications."
    )
    alert_buffer: int = Field(10_000, ge=1, description="Recent alerts kept in memory for the feed.")
    head_timeout_s: float = Field(
        10.0, gt=0, description="A connection without a complete request head for this long is closed."
    )
    trusted_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        ("127.0.0.1", "localhost", "::1"),
        min_length=1,
        description="Comma-separated Host header names the API answers to: names, *.example.com for "
        "subdomains, * for any. Others get 400, except /healthz, /readyz and /metrics.",
    )
    ingest_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest wait for Kafka to acknowledge ingested events before answering 503 "
        "(with Retry-After); also the timeout of the producer's reachability probe.",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request body not received whole this many seconds after its head is answered "
        "408 and its connection closed.",
    )
    log_level: str = Field("INFO", description="Log level of the API process (and uvicorn).")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Seconds between SSE keep-alive comments.")

    @field_validator("trusted_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        # From the environment a comma-separated list ("api.example.com,localhost"), not JSON.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
