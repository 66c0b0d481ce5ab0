"""Exact counts on real Kafka: bad input to the DLQ, duplicates dropped, a SIGKILL changes nothing."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from tests.integration.kafkautil import produce, read_all, wait_committed, wait_until
from tests.integration.pipeline import (
    alerts,
    counted_events,
    event,
    make_topics,
    metric,
    now_ms,
    rules_file,
    states,
    wait_metric,
)
from tests.integration.workers import WorkerFactory

BAD_MESSAGES: list[tuple[bytes | None, bytes | None, str]] = [
    # (key, value, a word the DLQ reason must contain)
    (b"acme", b"{not json", "JSON"),
    (b"acme", b"\xff\xfe\xfa", "JSON"),
    (b"acme", b"[1, 2, 3]", "object"),
    (b"acme", None, "empty"),
    (b"acme", orjson.dumps({"account_id": "acme", "event": "x", "timestamp": 1_700_000_000_000}), "event_id"),
    (b"acme", orjson.dumps({"event_id": "x1", "account_id": 42, "event": "x", "timestamp": 1}), "account_id"),
    (
        b"acme",
        orjson.dumps({"event_id": "x2", "account_id": "acme", "event": "x", "timestamp": "yesterday"}),
        "timestamp",
    ),
    (
        b"acme",
        orjson.dumps({"event_id": "x3", "account_id": "acme", "event": "x", "timestamp": 0}),
        "timestamp",
    ),
    (
        b"acme",
        orjson.dumps({"event_id": "x4", "account_id": "acme", "event": "x", "timestamp": 32503680000000}),
        "timestamp",
    ),
    (
        b"acme",
        orjson.dumps({"event_id": "x5", "account_id": "a" * 200, "event": "x", "timestamp": 1}),
        "account_id",
    ),
    (
        b"acme",
        orjson.dumps({"type": "track", "messageId": "m1", "event": "x", "timestamp": "2026-01-01T00:00:00Z"}),
        "groupId",
    ),
    (
        b"acme",
        orjson.dumps(
            {
                "event_id": "x6",
                "account_id": "acme",
                "event": "nps_response",
                "timestamp": 1_700_000_000_000,
                "properties": {"score": 11},
            }
        ),
        "score",
    ),
]


async def test_invalid_messages_go_to_the_dlq_with_reasons_and_valid_ones_count_once(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    group = f"g-{unique_id}"
    worker = await worker_factory.ready(topics, partitions=2, group=group)
    at = now_ms() - 60_000
    valid = [(b"acme", event("acme", f"v{i}", at + i)) for i in range(40)]
    valid += [(b"zeta", event("zeta", f"z{i}", at + i)) for i in range(25)]
    duplicates = [valid[3], valid[7], valid[50], valid[3]]
    mixed: list[tuple[bytes | None, bytes | None]] = []
    bad = [(k, v) for k, v, _ in BAD_MESSAGES]
    for i, item in enumerate(valid):
        mixed.append(item)
        if i < len(bad):
            mixed.append(bad[i])
    mixed += duplicates
    await produce(kafka_bootstrap, topics["events"], mixed)

    await wait_metric(worker, "churnwatch_events_total", len(mixed), 60)

    dead = await read_all(kafka_bootstrap, topics["dlq"])
    assert len(dead) == len(BAD_MESSAGES)
    by_value = {rec.value: dict(rec.headers) for rec in dead}
    for _, value, word in BAD_MESSAGES:
        reason = by_value[value]["churnwatch.error"].decode()
        assert word.lower() in reason.lower(), (value, reason)
        assert by_value[value]["churnwatch.source"].decode().startswith(topics["events"] + "/")
    # Processed is not yet stored (states are flushed every few seconds); committed is.
    await wait_committed(kafka_bootstrap, group, topics["events"], len(mixed), 60)
    stored = await states(kafka_bootstrap, group)
    assert counted_events(stored["acme"]) == 40
    assert counted_events(stored["zeta"]) == 25
    assert metric(worker, "churnwatch_events_total", outcome="duplicate") == len(duplicates)
    assert metric(worker, "churnwatch_events_total", outcome="invalid") == len(BAD_MESSAGES)


def _history(seed: int, accounts: int, per_account: int, start_ms: int) -> list[tuple[bytes, bytes]]:
    """Accounts' usage merged in time order, as a live stream would carry it, with some re-sends."""
    rng = random.Random(seed)
    timed: list[tuple[int, bytes, bytes]] = []
    for a in range(accounts):
        account = f"acct-{a:03d}"
        at = start_ms + rng.randrange(0, 3_600_000)
        for n in range(per_account):
            at += rng.randrange(60_000, 3 * 3_600_000)
            if rng.random() < 0.01:
                at += 4 * 86_400_000  # a silence longer than quiet_after
            name = rng.choice(["login", "report_viewed", "export", "invite_sent"])
            value = event(account, f"{account}-{n}", at, name, f"user-{rng.randrange(8)}")
            timed.append((at, account.encode(), value))
            if rng.random() < 0.03:
                timed.append((at + rng.randrange(0, 20_000), account.encode(), value))  # re-sent: same id
    timed.sort(key=lambda item: item[0])
    return [(key, value) for _, key, value in timed]


async def test_sigkill_and_restart_end_with_the_same_state_and_alert_ids_as_an_undisturbed_run(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    topics = await make_topics(topic_factory, partitions=4)
    reference_topics = {**topics, "alerts": await topic_factory("ref-alerts", 4)}
    reference_topics["health"] = await topic_factory("ref-health", 4)
    reference_topics["dlq"] = await topic_factory("ref-dlq", 4)
    reference_topics["clock"] = await topic_factory("ref-clock", 4)
    rules = str(rules_file(tmp_path, 3 * 86400.0))
    # Twelve days of history ending a month ago: quiet, drop and recovery episodes all happen in it.
    history = _history(seed=7, accounts=120, per_account=150, start_ms=now_ms() - 45 * 86_400_000)
    await produce(kafka_bootstrap, topics["events"], history)

    crashing = worker_factory.create(topics, 4, f"crash-{unique_id}", rules_file=rules, batch_max="200")
    await crashing.start()
    await crashing.wait_ready()
    for fraction in (0.25, 0.6):
        await wait_metric(crashing, "churnwatch_events_total", len(history) * fraction, 120)
        await crashing.kill()
        await crashing.start()
        await crashing.wait_ready()
    reference = worker_factory.create(reference_topics, 4, f"ref-{unique_id}", rules_file=rules)
    await reference.start()

    async def both_done() -> bool:
        crashed_states = await states(kafka_bootstrap, f"crash-{unique_id}")
        reference_states = await states(kafka_bootstrap, f"ref-{unique_id}")
        return (
            len(crashed_states) == len(reference_states) == 120
            and all(s.applied_offset >= 0 for s in crashed_states.values())
            and sum(map(counted_events, crashed_states.values()))
            == sum(map(counted_events, reference_states.values()))
            and metric(crashing, "churnwatch_consumer_lag") == 0
            and metric(reference, "churnwatch_consumer_lag") == 0
        )

    await wait_until(both_done, 180, "both runs to consume the whole history")
    crashed_states = await states(kafka_bootstrap, f"crash-{unique_id}")
    reference_states = await states(kafka_bootstrap, f"ref-{unique_id}")
    for account, ref in reference_states.items():
        got = crashed_states[account]
        assert got.days == ref.days, account
        assert (got.last_activity_ms, got.quiet_since_ms, got.drop_since_ms) == (
            ref.last_activity_ms,
            ref.quiet_since_ms,
            ref.drop_since_ms,
        ), account
    crashed_alerts = await alerts(kafka_bootstrap, topics["alerts"])
    reference_alerts = await alerts(kafka_bootstrap, reference_topics["alerts"])
    assert reference_alerts, "the history must raise alerts for the comparison to mean anything"
    assert {a.kind for a in reference_alerts} >= {"account_quiet", "account_recovered"}
    # At-least-once may re-send an alert after a crash, but always with the same id.
    assert set(crashed_alerts) == set(reference_alerts)
    assert len(history) > sum(map(counted_events, reference_states.values())), "re-sent events were dropped"
