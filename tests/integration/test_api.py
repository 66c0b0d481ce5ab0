"""The API on real Kafka: events posted to it reach the worker, and its health comes back through the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from api.app import create_app
from api.auth import hash_key
from api.settings import ApiSettings
from streamer.core.alerts import ms_to_rfc3339
from tests.integration.kafkautil import produce
from tests.integration.pipeline import make_topics, now_ms
from tests.integration.workers import ApiProcess, WorkerFactory
from tests.unit.api.conftest import alert, snapshot

KEY = "integration-key"
POLL_LIMIT_S = 30.0


def api_settings(bootstrap: str, topics: dict[str, str], store_url: str) -> ApiSettings:
    return ApiSettings(
        store_url=store_url,
        kafka_bootstrap=bootstrap,
        events_topic=topics["events"],
        alerts_topic=topics["alerts"],
        health_topic=topics["health"],
        api_keys={hash_key(KEY): {"name": "it", "scopes": ["events:write", "health:read", "alerts:read"]}},
    )


@asynccontextmanager
async def running_api(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its Kafka read model and producer, started by its own lifespan."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-API-Key": KEY}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost", headers=headers
        ) as client:
            yield client


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll ``check`` until it returns something truthy, for at most POLL_LIMIT_S."""
    deadline = time.monotonic() + POLL_LIMIT_S
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    raise AssertionError(f"not within {POLL_LIMIT_S}s: {what}")


async def test_posted_event_comes_back_as_health(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, store_url: str
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(topics, partitions=2, group=f"g-{unique_id}")
    at = now_ms()

    async with running_api(api_settings(kafka_bootstrap, topics, store_url)) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, "/readyz 200")
        assert (await client.get("/v1/accounts/acme/health")).status_code == 404
        event = {"event_id": "e1", "account_id": "acme", "event": "login", "timestamp": at, "user_id": "ann"}
        bad = {**event, "event_id": "e2", "timestamp": "not a time"}
        terms = {"mrr": 1250.5, "currency": "eur", "renewal_at": "2030-01-31", "contract": "annual"}
        revenue = {
            **event,
            "event_id": "e3",
            "account_id": "globex",
            "event": "account_updated",
            "properties": terms,
        }
        resp = await client.post("/v1/events", json=[event, bad, revenue])
        assert resp.status_code == 202
        assert resp.json()["accepted"] == 2
        assert resp.json()["errors"][0]["index"] == 1

        async def health() -> dict[str, Any] | None:
            r = await client.get("/v1/accounts/acme/health")
            return r.json() if r.status_code == 200 else None

        doc = await eventually(health, "health of acme via the API")

        async def globex() -> dict[str, Any] | None:
            r = await client.get("/v1/accounts/globex/health")
            return r.json()["facts"] if r.status_code == 200 else None

        facts = await eventually(globex, "facts of globex via the API")
        listed = (await client.get("/v1/accounts", params={"sort": "account_id"})).json()
        by_arr = (await client.get("/v1/accounts", params={"sort": "-arr"})).json()
        new = (await client.get("/v1/accounts", params={"lifecycle": "new", "min_active_days_28": 1})).json()
        portfolio = (await client.get("/v1/portfolio")).json()

    assert doc["account_id"] == "acme"
    assert doc["last_activity_at"] == ms_to_rfc3339(at)
    assert sum(doc["daily"]["events"]) == 1  # the invalid item never reached the worker
    assert doc["open_alerts"] == []
    # acme's first active day; globex told facts only, which are not activity
    assert doc["lifecycle"] == {"status": "new", "active_days_7": 1, "active_days_28": 1}
    assert [row["account_id"] for row in listed["items"]] == ["acme", "globex"]
    assert [(row["lifecycle"], row["active_days_7"]) for row in listed["items"]] == [("new", 1), (None, 0)]
    assert [row["account_id"] for row in new["items"]] == ["acme"]
    assert portfolio["lifecycle"] == {"new": 1, "returning": 0, "resurrecting": 0, "dormant": 0}
    # Revenue facts from the worker, through the contract and the read store: ARR is 12 x MRR.
    assert (facts["arr"], facts["currency"], facts["renewal_at"], facts["contract"]) == (
        15006.0,
        "EUR",
        "2030-01-31T00:00:00.000Z",
        "annual",
    )
    assert [row["account_id"] for row in by_arr["items"]] == ["globex", "acme"]
    band = next(row["band"] for row in listed["items"] if row["account_id"] == "globex")
    assert portfolio["arr"]["by_band"][band] == {"EUR": 15006}


async def test_read_model_loads_existing_records_before_turning_ready(
    kafka_bootstrap: str, topic_factory: Any, store_url: str
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    docs = [snapshot(f"acc{i}", score=10 * i, band="poor") for i in range(5)]
    # Not a snapshot document (no daily activity): skipped, the account stays unknown.
    docs.append({k: v for k, v in snapshot("acc9", score=90).items() if k != "daily"})
    await produce(
        kafka_bootstrap, topics["health"], [(d["account_id"].encode(), orjson.dumps(d)) for d in docs]
    )
    good = alert("x1", "acc1", detected_at=ms_to_rfc3339(now_ms()))
    # Not an alert document (no severity): skipped, so it cannot break the feed for everyone.
    broken = {k: v for k, v in alert("x2", "acc2").items() if k != "severity"}
    await produce(
        kafka_bootstrap, topics["alerts"], [(b"acc1", orjson.dumps(good)), (b"acc2", orjson.dumps(broken))]
    )

    async with running_api(api_settings(kafka_bootstrap, topics, store_url)) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, "/readyz 200")
        # Ready means caught up: everything that existed at start is visible without further waiting.
        page = (await client.get("/v1/accounts", params={"sort": "-score"})).json()
        feed = (await client.get("/v1/alerts")).json()

    assert [row["account_id"] for row in page["items"]] == ["acc4", "acc3", "acc2", "acc1", "acc0"]
    assert [a["alert_id"] for a in feed["items"]] == ["x1"]


async def test_api_process_starts_serves_and_refuses_requests_without_a_key(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Any
) -> None:
    # The way `make demo` and a deployment run it: `python -m api`, settings from the environment.
    topics = await make_topics(topic_factory, partitions=2)
    api = ApiProcess(
        kafka_bootstrap, topics, {KEY: {"name": "it", "scopes": ["health:read"]}}, tmp_path / "api.log"
    )
    await api.start()
    try:
        await api.wait_ready(POLL_LIMIT_S)
        async with httpx.AsyncClient(base_url=api.url) as client:
            anonymous = await client.get("/v1/accounts")
            known = await client.get("/v1/accounts", headers={"Authorization": f"Bearer {KEY}"})
        assert anonymous.status_code == 401
        assert "Traceback" not in anonymous.text
        assert known.status_code == 200 and known.json()["items"] == []
    finally:
        await api.stop()


async def test_account_ids_with_slashes_and_odd_characters_round_trip_through_the_api_process(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Any
) -> None:
    # Ingested through `python -m api`, scored by the worker, read back through the same server, which
    # decodes %2F before routing: every id must come back under its percent-encoded path.
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(topics, partitions=2, group=f"g-{unique_id}")
    scopes = ["events:write", "health:read", "alerts:read"]
    api = ApiProcess(kafka_bootstrap, topics, {KEY: {"name": "it", "scopes": scopes}}, tmp_path / "api.log")
    ids = ["tenant/p7", "50%", "a b", "\u00fcn\u00efc\u00f8d\u00e9/\U0001f642"]
    await api.start()
    try:
        await api.wait_ready(POLL_LIMIT_S)
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": KEY}) as client:
            at = now_ms()
            events = [
                {"event_id": f"e{i}", "account_id": a, "event": "login", "timestamp": at, "user_id": "u"}
                for i, a in enumerate(ids)
            ]
            posted = await client.post("/v1/events", json=events)
            assert posted.status_code == 202 and posted.json()["accepted"] == len(ids)

            async def all_readable() -> dict[str, Any] | None:
                docs = {}
                for account in ids:
                    r = await client.get(f"/v1/accounts/{quote(account, safe='')}/health")
                    if r.status_code != 200:
                        return None
                    docs[account] = r.json()
                return docs

            docs = await eventually(all_readable, "every odd id's health via its encoded path")
    finally:
        await api.stop()

    assert {account: doc["account_id"] for account, doc in docs.items()} == {a: a for a in ids}


async def test_an_owner_scoped_key_sees_only_its_accounts_through_the_api_process(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Any
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    owners = {"ann-1": "ana@example.com", "ann-2": "ana@example.com", "bob-1": "bob@example.com"}
    docs = {
        a: snapshot(a, score=10 * i, band="poor", facts={"owner": owner})
        for i, (a, owner) in enumerate(owners.items())
    }
    await produce(kafka_bootstrap, topics["health"], [(a.encode(), orjson.dumps(d)) for a, d in docs.items()])
    detected = ms_to_rfc3339(now_ms())
    alerts = [(a.encode(), orjson.dumps(alert(f"x-{a}", a, detected_at=detected))) for a in owners]
    # One partition, so the feed's order (newest first) is the order produced.
    await produce(kafka_bootstrap, topics["alerts"], alerts, partition=0)
    reads = ["health:read", "alerts:read"]
    keys = {
        KEY: {"name": "all", "scopes": reads},
        "ana-key": {"name": "ana", "scopes": reads, "owner": "ana@example.com"},
    }
    api = ApiProcess(kafka_bootstrap, topics, keys, tmp_path / "api.log")
    await api.start()
    try:
        await api.wait_ready(POLL_LIMIT_S)
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": "ana-key"}) as ana:
            listed = (await ana.get("/v1/accounts", params={"sort": "account_id"})).json()
            own = await ana.get("/v1/accounts/ann-1/health")
            other = await ana.get("/v1/accounts/bob-1/health")
            unknown = await ana.get("/v1/accounts/nobody/health")
            feed = (await ana.get("/v1/alerts")).json()
            portfolio = (await ana.get("/v1/portfolio")).json()
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": KEY}) as everyone:
            listed_all = (await everyone.get("/v1/accounts", params={"sort": "account_id"})).json()
    finally:
        await api.stop()

    assert [row["account_id"] for row in listed["items"]] == ["ann-1", "ann-2"]
    assert own.status_code == 200
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"] == {"code": "not_found", "message": "no health snapshot for account 'bob-1'"}
    assert unknown.json()["error"] == {
        "code": "not_found",
        "message": "no health snapshot for account 'nobody'",
    }
    assert [a["alert_id"] for a in feed["items"]] == ["x-ann-2", "x-ann-1"]
    assert portfolio["accounts"] == 2
    assert [row["account_id"] for row in listed_all["items"]] == ["ann-1", "ann-2", "bob-1"]
