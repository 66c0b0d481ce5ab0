"""Response models: they shape the OpenAPI document and its examples."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamer.core.policy import Band
from streamer.wire.documents import AlertDocument


class AccountRow(BaseModel):
    """One account in a list."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "account_id": "acme",
                "name": "Acme Corp",
                "score": 41,
                "band": "poor",
                "trend": "down",
                "last_activity_at": "2025-03-01T09:30:00.000Z",
                "segment": "mid-market",
                "plan": "pro",
                "owner": "jane@example.com",
            }
        }
    )

    account_id: str
    name: str | None = None
    score: int
    band: Band
    trend: str | None = None
    last_activity_at: str | None = None
    segment: str | None = None
    plan: str | None = None
    owner: str | None = None


class AccountPage(BaseModel):
    """A page of accounts; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[AccountRow]
    next_cursor: str | None = Field(None, examples=["WyJzY29yZSIsWzQxLCJhY21lIl1d"])


class AlertPage(BaseModel):
    """A page of alerts, newest first (documents as published on ``churn-alerts``)."""

    items: list[AlertDocument] = Field(
        examples=[
            [
                {
                    "alert_id": "5f0c7d2e9b8a4c1d3e2f1a0b9c8d7e6f",
                    "kind": "account_quiet",
                    "account_id": "acme",
                    "detected_at": "2025-03-08T09:30:00.000Z",
                    "severity": "high",
                    "health": {"score": 41, "band": "poor"},
                    "evidence": {"last_activity_at": "2025-03-01T09:30:00.000Z"},
                }
            ]
        ]
    )
    next_cursor: str | None = None


class IngestError(BaseModel):
    """Why one item of a batch was rejected."""

    index: int = Field(examples=[3])
    field: str = Field(examples=["timestamp"])
    rule: str = Field(examples=["must be RFC 3339 with a UTC offset or integer epoch milliseconds"])


class IngestResult(BaseModel):
    """Outcome of an ingest request: valid items were produced, invalid ones are listed."""

    accepted: int = Field(examples=[99])
    rejected: int = Field(examples=[1])
    pending: int = Field(
        0,
        examples=[0],
        description="Segment messages naming only their user, stored keyed by it: the worker attributes"
        " each to its user's account (from the user's group call), or dead-letters it if none comes in"
        " time (CHURNWATCH_ATTRIBUTION_WAIT_MS).",
    )
    errors: list[IngestError]


class Status(BaseModel):
    """A liveness or readiness answer."""

    status: str = Field(examples=["ok"])
    lag: int | None = None
    reason: str | None = Field(None, description="Why the API is not ready (on 503 only).")
