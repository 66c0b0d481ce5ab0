"""The API's read store on the real broker and the real databases: filled once, resumed after a restart,
exact when records are read twice, emptied when it was filled from other topics."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest

from api.settings import ApiSettings
from api.store.sql import SqlReadModel
from streamer.core.alerts import ms_to_rfc3339
from tests.integration.kafkautil import produce
from tests.integration.pipeline import make_topics, now_ms
from tests.integration.test_api import api_settings, eventually, running_api
from tests.unit.api.conftest import alert, snapshot


async def _load(settings: ApiSettings) -> dict[str, Any]:
    """Start the API on ``settings`` until ready; what it then serves."""
    async with running_api(settings) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, "/readyz 200")
        accounts = (await client.get("/v1/accounts", params={"sort": "account_id", "limit": 100})).json()
        feed = (await client.get("/v1/alerts", params={"limit": 100})).json()
        portfolio = (await client.get("/v1/portfolio")).json()
        health = (await client.get("/v1/accounts/acc3/health")).json()
    return {
        "scores": {row["account_id"]: row["score"] for row in accounts["items"]},
        "alerts": [a["alert_id"] for a in feed["items"]],
        "portfolio": portfolio,
        "acc3": health,
    }


def _snapshots(scores: dict[str, int], at: str) -> list[tuple[bytes, bytes]]:
    band = {True: "poor", False: "good"}
    return [
        (a.encode(), orjson.dumps(snapshot(a, score=s, band=band[s < 40], at=at))) for a, s in scores.items()
    ]


async def test_a_restarted_api_resumes_from_its_store_and_counts_every_record_once(
    kafka_bootstrap: str, topic_factory: Any, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    settings = api_settings(kafka_bootstrap, topics, store_url)
    detected = ms_to_rfc3339(now_ms())
    first = {f"acc{i}": 10 * i for i in range(6)}
    await produce(kafka_bootstrap, topics["health"], _snapshots(first, "2025-03-14T00:00:00.000Z"))
    quiet = alert("q-acc1", "acc1", detected_at=detected)
    await produce(kafka_bootstrap, topics["alerts"], [(b"acc1", orjson.dumps(quiet))], partition=0)

    with caplog.at_level(logging.INFO, logger="churnwatch.api.readmodel"):
        before = await _load(settings)
    # The empty store was filled without its accounts' indexes, built once it had caught up.
    assert "filling an empty read store" in caplog.text
    assert "built 24 indexes of the read store" in caplog.text
    assert "the snapshots are decoded and checked by 2 fill processes" in caplog.text
    caplog.clear()

    # While it is down: newer snapshots of two accounts, an older one of a third (read after a newer:
    # ignored), a new account, a tombstone, the same alert again and a new one.
    await produce(
        kafka_bootstrap,
        topics["health"],
        [
            *_snapshots({"acc3": 95, "acc4": 15, "acc9": 55}, "2025-03-15T00:00:00.000Z"),
            *_snapshots({"acc2": 99}, "2025-03-13T00:00:00.000Z"),
            (b"acc5", None),
        ],
    )
    drop = alert("d-acc4", "acc4", "usage_drop", detected_at=detected)
    await produce(
        kafka_bootstrap,
        topics["alerts"],
        [(b"acc1", orjson.dumps(quiet)), (b"acc4", orjson.dumps(drop))],
        partition=0,
    )
    with caplog.at_level(logging.INFO, logger="churnwatch.api.readmodel"):
        after = await _load(settings)

    assert before["scores"] == first
    assert before["alerts"] == ["q-acc1"]
    assert after["scores"] == {"acc0": 0, "acc1": 10, "acc2": 20, "acc3": 95, "acc4": 15, "acc9": 55}
    assert after["alerts"] == ["d-acc4", "q-acc1"]
    assert after["acc3"]["at"] == "2025-03-15T00:00:00.000Z"
    assert after["portfolio"]["accounts"] == 6
    assert after["portfolio"]["by_band"] == {"good": 2, "average": 0, "poor": 4}
    # Every partition with records resumed where the first run stopped (the empty one from its start).
    assert "loading 4 partitions (3 resumed from the store)" in caplog.text
    assert "filling" not in caplog.text and "built" not in caplog.text
    store = SqlReadModel(store_url)
    try:
        counts = store.counts()
        positions = store.positions()
    finally:
        store.close()
    assert counts["accounts"] == 6 and counts["alerts"] == 2 and counts["latest_alerts"] == 2
    # Days kept: the 14th of acc0-acc4 (acc5's went with its tombstone) and the 15th of acc3, acc4 and
    # acc9; acc2's snapshot of the 13th, older than its newest, is none.
    assert counts["history"] == 8
    # Keys go to partitions by murmur2: acc1 and acc4 to 0, the others to 1. Alerts: partition 0 only.
    assert positions == {(topics["health"], 0): 3, (topics["health"], 1): 8, (topics["alerts"], 0): 3}


async def test_a_store_filled_from_other_topics_is_emptied_and_filled_again(
    kafka_bootstrap: str, topic_factory: Any, store_url: str
) -> None:
    old, new = await make_topics(topic_factory, partitions=1), await make_topics(topic_factory, partitions=1)
    await produce(
        kafka_bootstrap, old["health"], _snapshots({"old-1": 10, "old-2": 20}, "2025-03-14T00:00:00Z")
    )
    await produce(kafka_bootstrap, new["health"], _snapshots({"new-1": 30}, "2025-03-14T00:00:00Z"))

    first = await _load(api_settings(kafka_bootstrap, old, store_url))
    second = await _load(api_settings(kafka_bootstrap, new, store_url))

    assert first["scores"] == {"old-1": 10, "old-2": 20}
    assert second["scores"] == {"new-1": 30}
    assert second["portfolio"]["accounts"] == 1


async def test_the_api_process_keeps_its_store_where_store_url_says(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Any
) -> None:
    from tests.integration.workers import ApiProcess  # noqa: PLC0415

    topics = await make_topics(topic_factory, partitions=1)
    await produce(kafka_bootstrap, topics["health"], _snapshots({"acme": 70}, "2025-03-14T00:00:00Z"))
    path = tmp_path / "elsewhere" / "read.db"
    api = ApiProcess(
        kafka_bootstrap,
        topics,
        {"k": {"name": "it", "scopes": ["health:read"]}},
        tmp_path / "api.log",
        settings={"store_url": f"sqlite:///{path}"},
    )
    await api.start()
    try:
        await api.wait_ready(30)
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": "k"}) as client:
            score = (await client.get("/v1/accounts/acme/health")).json()["score"]
    finally:
        await api.stop()
    store = SqlReadModel(f"sqlite:///{path}")
    try:
        assert store.counts()["accounts"] == 1
    finally:
        store.close()
    assert score == 70
