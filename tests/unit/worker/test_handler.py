"""The worker's batch handler in process: fetches, revocations and clock ticks against fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest

from streamer.core.policy import DAY_MS, load_policy
from streamer.worker.checkpoint import Checkpoint, OutputTopics
from streamer.worker.checkpoint import TopicPartition as TP
from streamer.worker.clock import Tick
from streamer.worker.crashguard import CrashGuard
from streamer.worker.handler import BatchHandler
from streamer.worker.settings import WorkerSettings
from tests.unit.worker.fakes import ConsumerRecord, FakeAcker, FakeConsumer, FakeProducer, FakeStore
from tests.unit.worker.test_processor import QUIET_RULES, T0, event

EVENTS, CLOCK = "usage-events", "churnwatch-clock"


class Fatal(Exception):
    """What the test's ``fatal`` raises instead of ending the process."""


class Rig:
    def __init__(
        self, tmp_path: Path, rules: str | None = None, clock: str = "wall", owns: tuple[int, ...] = (0,)
    ):
        self.log: list[tuple[Any, ...]] = []
        self.producer = FakeProducer(self.log)
        self.acker = FakeAcker(self.log)
        self.stores = {p: FakeStore(self.log, p) for p in (0, 1)}
        self.settings = WorkerSettings(
            events_topic=EVENTS,
            clock_topic=CLOCK,
            partitions=2,
            clock=clock,
            state_flush_interval_ms=5_000,
            allowed_lateness_ms=0,
            idle_grace_ms=300,
            batch_max=100,
            max_future_ms=60_000,
        )
        s = self.settings
        checkpoint = Checkpoint(
            self.producer,
            self.acker,
            OutputTopics(s.events_topic, s.dlq_topic, s.alerts_topic, s.health_topic, "changelog"),
            self.stores.__getitem__,
        )
        self.consumer = FakeConsumer(owns=[TP(t, p) for p in owns for t in (EVENTS, CLOCK)])
        self.now = T0

        def fatal() -> NoReturn:
            raise Fatal

        self.handler = BatchHandler(
            s,
            load_policy(rules),
            checkpoint,
            self.stores.__getitem__,
            self.consumer,
            self.producer,
            lambda account: 1 if account.startswith("elsewhere") else 0,
            CrashGuard(tmp_path),
            lambda: self.now,
            fatal,
        )

    def alerts(self, partition: int = 0) -> list[tuple[str, str]]:
        docs = [orjson.loads(v or b"") for v in self.producer.values(self.settings.alerts_topic, partition)]
        return [(d["kind"], d["detected_at"]) for d in docs]


def events(partition: int, first: int, n: int, account: str = "acme") -> list[ConsumerRecord]:
    return [
        ConsumerRecord(partition, o, account.encode(), event(account, f"e{o}", T0 + o))
        for o in range(first, first + n)
    ]


async def test_a_fetch_is_written_and_its_offsets_acknowledged_once_its_states_are(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 3)})
    # The first fetch of a partition is due for a commit at once; the next one within 5 s is not.
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1, 2]}
    assert rig.stores[0].data.keys() >= {"acme"}

    rig.now = T0 + 1_000
    await rig.handler.handle({TP(EVENTS, 0): events(0, 3, 2)})
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1, 2]}
    assert rig.handler.checkpoint.pending(0) == 2

    rig.now = T0 + 5_000
    await rig.handler.handle({TP(EVENTS, 0): events(0, 5, 1)})
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1, 2, 3, 4, 5]}


async def test_records_of_a_partition_revoked_since_the_fetch_are_left_for_its_new_owner(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, owns=(0,))
    await rig.handler.handle({TP(EVENTS, 1): events(1, 0, 3, "elsewhere-1")})
    assert rig.handler.processors == {}
    assert rig.log == []


async def test_a_tick_fires_a_quiet_deadline_and_commits_the_caught_up_partition(tmp_path: Path) -> None:
    rig = Rig(tmp_path, QUIET_RULES)
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 1)})
    rig.now = T0 + DAY_MS + 1_000
    tick = ConsumerRecord(0, 0, None, Tick(T0 + DAY_MS + 700, 1).encode())
    await rig.handler.handle({TP(CLOCK, 0): [tick]})
    assert rig.alerts() == [("account_quiet", "2026-03-03T09:00:00.000Z")]
    assert rig.acker.acked[TP(CLOCK, 0)] == [0]


async def test_a_tick_read_again_before_the_replay_caught_up_moves_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, QUIET_RULES)
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 1)})
    # Sent when the partition had been read up to offset 5: this worker has only processed offset 0.
    tick = ConsumerRecord(0, 0, None, Tick(T0 + 2 * DAY_MS, 5).encode())
    await rig.handler.handle({TP(CLOCK, 0): [tick]})
    assert rig.alerts() == []
    assert rig.handler.processors[0].clock_ms == T0


async def test_a_restarted_worker_with_nothing_left_to_read_takes_the_ticks_of_its_committed_offset(
    tmp_path: Path,
) -> None:
    """Everything before the committed offset was processed by the worker that stored it: a tick sent up
    to there is usable by a restarted worker that has read nothing since, or its idle partition's
    deadlines would wait for the next event."""
    before = Rig(tmp_path, QUIET_RULES)
    await before.handler.handle({TP(EVENTS, 0): events(0, 0, 1)})
    assert before.acker.acked == {TP(EVENTS, 0): [0]}
    after = Rig(tmp_path, QUIET_RULES)
    after.stores[0].data.update(before.stores[0].data)
    after.consumer.commits[TP(EVENTS, 0)] = 1
    after.now = T0 + DAY_MS + 1_000
    tick = ConsumerRecord(0, 0, None, Tick(T0 + DAY_MS + 700, 1).encode())
    await after.handler.handle({TP(CLOCK, 0): [tick]})
    assert after.alerts() == [("account_quiet", "2026-03-03T09:00:00.000Z")]
    # A tick sent further than the committed offset still waits for the replay to get there.
    later = ConsumerRecord(0, 1, None, Tick(T0 + 3 * DAY_MS, 2).encode())
    await after.handler.handle({TP(CLOCK, 0): [later]})
    assert after.handler.processors[0].clock_ms == T0 + DAY_MS + 700


async def test_revocation_publishes_what_waits_commits_the_states_and_forgets_the_processors(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 2)})
    rig.now = T0 + 1_000
    await rig.handler.handle({TP(EVENTS, 0): events(0, 2, 2)})
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1]}

    # The second fetch (two more logins the same day) changed the state too little to publish at once.
    health = rig.producer.values(rig.settings.health_topic, 0)
    assert [sum(orjson.loads(v or b"")["daily"]["events"]) for v in health] == [2]

    async with rig.handler.lock:
        await rig.handler.revoke([TP(EVENTS, 0), TP(CLOCK, 0)])
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1, 2, 3]}
    assert rig.handler.processors == {}
    # Given up, the partition publishes what waited to settle: its next owner knows nothing of it.
    health = rig.producer.values(rig.settings.health_topic, 0)
    assert [sum(orjson.loads(v or b"")["daily"]["events"]) for v in health] == [2, 4]


async def test_an_unexpected_failure_ends_the_process_with_nothing_acknowledged(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.producer.fail = RuntimeError("broker gone mid-write")
    with pytest.raises(Fatal):
        await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 3)})
    assert rig.acker.acked == {}
    assert rig.stores[0].data == {}


async def test_caught_up_partitions_get_a_wall_clock_tick_and_those_behind_do_not(tmp_path: Path) -> None:
    rig = Rig(tmp_path, owns=(0, 1))
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 3)})
    rig.consumer.highwaters = {TP(EVENTS, 0): 3, TP(EVENTS, 1): 10}
    rig.consumer.commits = {TP(EVENTS, 1): 4}
    rig.now = T0 + 10_000
    await rig.handler.tick_idle()
    assert rig.producer.values(CLOCK, 0) == [Tick(T0 + 10_000 - 300, 3).encode()]
    assert rig.producer.values(CLOCK, 1) == []  # 6 records behind its committed offset
    assert (rig.handler.lag(TP(EVENTS, 0)), rig.handler.lag(TP(EVENTS, 1))) == (0, 6)


async def test_in_event_mode_a_caught_up_partition_is_committed_not_ticked(tmp_path: Path) -> None:
    rig = Rig(tmp_path, clock="event")
    await rig.handler.handle({TP(EVENTS, 0): events(0, 0, 2)})
    rig.now = T0 + 1_000
    await rig.handler.handle({TP(EVENTS, 0): events(0, 2, 2)})
    rig.consumer.highwaters = {TP(EVENTS, 0): 4}
    await rig.handler.tick_idle()
    assert rig.producer.values(CLOCK, 0) == []
    assert rig.acker.acked == {TP(EVENTS, 0): [0, 1, 2, 3]}


async def test_a_re_sent_record_states_the_offset_the_broker_took_not_the_one_faust_recorded(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    # Faust recorded a commit of 40 that a rebalance refused; the broker last took 30.
    rig.consumer.commits[TP(EVENTS, 0)] = 40
    rig.consumer.confirms = {TP(EVENTS, 0): 30}
    await rig.handler.handle({TP(EVENTS, 0): events(0, 41, 1, "elsewhere-1")})
    [(_, _, headers)] = rig.producer.topics[(EVENTS, 1)]
    assert headers == (("churnwatch.resent-from", b"0:41:30"),)
