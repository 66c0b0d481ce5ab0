"""The account detail's score history: the chart's geometry, "what changed" in words, and the fragment."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest

from api.dashboard.history import change_lines, detractor_line, score_chart, signed
from api.models import ComponentMove, Detractor, HistoryPoint, WhatChanged
from tests.unit.api.conftest import StoreModel, snapshot
from tests.unit.api.test_dashboard import text_of


def point(day: int, score: int, band: str) -> HistoryPoint:
    return HistoryPoint(
        date=date(2025, 3, day), at="2025-03-01T00:00:00.000Z", score=score, band=band, components={}
    )


def test_the_chart_places_each_day_by_its_date_in_the_window_on_a_0_to_100_scale() -> None:
    # 5 days in 420 x 120 with room for labels: x from 26 to 414 (97 a day), y from 6 (100) to 114 (0).
    chart = score_chart([point(13, 100, "good"), point(14, 50, "average"), point(15, 0, "poor")], days=5)

    assert chart.line == "220.0,6.0 317.0,60.0 414.0,114.0"
    assert [(d.band, d.label) for d in chart.dots] == [
        ("good", "2025-03-13: 100, good"),
        ("average", "2025-03-14: 50, average"),
        ("poor", "2025-03-15: 0, poor"),
    ]
    assert chart.scale == ((6.0, 100), (60.0, 50), (114.0, 0))
    assert (chart.x0, chart.x1) == (26, 414)
    assert score_chart([], days=90).line == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "+3.0"),  # a rise carries its sign
        (-12.44, "\u221212.4"),  # a fall a true minus
        (0.0, "0.0"),  # no change no sign
    ],
)
def test_signed_numbers(value: float, text: str) -> None:
    assert signed(value) == text


CHANGED = WhatChanged(
    since=date(2025, 3, 8),
    score_change=-45,
    moved=[
        ComponentMove(name="activity", before=90.0, after=40.0, change=-50.0, points=-15.0),
        ComponentMove(name="sentiment", before=70.0, after=100.0, change=30.0, points=1.5),
        ComponentMove(name="recency", before=100.0, after=100.0, change=0.0, points=-1.0),
    ],
    top_detractor=Detractor(
        name="activity",
        value=40.0,
        points=15.0,
        explanation="11 user-days in the last 7 days vs 29.0 usually",
    ),
)


def test_what_changed_reads_as_sentences() -> None:
    assert change_lines(CHANGED, point(15, 35, "poor")) == [
        "Score fell from 80 to 35 since 2025-03-08.",
        "Activity fell from 90 to 40: \u221215.0 points of the score.",
        "Sentiment rose from 70 to 100: +1.5 points of the score.",
        "Recency stayed at 100: \u22121.0 points of the score.",
    ]
    assert detractor_line(CHANGED) == (
        "Holding the score down most: activity at 40, costing 15.0 points: "
        "11 user-days in the last 7 days vs 29.0 usually."
    )
    nothing = WhatChanged(since=None, score_change=0, moved=[], top_detractor=None)
    assert (change_lines(nothing, point(15, 50, "average")), detractor_line(nothing)) == ([], None)
    first_day = WhatChanged(since=date(2025, 3, 15), score_change=0, moved=[], top_detractor=None)
    assert change_lines(first_day, point(15, 5, "poor")) == [
        "Score 5; no earlier day kept to compare it with."
    ]


def _components(activity: float, contribution: float) -> list[dict[str, object]]:
    return [
        {
            "name": "activity",
            "value": activity,
            "weight": 0.5,
            "contribution": contribution,
            "explanation": "fewer <b>user-days</b> than usual",
        },
        {
            "name": "recency",
            "value": 100.0,
            "weight": 0.5,
            "contribution": 50.0,
            "explanation": "active today",
        },
    ]


async def test_the_account_detail_charts_the_score_and_says_what_changed(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health(
        "acme",
        snapshot(
            "acme", score=90, band="good", at="2025-03-01T10:00:00.000Z", components=_components(80, 40)
        ),
    )
    model.apply_health(
        "acme",
        snapshot(
            "acme", score=45, band="average", at="2025-03-14T10:00:00.000Z", components=_components(20, 10)
        ),
    )

    html = (await client.get("/dashboard/fragments/accounts/acme")).text  # the clock says 2025-03-15
    section = html.split('<section class="score-history">')[1].split("</section>")[0]

    # 15 days, from the first kept to today: 13 show the 1st's snapshot (good), the last 2 the 14th's.
    assert re.findall(r'class="dot dot-(\w+)"', section) == ["good"] * 13 + ["average"] * 2
    assert 'aria-label="daily score 2025-03-01 to 2025-03-15"' in section
    assert "<title>2025-03-14: 45, average</title>" in section
    assert [text_of(li) for li in re.findall(r"<li[^>]*>(.*?)</li>", section)] == [
        "Score fell from 90 to 45 since 2025-03-08.",
        "Activity fell from 80 to 20: \u221230.0 points of the score.",
        "Holding the score down most: activity at 20, costing 40.0 points: "
        "fewer <b>user-days</b> than usual.",
    ]
    assert "<b>" not in section  # an explanation is text, never markup


async def test_an_account_whose_days_are_past_the_retention_says_no_day_is_kept(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("acme", snapshot("acme", at="2024-10-01T10:00:00.000Z"))
    # A snapshot 120 days later (the days kept) prunes every day before it, acme's too.
    model.apply_health("globex", snapshot("globex", at="2025-03-15T10:00:00.000Z"))

    html = (await client.get("/dashboard/fragments/accounts/acme")).text

    assert "score-chart" not in html
    assert "No daily history kept for this account." in html
