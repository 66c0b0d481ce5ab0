"""Keys restricted by owner, segment or both see only their accounts, on every read path.

Six accounts and seven alerts; four keys: unrestricted, owner "ann", segment "enterprise", and both.
Every expectation is written out rather than computed with the predicate under test.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.unit.api.conftest import (
    ANN,
    ANN_ENTERPRISE,
    ENTERPRISE,
    READER,
    AppFactory,
    SseClient,
    StoreModel,
    alert,
    client_for,
    snapshot,
    wait_subscribed,
)

ANN_ENT = {"owner": "ann", "segment": "enterprise"}
# (id, score, band, facts, changes): ids sort like scores, so "account_id" and "score" orders agree.
ACCOUNTS: list[tuple[str, int, str, dict[str, str], dict[str, Any]]] = [
    (
        "a-ann-smb",
        10,
        "poor",
        {"owner": "ann", "segment": "smb"},
        {"quiet_since": "2025-03-01T00:00:00.000Z"},
    ),
    ("b-ann-ent", 20, "poor", ANN_ENT, {"nps": 10}),
    (
        "c-bob-ent",
        30,
        "average",
        {"owner": "bob", "segment": "enterprise"},
        {"drop_since": "2025-03-02T00:00:00.000Z"},
    ),
    ("d-bob-smb", 40, "average", {"owner": "bob", "segment": "smb"}, {"nps": 3, "cancelled": True}),
    ("e-ann-ent", 50, "good", ANN_ENT, {"poor": True, "nps": 9}),
    ("f-no-facts", 60, "good", {}, {}),
]
ALL_IDS = [a[0] for a in ACCOUNTS]
VISIBLE = {
    READER: ALL_IDS,
    ANN: ["a-ann-smb", "b-ann-ent", "e-ann-ent"],
    ENTERPRISE: ["b-ann-ent", "c-bob-ent", "e-ann-ent"],
    ANN_ENTERPRISE: ["b-ann-ent", "e-ann-ent"],
}
# Applied in this order. "al-moved" says ann/enterprise, but its account's snapshot now says bob/smb;
# "g-ghost" has no snapshot yet, so its alert's own facts decide; "al-gap" is an operations alert.
ALERTS = [
    alert("al-a", "a-ann-smb"),
    alert("al-c", "c-bob-ent", "usage_drop"),
    alert("al-moved", "d-bob-smb", account=ANN_ENT),
    alert("al-ghost", "g-ghost", account=ANN_ENT),
    {**alert("al-gap", "-", "data_gap", account={}), "account_id": None},
    alert("al-e", "e-ann-ent", "health_degraded"),
]
ALERTS_SEEN = {  # oldest first
    READER: ["al-a", "al-c", "al-moved", "al-ghost", "al-gap", "al-e"],
    ANN: ["al-a", "al-ghost", "al-e"],
    ENTERPRISE: ["al-c", "al-ghost", "al-e"],
    ANN_ENTERPRISE: ["al-ghost", "al-e"],
}
KEYS = pytest.mark.parametrize(
    "key",
    [READER, ANN, ENTERPRISE, ANN_ENTERPRISE],
    ids=["unrestricted", "owner", "segment", "owner+segment"],
)


def _snapshot(account_id: str, score: int, band: str, facts: dict[str, str], changes: dict[str, Any]) -> Any:
    cancelled = "2025-03-05T00:00:00+00:00" if changes.get("cancelled") else None
    return snapshot(
        account_id,
        score=score,
        band=band,
        facts={"name": account_id.upper(), **facts},
        nps={"score": changes.get("nps"), "at": None},
        subscription={"status": None, "started_at": "2024-06-01T00:00:00+00:00", "cancelled_at": cancelled},
        episodes={
            "quiet_since": changes.get("quiet_since"),
            "drop_since": changes.get("drop_since"),
            "poor": changes.get("poor", False),
        },
    )


@pytest.fixture
def app(make_app: AppFactory, model: StoreModel) -> FastAPI:
    for row in ACCOUNTS:
        model.apply_health(row[0], _snapshot(*row))
    for doc in ALERTS:
        model.apply_alert(doc)
    return make_app()


async def _get(app: FastAPI, key: str, path: str, **params: Any) -> httpx.Response:
    async with client_for(app, key) as c:
        return await c.get(path, params=params)


async def _pages(app: FastAPI, key: str, path: str, ids_of: str, **params: Any) -> list[list[str]]:
    """Every page of a paged list, following next_cursor, as lists of ids."""
    pages: list[list[str]] = []
    cursor = None
    async with client_for(app, key) as c:
        while True:
            body = (await c.get(path, params={**params, **({"cursor": cursor} if cursor else {})})).json()
            pages.append([item[ids_of] for item in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None or len(pages) > 10:
                return pages


@KEYS
async def test_the_account_list_holds_exactly_the_keys_accounts(app: FastAPI, key: str) -> None:
    body = (await _get(app, key, "/v1/accounts", sort="account_id", limit=500)).json()

    assert [row["account_id"] for row in body["items"]] == VISIBLE[key]
    assert body["next_cursor"] is None


@KEYS
@pytest.mark.parametrize(
    ("sort", "descending"),
    [("score", False), ("-score", True), ("account_id", False), ("-last_activity_at", True)],
)
async def test_paging_returns_each_permitted_account_once_in_order(
    app: FastAPI, key: str, sort: str, descending: bool
) -> None:
    pages = await _pages(app, key, "/v1/accounts", "account_id", sort=sort, limit=2)

    expected = VISIBLE[key][::-1] if descending else VISIBLE[key]
    assert [account for page in pages for account in page] == expected
    assert [len(page) for page in pages] == [2] * (len(expected) // 2) + [1] * (len(expected) % 2)


@pytest.mark.parametrize(
    ("key", "filters", "expected"),
    [
        (ANN, {"owner": "bob"}, []),  # a filter cannot widen the key's accounts
        (ANN, {"segment": "smb"}, ["a-ann-smb"]),
        (ANN, {"band": "poor"}, ["a-ann-smb", "b-ann-ent"]),
        (ENTERPRISE, {"segment": "smb"}, []),
        (ENTERPRISE, {"owner": "ann"}, ["b-ann-ent", "e-ann-ent"]),
        (ANN_ENTERPRISE, {"min_score": 30}, ["e-ann-ent"]),
        (READER, {"owner": "bob"}, ["c-bob-ent", "d-bob-smb"]),
    ],
)
async def test_filters_narrow_the_keys_accounts(
    app: FastAPI, key: str, filters: dict[str, Any], expected: list[str]
) -> None:
    body = (await _get(app, key, "/v1/accounts", sort="account_id", **filters)).json()

    assert [row["account_id"] for row in body["items"]] == expected


async def test_a_cursor_from_another_key_continues_within_this_keys_accounts(app: FastAPI) -> None:
    # The unrestricted key's first page ends at b-ann-ent; from there ann has only e-ann-ent left.
    first = (await _get(app, READER, "/v1/accounts", sort="account_id", limit=2)).json()
    after = (await _get(app, ANN, "/v1/accounts", sort="account_id", cursor=first["next_cursor"])).json()

    assert [row["account_id"] for row in first["items"]] == ["a-ann-smb", "b-ann-ent"]
    assert [row["account_id"] for row in after["items"]] == ["e-ann-ent"]
    assert after["next_cursor"] is None


@KEYS
@pytest.mark.parametrize("read", ["health", "history"])
async def test_health_and_history_answer_only_for_the_keys_accounts(
    app: FastAPI, key: str, read: str
) -> None:
    statuses = {
        account: (await _get(app, key, f"/v1/accounts/{account}/{read}")).status_code for account in ALL_IDS
    }

    assert statuses == {account: 200 if account in VISIBLE[key] else 404 for account in ALL_IDS}


@pytest.mark.parametrize(
    "path", ["/v1/accounts/{}/health", "/v1/accounts/{}/history", "/dashboard/fragments/accounts/{}"]
)
async def test_an_account_outside_the_scope_is_answered_exactly_like_an_unknown_one(
    app: FastAPI, model: StoreModel, path: str
) -> None:
    url = path.format(quote("c-bob-ent", safe=""))
    outside = await _get(app, ANN, url)
    seen_by_reader = await _get(app, READER, url)
    model.apply_health("c-bob-ent", None)  # now it does not exist for anyone
    unknown_to_ann = await _get(app, ANN, url)
    unknown_to_reader = await _get(app, READER, url)

    assert seen_by_reader.status_code == 200
    assert outside.status_code == 404
    assert outside.json() == {
        "error": {"code": "not_found", "message": "no health snapshot for account 'c-bob-ent'"}
    }
    for unknown in (unknown_to_ann, unknown_to_reader):
        assert (unknown.status_code, unknown.content) == (outside.status_code, outside.content)
        assert unknown.headers.multi_items() == outside.headers.multi_items()


@pytest.mark.parametrize(
    ("key", "accounts", "by_band", "open_alerts", "nps_responses", "march"),
    [
        (READER, 6, (2, 2, 2), (1, 1, 1), 3, (6, 1)),
        (ANN, 3, (1, 0, 2), (1, 0, 1), 2, (3, 0)),
        (ENTERPRISE, 3, (1, 1, 1), (0, 1, 1), 2, (3, 0)),
        (ANN_ENTERPRISE, 2, (1, 0, 1), (0, 0, 1), 2, (2, 0)),
    ],
    ids=["unrestricted", "owner", "segment", "owner+segment"],
)
async def test_portfolio_figures_count_only_the_keys_accounts(
    app: FastAPI,
    key: str,
    accounts: int,
    by_band: tuple[int, int, int],
    open_alerts: tuple[int, int, int],
    nps_responses: int,
    march: tuple[int, int],
) -> None:
    body = (await _get(app, key, "/v1/portfolio")).json()
    cards = (await _get(app, key, "/dashboard/fragments/portfolio")).text

    assert body["accounts"] == accounts
    assert body["by_band"] == dict(zip(("good", "average", "poor"), by_band, strict=True))
    assert body["open_alerts"] == dict(
        zip(("account_quiet", "usage_drop", "health_degraded"), open_alerts, strict=True)
    )
    assert body["nps"]["responses"] == nps_responses
    assert (body["churn"][-1]["month"], body["churn"][-1]["active_at_start"], body["churn"][-1]["lost"]) == (
        "2025-03",
        *march,
    )
    assert f'<div class="value" id="kpi-accounts">{accounts}</div>' in cards
    # The week's figures over the same accounts (every snapshot is of the current week).
    week = (await _get(app, key, "/v1/portfolio/history", weeks=1)).json()["weeks"][0]
    assert (week["accounts"], week["by_band"]) == (accounts, body["by_band"])


@KEYS
async def test_the_alert_feed_holds_only_the_keys_alerts(app: FastAPI, key: str) -> None:
    body = (await _get(app, key, "/v1/alerts", limit=500)).json()

    assert [a["alert_id"] for a in body["items"]] == ALERTS_SEEN[key][::-1]


@KEYS
async def test_paging_the_alert_feed_returns_each_permitted_alert_once(app: FastAPI, key: str) -> None:
    pages = await _pages(app, key, "/v1/alerts", "alert_id", limit=1)

    assert pages == [[alert_id] for alert_id in ALERTS_SEEN[key][::-1]]


@pytest.mark.parametrize(
    ("key", "account", "expected"),
    [
        (ANN, "c-bob-ent", []),  # outside: as if it had no alerts
        (READER, "c-bob-ent", ["al-c"]),
        (ANN, "g-ghost", ["al-ghost"]),
        (ANN, "d-bob-smb", []),  # its alert still says ann, its account no longer does
    ],
)
async def test_the_alerts_of_one_account_follow_its_scope(
    app: FastAPI, key: str, account: str, expected: list[str]
) -> None:
    body = (await _get(app, key, "/v1/alerts", account=account)).json()

    assert [a["alert_id"] for a in body["items"]] == expected


@KEYS
async def test_dashboard_fragments_hold_only_the_keys_accounts_and_alerts(app: FastAPI, key: str) -> None:
    at_risk = (await _get(app, key, "/dashboard/fragments/at-risk")).text
    feed = (await _get(app, key, "/dashboard/fragments/alerts")).text

    # The at-risk table lists the poor and average ones of them, lowest score first.
    at_risk_ids = [a[0] for a in ACCOUNTS if a[2] in ("poor", "average")]
    expected = [a for a in VISIBLE[key] if a in at_risk_ids]
    assert re.findall(r'<tr class="account-row" data-account="([^"]*)"', at_risk) == expected
    assert re.findall(r'data-alert="([^"]*)"', feed) == ALERTS_SEEN[key][::-1]
    # The owner filter offers the owners of the key's accounts only.
    owners = (await _get(app, key, "/dashboard/fragments/owners")).text
    expected_owners = sorted({a[3]["owner"] for a in ACCOUNTS if a[0] in VISIBLE[key] and a[3]})
    assert re.findall(r'<option value="([^"]+)"', owners) == expected_owners


async def test_the_dashboard_detail_of_a_permitted_account_shows_its_alert_history(app: FastAPI) -> None:
    resp = await _get(app, ANN, "/dashboard/fragments/accounts/a-ann-smb")

    assert resp.status_code == 200
    assert re.findall(r'data-alert="([^"]*)"', resp.text) == ["al-a"]


@KEYS
async def test_the_stream_delivers_only_the_keys_alerts(app: FastAPI, model: StoreModel, key: str) -> None:
    sse = SseClient(app, key)
    task = asyncio.create_task(sse.run())
    try:
        await wait_subscribed(model)
        for doc in ALERTS:
            # New alerts (an alert already stored is not sent again when it is read again).
            model.apply_alert(
                {**doc, "alert_id": f"{doc['alert_id']}-2", "detected_at": "2025-03-15T00:00:00.000Z"}
            )
        # al-e comes last and every key may see it: once it is there, every earlier one is too.
        await sse.wait_for(b'"alert_id":"al-e-2"')
    finally:
        sse.disconnect.set()
        await asyncio.wait_for(task, 5)

    frames = [f for f in sse.body.split(b"\n\n") if f.startswith(b"event: alert")]
    sent = [orjson.loads(f.split(b"data: ", 1)[1])["alert_id"] for f in frames]
    assert sent == [f"{a}-2" for a in ALERTS_SEEN[key]]
