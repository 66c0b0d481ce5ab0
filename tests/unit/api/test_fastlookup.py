"""The health-lookup lane answers exactly as the route would, for every outcome, and is the one taking
lookups: the same status, body and headers as the route (reached with a query string, which the lane
leaves to it), and the route's endpoint reached without FastAPI's routing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import api.fastlookup
from api.routes.accounts import account_health
from tests.unit.api.conftest import (
    ANN,
    READER,
    WRITER,
    AppFactory,
    StoreModel,
    client_for,
    snapshot,
)

UNKNOWN = "no-such-key"

# (key, account, extra headers) of one lookup each: answered 200, 404 (unknown; outside the key's
# owner), 401 (no key, unknown key, another scheme), 403 (no health:read), 400 (two credentials).
CASES: list[tuple[str | None, str, dict[str, str]]] = [
    (READER, "acme", {}),
    (READER, "tenant/p7", {}),
    (READER, "nobody", {}),
    (ANN, "acme", {}),
    (ANN, "ann-co", {}),
    (None, "acme", {}),
    (UNKNOWN, "acme", {}),
    (None, "acme", {"Authorization": "Basic eDo="}),
    (WRITER, "acme", {}),
    (READER, "acme", {"X-API-Key": READER}),
]


def _answer(resp: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {k: v for k, v in resp.headers.items() if k not in ("date", "content-length")}
    return resp.status_code, resp.json(), headers


async def _lookups(app: Any, via_route: bool) -> list[tuple[int, Any, dict[str, str]]]:
    out = []
    for key, account, headers in CASES:
        async with client_for(app, key) as c:
            path = f"/v1/accounts/{account.replace('/', '%2F')}/health"
            out.append(
                _answer(await c.get(path, params={"via": "route"} if via_route else None, headers=headers))
            )
    return out


async def test_every_lookup_outcome_is_the_routes_and_the_lane_answers_it(
    make_app: AppFactory, model: StoreModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    for account, owner in (("acme", "bob"), ("tenant/p7", "bob"), ("ann-co", "ann")):
        model.apply_health(account, snapshot(account, score=61, facts={"owner": owner}))
    endpoint = account_health
    lane_calls: list[str] = []

    async def counted(account_id: str, *args: Any) -> Any:
        lane_calls.append(account_id)
        return await endpoint(account_id, *args)

    monkeypatch.setattr(api.fastlookup, "account_health", counted)

    by_lane = await _lookups(make_app(), via_route=False)
    by_route = await _lookups(make_app(), via_route=True)

    assert by_lane == by_route
    assert [status for status, _, _ in by_lane] == [200, 200, 404, 404, 200, 401, 401, 401, 403, 400]
    assert by_lane[0][1]["account_id"] == "acme" and by_lane[1][1]["account_id"] == "tenant/p7"
    # The lane reached the endpoint for each authorised lookup; the route's own calls are not counted.
    assert lane_calls == ["acme", "tenant/p7", "nobody", "acme", "ann-co"]


async def test_the_lane_charges_the_rate_limit_once_per_lookup_as_the_route_does(
    make_app: AppFactory,
) -> None:
    answers = {}
    for via_route in (False, True):
        app = make_app(rate_limit_per_s=0.001, rate_limit_burst=2)
        async with client_for(app) as c:
            params = {"via": "route"} if via_route else None
            answers[via_route] = [
                _answer(await c.get("/v1/accounts/acme/health", params=params)) for _ in range(3)
            ]
    assert answers[False] == answers[True]
    assert [status for status, _, _ in answers[False]] == [404, 404, 429]
