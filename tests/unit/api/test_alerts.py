"""The alert feed and the Server-Sent Events stream."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from api.restrictions import EVERY_ACCOUNT
from tests.unit.api.conftest import (
    STORES,
    AppFactory,
    SseClient,
    StoreModel,
    alert,
    open_model,
    wait_subscribed,
)


async def test_feed_is_newest_first_filtered_and_paginated(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    for i in range(5):
        model.apply_alert(alert(f"q{i}", "acme", detected_at=f"2025-03-1{i}T00:00:00.000Z"))
    model.apply_alert(alert("d1", "globex", "usage_drop"))

    first = (await client.get("/v1/alerts", params={"account": "acme", "limit": 2})).json()
    second = (
        await client.get("/v1/alerts", params={"account": "acme", "cursor": first["next_cursor"]})
    ).json()
    since = (await client.get("/v1/alerts", params={"since": "2025-03-13T00:00:00Z"})).json()
    drops = (await client.get("/v1/alerts", params={"kind": "usage_drop"})).json()

    assert [a["alert_id"] for a in first["items"]] == ["q4", "q3"]
    assert [a["alert_id"] for a in second["items"]] == ["q2", "q1", "q0"]
    assert second["next_cursor"] is None
    assert [a["alert_id"] for a in since["items"]] == ["d1", "q4", "q3"]
    assert [a["alert_id"] for a in drops["items"]] == ["d1"]


@pytest.mark.parametrize("store", STORES)
def test_the_feed_is_in_detection_order_whatever_order_the_alerts_arrived_in(
    request: pytest.FixtureRequest, store: str
) -> None:
    # Read late (a backfill, a worker catching up): detected on the 10th-14th, arriving out of order;
    # two detected at the same instant go by arrival.
    model = open_model(request, store, alert_buffer=4)
    for i, day in ((2, 12), (0, 10), (4, 14), (1, 11), (3, 13), (5, 13)):
        model.apply_alert(alert(f"q{i}", "acme", detected_at=f"2025-03-{day}T08:00:00.000Z"))

    pages = []
    cursor = None
    while True:
        items, cursor = model.alerts(None, None, "acme", cursor, 3, scope=EVERY_ACCOUNT)
        pages.append([a["alert_id"] for a in items])
        if cursor is None:
            break

    # The four most recently detected are kept: q1, though it arrived after q2, q0 and q4, is not.
    assert pages == [["q4", "q5", "q3"], ["q2"]]


async def test_an_unknown_alert_kind_is_422_listing_the_kinds(
    client: httpx.AsyncClient, model: StoreModel
) -> None:
    model.apply_alert(alert("q1", "acme"))

    resp = await client.get("/v1/alerts", params={"kind": "quiet"})

    assert resp.status_code == 422
    assert resp.json()["error"]["message"] == (
        "kind must be one of 'account_quiet', 'usage_drop', 'health_degraded', 'key_user_lost', "
        "'account_recovered', 'data_gap', 'milestone_missed', 'milestone_reached' or 'onboarding_complete'"
    )


@pytest.mark.parametrize("store", STORES)
def test_feed_keeps_only_the_newest_alerts(request: pytest.FixtureRequest, store: str) -> None:
    model = open_model(request, store, alert_buffer=3)
    for i in range(5):
        model.apply_alert(alert(f"a{i}", "acme"))

    items, _ = model.alerts(None, None, None, None, 10, scope=EVERY_ACCOUNT)

    assert [a["alert_id"] for a in items] == ["a4", "a3", "a2"]


async def test_stream_delivers_a_new_alert_as_an_sse_event(make_app: AppFactory, model: StoreModel) -> None:
    model.apply_alert(alert("old", "acme"))  # before the stream: not replayed
    sse = SseClient(make_app())
    task = asyncio.create_task(sse.run())
    try:
        await wait_subscribed(model)
        model.apply_alert(alert("new1", "acme"))
        await sse.wait_for(b"\n\n", timeout_s=5)
        await sse.wait_for(b"event: alert\n")
        await sse.wait_for(b"}\n\n")
    finally:
        sse.disconnect.set()
        await asyncio.wait_for(task, 5)

    assert sse.status == 200
    assert sse.headers["cache-control"] == "no-store"
    assert sse.headers["x-content-type-options"] == "nosniff"
    frames = [f for f in sse.body.split(b"\n\n") if f.startswith(b"event: alert")]
    assert len(frames) == 1
    data = orjson.loads(frames[0].split(b"data: ", 1)[1])
    assert data["alert_id"] == "new1"
    assert model.subscribers == 0  # the disconnect released the subscription


async def test_stream_sends_keep_alive_comments_when_idle(make_app: AppFactory, model: StoreModel) -> None:
    sse = SseClient(make_app(sse_keepalive_s=0.05))
    task = asyncio.create_task(sse.run())
    try:
        await sse.wait_for(b": keep-alive\n\n")
        await wait_subscribed(model)
        model.apply_alert(alert("after-idle", "acme"))
        await sse.wait_for(b"after-idle")
    finally:
        sse.disconnect.set()
        await asyncio.wait_for(task, 5)

    assert sse.body.count(b"event: alert") == 1


async def test_stream_requires_alerts_scope(make_app: AppFactory) -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        resp = await c.get("/v1/alerts/stream", headers={"X-API-Key": "writer-key"})

    assert resp.status_code == 403


async def test_the_body_timeout_does_not_end_a_stream_that_outlives_it(
    make_app: AppFactory, model: StoreModel
) -> None:
    # After the (empty) body, a stream only listens for the disconnect: that wait has no deadline.
    sse = SseClient(make_app(body_timeout_s=0.01, sse_keepalive_s=0.02))
    task = asyncio.create_task(sse.run())
    try:
        await wait_subscribed(model)
        async with asyncio.timeout(5):
            while sse.body.count(b": keep-alive") < 3:  # three keep-alives: well past the body timeout
                sse.arrived.clear()
                await sse.arrived.wait()
        assert not task.done()
        model.apply_alert(alert("late", "acme"))
        await sse.wait_for(b"late")
    finally:
        sse.disconnect.set()
        await asyncio.wait_for(task, 5)

    assert sse.status == 200
