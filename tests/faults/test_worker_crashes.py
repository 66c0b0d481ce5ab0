"""Worker crashes and rebalances during a replay of the simulator's traffic, on the shared broker."""

from __future__ import annotations

import dataclasses
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.kafka.partitioner import kafka_partitioner
from tests.faults.traffic import DAY_MS, History, PacedProducer, replay, simulated_history, wait_streamed
from tests.integration.kafkautil import committed, read_all, wait_until
from tests.integration.pipeline import (
    AlertSeen,
    alerts,
    counted_events,
    make_topics,
    metric,
    now_ms,
    rules_file,
    states,
)
from tests.integration.workers import Worker, WorkerFactory

QUIET_DAYS = 3
PARTITIONS = 4


def _history(events: int, accounts: int) -> History:
    # 20 days ending 4 days ago: quiet episodes and recoveries inside it, and every account quiet
    # at its end, raised by the wall-clock ticks once the worker has caught up.
    return simulated_history(
        seed=8, accounts=accounts, events=events, start_ms=now_ms() - 24 * DAY_MS, span_days=20
    )


async def _progress(bootstrap: str, group: str, topic: str, total: int) -> float:
    return await committed(bootstrap, group, topic) / total


async def _wait_progress(bootstrap: str, group: str, topic: str, total: int, fraction: float) -> None:
    async def reached() -> bool:
        return await _progress(bootstrap, group, topic, total) >= fraction

    await wait_until(reached, 600, f"{group} to commit {fraction:.0%} of the input")


async def _wait_exact(
    bootstrap: str, group: str, history: History, timeout_s: float, figures: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Wait until the group's stored states count exactly the history's distinct events.

    Fails at the timeout, or earlier once the counts have not changed for 60 s (processing is over
    and they are wrong).
    """
    latest: dict[str, Any] = {}
    counts: dict[str, int] = {}
    changed = time.monotonic()

    async def exact() -> bool:
        nonlocal latest, counts, changed
        latest = await states(bootstrap, group)
        now = {a: counted_events(s) for a, s in latest.items()}
        if now != counts:
            counts, changed = now, time.monotonic()
        if now == dict(history.counted):
            return True
        if time.monotonic() - changed > 60:
            raise AssertionError("the counts stopped changing")
        return False

    try:
        await wait_until(exact, timeout_s, f"{group}'s states to count every event once")
    except AssertionError as err:
        wrong = {a: (counts.get(a), n) for a, n in history.counted.items() if counts.get(a) != n}
        if figures is not None:
            figures["accounts counted wrong"] = len(wrong)
            figures["events missing"] = sum(n - (got or 0) for got, n in wrong.values())
        raise AssertionError(
            f"{err}: {len(wrong)} accounts counted wrong (got, want): {list(wrong.items())[:10]}"
        ) from None
    if figures is not None:
        figures["accounts counted wrong"] = 0
    return latest


def _final_quiet(history: History) -> set[tuple[str, int]]:
    return {(a, at + QUIET_DAYS * DAY_MS) for a, at in history.last_activity_ms.items()}


def _quiet_seen(seen: list[AlertSeen]) -> set[tuple[str, int]]:
    from streamer.core.events import parse_event_time

    return {(a.account_id, parse_event_time(a.detected_at)) for a in seen if a.kind == "account_quiet"}


@pytest.mark.timeout(1200)
async def test_sigkill_three_times_during_a_200k_event_replay(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """SIGKILL the worker three times during a 200,000-event replay

    200,000 usage events of 400 simulated accounts (20 days of history, about 1% re-sent with the same
    id) are replayed into 4 partitions. One worker is killed with SIGKILL at three random points of
    its progress (by committed input offsets) and restarted each time with the same state directory;
    an undisturbed worker in another consumer group replays the same topic. Held means: the killed
    run's per-account state (daily buckets, last activity, open episodes) equals the undisturbed
    run's, each account counts exactly its distinct events, and both raised the same set of alert ids.
    The history ends days ago for every account at once: both runs must take that for a data gap (the
    partitions' own activity is state too, exact under SIGKILL) and hold the final quiet alerts.
    """
    history = _history(200_000, 400)
    run = await replay(
        kafka_bootstrap, topic_factory, tmp_path, history, quiet_days=QUIET_DAYS, figures=figures
    )
    topics, rules, total = run.topics, run.rules, run.total
    reference_topics = {**topics}
    for role in ("alerts", "health", "dlq", "clock"):
        reference_topics[role] = await topic_factory(f"ref-{role}", PARTITIONS)

    crash_group, ref_group = f"crash-{unique_id}", f"ref-{unique_id}"
    crashing = worker_factory.create(topics, PARTITIONS, crash_group, rules_file=rules)
    reference = worker_factory.create(reference_topics, PARTITIONS, ref_group, rules_file=rules)
    replay_started = time.monotonic()
    await crashing.start()
    await reference.start()
    await crashing.wait_ready()
    points = sorted(random.Random().uniform(0.1, 0.9) for _ in range(3))
    kills = []
    for point in points:
        await _wait_progress(kafka_bootstrap, crash_group, topics["events"], total, point)
        at = await _progress(kafka_bootstrap, crash_group, topics["events"], total)
        await crashing.kill()
        restart = time.monotonic()
        await crashing.start()
        await crashing.wait_ready()
        kills.append(
            {
                "planned": round(point, 3),
                "committed": round(at, 3),
                "ready_after_s": round(time.monotonic() - restart, 1),
            }
        )
    figures["kills (fraction of input committed; restart to ready)"] = kills

    crashed_states = await _wait_exact(kafka_bootstrap, crash_group, history, 600, figures)
    figures["killed run: seconds to exact state"] = round(time.monotonic() - replay_started, 1)
    reference_states = await _wait_exact(kafka_bootstrap, ref_group, history, 600)
    figures["counted events (distinct)"] = sum(history.counted.values())

    async def alerts_settled() -> bool:
        a = await alerts(kafka_bootstrap, topics["alerts"])
        b = await alerts(kafka_bootstrap, reference_topics["alerts"])
        return any(x.kind == "data_gap" for x in b) and set(a) == set(b)

    try:
        await wait_until(alerts_settled, 120, "both runs to raise the same alerts, the data gap included")
    finally:
        crashed_alerts = await alerts(kafka_bootstrap, topics["alerts"])
        reference_alerts = await alerts(kafka_bootstrap, reference_topics["alerts"])
        figures["alerts (reference run)"] = len(reference_alerts)
        figures["alerts by kind (reference run)"] = {
            k: sum(a.kind == k for a in reference_alerts) for k in sorted({a.kind for a in reference_alerts})
        }
        figures["alert records (killed run, re-sends included)"] = len(crashed_alerts)
        figures["distinct alert ids (killed run)"] = len({a.alert_id for a in crashed_alerts})
        figures["alert ids only in one run"] = len(set(crashed_alerts) ^ set(reference_alerts))
        figures["replayed records skipped after restarts"] = metric(
            crashing, "churnwatch_events_total", outcome="replayed"
        )

    def comparable(found: dict[str, Any]) -> dict[str, Any]:
        return {a: (s.days, s.last_activity_ms, s.quiet_since_ms, s.drop_since_ms) for a, s in found.items()}

    async def same_states() -> bool:
        nonlocal crashed_states, reference_states
        crashed_states = await states(kafka_bootstrap, crash_group)
        reference_states = await states(kafka_bootstrap, ref_group)
        return comparable(crashed_states) == comparable(reference_states)

    held = True
    try:
        # The final quiet episodes are stored just after their alerts: poll briefly.
        await wait_until(same_states, 60, "the killed run's states to equal the undisturbed run's")
    except AssertionError:
        held = False
    mine, theirs = comparable(crashed_states), comparable(reference_states)
    differing = sorted(a for a, v in theirs.items() if mine.get(a) != v)
    figures["accounts whose state differs between the runs"] = len(differing)
    fields = ("days", "last_activity_ms", "quiet_since_ms", "drop_since_ms")
    key = "first differences (field: killed run, undisturbed run)"
    figures[key] = {
        a: {
            f: [repr(x), repr(y)]
            for f, x, y in zip(fields, mine.get(a) or (None,) * 4, theirs[a], strict=True)
            if x != y
        }
        for a in differing[:3]
    }
    assert held, f"the killed run's states differ from the undisturbed run's: {figures[key]}"
    assert {a.kind for a in reference_alerts} >= {"account_quiet", "account_recovered", "data_gap"}
    # An account silent since well before the end of the history is quiet; silence after the end is the
    # gap's, not the accounts': no quiet alert is raised for it.
    end = max(history.last_activity_ms.values())
    final, seen = _final_quiet(history), _quiet_seen(reference_alerts)
    assert {q for q in final if q[1] < end - 6 * 3_600_000} <= seen
    assert not {q for q in final if q[1] > end} & seen


def _owned(worker: Worker) -> list[int]:
    found = re.findall(r"owns partitions \[([0-9, ]*)\]", worker.log_text())
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []


@pytest.mark.timeout(900)
async def test_second_worker_joins_mid_stream_then_the_first_is_killed(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """Two workers: a second joins mid-stream, then the first is SIGKILLed

    A live stream: 60,000 events of 200 simulated accounts (steady, decaying, stopping and returning
    ones, about 1% re-sent), stamped from 5 s ahead of the wall clock over 60 s and produced on that
    schedule into 4 partitions; an account is quiet after 10 s without activity. A first worker
    starts; at 25% of the stream produced a second worker of the same group starts and the
    partitions are shared; at 60% the first is killed with SIGKILL and the second takes over all
    partitions. Held means: every account counts exactly its distinct events (nothing lost, nothing
    double counted); every account, on every partition, gets its final quiet alert at exactly last
    activity + 10 s; and no quiet alert is raised that the stream does not explain (each is stamped
    with a real silence of 10 s).
    """
    quiet_ms = 10_000
    topics = await make_topics(topic_factory, PARTITIONS)
    rules = str(rules_file(tmp_path, quiet_ms / 1000))
    group = f"pair-{unique_id}"
    first = worker_factory.create(topics, PARTITIONS, group, rules_file=rules)
    second = worker_factory.create(topics, PARTITIONS, group, rules_file=rules)
    await first.start()
    await first.wait_ready()
    history = simulated_history(
        seed=8, accounts=200, events=60_000, start_ms=now_ms() + 5_000, span_days=60 / 86_400
    )
    total = len(history.records)
    figures["events in the stream"] = total
    figures["accounts"] = len(history.counted)
    figures["re-sent events (same id)"] = history.resent
    partition_for = kafka_partitioner(PARTITIONS)
    per_partition = {p: sum(partition_for(a) == p for a in history.counted) for p in range(PARTITIONS)}
    figures["accounts per partition"] = per_partition
    assert all(per_partition.values())
    stream = PacedProducer(kafka_bootstrap, topics["events"], list(history.records), 60)
    started = time.monotonic()
    try:
        stream.start()
        await wait_streamed(stream, 0.25, 120)
        figures["second worker started at (fraction produced, fraction committed)"] = [
            round(stream.fraction(), 3),
            round(await _progress(kafka_bootstrap, group, topics["events"], total), 3),
        ]
        await second.start()

        async def shared() -> bool:
            a, b = _owned(first), _owned(second)
            return bool(a) and bool(b) and sorted(a + b) == list(range(PARTITIONS))

        await wait_until(shared, 90, "both workers to own partitions")
        figures["partitions after the join (first, second)"] = [_owned(first), _owned(second)]
        await wait_streamed(stream, 0.6, 120)
        figures["first worker killed at (fraction produced, fraction committed)"] = [
            round(stream.fraction(), 3),
            round(await _progress(kafka_bootstrap, group, topics["events"], total), 3),
        ]
        assert not stream.done, "the stream was over before the first worker was killed"
        await first.kill()
        killed = time.monotonic()

        async def took_over() -> bool:
            return sorted(_owned(second)) == list(range(PARTITIONS))

        await wait_until(took_over, 90, "the second worker to own every partition")
        figures["seconds until the second worker owned every partition"] = round(time.monotonic() - killed, 1)
        await stream.wait()
        figures["stream send attempts that failed and were retried"] = stream.retries
    finally:
        await stream.stop()
    await _wait_exact(kafka_bootstrap, group, history, 600, figures)
    figures["seconds to exact state"] = round(time.monotonic() - started, 1)
    want_quiet = {(a, at + quiet_ms) for a, at in history.last_activity_ms.items()}
    explained = history.quiet_deadlines(quiet_ms)
    seen: set[tuple[str, int]] = set()

    async def all_quiet() -> bool:
        nonlocal seen
        seen = _quiet_seen(await alerts(kafka_bootstrap, topics["alerts"]))
        return want_quiet <= seen

    try:
        await wait_until(all_quiet, 120, "the final quiet alert of every account")
    finally:
        missing = want_quiet - seen
        figures["final quiet alerts raised"] = len(want_quiet) - len(missing)
        figures["final quiet alerts missing"] = len(missing)
        figures["quiet alerts per partition"] = {
            p: sum(partition_for(a) == p for a, _ in want_quiet & seen) for p in range(PARTITIONS)
        }
        figures["quiet alerts in all (distinct account and deadline)"] = len(seen)
        figures["quiet alerts the stream does not explain"] = len(seen - explained)
        figures["second worker: replayed records skipped"] = metric(
            second, "churnwatch_events_total", outcome="replayed"
        )
    assert seen <= explained, sorted(seen - explained)[:10]


def _keyed_by_user(history: History) -> tuple[History, int, dict[str, str]]:
    """The history as an app instrumented with Segment sends it through RudderStack's Kafka destination:
    each user's group call first, then half the usage events (the same half for a re-sent copy) as
    tracks naming only their user, and every message keyed by its user. Also the number of tracks, and
    each user's account."""
    users: dict[str, str] = {}
    records: list[tuple[bytes, bytes]] = []
    tracks = 0
    for key, value in history.records:
        doc = orjson.loads(value)
        user = doc.get("user_id")
        if user is None:  # the account's own facts, keyed by it
            records.append((key, value))
            continue
        users.setdefault(user, doc["account_id"])
        if zlib.crc32(doc["event_id"].encode()) % 2:
            records.append((key, value))
            continue
        message = {
            "type": "track",
            "userId": user,
            "event": doc["event"],
            "messageId": doc["event_id"],
            "timestamp": doc["timestamp"],
        }
        records.append((user.encode(), orjson.dumps(message)))
        tracks += 1
    start = min(orjson.loads(v)["timestamp"] for _, v in history.records)
    groups = [
        (
            user.encode(),
            orjson.dumps(
                {
                    "type": "group",
                    "userId": user,
                    "groupId": account,
                    "messageId": f"g-{user}",
                    "timestamp": start,
                }
            ),
        )
        for user, account in users.items()
    ]
    return dataclasses.replace(history, records=groups + records), tracks, users


@pytest.mark.timeout(900)
async def test_sigkill_three_times_while_half_the_events_name_only_their_user(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """SIGKILL the worker three times while it attributes messages to accounts through the user map

    60,000 usage events of 12 simulated accounts (20 days of history, about 1% re-sent with the same id),
    half of them Segment tracks that name only their user, keyed by user, after each user's group call,
    produced as a live stream over 40 s. The worker re-sends each such track to its account's
    partition; a kill between that re-send and the commit makes the restarted worker re-send it again,
    hundreds of the account's events later (beyond its recent event ids). The worker is killed with
    SIGKILL at three random points of the stream and restarted with the same state directory. Held
    means: each account counts exactly its distinct events, nothing is dead-lettered, and the kills did
    cause second copies of re-sent records.
    """
    history, tracks, users = _keyed_by_user(_history(60_000, 12))
    topics = await make_topics(topic_factory, PARTITIONS)
    rules = str(rules_file(tmp_path, QUIET_DAYS * 86400.0))
    figures["records (group calls, tracks naming only their user)"] = [
        len(history.records),
        len(users),
        tracks,
    ]
    group = f"users-{unique_id}"
    worker = worker_factory.create(topics, PARTITIONS, group, rules_file=rules)
    await worker.start()
    await worker.wait_ready()
    stream = PacedProducer(kafka_bootstrap, topics["events"], list(history.records), 40)
    kills = []
    try:
        stream.start()
        for point in sorted(random.Random().uniform(0.15, 0.85) for _ in range(3)):
            await wait_streamed(stream, point, 120)
            # A kill tests the re-sends only once this process reads: a restart takes seconds, so a kill
            # point can come before the restarted worker has read anything.
            await worker.wait_for_log("[^---Recovery]: Worker ready", 120)
            kills.append(round(stream.fraction(), 3))
            await worker.kill()
            await worker.start()
            await worker.wait_ready()
        await stream.wait()
    finally:
        await stream.stop()
    figures["kills (fraction of the stream produced)"] = kills

    await _wait_exact(kafka_bootstrap, group, history, 600, figures)
    resent = [
        dict(r.headers).get("churnwatch.resent-from")
        for r in await read_all(kafka_bootstrap, topics["events"])
    ]
    positions = [h.rsplit(b":", 1)[0] for h in resent if h is not None]
    figures["re-sent records (copies, source positions)"] = [len(positions), len(set(positions))]
    figures["duplicates dropped after the last restart"] = metric(
        worker, "churnwatch_events_total", outcome="duplicate"
    )
    # Re-sent: every track but a second delivery of one (dropped where it is read, so that it cannot
    # reach its account far behind the first), and the group calls read from a partition other than
    # their account's.
    partition_for = kafka_partitioner(PARTITIONS)
    rekeyed = sum(partition_for(user) != partition_for(account) for user, account in users.items())
    sent = [orjson.loads(value) for _, value in history.records]
    distinct_tracks = len({m["messageId"] for m in sent if m.get("type") == "track"})
    figures["tracks delivered twice by their producer"] = tracks - distinct_tracks
    assert len(set(positions)) == distinct_tracks + rekeyed
    assert len(positions) > len(set(positions)), "no kill fell between a re-send and its commit"
    # Each says how far its source was committed (what lets the receivers forget older positions).
    floors = [int(h.rsplit(b":", 1)[1]) for h in resent if h is not None]
    figures["highest committed offset a re-send stated"] = max(floors)
    assert max(floors) > 0
    assert await read_all(kafka_bootstrap, topics["dlq"]) == []
