"""The write protocol: outputs acknowledged, then states written, then offsets committable."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streamer.core.partition import GapChange
from streamer.core.policy import DAY_MS
from streamer.worker.checkpoint import Checkpoint, OutputTopics
from streamer.worker.checkpoint import TopicPartition as TP
from streamer.worker.processor import BatchOutput, Record, activity_key
from tests.unit.worker.fakes import FakeAcker, FakeProducer, FakeStore
from tests.unit.worker.test_processor import QUIET_RULES, T0, event, processor

TOPICS = OutputTopics("events", "dlq", "alerts", "health", "changelog")
EVENTS_0 = TP("events", 0)


class Rig:
    def __init__(self, hold: bool = False) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.producer = FakeProducer(self.log, hold=hold)
        self.acker = FakeAcker(self.log)
        self.stores = {p: FakeStore(self.log, p) for p in (0, 1)}
        self.persisted: list[tuple[int, int]] = []
        self.checkpoint = Checkpoint(
            self.producer,
            self.acker,
            TOPICS,
            self.stores.__getitem__,
            lambda partition, offset: self.persisted.append((partition, offset)),
        )


async def test_a_batch_is_committable_only_after_its_outputs_are_acknowledged_and_its_states_written() -> (
    None
):
    rig = Rig(hold=True)
    proc = processor()
    out = proc.process(
        [Record(0, i, b"acme", event("acme", f"e{i}", T0 + i)) for i in range(3)], rig.stores[0], T0
    )
    assert len(out.health) == 1  # a first snapshot of the new account

    produce = asyncio.create_task(rig.checkpoint.produce([(0, out)]))
    await asyncio.sleep(0)
    assert not produce.done()  # the broker has not acknowledged the snapshot yet
    rig.producer.release()
    await produce
    rig.checkpoint.processed(EVENTS_0, [0, 1, 2])
    assert rig.acker.acked == {}  # the state is only in memory: nothing committable yet
    assert rig.checkpoint.pending(0) == 3

    rig.producer.hold = False
    await rig.checkpoint.commit(proc, T0)

    assert rig.log == [
        ("acked", "health", 0, 1),  # 1. outputs acknowledged
        ("put", 0, "acme"),  # 2. states written to the store (the account's, the partition's) ...
        ("put", 0, activity_key(0)),
        ("acked", "changelog", 0, 2),  # ... and to the changelog
        ("offsets", "events", 0, [0, 1, 2]),  # 3. offsets committable
    ]
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert rig.persisted == [(0, 1)]  # the changelog holds both, up to its offset 1
    assert rig.checkpoint.pending(0) == 0


async def test_outputs_go_where_consumers_expect_them() -> None:
    rig = Rig()
    proc = processor(QUIET_RULES)
    records = [
        Record(0, 0, b"acme", event("acme", "e0", T0)),
        Record(0, 1, b"x", event("elsewhere-1", "e1", T0)),  # keyed to the wrong partition
        Record(0, 2, b"acme", b"{oops", (("trace", b"t1"),)),  # not JSON
    ]
    out = proc.process(records, rig.stores[0], T0)
    out.extend(proc.tick(T0 + DAY_MS, rig.stores[0], T0 + DAY_MS))
    await rig.checkpoint.produce([(0, out)])

    (dead,) = rig.producer.topics[("dlq", 0)]  # a dead letter stays in its record's partition
    assert dead[0] == b"acme" and dead[1] == b"{oops"
    headers = dict(dead[2])
    assert headers["trace"] == b"t1"
    assert headers["churnwatch.source"] == b"events/0@2"
    assert headers["churnwatch.error"].startswith(b"$: not valid JSON: ")
    # The re-keyed event goes, unkeyed and unchanged, to the partition its account belongs to, saying
    # where it was read (partition 0, offset 1) and how far that partition was committed (not at all).
    assert rig.producer.topics[("events", 1)] == [
        (None, records[1].value, (("churnwatch.resent-from", b"0:1:0"),))
    ]
    (alert,) = rig.producer.topics[("alerts", 0)]
    assert alert[0] == b"acme" and alert[2] == (("churnwatch.kind", b"account_quiet"),)
    assert orjson.loads(alert[1] or b"")["detected_at"] == "2026-03-03T09:00:00.000Z"
    assert [key for key, _, _ in rig.producer.topics[("health", 0)]] == [b"acme", b"acme"]


async def test_an_operations_alert_without_an_account_is_unkeyed() -> None:
    rig = Rig()
    out = BatchOutput()
    gap = GapChange(True, T0, judged_ms=T0 + 3_600_000, episode_ms=T0, expected=50.0, observed=0)
    out.encoded_alerts.append(processor()._gap_alert(gap))  # the only kind of alert without an account
    await rig.checkpoint.produce([(0, out)])
    ((key, _, headers),) = rig.producer.topics[("alerts", 0)]
    assert key is None and headers == (("churnwatch.kind", b"data_gap"),)


async def test_offsets_of_a_revoked_partition_are_forgotten_not_acknowledged() -> None:
    rig = Rig()
    proc = processor()
    proc.process([Record(0, 0, b"acme", event("acme", "e0", T0))], rig.stores[0], T0)
    rig.checkpoint.processed(EVENTS_0, [0])
    rig.checkpoint.forget(0)
    await rig.checkpoint.commit(proc, T0)
    assert rig.acker.acked == {}


async def test_a_commit_with_nothing_changed_writes_nothing_and_acknowledges_what_it_covers() -> None:
    rig = Rig()
    proc = processor()
    rig.checkpoint.processed(TP("churnwatch-clock", 0), [7, 8])
    await rig.checkpoint.commit(proc, T0)
    assert rig.log == [("offsets", "churnwatch-clock", 0, [7, 8])]
    assert rig.persisted == []
