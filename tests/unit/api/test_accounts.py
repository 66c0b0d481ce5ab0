"""Account health and account lists."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.unit.api.conftest import StoreModel, alert, snapshot


async def test_unknown_account_is_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/accounts/nope/health")

    assert resp.status_code == 404
    body = resp.json()
    assert body["error"]["code"] == "not_found"
    assert "nope" in body["error"]["message"]


@pytest.mark.parametrize(
    "path",
    ["/v1/accounts/{id}/health", "/dashboard/fragments/accounts/{id}"],
)
async def test_an_unknown_20_kb_account_id_is_echoed_cut_to_128_characters(
    client: httpx.AsyncClient, path: str
) -> None:
    account_id = "a" * 128 + "b" * 20_000

    resp = await client.get(path.format(id=account_id))

    assert resp.status_code == 404
    message = resp.json()["error"]["message"]
    assert message == f"no health snapshot for account {'a' * 128 + chr(0x2026)!r}"
    assert len(resp.content) < 300


async def test_a_128_character_account_id_is_echoed_whole(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"/v1/accounts/{'x' * 128}/health")

    assert resp.json()["error"]["message"] == f"no health snapshot for account {'x' * 128!r}"


async def test_health_returns_latest_snapshot_with_open_alerts_only(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("acme", snapshot("acme", score=10))
    model.apply_health(
        "acme", snapshot("acme", score=30, episodes={"quiet_since": "2025-03-07T00:00:00.000Z"})
    )
    model.apply_alert(alert("q1", "acme", "account_quiet"))
    # A drop alert whose episode the snapshot says is closed: not open.
    model.apply_alert(alert("d1", "acme", "usage_drop"))
    model.apply_alert(alert("other", "globex", "account_quiet"))

    resp = await client.get("/v1/accounts/acme/health")

    assert resp.status_code == 200
    body = resp.json()
    assert body["score"] == 30
    assert [a["alert_id"] for a in body["open_alerts"]] == ["q1"]


async def test_quiet_alert_of_an_earlier_episode_is_not_open(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("acme", snapshot("acme", episodes={"quiet_since": "2025-03-12T00:00:00.000Z"}))
    model.apply_alert(alert("old", "acme", "account_quiet"))  # episode started 2025-03-07

    body = (await client.get("/v1/accounts/acme/health")).json()

    assert body["open_alerts"] == []


def _seed(model: StoreModel) -> None:
    rows = [
        ("a1", 90, "good", "smb", "2025-03-14T00:00:00.000Z"),
        ("a2", 20, "poor", "smb", "2025-02-01T00:00:00.000Z"),
        ("a3", 55, "average", "enterprise", "2025-03-01T00:00:00.000Z"),
        ("a4", 20, "poor", "enterprise", None),
        ("a5", 70, "good", "smb", "2025-03-05T00:00:00.000Z"),
        ("a6", 35, "poor", "smb", "2025-01-20T00:00:00.000Z"),
        ("a7", 60, "average", "smb", "2025-03-09T00:00:00.000Z"),
    ]
    for account, score, band, segment, last in rows:
        facts = {"name": account.upper(), "seats": 1, "plan": "pro", "segment": segment, "owner": "ann"}
        model.apply_health(
            account, snapshot(account, score=score, band=band, facts=facts, last_activity_at=last)
        )


async def _all_pages(client: httpx.AsyncClient, **params: object) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/v1/accounts", params=query)  # type: ignore[arg-type]
        assert resp.status_code == 200, resp.text
        body = resp.json()
        ids += [item["account_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


async def test_pagination_walks_every_account_once_in_sort_order(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)

    ids, pages = await _all_pages(client, sort="-score", limit=3)

    assert ids == ["a1", "a5", "a7", "a3", "a6", "a4", "a2"]  # ties on 20 broken by id, descending
    assert pages == 3


async def test_sort_by_last_activity_puts_never_active_first(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    _seed(model)

    ids, _ = await _all_pages(client, sort="last_activity_at", limit=2)

    assert ids == ["a4", "a6", "a2", "a3", "a5", "a7", "a1"]


async def test_filters_combine(client: httpx.AsyncClient, model: StoreModel) -> None:
    _seed(model)

    resp = await client.get(
        "/v1/accounts",
        params={"segment": "smb", "min_score": 30, "max_score": 80, "quiet_since": "2025-03-06T00:00:00Z"},
    )

    items = resp.json()["items"]
    assert [i["account_id"] for i in items] == ["a6", "a5"]
    assert set(items[0]) == {
        "account_id",
        "name",
        "score",
        "band",
        "trend",
        "last_activity_at",
        "segment",
        "plan",
        "owner",
        "arr",
        "currency",
        "renewal_at",
        "lifecycle",
        "active_days_7",
        "active_days_28",
        "onboarding_status",
        "onboarding_overdue_days",
    }
    assert items[0]["name"] == "A6"
    band = await client.get("/v1/accounts", params={"band": "poor", "sort": "account_id"})
    assert [i["account_id"] for i in band.json()["items"]] == ["a2", "a4", "a6"]


async def test_accounts_list_by_arr_and_by_renewal_with_them_in_each_row(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    revenue = [
        ("r1", 5000.0, "2025-06-01T00:00:00.000Z"),
        ("r2", None, "2025-04-01T00:00:00.000Z"),
        ("r3", 9000.0, None),
    ]
    for account, arr, renewal in revenue:
        facts = {"name": account, "arr": arr, "currency": "EUR" if arr else None, "renewal_at": renewal}
        model.apply_health(account, snapshot(account, facts=facts))

    by_arr = (await client.get("/v1/accounts", params={"sort": "-arr"})).json()["items"]
    assert [(i["account_id"], i["arr"], i["currency"]) for i in by_arr] == [
        ("r3", 9000.0, "EUR"),
        ("r1", 5000.0, "EUR"),
        ("r2", None, None),
    ]
    by_renewal = (await client.get("/v1/accounts", params={"sort": "renewal_at", "limit": 1})).json()
    assert [i["renewal_at"] for i in by_renewal["items"]] == ["2025-04-01T00:00:00.000Z"]
    rest = await client.get(
        "/v1/accounts", params={"sort": "renewal_at", "cursor": by_renewal["next_cursor"]}
    )
    assert [i["account_id"] for i in rest.json()["items"]] == ["r1", "r3"]


async def test_bad_cursor_limit_and_sort_are_rejected(client: httpx.AsyncClient, model: StoreModel) -> None:
    _seed(model)
    first = (await client.get("/v1/accounts", params={"limit": 2, "sort": "score"})).json()

    garbage = await client.get("/v1/accounts", params={"cursor": "!!!not-a-cursor"})
    other_sort = await client.get("/v1/accounts", params={"cursor": first["next_cursor"], "sort": "-score"})
    too_many = await client.get("/v1/accounts", params={"limit": 501})
    bad_sort = await client.get("/v1/accounts", params={"sort": "name"})
    naive = await client.get("/v1/accounts", params={"quiet_since": "2025-03-06T00:00:00"})

    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "invalid_cursor"
    assert other_sort.status_code == 400
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "invalid_request"
    assert too_many.json()["error"]["details"][0]["loc"] == ["query", "limit"]
    assert bad_sort.status_code == 422
    assert naive.status_code == 422


# The message names the parameter and what it takes; an unknown band used to answer 200 with no accounts.
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"band": "bad"}, "band must be one of 'good', 'average' or 'poor'"),
        # a band's value is its lower-case name, as in the documents
        ({"band": "POOR"}, "band must be one of 'good', 'average' or 'poor'"),
        (
            {"sort": "name"},
            "sort must be one of 'score', '-score', 'last_activity_at', '-last_activity_at', 'account_id', "
            "'-arr', 'renewal_at' or '-onboarding_overdue'",
        ),
        (
            {"lifecycle": "inactive"},
            "lifecycle must be one of 'new', 'returning', 'resurrecting' or 'dormant'",
        ),
        ({"min_active_days_28": "29"}, "min_active_days_28: Input should be less than or equal to 28"),
        ({"max_active_days_7": "-1"}, "max_active_days_7: Input should be greater than or equal to 0"),
        (
            {"min_active_days_7": "two"},
            "min_active_days_7: Input should be a valid integer, unable to parse string as an integer",
        ),
    ],
)
async def test_an_unknown_band_or_sort_is_422_listing_the_allowed_values(
    client: httpx.AsyncClient, model: StoreModel, params: dict[str, str], message: str
) -> None:
    _seed(model)

    resp = await client.get("/v1/accounts", params=params)

    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "invalid_request"
    assert resp.json()["error"]["message"] == message


def _lifecycle(status: str | None, days_7: int, days_28: int | None) -> dict[str, Any]:
    return {"lifecycle": {"status": status, "active_days_7": days_7, "active_days_28": days_28}}


async def test_accounts_are_listed_by_lifecycle_and_active_days_with_them_in_each_row(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_health("l1", snapshot("l1", score=10, **_lifecycle("returning", 6, 22)))
    model.apply_health("l2", snapshot("l2", score=20, **_lifecycle("dormant", 1, 3)))
    model.apply_health("l3", snapshot("l3", score=30, **_lifecycle("resurrecting", 2, None)))
    model.apply_health("l4", snapshot("l4", score=40, **_lifecycle(None, 0, 0)))
    model.apply_health("l5", snapshot("l5", score=50))  # written before lifecycles: no block
    model.apply_health("l6", snapshot("l6", score=60, **_lifecycle("returning", 2, 9)))

    async def listed(**params: Any) -> list[str]:
        resp = await client.get("/v1/accounts", params={"sort": "score", **params})
        assert resp.status_code == 200, resp.text
        return [i["account_id"] for i in resp.json()["items"]]

    assert await listed(lifecycle="returning") == ["l1", "l6"]
    assert await listed(lifecycle="dormant") == ["l2"]
    assert await listed(lifecycle="new") == []
    assert await listed(min_active_days_7=2) == ["l1", "l3", "l6"]
    assert await listed(max_active_days_7=1) == ["l2", "l4"]
    assert await listed(min_active_days_7=2, max_active_days_7=2) == ["l3", "l6"]
    # an unknown count of 28 days (l3's policy keeps fewer; l5 tells none) meets no bound
    assert await listed(min_active_days_28=0) == ["l1", "l2", "l4", "l6"]
    assert await listed(max_active_days_28=9) == ["l2", "l4", "l6"]
    assert await listed(lifecycle="returning", min_active_days_28=10) == ["l1"]
    rows = (await client.get("/v1/accounts", params={"sort": "score", "limit": 6})).json()["items"]
    assert [(r["lifecycle"], r["active_days_7"], r["active_days_28"]) for r in rows] == [
        ("returning", 6, 22),
        ("dormant", 1, 3),
        ("resurrecting", 2, None),
        (None, 0, 0),
        (None, None, None),
        ("returning", 2, 9),
    ]


async def test_a_repeated_query_parameter_is_rejected_not_silently_overridden(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/v1/accounts?owner=ann&owner=bob")
    assert resp.status_code == 422
    assert "owner" in resp.json()["error"]["message"]


async def test_a_repeated_long_query_parameter_name_is_echoed_cut(client: httpx.AsyncClient) -> None:
    name = "p" * 20_000

    resp = await client.get(f"/v1/accounts?{name}=1&{name}=2")

    assert resp.status_code == 422
    assert resp.json()["error"]["message"] == f"query parameter given more than once: {'p' * 128}\u2026"


# Ids a product app may well use: a tenant path, a percent sign, spaces, unicode, and ids that look
# like the route around them.
ODD_IDS = [
    "tenant/p7",
    "a/b/c",
    "50%",
    "50%25",
    "a b",
    "\u00fcn\u00efc\u00f8d\u00e9/\U0001f642",
    "x/health",
    "/lead",
    "trail/",
    "..",
]


@pytest.mark.parametrize("account_id", ODD_IDS)
async def test_an_account_id_with_slashes_or_odd_characters_is_readable_percent_encoded(
    client: httpx.AsyncClient, model: StoreModel, account_id: str
) -> None:
    model.apply_health(account_id, snapshot(account_id))
    model.apply_health("x", snapshot("x"))  # a shorter id that a greedy or lazy match could pick
    model.apply_alert(alert("al-1", account_id))
    encoded = quote(account_id, safe="").replace(".", "%2E")

    health = await client.get(f"/v1/accounts/{encoded}/health")
    fragment = await client.get(f"/dashboard/fragments/accounts/{encoded}")
    alerts = await client.get("/v1/alerts", params={"account": account_id})

    assert health.status_code == 200
    assert health.json()["account_id"] == account_id
    assert fragment.status_code == 200
    assert 'data-alert="al-1"' in fragment.text
    assert [a["alert_id"] for a in alerts.json()["items"]] == ["al-1"]


async def test_an_id_with_a_slash_is_listed_as_it_is(client: httpx.AsyncClient, model: StoreModel) -> None:
    model.apply_health("tenant/p7", snapshot("tenant/p7"))

    listed = await client.get("/v1/accounts")

    assert [row["account_id"] for row in listed.json()["items"]] == ["tenant/p7"]
