"""The Segment tracking API as the SDKs call it: Basic write keys, writeKey, gzip, per-message outcomes."""

from __future__ import annotations

import base64
import gzip

import httpx
import orjson

from streamer.core.events import parse_event
from tests.unit.api.conftest import EU_WRITER, NOW, READER, WRITER, AppFactory, FakeProducer, client_for

AT = "2025-03-15T11:59:00Z"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(message_id: str, group: str | None = "acme", **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {"type": "track", "messageId": message_id, "event": "Report Exported"}
    doc |= {"userId": "u1", "timestamp": AT}
    if group is not None:
        doc["context"] = {"groupId": group}
    return doc | extra


def sdk_client(make_app: AppFactory) -> httpx.AsyncClient:
    return client_for(make_app(), key=None)


async def test_a_gzip_batch_with_the_write_key_as_basic_user_is_stored_and_answered_200(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track("m1"), track("m2", "globex")], "writeKey": WRITER}))
    headers = basic(WRITER) | {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with sdk_client(make_app) as client:
        resp = await client.post("/v1/batch", content=body, headers=headers)

    assert resp.status_code == 200
    assert resp.json() == {
        "success": True,
        "accepted": 2,
        "rejected": 0,
        "pending": 0,
        "ignored": 0,
        "errors": [],
    }
    assert [(k, parse_event(v).event_id) for _, k, v in producer.sent] == [(b"acme", "m1"), (b"globex", "m2")]


async def test_write_key_in_the_body_alone_authenticates(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    async with sdk_client(make_app) as client:
        resp = await client.post("/v1/batch", json={"batch": [track("m1")], "writeKey": WRITER})
    assert resp.status_code == 200 and len(producer.sent) == 1


async def test_keys_that_cannot_write_are_refused_before_anything_is_stored(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    async with sdk_client(make_app) as client:
        missing = await client.post("/v1/batch", json={"batch": [track("m1")]})
        unknown = await client.post("/v1/batch", json={"batch": [track("m1")]}, headers=basic("nope"))
        reader = await client.post("/v1/batch", json={"batch": [track("m1")]}, headers=basic(READER))
        mismatch = await client.post(
            "/v1/batch", json={"batch": [track("m1")], "writeKey": READER}, headers=basic(WRITER)
        )
        empty_user = await client.post(
            "/v1/batch", json={"batch": [track("m1")]}, headers={"Authorization": "Basic OndyaXRlcg=="}
        )
    assert [r.status_code for r in (missing, unknown, reader, mismatch, empty_user)] == [
        401,
        401,
        403,
        401,
        401,
    ]
    assert "write key" in missing.json()["error"]["message"]
    assert producer.sent == []


async def test_one_bad_message_is_reported_and_the_rest_of_its_batch_is_stored(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    batch = [track("m1"), track("m2", timestamp="yesterday"), track("m3", group=None), track("m4")]
    async with sdk_client(make_app) as client:
        resp = await client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITER))

    assert resp.status_code == 200
    doc = resp.json()
    # m3 names only its user: stored keyed by the user, for the worker to attribute.
    assert (doc["accepted"], doc["rejected"], doc["pending"]) == (2, 1, 1)
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(1, "timestamp")]
    assert [
        (k, orjson.loads(v).get("messageId") or orjson.loads(v)["event_id"]) for _, k, v in producer.sent
    ] == [
        (b"acme", "m1"),
        (b"u1", "m3"),
        (b"acme", "m4"),
    ]


async def test_messages_naming_only_their_user_are_stored_by_user_unless_they_cannot_be_attributed(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    anonymous = track("a1", group=None) | {"userId": None, "anonymousId": "anon-7"}
    nobody = track("n1", group=None) | {"userId": None}
    future = track("f1", group=None, timestamp=NOW.replace(year=2030).isoformat())
    async with sdk_client(make_app) as client:
        resp = await client.post(
            "/v1/batch", json={"batch": [anonymous, nobody, future]}, headers=basic(WRITER)
        )
        prefixed = await client.post(
            "/v1/batch", json={"batch": [track("p1", group=None)]}, headers=basic(EU_WRITER)
        )
    doc = resp.json()
    assert (doc["accepted"], doc["pending"]) == (0, 1)
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(1, "context.groupId"), (2, "timestamp")]
    assert [(k, orjson.loads(v)["messageId"]) for _, k, v in producer.sent] == [(b"anon-7", "a1")]
    # A key that may write only some accounts cannot write what names no account.
    assert prefixed.json()["errors"][0]["rule"] == "required with a key restricted to accounts (prefix 'eu-')"


async def test_the_batch_context_applies_to_messages_without_their_own(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    batch = [track("m1", group=None), track("m2", group="globex")]
    async with sdk_client(make_app) as client:
        resp = await client.post(
            "/v1/batch", json={"batch": batch, "context": {"groupId": "acme"}}, headers=basic(WRITER)
        )
    assert resp.json()["accepted"] == 2
    assert [k for _, k, _ in producer.sent] == [b"acme", b"globex"]


async def test_single_calls_take_their_type_from_the_path_and_alias_is_ignored(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    call = {"messageId": "p1", "userId": "u1", "timestamp": AT, "context": {"groupId": "acme"}}
    async with sdk_client(make_app) as client:
        page = await client.post("/v1/page", json=call | {"name": "Pricing"}, headers=basic(WRITER))
        group = await client.post(
            "/v1/group",
            json={
                "messageId": "g1",
                "userId": "u1",
                "groupId": "acme",
                "traits": {"plan": "pro"},
                "timestamp": AT,
            },
            headers=basic(WRITER),
        )
        alias = await client.post(
            "/v1/alias", json={"messageId": "a1", "previousId": "anon", "userId": "u1"}, headers=basic(WRITER)
        )
        wrong = await client.post("/v1/track", json=call | {"type": "page"}, headers=basic(WRITER))
    assert page.json()["accepted"] == 1 and group.json()["accepted"] == 1
    assert alias.status_code == 200 and alias.json()["ignored"] == 1 and alias.json()["accepted"] == 0
    assert wrong.status_code == 422
    events = [parse_event(v) for _, _, v in producer.sent]
    assert [(e.name, e.event_id) for e in events] == [("page", "p1"), ("group", "g1")]


async def test_a_message_over_32_kib_is_rejected_alone(make_app: AppFactory, producer: FakeProducer) -> None:
    big = track("big", properties={"blob": "x" * (33 * 1024)})
    async with sdk_client(make_app) as client:
        resp = await client.post("/v1/batch", json={"batch": [big, track("m1")]}, headers=basic(WRITER))
    doc = resp.json()
    assert resp.status_code == 200 and doc["accepted"] == 1
    assert doc["errors"] == [{"index": 0, "field": "$", "rule": "larger than 32768 bytes"}]


async def test_bodies_that_cannot_be_read_are_refused_with_the_reason(make_app: AppFactory) -> None:
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")
    async with sdk_client(make_app) as client:
        huge = await client.post(
            "/v1/batch", content=bomb, headers=basic(WRITER) | {"Content-Encoding": "gzip"}
        )
        broken = await client.post(
            "/v1/batch", content=b"not gzip", headers=basic(WRITER) | {"Content-Encoding": "gzip"}
        )
        brotli = await client.post(
            "/v1/batch", content=b"{}", headers=basic(WRITER) | {"Content-Encoding": "br"}
        )
        not_json = await client.post("/v1/batch", content=b"{", headers=basic(WRITER))
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "body_too_large")
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_gzip")
    assert brotli.status_code == 415
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "invalid_json")


async def test_while_kafka_cannot_take_them_the_sdk_is_told_to_retry(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    producer.fail = True
    async with sdk_client(make_app) as client:
        resp = await client.post("/v1/batch", json={"batch": [track("m1")]}, headers=basic(WRITER))
    assert resp.status_code == 503 and resp.headers["Retry-After"]


async def test_timestamps_after_the_apis_clock_bound_are_rejected_per_message(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    future = NOW.replace(year=2030).isoformat()
    async with sdk_client(make_app) as client:
        resp = await client.post(
            "/v1/batch", json={"batch": [track("m1", timestamp=future), track("m2")]}, headers=basic(WRITER)
        )
    assert resp.json()["accepted"] == 1 and resp.json()["errors"][0]["field"] == "timestamp"
