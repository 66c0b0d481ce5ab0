"""The documents churnwatch writes to its topics, as typed models: the contract between its processes.

The worker writes alert documents to ``churn-alerts`` and health snapshots to ``account-health``
(built by :func:`streamer.core.alerts.alert_to_dict` and :func:`streamer.core.snapshot.account_snapshot`,
plain dicts on the hot path); the API serves them with these models as its response models, so
``/docs`` shows their real schema, and delivery validates every alert it reads against
:class:`AlertDocument`. A unit test holds the worker's documents to these models field for field.

Fields are only ever added, with a default, so a reader of a newer version accepts the documents
an older worker wrote; unknown fields are ignored, so an older reader accepts a newer worker's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from streamer.core.alerts import AlertKind, Severity
from streamer.core.policy import Band

__all__ = [
    "AccountHealth",
    "AlertDocument",
    "ComponentDocument",
    "HealthDocument",
    "LifecycleDocument",
    "OnboardingDocument",
    "SnapshotDocument",
]

_CONFIG = ConfigDict(frozen=True, extra="ignore")


class ComponentDocument(BaseModel):
    """One explained part of the score."""

    model_config = _CONFIG

    name: str = Field(examples=["activity"])
    value: float = Field(ge=0, le=100, description="0..100")
    weight: float = Field(description="Its share of the score, renormalised over the available components.")
    contribution: float = Field(description="Points it adds to (or, below 50, takes from) the score.")
    explanation: str = Field(examples=["34 user-days in the last 7 days vs 41.0 usually (83%)"])


class MilestoneReached(BaseModel):
    """An onboarding milestone the account reached."""

    model_config = _CONFIG

    name: str
    at: str = Field(description="RFC 3339, UTC")


class MilestoneMissing(BaseModel):
    """An onboarding milestone past its due date and not reached."""

    model_config = _CONFIG

    name: str
    due_at: str = Field(description="RFC 3339, UTC")
    overdue_days: int = Field(ge=0)


class MilestoneNext(BaseModel):
    """The next onboarding milestone due."""

    model_config = _CONFIG

    name: str
    due_at: str = Field(description="RFC 3339, UTC")


class OnboardingDocument(BaseModel):
    """Onboarding milestones: the object that replaced the ``onboarding`` boolean."""

    model_config = _CONFIG

    active: bool = Field(description="In its first onboarding.days (the former boolean).")
    status: Literal["on_track", "behind", "stuck", "complete"] | None = Field(
        None, description="Null when no milestone applies."
    )
    reached: list[MilestoneReached] = Field(default_factory=list)
    missing: list[MilestoneMissing] = Field(default_factory=list)
    next: MilestoneNext | None = None
    done: int = 0
    total: int = 0


class HealthDocument(BaseModel):
    """An account's health at one instant: score, band and why."""

    model_config = _CONFIG

    account_id: str
    at: str = Field(description="RFC 3339, UTC")
    score: int = Field(ge=0, le=100)
    band: Band
    components: list[ComponentDocument]
    current_weekly: float = Field(description="Weighted events of the last 7 days, today included.")
    baseline_weekly: float = Field(description="Weighted events per week of the 28 days before.")
    active_users_7d: int
    active_users_28d: int = 0
    user_days_week: float = Field(0.0, description="User-days of the last 7 complete days.")
    user_days_usual: float | None = Field(None, description="What the account's rhythm expected for them.")
    missed_active_days: float = Field(0.0, description="Usual active days gone by without activity.")
    features_28d: int
    onboarding: bool | OnboardingDocument = Field(
        description="Onboarding milestones; a boolean (in its first onboarding.days) in snapshots written "
        "before them."
    )


class AlertDocument(BaseModel):
    """An alert as published on ``churn-alerts`` (and sent to webhooks)."""

    model_config = _CONFIG

    alert_id: str = Field(description="Derived from account, kind and episode start: the same on a replay.")
    kind: AlertKind
    account_id: str | None = Field(description="None for an operations alert (data_gap).")
    detected_at: str = Field(description="RFC 3339, UTC: the event time at which it became true.")
    severity: Severity
    reason: str = Field("", examples=["No activity for 9 days; 6 users were active on about 4.8 days a week"])
    health: HealthDocument | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    account: dict[str, Any] = Field(default_factory=dict, description="Name, segment, plan, owner, seats.")


class Facts(BaseModel):
    """What the product told about the account."""

    model_config = _CONFIG

    name: str | None = None
    seats: int | None = None
    plan: str | None = None
    segment: str | None = None
    owner: str | None = None
    arr: float | None = Field(
        None, ge=0, description="Annual recurring revenue in `currency` (12 x MRR when only MRR was told)."
    )
    currency: str | None = Field(None, description="ISO 4217 code, upper case.", examples=["EUR"])
    renewal_at: str | None = Field(None, description="RFC 3339, UTC: the next renewal of the contract.")
    contract: str | None = None


class Nps(BaseModel):
    """The latest NPS answer."""

    model_config = _CONFIG

    score: int | None = None
    at: str | None = None


class Subscription(BaseModel):
    """The subscription as its lifecycle events told it."""

    model_config = _CONFIG

    status: str | None = None
    started_at: str | None = None
    cancelled_at: str | None = None


class Episodes(BaseModel):
    """Open alert episodes: since when quiet or dropping, and whether poor."""

    model_config = _CONFIG

    quiet_since: str | None = None
    drop_since: str | None = None
    poor: bool = False


class Daily(BaseModel):
    """Per-day activity over the window, oldest first."""

    model_config = _CONFIG

    from_: str = Field(alias="from")
    to: str
    events: list[int]
    weighted: list[float]
    users: list[int]
    features: list[int]


class LifecycleDocument(BaseModel):
    """Lifecycle status and active days as of the UTC day of the snapshot's ``at``.

    A day is active with at least one counted usage event (facts never count). Statuses, PostHog's
    applied to accounts and UTC days: ``new`` (active, never before), ``returning`` (active, and the day
    before), ``resurrecting`` (active, not the day before, but earlier), ``dormant`` (not active, but the
    day before); null when active neither that day nor the day before.
    """

    model_config = _CONFIG

    status: Literal["new", "returning", "resurrecting", "dormant"] | None = None
    active_days_7: int = Field(ge=0, le=7, description="Active days of the 7 days ending that day.")
    active_days_28: int | None = Field(
        None,
        ge=0,
        le=28,
        description="Active days of the 28 days ending that day; null when the account's policy keeps "
        "fewer days (window.days below 28).",
    )


class SnapshotDocument(HealthDocument):
    """The latest health snapshot of an account, as published on ``account-health``."""

    version: int
    trend: Literal["up", "down", "flat"]
    score_change: int | None = None
    first_seen_at: str | None = None
    last_activity_at: str | None = None
    facts: Facts
    nps: Nps
    open_tickets: int = 0
    subscription: Subscription
    episodes: Episodes
    daily: Daily
    lifecycle: LifecycleDocument | None = Field(
        None, description="Absent (null) in snapshots written before lifecycles were published."
    )


class AccountHealth(SnapshotDocument):
    """What the API answers for one account: its snapshot and the alerts of its open episodes."""

    open_alerts: list[AlertDocument] = Field(default_factory=list)
