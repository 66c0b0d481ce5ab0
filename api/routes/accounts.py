"""Account health and account lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import ClockDep, HealthReader, ReadModelDep, SettingsDep
from api.errors import AUTH_ERRORS, PAGED_ERRORS, ErrorBody, OrjsonResponse, api_error, bounded
from api.history import DEFAULT_DAYS, read_history
from api.models import AccountHistory, AccountPage, AccountRow
from api.query import (
    AccountFilters,
    AccountSort,
    InvalidCursor,
    Lifecycle,
    OnboardingStatus,
    Rfc3339,
    lifecycle_of,
    onboarding_of,
)
from streamer.core.policy import Band
from streamer.wire.documents import AccountHealth

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
HISTORY_PATH = "/v1/accounts/{account_id}/history"  # the history route, as the OpenAPI document names it

_HEALTH_EXAMPLE = {
    "account_id": "acme",
    "at": "2025-03-08T09:30:00.000Z",
    "score": 41,
    "band": "poor",
    "trend": "down",
    "last_activity_at": "2025-03-01T09:30:00.000Z",
    "facts": {"name": "Acme Corp", "seats": 25, "plan": "pro", "segment": "mid-market", "owner": "jane"},
    "episodes": {"quiet_since": "2025-03-01T09:30:00.000Z", "drop_since": None, "poor": True},
    "open_alerts": [{"alert_id": "5f0c7d2e9b8a4c1d3e2f1a0b9c8d7e6f", "kind": "account_quiet"}],
    "what_changed": {
        "since": "2025-03-01",
        "score_change": -23,
        "moved": [{"name": "activity", "before": 92.0, "after": 38.0, "change": -54.0, "points": -12.4}],
        "top_detractor": {
            "name": "activity",
            "value": 38.0,
            "points": 15.5,
            "explanation": "11 user-days in the last 7 days vs 29.0 usually (38%)",
        },
    },
}

_NOT_FOUND = {
    "model": ErrorBody,
    "description": "No snapshot for this account, or the account is outside the key's restrictions "
    "(the same answer, so a key cannot tell which accounts exist).",
}


# {account_id:path}: an account id may contain "/". The server decodes %2F before routing, so a
# plain {account_id} would never match "tenant%2Fp7"; the path converter takes everything between
# the prefix and the "/health" suffix, slashes included.
@router.get(
    "/{account_id:path}/health",
    summary="Latest health snapshot of one account, with its open alerts.",
    response_model=AccountHealth,
    responses={
        200: {"content": {"application/json": {"example": _HEALTH_EXAMPLE}}},
        404: _NOT_FOUND,
        **AUTH_ERRORS,
    },
)
async def account_health(account_id: str, model: ReadModelDep, reader: HealthReader) -> Response:
    """The snapshot as published on ``account-health`` plus ``open_alerts``."""
    doc = await model.get_account(account_id, scope=reader.reads)
    if doc is None:
        raise api_error(404, f"no health snapshot for account {bounded(account_id)!r}")
    # Held to the contract (AccountHealth) when the read model took it in: answered as it is, not
    # validated and serialised a second time (the API's busiest route; a tenth of its time).
    return OrjsonResponse(doc)


@router.get(
    "/{account_id:path}/history",
    summary="Daily score, band and components of one account, and what changed in the last 7 days.",
    response_model=AccountHistory,
    responses={
        404: _NOT_FOUND,
        422: {"model": ErrorBody, "description": "days out of range: 1 to the days of history kept."},
        **AUTH_ERRORS,
    },
)
async def account_history(
    account_id: str,
    model: ReadModelDep,
    settings: SettingsDep,
    clock: ClockDep,
    reader: HealthReader,
    days: Annotated[
        int | None,
        Query(
            description=f"Days to show, up to today: 1 to the days of history kept (CHURNWATCH_HISTORY_DAYS, "
            f"120 by default). {DEFAULT_DAYS} when absent, or every day kept when fewer.",
            examples=[DEFAULT_DAYS],
        ),
    ] = None,
) -> AccountHistory:
    """One point per UTC day, oldest first, with what moved the score in the last 7 days."""
    kept = settings.history_days
    if days is None:
        days = min(DEFAULT_DAYS, kept)
    elif not 1 <= days <= kept:
        # Checked here, not by Query(ge=, le=): the bound is a setting (the OpenAPI document states it).
        raise api_error(
            422, f"days must be 1 to {kept}, the days of history the API keeps (CHURNWATCH_HISTORY_DAYS)"
        )
    history = read_history(model, account_id, days, clock(), scope=reader.reads)
    if history is None:
        raise api_error(404, f"no health snapshot for account {bounded(account_id)!r}")
    return history


def _row(doc: dict[str, Any]) -> AccountRow:
    facts = doc.get("facts") or {}
    return AccountRow(
        account_id=doc["account_id"],
        name=facts.get("name"),
        score=doc["score"],
        band=doc["band"],
        trend=doc.get("trend"),
        last_activity_at=doc.get("last_activity_at"),
        segment=facts.get("segment"),
        plan=facts.get("plan"),
        owner=facts.get("owner"),
        arr=facts.get("arr"),
        currency=facts.get("currency"),
        renewal_at=facts.get("renewal_at"),
        **dict(zip(("lifecycle", "active_days_7", "active_days_28"), lifecycle_of(doc), strict=True)),
        **dict(zip(("onboarding_status", "onboarding_overdue_days"), onboarding_of(doc)[1:], strict=True)),
    )


@router.get(
    "",
    summary="List accounts, filtered and sorted, one page at a time (only those the key may read).",
    response_model=AccountPage,
    responses=PAGED_ERRORS,
)
async def list_accounts(
    model: ReadModelDep,
    reader: HealthReader,
    band: Annotated[Band | None, Query(examples=["poor"])] = None,
    segment: Annotated[str | None, Query(examples=["mid-market"])] = None,
    plan: Annotated[str | None, Query(examples=["pro"])] = None,
    owner: Annotated[str | None, Query(examples=["jane@example.com"])] = None,
    min_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    max_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    quiet_since: Annotated[
        Rfc3339 | None,
        Query(
            description="RFC 3339; only accounts last active at or before it.",
            examples=["2025-03-01T00:00:00Z"],
        ),
    ] = None,
    lifecycle: Annotated[
        Lifecycle | None,
        Query(
            description="Only accounts with this lifecycle status on the UTC day of their latest snapshot.",
            examples=["dormant"],
        ),
    ] = None,
    min_active_days_7: Annotated[
        int | None, Query(ge=0, le=7, description="Only accounts active on at least this many of 7 days.")
    ] = None,
    max_active_days_7: Annotated[
        int | None, Query(ge=0, le=7, description="Only accounts active on at most this many of 7 days.")
    ] = None,
    min_active_days_28: Annotated[
        int | None,
        Query(
            ge=0,
            le=28,
            description="Only accounts active on at least this many of 28 days (never those whose count is "
            "unknown).",
        ),
    ] = None,
    max_active_days_28: Annotated[
        int | None,
        Query(
            ge=0,
            le=28,
            description="Only accounts active on at most this many of 28 days (never those whose count is "
            "unknown).",
        ),
    ] = None,
    onboarding_status: Annotated[
        OnboardingStatus | None,
        Query(
            description="Only accounts whose latest snapshot has this onboarding milestone status.",
            examples=["stuck"],
        ),
    ] = None,
    sort: AccountSort = AccountSort.SCORE,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page; empty or absent for the first page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AccountPage:
    """Accounts matching every given filter."""
    if quiet_since is not None and quiet_since.tzinfo is None:
        raise api_error(422, "quiet_since needs a UTC offset (RFC 3339)")
    filters = AccountFilters(
        band,
        segment,
        plan,
        owner,
        min_score,
        max_score,
        quiet_since,
        None if lifecycle is None else lifecycle.value,
        min_active_days_7,
        max_active_days_7,
        min_active_days_28,
        max_active_days_28,
        None if onboarding_status is None else onboarding_status.value,
    )
    try:
        docs, nxt = model.list_accounts(filters, sort, cursor or None, limit, scope=reader.reads)
    except InvalidCursor as err:
        raise api_error(400, str(err), code="invalid_cursor") from None
    return AccountPage(items=[_row(d) for d in docs], next_cursor=nxt)
