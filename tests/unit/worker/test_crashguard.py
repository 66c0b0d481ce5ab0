"""The crash guard: a record that kills the process while it is applied is never retried for ever."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamer.core.engine import record_event
from streamer.worker import processor as processor_module
from streamer.worker.crashguard import CrashGuard, Suspects, split
from streamer.worker.processor import BatchOutput, Record
from tests.unit.worker.test_processor import T0, Store, event, processor


def test_a_range_left_in_flight_is_a_crash_and_two_overlapping_crashes_isolate_their_common_offsets(
    tmp_path: Path,
) -> None:
    guard = CrashGuard(tmp_path)
    guard.enter(3, 100, 199)
    # The process dies here. The restarted worker starts from an older commit: 80..179.
    guard = CrashGuard(tmp_path)
    assert guard.suspects(3, 80, 179) == Suspects()  # one crash proves nothing
    guard.enter(3, 80, 179)
    guard = CrashGuard(tmp_path)
    assert guard.suspects(3, 80, 179) == Suspects(isolate=(100, 179))
    assert guard.suspects(3, 180, 250) == Suspects()  # past the suspects
    assert guard.suspects(2, 100, 179) == Suspects()  # another partition


def test_a_record_that_kills_the_process_on_its_own_is_skipped(tmp_path: Path) -> None:
    guard = CrashGuard(tmp_path)
    for first, last in [(100, 199), (90, 150)]:
        guard.enter(0, first, last)
        guard = CrashGuard(tmp_path)
    # Isolated: 100..149 applied alone, one at a time; 120 kills it.
    for offset in range(100, 120):
        guard.enter(0, offset, offset)
        guard.leave(0)
    guard.enter(0, 120, 120)
    guard = CrashGuard(tmp_path)
    verdict = guard.suspects(0, 90, 150)
    assert verdict.isolate == (120, 120)
    assert verdict.skip == {120: "the worker died 2 times while applying this record; not applied"}


def test_applying_past_the_suspects_forgets_the_crashes_and_removes_the_file(tmp_path: Path) -> None:
    guard = CrashGuard(tmp_path)
    for _ in range(2):
        guard.enter(0, 10, 20)
        guard = CrashGuard(tmp_path)
    guard.enter(0, 15, 15)
    guard.leave(0)
    assert guard.suspects(0, 10, 20).isolate == (10, 20)  # still suspect: not past them yet
    guard.enter(0, 21, 40)
    guard.leave(0)
    assert guard.suspects(0, 10, 20) == Suspects()
    assert list(tmp_path.iterdir()) == []
    assert CrashGuard(tmp_path).suspects(0, 10, 20) == Suspects()


def test_an_unreadable_history_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "partition-1.json").write_text("{not json")
    assert CrashGuard(tmp_path).suspects(1, 0, 10) == Suspects()


def test_split_applies_each_suspect_record_alone() -> None:
    records = [Record(0, o, None, None) for o in range(5, 12)]
    parts = split(records, (7, 9))
    assert [[r.offset for r in part] for part in parts] == [[5, 6], [7], [8], [9], [10, 11]]
    assert split(records, None) == [records]
    assert [[r.offset for r in p] for p in split(records, (0, 20))] == [[o] for o in range(5, 12)]


class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the worker catches it."""


def test_a_worker_that_dies_on_a_record_dead_letters_it_after_the_restarts_and_applies_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def deadly(state: Any, ev: Any, policy: Any, ctx: Any) -> Any:
        if ev.event_id == "killer":
            raise Killed
        return record_event(state, ev, policy, ctx)

    monkeypatch.setattr(processor_module, "record_event", deadly)
    store = Store()
    fetch = [Record(0, o, b"acme", event("acme", "killer" if o == 4 else f"e{o}", T0 + o)) for o in range(8)]

    def run_worker() -> BatchOutput:
        """One life of the worker, as the adapter runs a fetch: suspects, parts, enter/apply/leave."""
        guard, proc = CrashGuard(tmp_path), processor()
        verdict = guard.suspects(0, fetch[0].offset, fetch[-1].offset)
        out = BatchOutput()
        for part in split(fetch, verdict.isolate):
            guard.enter(0, part[0].offset, part[-1].offset)
            out.extend(proc.process(part, store, T0, skip=verdict.skip))
            guard.leave(0)
        store.data.update(proc.flush(T0))
        return out

    lives = 0
    while True:
        lives += 1
        assert lives <= 5, "the worker is crash-looping"
        try:
            out = run_worker()
        except Killed:
            continue
        break
    # Two deaths on the whole fetch, one on the record alone, then it is skipped.
    assert lives == 4
    assert [(rec.offset, reason) for rec, reason in out.dead_letters] == [
        (4, "the worker died 2 times while applying this record; not applied")
    ]
    assert out.poison == {"crash": 1}
    assert out.outcomes["counted"] == 7
