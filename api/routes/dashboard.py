"""The dashboard: a public page and its static files, and HTML fragments that need an API key.

The page holds no data. Its script asks for a key once (or takes it from the URL fragment
``#key=…``, which browsers never send to a server), keeps it in session storage and sends it as
``Authorization: Bearer`` to the fragment routes below and to ``/v1/alerts/stream``, which it reads
with ``fetch`` instead of ``EventSource`` so that the key never appears in a URL. The fragments are
rendered on the server with every account-provided string escaped. None of these routes is part of
the OpenAPI document: they serve the page, not API clients.
"""

from __future__ import annotations

from datetime import UTC
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.dashboard import render
from api.dashboard.at_risk import AT_RISK_SORTS, at_risk_accounts
from api.dashboard.onboarding import onboarding_accounts
from api.dashboard.weeks import WEEKS_SHOWN
from api.deps import AlertReader, ClockDep, HealthReader, ReadModelDep, SettingsDep
from api.errors import api_error, bounded
from api.history import DEFAULT_DAYS, read_history
from api.portfolio import portfolio_figures
from api.portfolio_history import weekly_figures
from api.query import AccountFilters, AccountSort
from api.restrictions import AccountScope

BASE = "/dashboard"
# The page loads only its own script and stylesheet and talks only to this origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# Fragments are inserted into the page, which has its own policy; opened on their own they may run,
# load and be framed by nothing.
_FRAGMENT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(prefix=BASE, include_in_schema=False)
static_files = StaticFiles(directory=render.STATIC)


def _fragment(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers=_FRAGMENT_HEADERS)


# "My accounts": the fragments narrow the key's accounts to one owner's (facts.owner), never widen them.
OwnerQuery = Annotated[
    str | None, Query(max_length=128, description="Only the accounts of this owner (facts.owner).")
]


def owned(scope: AccountScope, owner: str | None) -> AccountScope | None:
    """The accounts of ``scope`` that ``owner`` owns (all of them without one); None when the key may
    read none of that owner's (it is restricted to another owner)."""
    if not owner:
        return scope
    if scope.owner is not None and scope.owner != owner:
        return None
    return AccountScope(owner=owner, segment=scope.segment)


class AtRiskSort(StrEnum):
    """The orders of the at-risk list (:data:`api.dashboard.at_risk.AT_RISK_SORTS`)."""

    SCORE = AccountSort.SCORE.value
    ARR_DESC = AccountSort.ARR_DESC.value
    RENEWAL = AccountSort.RENEWAL.value


@router.get("")
async def page(sort: str = AtRiskSort.SCORE.value, owner: str = "") -> HTMLResponse:
    """The dashboard page (public; it holds no data). ``sort`` marks the at-risk list's order among
    its links and ``owner`` the owner it shows the accounts of; the page's script asks for the rows,
    the KPIs and the charts so."""
    current = AccountSort(sort) if sort in AtRiskSort.__members__.values() else AccountSort.SCORE
    html = render.render(
        "page.html",
        base=BASE,
        kind_labels=render.kind_labels_json(),
        sorts=AT_RISK_SORTS,
        current_sort=current,
        owner=owner[:128],
    )
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/fragments/at-risk")
async def at_risk(
    model: ReadModelDep,
    clock: ClockDep,
    reader: HealthReader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: AtRiskSort = AtRiskSort.SCORE,
    owner: OwnerQuery = None,
) -> HTMLResponse:
    """Table rows of the key's accounts at risk (``api.dashboard.at_risk``), lowest score first, or
    largest ARR or soonest renewal first; only ``owner``'s when given."""
    scope = owned(reader.reads, owner)
    docs = [] if scope is None else at_risk_accounts(model, limit, scope=scope, sort=AccountSort(sort.value))
    # An empty list says whether there is nothing at risk or nothing yet at all.
    any_account = bool(docs) or bool(
        model.list_accounts(AccountFilters(), AccountSort.ACCOUNT_ID, None, 1, scope=reader.reads)[0]
    )
    return _fragment(render.at_risk_rows(docs, clock(), any_account=any_account))


@router.get("/fragments/portfolio")
async def portfolio(
    model: ReadModelDep, clock: ClockDep, reader: HealthReader, owner: OwnerQuery = None
) -> HTMLResponse:
    """KPI cards over the key's accounts (``owner``'s only, when given): accounts per band, monthly
    churn, NPS, open alerts."""
    now, scope = clock(), owned(reader.reads, owner)
    figures = portfolio_figures([], now) if scope is None else model.portfolio(now, scope=scope)
    return _fragment(render.portfolio_cards(figures))


@router.get("/fragments/portfolio-weeks")
async def portfolio_weeks(
    model: ReadModelDep, clock: ClockDep, reader: HealthReader, owner: OwnerQuery = None
) -> HTMLResponse:
    """The charts of the last 12 ISO weeks over the key's accounts (``owner``'s only, when given):
    accounts per band and ARR at risk."""
    now, scope = clock(), owned(reader.reads, owner)
    if scope is None:
        weeks = weekly_figures([], WEEKS_SHOWN, now.astimezone(UTC).date())
    else:
        weeks = model.portfolio_history(WEEKS_SHOWN, now, scope=scope)
    return _fragment(render.portfolio_weeks(weeks))


@router.get("/fragments/owners")
async def owners(model: ReadModelDep, reader: HealthReader, owner: OwnerQuery = None) -> HTMLResponse:
    """The owner filter's options: the owners of the key's accounts, ``owner`` selected."""
    return _fragment(render.owner_options(model.owners(scope=reader.reads), owner))


@router.get("/fragments/onboarding")
async def onboarding(
    model: ReadModelDep, reader: HealthReader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> HTMLResponse:
    """Table rows of the key's accounts in their onboarding days (``api.dashboard.onboarding``): stuck
    first, then behind, on track and complete, each by the overdue days of its worst missing milestone."""
    return _fragment(render.onboarding_rows(onboarding_accounts(model, limit, scope=reader.reads)))


@router.get("/fragments/alerts")
async def alerts(
    model: ReadModelDep, reader: AlertReader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> HTMLResponse:
    """The most recent alerts of the key's accounts, newest first (the page adds live ones on top)."""
    items, _next = model.alerts(None, None, None, None, limit, scope=reader.reads)
    return _fragment(render.alert_items(items))


# {account_id:path}: account ids may contain "/" (sent as %2F, which the server decodes before routing).
@router.get("/fragments/accounts/{account_id:path}")
async def account(
    account_id: str,
    model: ReadModelDep,
    settings: SettingsDep,
    clock: ClockDep,
    reader: HealthReader,
    _: AlertReader,
) -> HTMLResponse:
    """One account: score breakdown with explanations, its score history and what changed in it,
    signals and its alert history (both scopes)."""
    doc = await model.get_account(account_id, scope=reader.reads)
    if doc is None:
        raise api_error(404, f"no health snapshot for account {bounded(account_id)!r}")
    now = clock()
    days = min(DEFAULT_DAYS, settings.history_days)
    history = read_history(model, account_id, days, now, scope=reader.reads)
    alerts, _next = model.alerts(None, None, account_id, None, 50, scope=reader.reads)
    return _fragment(render.account_detail(doc, alerts, now, history))
