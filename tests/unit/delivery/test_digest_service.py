"""The daily digest inside the delivery service, on the in-process broker: once per owner and day."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from streamer.delivery.config import load_delivery_config
from streamer.delivery.service import wait_or_stop
from tests.unit.delivery.fakes import HEALTH, LEDGER, FakeBroker, Handler, harness, until
from tests.unit.delivery.snapshots import snapshot

SECRET = "whsec_" + base64.b64encode(b"unit-test-secret-of-32-bytes!!!!").decode()
CONFIG = load_delivery_config(
    '[[destinations]]\nname = "crm"\ntype = "webhook"\nurl = "https://crm.example.com/digest"\n'
    f'secret = "{SECRET}"\n[[routes]]\ndestinations = ["crm"]\n'
)
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
DIGEST: dict[str, Any] = {"digest_enabled": True, "digest_hour": 8, "delivery_max_attempts": 100}
IDS = {"digest:2026-12-03:owner:alice", "digest:2026-12-03:owner:bob", "digest:2026-12-03:unowned"}


def produce_portfolio(broker: FakeBroker) -> None:
    docs = [
        snapshot("a1", "2026-12-01T10:00:00.000Z", 80, "good", owner="alice"),
        snapshot("a1", "2026-12-03T07:00:00.000Z", 50, "poor", owner="alice", poor=True),
        snapshot("b1", "2026-12-02T10:00:00.000Z", 60, "average", owner="bob",
                 renewal_at="2026-12-10T00:00:00.000Z"),
        snapshot("u1", "2026-12-02T10:00:00.000Z", 40, "poor", poor=True),
        snapshot("c1", "2026-12-02T10:00:00.000Z", 90, "good", owner="carol"),  # nothing to say
    ]  # fmt: skip
    for i, doc in enumerate(docs):
        broker.append(HEALTH, doc["account_id"].encode(), orjson.dumps(doc), partition=i % 2)


def receiving(hits: list[httpx.Request], status: int = 200) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        hits.append(request)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status)

    return handle


def baselines(broker: FakeBroker) -> dict[str, tuple[str, int, str]]:
    out = {}
    for rec in broker.records(LEDGER):
        if rec.key is not None and rec.key.startswith(b"baseline:") and rec.value is not None:
            doc = orjson.loads(rec.value)
            out[rec.key.decode()] = (doc["day"], doc["score"], doc["band"])
    return out


async def test_digest_unsent_at_a_stop_is_sent_after_restart_and_never_twice() -> None:
    broker, refused, hits = FakeBroker(), list[httpx.Request](), list[httpx.Request]()

    # First run: the receiver refuses; the run stops in the backoff, nothing is finished.
    first = harness(
        broker, CONFIG, receiving(refused, 0), retry_wait=wait_or_stop, clock=lambda: NOW, **DIGEST
    )
    produce_portfolio(broker)
    first.start()
    await until(lambda: len(refused) >= 1, "a refused digest")
    await first.finish()
    assert baselines(broker) == {}, "no baseline before every digest of the day is finished"

    # Second run: each owner's digest once, signed, with the digest id as webhook-id.
    second = harness(broker, CONFIG, receiving(hits), clock=lambda: NOW, **DIGEST)
    second.start()
    await until(
        lambda: second.service.digests is not None and second.service.digests.done is not None, "done"
    )
    await second.finish()
    assert sorted(h.headers["webhook-id"] for h in hits) == sorted(IDS)
    by_owner = {}
    for hit in hits:
        doc = Webhook(SECRET).verify(hit.content, dict(hit.headers))
        assert doc["digest_id"] == hit.headers["webhook-id"]
        by_owner[doc["owner"]] = doc
    assert [(w["account_id"], w["score_before"], w["score"]) for w in by_owner["alice"]["worse"]] == [
        ("a1", 80, 50)
    ]
    assert [r["account_id"] for r in by_owner["bob"]["renewals"]] == ["b1"]
    assert [a["kind"] for a in by_owner[None]["open_alerts"]] == ["health_degraded"]
    assert baselines(broker) == {
        "baseline:a1": ("2026-12-03", 50, "poor"),
        "baseline:b1": ("2026-12-03", 60, "average"),
        "baseline:u1": ("2026-12-03", 40, "poor"),
        "baseline:c1": ("2026-12-03", 90, "good"),
    }

    # Third run, later the same day: nothing is sent again, and the baselines stay today's.
    later = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)
    third = harness(broker, CONFIG, receiving(hits), clock=lambda: later, **DIGEST)
    third.start()
    await until(lambda: third.service.digests is not None and third.service.digests.done is not None, "done")
    await third.finish()
    assert len(hits) == 3
    assert len(baselines(broker)) == 4


async def test_digest_waits_for_its_hour_and_is_off_by_default() -> None:
    broker, hits = FakeBroker(), list[httpx.Request]()
    early = harness(
        broker, CONFIG, receiving(hits), clock=lambda: datetime(2026, 12, 3, 7, 59, tzinfo=UTC), **DIGEST
    )
    produce_portfolio(broker)
    early.start()
    digests = early.service.digests
    assert digests is not None
    await until(lambda: len(digests.book.views) == 4, "the health topic read")
    await early.finish()
    assert hits == []
    off = harness(broker, CONFIG, receiving(hits), clock=lambda: NOW)
    assert off.service.digests is None


async def test_a_stop_does_not_wait_for_a_health_topic_that_does_not_exist_yet() -> None:
    broker, hits, never = FakeBroker(), list[httpx.Request](), asyncio.Event()
    h = harness(broker, CONFIG, receiving(hits), clock=lambda: NOW, **DIGEST)
    digests = h.service.digests
    assert digests is not None

    async def missing_topic() -> int:
        await never.wait()
        return 1

    digests.partitions = missing_topic
    h.start()
    await until(lambda: bool(h.consumer.assignment()), "the alert partitions assigned")
    await h.finish(timeout_s=2.0)
    assert not digests.started
