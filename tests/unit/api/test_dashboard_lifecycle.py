"""The dashboard shows each account's lifecycle status and active days in words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.dashboard.render import lifecycle_line
from tests.unit.api.conftest import StoreModel, snapshot
from tests.unit.api.test_dashboard import at_risk_ids, put, text_of


def _lifecycle(status: str | None, days_7: int, days_28: int | None) -> dict[str, Any]:
    return {"lifecycle": {"status": status, "active_days_7": days_7, "active_days_28": days_28}}


@pytest.mark.parametrize(
    ("block", "short", "long"),
    [
        (
            _lifecycle("returning", 5, 19),
            "Returning · active 5 of 7 days, 19 of 28",
            "Returning on 2025-03-15 (active that day and the day before) · active 5 of the last 7 days, "
            "19 of 28",
        ),
        (
            _lifecycle("resurrecting", 1, 4),
            "Back after a break · active 1 of 7 days, 4 of 28",
            "Back after a break on 2025-03-15 (active again after a day or more without activity) · "
            "active 1 of the last 7 days, 4 of 28",
        ),
        (
            _lifecycle("new", 1, 1),
            "New · active 1 of 7 days, 1 of 28",
            "New on 2025-03-15 (its first active day) · active 1 of the last 7 days, 1 of 28",
        ),
        # 28 days unknown (the account's policy keeps fewer): left out, never shown as a count
        (
            _lifecycle("dormant", 3, None),
            "Dormant · active 3 of 7 days",
            "Dormant on 2025-03-15 (no activity that day, after activity the day before) · active 3 of the "
            "last 7 days",
        ),
        (
            _lifecycle(None, 0, 2),
            "Inactive · active 0 of 7 days, 2 of 28",
            "Inactive on 2025-03-15 (no activity that day nor the day before) · active 0 of the last 7 days, "
            "2 of 28",
        ),
        # a snapshot written before lifecycles
        ({}, "", ""),
    ],
)
def test_lifecycle_reads_as_words(block: dict[str, Any], short: str, long: str) -> None:
    doc = snapshot("acme", at="2025-03-15T10:00:00.000Z", **block)
    assert lifecycle_line(doc) == short
    assert lifecycle_line(doc, long=True) == long


async def test_at_risk_rows_and_the_account_detail_show_the_lifecycle(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    put(
        model,
        snapshot(
            "gone", score=12, band="poor", at="2025-03-15T10:00:00.000Z", **_lifecycle("dormant", 4, 15)
        ),
    )
    put(model, snapshot("older", score=20, band="poor"))

    rows = (await client.get("/dashboard/fragments/at-risk")).text
    detail = (await client.get("/dashboard/fragments/accounts/gone")).text
    older = (await client.get("/dashboard/fragments/accounts/older")).text

    assert at_risk_ids(rows) == ["gone", "older"]
    gone_row, older_row = rows.split('data-account="older"')
    assert "Dormant · active 4 of 7 days, 15 of 28" in text_of(gone_row)
    assert "lifecycle" not in older_row
    assert (
        "Lifecycle: Dormant on 2025-03-15 (no activity that day, after activity the day before) · "
        "active 4 of the last 7 days, 15 of 28." in text_of(detail)
    )
    assert "Lifecycle" not in text_of(older)
