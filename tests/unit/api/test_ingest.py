"""Event ingest: per-item validation with the worker's parser, keyed production, batch limits."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest
from starlette.types import Message

from streamer.core.events import parse_event
from tests.unit.api.conftest import EU_WRITER, WRITER, AppFactory, FakeProducer, client_for


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
    assert resp.json() == {"accepted": 1, "rejected": 0, "pending": 0, "errors": []}
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


EU_RULE = "outside this key's accounts (prefix 'eu-')"


def segment(message_id: str, **extra: object) -> dict[str, object]:
    return {"type": "track", "messageId": message_id, "event": "login", "timestamp": 1741600000000, **extra}


async def test_a_prefix_key_writes_only_events_of_its_accounts_item_by_item(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    items = [
        native("e1", "eu-acme"),
        native("e2", "us-globex"),
        native("e3", "eu-initech", timestamp="yesterday"),  # invalid anyway: that error is reported
        native("e4", "EU-hooli"),  # prefixes are case-sensitive
        native("e5", "eu-"),
        native("e6", "neu-x"),
    ]
    async with client_for(make_app(), EU_WRITER) as eu:
        resp = await eu.post("/v1/events", json=items)

    assert resp.status_code == 202
    assert resp.json() == {
        "accepted": 2,
        "rejected": 4,
        "pending": 0,
        "errors": [
            {"index": 1, "field": "account_id", "rule": EU_RULE},
            {
                "index": 2,
                "field": "timestamp",
                "rule": "must be RFC 3339 with a UTC offset or integer epoch milliseconds",
            },
            {"index": 3, "field": "account_id", "rule": EU_RULE},
            {"index": 5, "field": "account_id", "rule": EU_RULE},
        ],
    }
    assert [key for _, key, _ in producer.sent] == [b"eu-acme", b"eu-"]


async def test_a_prefix_key_writes_only_segment_messages_of_its_accounts_naming_their_group_field(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    batch = [
        segment("m1", context={"groupId": "eu-acme"}),
        segment("m2", context={"groupId": "us-globex"}),
        segment("m3", groupId="us-initech"),
        segment("m4", groupId="eu-hooli"),
    ]
    async with client_for(make_app(), EU_WRITER) as eu:
        resp = await eu.post("/v1/segment/batch", json={"batch": batch})

    assert resp.status_code == 202
    assert resp.json() == {
        "accepted": 2,
        "rejected": 2,
        "pending": 0,
        "errors": [
            {"index": 1, "field": "context.groupId", "rule": EU_RULE},
            {"index": 2, "field": "groupId", "rule": EU_RULE},
        ],
    }
    assert [key for _, key, _ in producer.sent] == [b"eu-acme", b"eu-hooli"]


async def test_a_request_with_only_other_accounts_events_produces_nothing(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    async with client_for(make_app(), EU_WRITER) as eu:
        resp = await eu.post("/v1/events", json=native("e1", "us-globex"))

    assert resp.status_code == 422
    assert resp.json()["error"]["details"] == {
        "accepted": 0,
        "rejected": 1,
        "pending": 0,
        "errors": [{"index": 0, "field": "account_id", "rule": EU_RULE}],
    }
    assert producer.calls == 0


FUTURE_RULE = "more than 300s in the future of the receiver's clock"
TIME_RULE = "must be RFC 3339 with a UTC offset or integer epoch milliseconds"


async def test_an_event_stamped_in_2030_is_refused_with_its_reason_not_accepted(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    resp = await writer.post("/v1/events", json=native("e1", timestamp="2030-01-01T00:00:00Z"))

    assert resp.status_code == 422
    assert resp.json() == {
        "error": {
            "code": "events_rejected",
            "message": f"the event was rejected; index 0: timestamp: {FUTURE_RULE}",
            "details": {
                "accepted": 0,
                "rejected": 1,
                "pending": 0,
                "errors": [{"index": 0, "field": "timestamp", "rule": FUTURE_RULE}],
            },
        }
    }
    assert producer.calls == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", [native("e1", timestamp="2030-01-01T00:00:00Z"), native("e2", timestamp="now")]),
        (
            "/v1/segment/batch",
            {
                "batch": [
                    segment("m1", groupId="acme", timestamp="2030-01-01T00:00:00Z"),
                    segment("m2", groupId="acme", timestamp="now"),
                ]
            },
        ),
    ],
)
async def test_a_batch_whose_every_event_is_rejected_is_422_with_each_reason(
    writer: httpx.AsyncClient, producer: FakeProducer, path: str, body: object
) -> None:
    resp = await writer.post(path, json=body)

    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "events_rejected"
    assert error["message"] == f"all 2 events were rejected; index 0: timestamp: {FUTURE_RULE}"
    assert error["details"] == {
        "accepted": 0,
        "rejected": 2,
        "pending": 0,
        "errors": [
            {"index": 0, "field": "timestamp", "rule": FUTURE_RULE},
            {"index": 1, "field": "timestamp", "rule": TIME_RULE},
        ],
    }
    assert producer.calls == 0


async def test_a_batch_with_one_event_accepted_stays_202_listing_the_rejected(
    writer: httpx.AsyncClient, producer: FakeProducer
) -> None:
    resp = await writer.post("/v1/events", json=[native("e1", timestamp="now"), native("e2")])

    assert resp.status_code == 202
    assert resp.json() == {
        "accepted": 1,
        "rejected": 1,
        "pending": 0,
        "errors": [{"index": 0, "field": "timestamp", "rule": TIME_RULE}],
    }


async def test_an_empty_batch_rejects_nothing_and_is_202(writer: httpx.AsyncClient) -> None:
    resp = await writer.post("/v1/events", json=[])

    assert resp.status_code == 202
    assert resp.json() == {"accepted": 0, "rejected": 0, "pending": 0, "errors": []}


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
    assert resp.headers["Retry-After"] == "5"
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


async def test_a_broker_that_does_not_acknowledge_in_time_is_503_with_retry_after(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    producer.hang = True
    async with client_for(make_app(ingest_timeout_s=0.05), WRITER) as writer:
        resp = await writer.post("/v1/events", json=[native("e1"), native("e2")])

    assert resp.status_code == 503
    assert resp.json()["error"] == {
        "code": "ingest_unavailable",
        "message": "events could not be stored; retry later",
    }
    assert resp.headers["Retry-After"] == "1"  # the timeout, rounded up to whole seconds
    assert producer.calls == 1 and producer.sent == []


async def test_while_kafka_is_unreachable_ingest_is_503_at_once_and_nothing_is_sent(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    producer.unreachable = "Kafka at 127.0.0.1:9092 does not answer metadata requests"
    async with client_for(make_app(ingest_timeout_s=3), WRITER) as writer:
        resp = await writer.post("/v1/events", json=native("e1"))
        invalid_only = await writer.post("/v1/events", json=[native("bad", timestamp="yesterday")])

    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "3"
    assert producer.calls == 0
    # Nothing to store, so no 503: every item is reported as rejected as usual.
    assert invalid_only.status_code == 422 and invalid_only.json()["error"]["details"]["rejected"] == 1


async def test_a_client_gone_mid_body_is_one_info_line_and_counted_as_499(
    make_app: AppFactory, producer: FakeProducer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    messages: list[Message] = [
        {"type": "http.request", "body": b'[{"event_id": "e1", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"x-api-key", WRITER.encode()), (b"content-length", b"5000")],
        "client": ("10.0.0.9", 5000),
        "server": ("localhost", 80),
    }
    with caplog.at_level(logging.DEBUG):
        await app(scope, receive, send)
    async with client_for(app, None) as c:
        metrics = (await c.get("/metrics")).text

    assert sent[0]["status"] == 499
    assert producer.sent == []
    records = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records]
    assert records == [
        (
            logging.INFO,
            "client disconnected before sending the whole body: POST /v1/events from 10.0.0.9",
            None,
        )
    ]
    assert 'churnwatch_api_requests_total{method="POST",route="/v1/events",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics


async def test_structured_cloudevents_are_ingested_and_refused_by_prefix_naming_their_attribute(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    def cloudevent(event_id: str, **attrs: object) -> dict[str, object]:
        doc = {"specversion": "1.0", "id": event_id, "source": "/app", "type": "login", "time": 1741600000000}
        return {**doc, **attrs}

    items = [
        cloudevent("c1", subject="eu-acme"),
        cloudevent("c2", accountid="us-acme"),
        cloudevent("c3", subject="us-x"),
    ]
    async with client_for(make_app(), EU_WRITER) as client:
        resp = await client.post("/v1/events", json=items)
    doc = resp.json()
    assert (resp.status_code, doc["accepted"], doc["rejected"]) == (202, 1, 2)
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(1, "accountid"), (2, "subject")]
    [(_, key, value)] = producer.sent
    assert key == b"eu-acme" and parse_event(value).event_id == "c1"
