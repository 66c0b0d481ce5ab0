"""Event ingest: per-item validation with the worker's parser, keyed production, batch limits."""

from __future__ import annotations

import httpx
import orjson

from streamer.core.events import parse_event
from tests.unit.api.conftest import AppFactory, FakeProducer, client_for


def native(event_id: str, account: str = "acme", **extra: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "account_id": account,
        "event": "login",
        "timestamp": 1741600000000,
        **extra,
    }


async def test_single_event_is_produced_keyed_by_account(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    resp = await writer.post("/v1/events", json=native("e1", "globex"))

    assert resp.status_code == 202
    assert resp.json() == {"accepted": 1, "rejected": 0, "errors": []}
    [(topic, key, value)] = producer.sent
    assert topic == "usage-events"
    assert key == b"globex"
    assert parse_event(value).event_id == "e1"


async def test_each_item_is_accepted_or_rejected_on_its_own(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    items = [
        native("ok1"),
        native("bad-time", timestamp="yesterday"),
        "not an object",
        {"event_id": "x", "event": "login", "timestamp": 1741600000000},
        native("ok2", "initech"),
        native("bad-nps", event="nps_response", properties={"score": 11}),
    ]

    resp = await writer.post("/v1/events", json=items)

    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "timestamp"),
        (2, "$"),
        (3, "account_id"),
        (5, "properties.score"),
    ]
    assert body["errors"][2]["rule"] == "required"
    assert [key for _, key, _ in producer.sent] == [b"acme", b"initech"]


async def test_segment_batch_uses_group_id_as_account(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    batch = [
        {
            "type": "track",
            "messageId": "m1",
            "event": "report_exported",
            "timestamp": "2025-03-10T10:00:00Z",
            "context": {"groupId": "acme"},
        },
        {"type": "track", "messageId": "m2", "event": "x", "timestamp": "2025-03-10T10:00:00Z"},
    ]

    resp = await writer.post("/v1/segment/batch", json={"batch": batch})

    assert resp.status_code == 202
    [error] = resp.json()["errors"]
    assert (error["index"], error["field"]) == (1, "context.groupId")
    assert "groupId" in error["rule"]
    assert [key for _, key, _ in producer.sent] == [b"acme"]


async def test_segment_batch_needs_a_batch_array(writer: httpx.AsyncClient) -> None:
    resp = await writer.post("/v1/segment/batch", json=[{"type": "track"}])

    assert resp.status_code == 422
    assert "batch" in resp.json()["error"]["message"]


async def test_more_than_1000_items_is_refused_with_nothing_produced(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    resp = await writer.post("/v1/events", json=[native(f"e{i}") for i in range(1001)])

    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "batch_too_large"
    assert "1000" in resp.json()["error"]["message"]
    assert producer.sent == []


async def test_exactly_1000_items_are_accepted(writer: httpx.AsyncClient, producer: FakeProducer) -> None:
    resp = await writer.post("/v1/events", json=[native(f"e{i}") for i in range(1000)])

    assert resp.json()["accepted"] == 1000
    assert len(producer.sent) == 1000


async def test_invalid_json_is_400(writer: httpx.AsyncClient) -> None:
    resp = await writer.post("/v1/events", content=b"{not json", headers={"Content-Type": "application/json"})

    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


async def test_broker_failure_is_503_without_internals(make_app: AppFactory, producer: FakeProducer) -> None:
    producer.fail = True
    async with client_for(make_app(), "writer-key") as writer:
        resp = await writer.post("/v1/events", content=orjson.dumps(native("e1")))

    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "ingest_unavailable"
    assert "broker down" not in resp.text


# Properties nested 300 deep: more than a JSON encoder takes (orjson: 255), so the body is spliced.
DEEP = "__deep__"


def _with_deep(body: bytes) -> bytes:
    return body.replace(b'"__deep__"', b'{"k":' * 299 + b'{"leaf":1}' + b"}" * 299)


async def test_the_api_rejects_what_the_worker_would_dead_letter_item_by_item(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    from streamer.core.events import MAX_EVENT_BYTES
    from tests.unit.api.conftest import NOW

    now_ms = int(NOW.timestamp() * 1000)
    items = [
        native("ok1"),
        # nested 300 deep: parsed by the API's JSON reader, refused by its encoder (a 500 and a lost batch)
        native("deep", properties=DEEP),
        # accepted, then dead-lettered by the worker by size
        native("big", properties={"blob": "x" * (MAX_EVENT_BYTES + 1)}),
        # 5 minutes ahead of the API's clock is the worker's bound too: one millisecond more is refused
        native("at-bound", timestamp=now_ms + 300_000),
        native("future", timestamp=now_ms + 300_001),
        native("seats", event="account_updated", properties={"seats": 2**63}),
        native("ok2", "initech"),
    ]

    resp = await writer.post("/v1/events", content=_with_deep(orjson.dumps(items)))

    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (3, 4)
    assert [(e["index"], e["field"], e["rule"]) for e in body["errors"]] == [
        (1, "properties" + ".k" * 32, "nested more than 32 levels deep"),
        (2, "$", f"larger than {MAX_EVENT_BYTES} bytes"),
        (4, "timestamp", "more than 300s in the future of the receiver's clock"),
        (5, "properties.seats", "must be an integer 0..10000000"),
    ]
    assert [parse_event(value).event_id for _, _, value in producer.sent] == ["ok1", "at-bound", "ok2"]


async def test_a_segment_batch_with_one_item_too_deep_keeps_the_others(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    message = {
        "type": "track",
        "messageId": "m1",
        "event": "login",
        "userId": "u",
        "timestamp": "2025-03-10T09:00:00Z",
        "context": {"groupId": "acme"},
    }
    batch = [message, {**message, "messageId": "m2", "properties": DEEP}]

    resp = await writer.post("/v1/segment/batch", content=_with_deep(orjson.dumps({"batch": batch})))

    assert resp.status_code == 202
    assert (resp.json()["accepted"], resp.json()["rejected"]) == (1, 1)
    assert [parse_event(value).event_id for _, _, value in producer.sent] == ["m1"]
