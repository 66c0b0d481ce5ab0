"""The daily digest on the real broker, to a real HTTP receiver, across a crash and a restart.

``python -m streamer.delivery`` runs as a process with the digest due at once (hour 0, UTC); the
health snapshots are produced to a fresh compacted topic as the worker publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from streamer.core.alerts import ms_to_rfc3339
from tests.integration.conftest import TopicFactory
from tests.integration.kafkautil import produce, read_all
from tests.integration.test_delivery import SECRET, Receiver, Setup, new_setup, wait_for, webhook_toml
from tests.integration.workers import free_port
from tests.unit.delivery.snapshots import snapshot


@pytest.fixture
def receiver() -> Any:
    r = Receiver(free_port())
    yield r
    r.stop()


@dataclass
class DigestSetup(Setup):
    """The delivery test's topics and processes, and a health topic."""

    health: str = ""


@pytest.fixture
async def setup(kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path) -> Any:
    """Fresh alert, DLQ, ledger and health topics; every delivery process is stopped afterwards."""
    s = await new_setup(kafka_bootstrap, topic_factory, tmp_path, DigestSetup)
    s.health = await topic_factory("health", 2, {"cleanup.policy": "compact"})
    yield s
    await s.stop_all()


def at(moment: datetime) -> str:
    return ms_to_rfc3339(round(moment.timestamp() * 1000))


async def test_one_digest_per_owner_across_a_crash_and_a_restart(
    setup: DigestSetup, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    today = now.date()
    if now - datetime(today.year, today.month, today.day, tzinfo=UTC) < timedelta(minutes=2):
        pytest.skip("too close to midnight UTC: the digest's date could change during the test")
    before = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=1, hours=1)
    docs = [
        # alice's a1 fell from good to poor since yesterday's digest hour (00:00 UTC).
        snapshot("a1", at(before), 80, "good", owner="alice", name="Acme", arr=120_000.0, currency="EUR"),
        snapshot("a1", at(now - timedelta(minutes=1)), 45, "poor", owner="alice", name="Acme", arr=120_000.0,
                 currency="EUR", poor=True),
        # bob's b1 has its usage dropping and renews in ten days.
        snapshot("b1", at(before), 60, "average", owner="bob", drop_since=at(before),
                 renewal_at=at(now + timedelta(days=10))),
        # u1 has no owner: the unowned digest.
        snapshot("u1", at(before), 30, "poor", poor=True),
        # carol's account has nothing to report: no message.
        snapshot("c1", at(before), 90, "good", owner="carol"),
    ]  # fmt: skip
    health = setup.health
    await produce(setup.bootstrap, health, [(d["account_id"].encode(), orjson.dumps(d)) for d in docs])
    day = today.isoformat()
    ids = {f"digest:{day}:owner:alice", f"digest:{day}:owner:bob", f"digest:{day}:unowned"}
    settings = {
        "digest_enabled": "true",
        "digest_hour": "0",
        "digest_time_zone": "UTC",
        "health_topic": health,
        "delivery_max_attempts": "1000",  # the outage below must not dead-letter the digests
    }
    proc = setup.process(webhook_toml(receiver.port), **settings)

    # 1. The receiver is down: the digests are attempted, then the process is killed (no clean stop).
    await proc.start()
    await wait_for(lambda: proc.metric("churnwatch_delivery_retries_total") >= 3, 40, "refused digests", proc)
    assert proc.proc is not None
    proc.proc.kill()
    await proc.proc.wait()
    assert receiver.hits == []

    # 2. After the restart, with the receiver up: one digest per owner with something to say.
    receiver.start()
    await proc.start()
    await wait_for(lambda: {h.headers["webhook-id"] for h in receiver.ok()} == ids, 60, "three digests", proc)
    await proc.wait_log(f"daily digest {day} finished", 30)

    # 3. A clean stop and a start the same day: nothing is sent again.
    assert await proc.stop() == 0
    await proc.start()
    await proc.wait_log(f"daily digest {day} finished", 60)
    assert f"daily digest {day}: 0 queued, 3 sent before" in proc.log_text()
    ok = [h.headers["webhook-id"] for h in receiver.ok()]
    assert sorted(ok) == sorted(ids), f"a digest was delivered more than once: {ok}"

    by_owner = {}
    for hit in receiver.ok():
        # The official receiver library verifies signature and timestamp; the id is the digest's.
        doc = Webhook(SECRET).verify(hit.body, hit.headers)
        assert doc["digest_id"] == hit.headers["webhook-id"]
        by_owner[doc["owner"]] = doc
    alice, bob, unowned = by_owner["alice"], by_owner["bob"], by_owner[None]
    assert alice["worse"] == [
        {"account_id": "a1", "name": "Acme", "arr": 120000.0, "currency": "EUR", "score_before": 80,
         "band_before": "good", "score": 45, "band": "poor"}
    ]  # fmt: skip
    assert [(a["account_id"], a["kind"]) for a in alice["open_alerts"]] == [("a1", "health_degraded")]
    assert bob["worse"] == []
    assert [(a["account_id"], a["kind"]) for a in bob["open_alerts"]] == [("b1", "usage_drop")]
    assert [(r["account_id"], r["days_left"]) for r in bob["renewals"]] == [("b1", 10)]
    assert [(a["account_id"], a["kind"]) for a in unowned["open_alerts"]] == [("u1", "health_degraded")]

    # The ledger holds each digest once, delivered, and the accounts' baselines of today.
    ledger = {
        r.key.decode(): orjson.loads(r.value)
        for r in await read_all(setup.bootstrap, setup.ledger)
        if r.value
    }
    assert {k: v["status"] for k, v in ledger.items() if "|" in k} == {f"crm|{i}": "delivered" for i in ids}
    assert {k: (v["day"], v["score"]) for k, v in ledger.items() if k.startswith("baseline:")} == {
        "baseline:a1": (day, 45),
        "baseline:b1": (day, 60),
        "baseline:u1": (day, 30),
        "baseline:c1": (day, 90),
    }
