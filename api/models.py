"""Response models: they shape the OpenAPI document and its examples."""

from __future__ import annotations

import datetime as dt
from typing import Literal

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
                "arr": 48000.0,
                "currency": "EUR",
                "renewal_at": "2025-06-30T00:00:00.000Z",
                "lifecycle": "resurrecting",
                "active_days_7": 1,
                "active_days_28": 6,
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
    arr: float | None = None
    currency: str | None = None
    renewal_at: str | None = None
    lifecycle: Literal["new", "returning", "resurrecting", "dormant"] | None = Field(
        None,
        description="Lifecycle status on the UTC day of the account's latest snapshot (its `at`); null "
        "when active neither that day nor the day before, or the snapshot tells none.",
    )
    active_days_7: int | None = Field(None, description="Active days of the 7 days ending that day.")
    active_days_28: int | None = Field(
        None, description="Active days of the 28 days ending that day; null when unknown."
    )


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


class HistoryPoint(BaseModel):
    """One UTC day of an account's history: what its latest snapshot of that day, or before it, said."""

    date: dt.date = Field(examples=["2025-03-08"])
    at: str = Field(
        description="RFC 3339, UTC: the snapshot the day shows. A snapshot is republished only when it "
        "changes materially, so a day without one shows the one before (an earlier `at`).",
        examples=["2025-03-08T09:30:00.000Z"],
    )
    score: int = Field(ge=0, le=100, examples=[41])
    band: Band
    components: dict[str, float] = Field(
        description="Each component's value, 0..100, by name.", examples=[{"activity": 38.0, "recency": 45.1}]
    )


class ComponentMove(BaseModel):
    """How one component moved between two days."""

    name: str = Field(examples=["activity"])
    before: float = Field(description="Its value (0..100) on the earlier day.", examples=[92.0])
    after: float = Field(description="Its value (0..100) on the later day.", examples=[38.0])
    change: float = Field(description="after - before.", examples=[-54.0])
    points: float = Field(
        description="How many points of the score it adds or costs more than on the earlier day.",
        examples=[-12.4],
    )


class Detractor(BaseModel):
    """The component that costs the score the most points."""

    name: str = Field(examples=["activity"])
    value: float = Field(description="0..100", examples=[38.0])
    points: float = Field(
        description="The points of the score it costs: its share of 100 less its contribution.",
        examples=[15.5],
    )
    explanation: str = Field(examples=["11 user-days in the last 7 days vs 29.0 usually (38%)"])


class WhatChanged(BaseModel):
    """What moved the score over the last 7 days, and what holds it down most today."""

    since: dt.date | None = Field(
        description="The day compared with: 7 days before the latest, or the first day kept when the "
        "history is shorter; null without history.",
        examples=["2025-03-01"],
    )
    score_change: int = Field(description="The score's change since then.", examples=[-23])
    moved: list[ComponentMove] = Field(
        description="The components (of those scored on both days) whose points of the score moved "
        "most, at most 3, largest move first; none that did not move."
    )
    top_detractor: Detractor | None = Field(
        description="Of the latest day's components, the one costing the score the most points; null "
        "when none costs any."
    )


class AccountHistory(BaseModel):
    """An account's daily score, band and components, oldest first, and what changed in the last week."""

    account_id: str = Field(examples=["acme"])
    days: int = Field(description="The days asked for: the points cover at most these.", examples=[90])
    points: list[HistoryPoint] = Field(
        description="One per UTC day from the first kept (or the first of the days asked for) to today, "
        "oldest first."
    )
    what_changed: WhatChanged


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


class ChurnMonth(BaseModel):
    """Churn and retention of one calendar month (UTC)."""

    month: str = Field(examples=["2025-03"])
    active_at_start: int
    new: int
    lost: int
    churn_rate: float | None = Field(description="lost / (active at start + new); None without any.")
    retention_rate: float | None


class NpsFigures(BaseModel):
    """Net promoter score over the latest answer of each account."""

    score: float | None
    responses: int
    promoters: int
    passives: int
    detractors: int


class ArrFigures(BaseModel):
    """Annual recurring revenue, each figure a mapping of currency (ISO 4217) to whole units.

    Accounts that told no currency count under ``XXX``; accounts without ARR are left out.
    """

    at_risk: dict[str, int] = Field(description="ARR of accounts in band average or poor.")
    by_band: dict[Band, dict[str, int]]
    by_open_alert: dict[str, dict[str, int]] = Field(
        description="ARR of accounts with an open account_quiet, usage_drop or health_degraded episode."
    )


class Portfolio(BaseModel):
    """Figures over the latest snapshot of every account the key may read."""

    as_of: str = Field(description="RFC 3339, UTC")
    accounts: int
    by_band: dict[Band, int]
    churn: list[ChurnMonth] = Field(description="The last 12 calendar months, oldest first.")
    nps: NpsFigures
    open_alerts: dict[str, int] = Field(description="Accounts with an open episode of each alert kind.")
    arr: ArrFigures
    lifecycle: dict[Literal["new", "returning", "resurrecting", "dormant"], int] = Field(
        description="Accounts per lifecycle status, each as of the UTC day of its latest snapshot (an "
        "account without a status, or whose snapshot tells none, counts in none).",
        examples=[{"new": 3, "returning": 120, "resurrecting": 8, "dormant": 11}],
    )


class WeekArr(BaseModel):
    """ARR of one week, each figure a mapping of currency (ISO 4217) to whole units, as in ``Portfolio``."""

    at_risk: dict[str, int] = Field(description="ARR of accounts in band average or poor.")
    by_band: dict[Band, dict[str, int]]


class PortfolioWeek(BaseModel):
    """The portfolio as of the end of one ISO week."""

    week: dt.date = Field(description="The week's Monday.", examples=["2025-03-03"])
    as_of: dt.date | None = Field(
        description="The UTC day the figures are as of: the week's Sunday, or today for the current week; "
        "null (and every figure 0) when the store holds nothing that old."
    )
    accounts: int
    by_band: dict[Band, int]
    arr: WeekArr
    lifecycle: dict[Literal["new", "returning", "resurrecting", "dormant"], int] = Field(
        description="Accounts per lifecycle status, each as of its latest snapshot up to as_of."
    )


class PortfolioHistory(BaseModel):
    """The portfolio per ISO week, oldest first, the current week last."""

    as_of: str = Field(description="RFC 3339, UTC")
    weeks: list[PortfolioWeek]
