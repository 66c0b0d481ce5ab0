"""Response models: they shape the OpenAPI document and its examples."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streamer.core.policy import Band
from streamer.wire.documents import AlertDocument

# What changed is part of the worker's documents too; the API's history answers it alike.
from streamer.wire.documents import ComponentMove as ComponentMove
from streamer.wire.documents import Detractor as Detractor
from streamer.wire.documents import WhatChanged as WhatChanged


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
                "onboarding_status": "behind",
                "onboarding_overdue_days": 4,
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
    onboarding_status: Literal["on_track", "behind", "stuck", "complete"] | None = Field(
        None,
        description="The onboarding milestones' status in the latest snapshot (`onboarding.status`); null "
        "when no milestone applies or the snapshot tells none.",
    )
    onboarding_overdue_days: int | None = Field(
        None,
        description="Days the worst missing onboarding milestone is overdue (the largest "
        "`onboarding.missing[].overdue_days`); null when none is missing.",
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


class OnboardingCohort(BaseModel):
    """The onboarding of the accounts whose subscription started in one calendar month (UTC)."""

    month: str = Field(examples=["2025-03"])
    started: int = Field(description="Accounts whose subscription started in the month.")
    completed: int = Field(description="Of them, those whose onboarding status is complete.")
    completed_share: float | None = Field(description="completed / started; null when none started.")
    in_progress: int = Field(
        description="Of them, those still in their first onboarding days and not complete."
    )


class OnboardingFigures(BaseModel):
    """Onboarding milestones over the latest snapshot of each account."""

    by_status: dict[Literal["on_track", "behind", "stuck", "complete"], int] = Field(
        description="Accounts per onboarding status (an account whose snapshot tells none counts in none).",
        examples=[{"on_track": 14, "behind": 5, "stuck": 2, "complete": 31}],
    )
    cohorts: list[OnboardingCohort] = Field(
        description="The last 12 calendar months of subscription start, oldest first."
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
    onboarding: OnboardingFigures


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
