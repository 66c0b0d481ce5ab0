"""The dashboard's portfolio over time and its owner filter: chart geometry as plain functions, and the
fragments on each store, narrowed to one owner's accounts and never past the key's."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import httpx
import pytest

from api.dashboard.weeks import WEEKS_HEIGHT, arr_chart, arr_currency, band_chart
from tests.unit.api.conftest import ANN, WRITER, AppFactory, StoreModel, client_for, snapshot
from tests.unit.api.test_dashboard import at_risk_ids, text_of

EVIL_OWNER = "<b onmouseover=alert(2)>owner</b>"


def _week(monday: str, good: int, average: int, poor: int, **at_risk: int) -> dict[str, Any]:
    return {
        "week": date.fromisoformat(monday),
        "as_of": date.fromisoformat(monday),
        "accounts": good + average + poor,
        "by_band": {"good": good, "average": average, "poor": poor},
        "arr": {"at_risk": at_risk, "by_band": {}},
        "lifecycle": {},
    }


def test_band_bars_stack_poor_average_good_from_the_baseline_scaled_to_the_fullest_week() -> None:
    chart = band_chart([_week("2025-03-03", 2, 1, 1), _week("2025-03-10", 0, 0, 2)])

    baseline = WEEKS_HEIGHT - 16
    assert chart.baseline == baseline
    assert chart.scale == ((6.0, "4"), (baseline, "0"))  # the fullest week (4 accounts) touches the top
    first, second = chart.bars
    assert [(s.cls, s.height) for s in first.segments] == [("poor", 24.5), ("average", 24.5), ("good", 49.0)]
    assert first.segments[0].y == baseline - 24.5
    assert first.segments[-1].y == 6.0
    assert [(s.cls, s.height) for s in second.segments] == [("poor", 49.0)]  # no empty segments
    assert first.label == "week of 2025-03-03: 2 good, 1 average, 1 poor"
    assert chart.ticks[0][1] == "03-03" and chart.ticks[1][1] == "03-10"


def test_a_chart_without_accounts_has_no_bars_above_the_baseline() -> None:
    chart = band_chart([{**_week("2025-03-03", 0, 0, 0), "as_of": None}])

    assert chart.bars[0].segments == ()
    assert chart.bars[0].label == "week of 2025-03-03: no data"
    assert chart.scale == ((chart.baseline, "0"),)


@pytest.mark.parametrize(
    ("weeks", "currency"),
    [
        ([_week("2025-03-03", 0, 0, 0)], None),  # nothing at risk: no ARR chart
        ([_week("2025-03-03", 0, 1, 0, EUR=100, USD=300)], "USD"),  # the most at risk over the weeks
        (
            [_week("2025-03-03", 0, 1, 0, EUR=300), _week("2025-03-10", 0, 1, 0, USD=300)],
            "EUR",
        ),  # tie: code order
    ],
)
def test_the_arr_chart_shows_the_currency_with_the_most_at_risk(
    weeks: list[Any], currency: str | None
) -> None:
    assert arr_currency(weeks) == currency


def test_arr_bars_scale_to_the_largest_week_with_a_short_scale_label() -> None:
    chart = arr_chart(
        [_week("2025-03-03", 0, 1, 0, EUR=1_500_000), _week("2025-03-10", 0, 1, 0, EUR=750_000)], "EUR"
    )

    assert chart.scale[0][1] == "1.5M"
    assert [s.height for bar in chart.bars for s in bar.segments] == [98.0, 49.0]
    assert chart.bars[1].label == "week of 2025-03-10: EUR 750,000 at risk"


def _put(model: StoreModel, account_id: str, band: str, owner: str, score: int = 20) -> None:
    facts = {"name": account_id.title(), "owner": owner, "segment": "smb", "arr": 1000.0, "currency": "EUR"}
    model.apply_health(
        account_id, snapshot(account_id, score=score, band=band, at="2025-03-12T00:00:00.000Z", facts=facts)
    )


@pytest.mark.parametrize(
    "path",
    ["/dashboard/fragments/portfolio-weeks", "/dashboard/fragments/owners"],
)
async def test_the_new_fragments_need_a_key_with_the_read_scope(make_app: AppFactory, path: str) -> None:
    app = make_app()
    async with client_for(app, None) as anon, client_for(app, WRITER) as writer:
        assert (await anon.get(path)).status_code == 401
        assert (await writer.get(path)).status_code == 403


async def test_the_weeks_fragment_draws_bands_and_arr_at_risk_with_a_text_fallback(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _put(model, "a", "poor", "ann")
    _put(model, "b", "good", "bob", score=90)

    html = (await client.get("/dashboard/fragments/portfolio-weeks")).text

    assert html.count('<g class="bar">') == 2 * 12  # 12 weeks, in two charts
    assert "<title>week of 2025-03-10: 1 good, 0 average, 1 poor</title>" in html
    assert "<title>week of 2025-03-10: EUR 1,000 at risk</title>" in html
    assert "As of 2025-03-15: 2 accounts, 1 poor, 0 average, 1 good." in text_of(html)
    assert "At risk as of 2025-03-15: EUR 1,000." in text_of(html)
    assert re.search(r"<script|style=", html) is None


async def test_the_owner_filter_narrows_rows_kpis_and_charts_to_that_owners_accounts(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _put(model, "a", "poor", "ann")
    _put(model, "b", "poor", "bob", score=10)
    _put(model, "c", "average", "bob", score=50)

    rows = at_risk_ids((await client.get("/dashboard/fragments/at-risk", params={"owner": "bob"})).text)
    kpis = (await client.get("/dashboard/fragments/portfolio", params={"owner": "bob"})).text
    weeks = (await client.get("/dashboard/fragments/portfolio-weeks", params={"owner": "bob"})).text
    every = at_risk_ids((await client.get("/dashboard/fragments/at-risk")).text)

    assert rows == ["b", "c"]
    assert every == ["b", "a", "c"]
    assert '<div class="value" id="kpi-accounts">2</div>' in kpis
    assert "As of 2025-03-15: 2 accounts, 1 poor, 1 average, 0 good." in text_of(weeks)


async def test_the_owner_filter_never_widens_a_restricted_key(
    make_app: AppFactory, model: StoreModel
) -> None:
    _put(model, "a", "poor", "ann")
    _put(model, "b", "poor", "bob")
    async with client_for(make_app(), ANN) as ann:
        rows = at_risk_ids((await ann.get("/dashboard/fragments/at-risk", params={"owner": "bob"})).text)
        kpis = (await ann.get("/dashboard/fragments/portfolio", params={"owner": "bob"})).text
        weeks = (await ann.get("/dashboard/fragments/portfolio-weeks", params={"owner": "bob"})).text
        options = (await ann.get("/dashboard/fragments/owners")).text

    assert rows == []
    assert '<div class="value" id="kpi-accounts">0</div>' in kpis
    assert "No week with data yet." in text_of(weeks)
    assert re.findall(r'<option value="([^"]*)"', options) == ["", "ann"]


async def test_the_owner_options_list_the_owners_present_escaped_with_the_choice_selected(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _put(model, "a", "poor", "bob")
    _put(model, "b", "good", EVIL_OWNER)
    _put(model, "c", "good", "ann")

    options = (await client.get("/dashboard/fragments/owners", params={"owner": "bob"})).text
    gone = (await client.get("/dashboard/fragments/owners", params={"owner": "zed"})).text

    assert "<b " not in options
    assert re.findall(r'<option value="([^"]*)"( selected)?>', options) == [
        ("", ""),
        ("&lt;b onmouseover=alert(2)&gt;owner&lt;/b&gt;", ""),
        ("ann", ""),
        ("bob", " selected"),
    ]
    assert '<option value="zed" selected>zed (no accounts)</option>' in gone


async def test_the_page_keeps_the_owner_in_its_sort_links_and_hands_it_to_its_script(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/dashboard", params={"owner": "bob & co", "sort": "-arr"})).text

    assert 'data-owner="bob &amp; co"' in page
    assert '<a href="/dashboard?sort=-arr&amp;owner=bob%20%26%20co" aria-current="true">' in page
    assert '<option value="bob &amp; co" selected>' in page
    assert '<input type="hidden" name="sort" value="-arr">' in page
