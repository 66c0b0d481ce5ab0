"""The worker end to end on real Kafka: events in, health snapshots and alerts out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streamer.core.alerts import ms_to_rfc3339
from tests.integration.kafkautil import consume_until, produce
from tests.integration.pipeline import (
    alerts,
    event,
    make_topics,
    now_ms,
    rules_file,
    wait_clocks,
)
from tests.integration.workers import WorkerFactory

QUIET_S = 4.0


async def test_agent_consumes_produced_event_and_publishes_health(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(topics, partitions=2, group=f"g-{unique_id}")
    at = now_ms()
    await produce(kafka_bootstrap, topics["events"], [(b"acme", event("acme", "e1", at, user="ann"))])

    records = await consume_until(
        kafka_bootstrap, topics["health"], lambda recs: len(recs) >= 1, timeout_s=60
    )

    assert [r.key for r in records] == [b"acme"]
    snapshot = orjson.loads(records[0].value)
    assert snapshot["account_id"] == "acme"
    # One login and nothing else known: active today (recency 100), no tickets or NPS (sentiment
    # neutral, 70); components that need history or seats are left out rather than guessed.
    components = [(c["name"], c["value"]) for c in snapshot["components"]]
    assert components == [("recency", 100.0), ("sentiment", 70.0)]
    assert (snapshot["score"], snapshot["band"]) == (91, "good")
    assert snapshot["onboarding"]["active"] is True and snapshot["onboarding"]["status"] is None
    assert snapshot["last_activity_at"] == ms_to_rfc3339(at)
    assert sum(snapshot["daily"]["events"]) == 1


async def test_silent_account_is_alerted_at_its_deadline_without_any_other_event(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    worker = await worker_factory.ready(
        topics, partitions=2, group=f"g-{unique_id}", rules_file=str(rules_file(tmp_path, QUIET_S))
    )
    start = now_ms()
    # Two accounts; beta keeps going a little longer, then both fall silent. Nothing else is sent.
    items = [(b"alpha", event("alpha", f"a{i}", start + i * 100)) for i in range(3)]
    items += [(b"beta", event("beta", f"b{i}", start + i * 100)) for i in range(6)]
    await produce(kafka_bootstrap, topics["events"], items)
    last = {"alpha": start + 200, "beta": start + 500}

    def both_quiet(recs: list[Any]) -> bool:
        return {orjson.loads(r.value)["account_id"] for r in recs} >= {"alpha", "beta"}

    records = await consume_until(kafka_bootstrap, topics["alerts"], both_quiet, timeout_s=QUIET_S + 30)

    docs = [orjson.loads(r.value) for r in records]
    assert {d["kind"] for d in docs} == {"account_quiet"}
    for doc in docs:
        deadline = last[doc["account_id"]] + int(QUIET_S * 1000)
        # Detection is stamped in event time: the deadline itself, not whenever the clock noticed.
        assert doc["detected_at"] == ms_to_rfc3339(deadline)
        assert doc["evidence"]["last_activity_at"] == ms_to_rfc3339(last[doc["account_id"]])
        # A fresh account is onboarding (medium), active seconds ago on its only day (recency 100).
        assert doc["severity"] == "medium"
        assert (doc["health"]["score"], doc["health"]["band"]) == (91, "good")
    # Once per episode: the clocks move on, two seconds past the last deadline, with no second alert.
    await wait_clocks(worker, 2, max(last.values()) + int(QUIET_S * 1000) + 2000, 30)
    again = await alerts(kafka_bootstrap, topics["alerts"])
    assert sorted(a.alert_id for a in again) == sorted(d["alert_id"] for d in docs)
    assert len(again) == 2


async def test_activity_after_quiet_raises_recovery_that_closes_the_episode(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    topics = await make_topics(topic_factory, partitions=1)
    await worker_factory.ready(
        topics, partitions=1, group=f"g-{unique_id}", rules_file=str(rules_file(tmp_path, 2.0))
    )
    first = now_ms()
    await produce(kafka_bootstrap, topics["events"], [(b"gamma", event("gamma", "g1", first))])
    await consume_until(kafka_bootstrap, topics["alerts"], lambda recs: len(recs) >= 1, timeout_s=30)
    back = now_ms()
    await produce(kafka_bootstrap, topics["events"], [(b"gamma", event("gamma", "g2", back))])

    records = await consume_until(
        kafka_bootstrap, topics["alerts"], lambda recs: len(recs) >= 3, timeout_s=30
    )

    kinds = [orjson.loads(r.value)["kind"] for r in records]
    # quiet, recovered at the returning event, then quiet again: a new episode with a new id.
    assert kinds == ["account_quiet", "account_recovered", "account_quiet"]
    recovered = orjson.loads(records[1].value)
    assert recovered["detected_at"] == ms_to_rfc3339(back)
    assert len({orjson.loads(r.value)["alert_id"] for r in records}) == 3


MILESTONES = """
[[onboarding.milestones]]
name = "first report exported"
event = "report_exported"
deadline_days = 3

[[onboarding.milestones]]
name = "team invited"
event = "invite_sent"
count = 2
deadline_days = 5
"""
DAY = 86_400_000
MILESTONE_KINDS = {"milestone_reached", "milestone_missed", "onboarding_complete"}


async def test_milestones_are_reached_completed_and_missed_on_event_time(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    topics = await make_topics(topic_factory, partitions=1)
    rules = rules_file(tmp_path, 14 * 86_400.0, MILESTONES)
    worker = await worker_factory.ready(topics, partitions=1, group=f"g-{unique_id}", rules_file=str(rules))
    start = now_ms() - 10 * DAY
    # fast exports a report and sends both invitations in time; slow exports a report but invites
    # nobody within 5 days, and is seen again a day before now.
    items = [
        (b"fast", event("fast", "f1", start, user="ann")),
        (b"fast", event("fast", "f2", start + 1 * DAY, "report_exported", user="ann")),
        (b"fast", event("fast", "f3", start + 2 * DAY, "invite_sent", user="ann")),
        (b"fast", event("fast", "f4", start + 3 * DAY, "invite_sent", user="ann")),
        (b"slow", event("slow", "s1", start, user="bob")),
        (b"slow", event("slow", "s2", start + 1 * DAY, "report_exported", user="bob")),
        (b"slow", event("slow", "s3", start + 9 * DAY, user="bob")),
    ]
    await produce(kafka_bootstrap, topics["events"], items)

    def five(recs: list[Any]) -> bool:
        return sum(orjson.loads(r.value)["kind"] in MILESTONE_KINDS for r in recs) >= 5

    await consume_until(kafka_bootstrap, topics["alerts"], five, timeout_s=60)
    # Everything up to the last event is raised by the time the clock is there: no more than these.
    await wait_clocks(worker, 1, start + 9 * DAY, 30)
    seen = [a for a in await alerts(kafka_bootstrap, topics["alerts"]) if a.kind in MILESTONE_KINDS]

    assert sorted((a.account_id, a.kind, a.detected_at) for a in seen) == [
        ("fast", "milestone_reached", ms_to_rfc3339(start + 1 * DAY)),
        ("fast", "milestone_reached", ms_to_rfc3339(start + 3 * DAY)),
        ("fast", "onboarding_complete", ms_to_rfc3339(start + 3 * DAY)),
        # Raised at the deadline itself (event time), not when the next event came.
        ("slow", "milestone_missed", ms_to_rfc3339(start + 5 * DAY)),
        ("slow", "milestone_reached", ms_to_rfc3339(start + 1 * DAY)),
    ]
    assert len({a.alert_id for a in seen}) == 5

    def latest(recs: list[Any]) -> dict[bytes, Any]:
        return {r.key: orjson.loads(r.value)["onboarding"] for r in recs}

    def settled(recs: list[Any]) -> bool:
        shown = latest(recs)
        return {k: v["status"] for k, v in shown.items()} == {b"fast": "complete", b"slow": "behind"}

    shown = latest(await consume_until(kafka_bootstrap, topics["health"], settled, timeout_s=30))
    assert (shown[b"fast"]["done"], shown[b"fast"]["total"], shown[b"fast"]["missing"]) == (2, 2, [])
    slow = shown[b"slow"]
    due = ms_to_rfc3339(start + 5 * DAY)
    assert (slow["done"], slow["total"], slow["next"]) == (1, 2, {"name": "team invited", "due_at": due})
    assert [(m["name"], m["due_at"]) for m in slow["missing"]] == [
        ("team invited", ms_to_rfc3339(start + 5 * DAY))
    ]
