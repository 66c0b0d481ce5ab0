"""Poison records and accounts: a failure while applying one record or one account never stops the rest.

The failures are injected into the core the processor calls, since the schema now rejects every
known poison value before it reaches the core (see test_events); these tests hold the isolation
itself, whatever the cause.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamer.core import engine
from streamer.core import snapshot as snapshot_module
from streamer.core import state as state_module
from streamer.core.engine import record_event
from streamer.core.policy import DAY_MS
from streamer.core.state import AccountState, decode_state
from streamer.worker import processor as processor_module
from streamer.worker.processor import ACTIVITY_KEY_PREFIX, Record
from tests.unit.worker.test_processor import QUIET_RULES, T0, Store, apply, event, processor


def accounts(store: Store) -> dict[str, bytes]:
    """The stored account states (the partition's own activity left out)."""
    return {k: v for k, v in store.data.items() if not k.startswith(ACTIVITY_KEY_PREFIX)}


def _counted(store: Store, account: str) -> int:
    return sum(b.events for b in decode_state(store.data[account]).days.values())


def test_the_issue_poison_event_is_dead_lettered_with_its_bound_and_the_worker_goes_on() -> None:
    proc, store = processor(), Store()
    poison = orjson.dumps(
        {
            "event_id": "poison-1",
            "account_id": "poison-acct",
            "event": "account_updated",
            "timestamp": T0,
            "properties": {"seats": 9223372036854775808},
        }
    )
    out = apply(
        proc,
        store,
        [Record(0, 0, b"acme", event("acme", "e0", T0)), Record(0, 1, b"poison-acct", poison)]
        + [Record(0, 2, b"acme", event("acme", "e1", T0 + 1))],
        T0,
    )
    assert [reason for _, reason in out.dead_letters] == ["properties.seats: must be an integer 0..10000000"]
    assert out.outcomes["invalid"] == 1 and out.outcomes["counted"] == 2
    assert _counted(store, "acme") == 2
    assert "poison-acct" not in store.data


def _failing_for(event_id: str) -> Any:
    def fake(state: AccountState | None, ev: Any, policy: Any, ctx: Any) -> Any:
        result = record_event(state, ev, policy, ctx)  # mutates first, then fails: the worst case
        if ev.event_id == event_id:
            raise OverflowError("injected failure")
        return result

    return fake


def test_a_record_that_fails_in_the_core_is_dead_lettered_and_its_account_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(), Store()
    apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)
    # In the same batch: an applied record, the failing one, another applied record.
    monkeypatch.setattr(processor_module, "record_event", _failing_for("boom"))
    batch = [
        Record(0, 1, b"acme", event("acme", "e1", T0 + 1)),
        Record(0, 2, b"acme", event("acme", "boom", T0 + 2)),
        Record(0, 3, b"acme", event("acme", "e3", T0 + 3)),
    ]
    out = proc.process(batch, store, T0)
    assert [(rec.offset, reason) for rec, reason in out.dead_letters] == [
        (2, "processing failed at apply: OverflowError: injected failure")
    ]
    assert out.outcomes == {"counted": 2, "poison": 1}
    assert out.poison == {"apply": 1}
    store.data.update(proc.flush(T0))
    state = decode_state(store.data["acme"])
    # e0, e1 and e3 counted; "boom" is neither counted nor remembered as seen.
    assert sum(b.events for b in state.days.values()) == 3
    assert state.applied_offset == 3
    assert len(state.recent_ids) == 3 * 8


def test_a_failing_record_is_consumed_so_a_replay_does_not_apply_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(), Store()
    apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)
    monkeypatch.setattr(processor_module, "record_event", _failing_for("boom"))
    apply(proc, store, [Record(0, 1, b"acme", event("acme", "boom", T0 + 1))], T0)
    assert decode_state(store.data["acme"]).applied_offset == 1
    # A restarted worker that re-reads offset 1 skips it like any applied record.
    monkeypatch.undo()
    again = processor().process([Record(0, 1, b"acme", event("acme", "boom", T0 + 1))], store, T0)
    assert again.outcomes == {"replayed": 1} and again.dead_letters == []


def test_a_new_account_whose_first_record_fails_is_not_created(monkeypatch: pytest.MonkeyPatch) -> None:
    proc, store = processor(), Store()
    monkeypatch.setattr(processor_module, "record_event", _failing_for("boom"))
    out = apply(proc, store, [Record(0, 0, b"fresh", event("fresh", "boom", T0))], T0)
    assert out.poison == {"apply": 1} and len(out.dead_letters) == 1
    assert accounts(store) == {} and proc.tracked == 0 and out.health == []


def test_an_alert_that_cannot_be_encoded_dead_letters_the_record_that_raised_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(QUIET_RULES), Store()
    apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)
    before = store.data["acme"]

    def broken(alert: Any) -> bytes:
        raise TypeError("cannot encode")

    monkeypatch.setattr(processor_module, "encode_alert", broken)
    # Two days later the quiet deadline has passed: the clock reaching it fires the alert, which cannot
    # be encoded (the account stays as it was), then applying the event fires it again (dead-lettered).
    out = apply(proc, store, [Record(0, 1, b"acme", event("acme", "e1", T0 + 2 * DAY_MS))], T0 + 2 * DAY_MS)
    assert [reason for _, reason in out.dead_letters] == [
        "processing failed at apply: TypeError: cannot encode"
    ]
    assert out.alerts == [] and out.poison == {"advance": 1, "apply": 1}
    after, prior = decode_state(store.data["acme"]), decode_state(before)
    assert after.applied_offset == 1
    assert (after.days, after.recent_ids, after.last_activity_ms, after.quiet_since_ms) == (
        prior.days,
        prior.recent_ids,
        prior.last_activity_ms,
        None,
    )


def test_an_account_that_fails_when_the_clock_advances_is_left_as_it_was_and_unscheduled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(QUIET_RULES), Store()
    apply(
        proc,
        store,
        [Record(0, 0, b"bad", event("bad", "b0", T0)), Record(0, 1, b"good", event("good", "g0", T0))],
        T0,
    )
    bad_before = store.data["bad"]
    real_advance = engine.advance
    calls: list[str] = []

    def advance(state: AccountState, until_ms: int, policy: Any, ctx: Any) -> Any:
        calls.append(state.account_id)
        alerts = real_advance(state, until_ms, policy, ctx)
        if state.account_id == "bad":
            raise RecursionError("injected")
        return alerts

    monkeypatch.setattr(processor_module, "advance", advance)
    out = proc.tick(T0 + 2 * DAY_MS, store, T0 + 2 * DAY_MS)
    store.data.update(proc.flush(T0 + 2 * DAY_MS))
    assert [(a.account_id, a.kind) for a in out.alerts] == [("good", "account_quiet")]
    assert out.poison == {"advance": 1}
    assert store.data["bad"] == bad_before
    # Not retried on every tick: it waits for its next event.
    calls.clear()
    proc.tick(T0 + 3 * DAY_MS, store, T0 + 3 * DAY_MS)
    assert "bad" not in calls


def test_a_snapshot_that_fails_to_build_is_skipped_and_the_others_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(), Store()
    real = snapshot_module.account_snapshot

    def snapshot(state: AccountState, *args: Any) -> Any:
        if state.account_id == "bad":
            raise ValueError("injected")
        return real(state, *args)

    monkeypatch.setattr(processor_module, "account_snapshot", snapshot)
    out = apply(
        proc,
        store,
        [Record(0, 0, b"bad", event("bad", "b0", T0)), Record(0, 1, b"good", event("good", "g0", T0))],
        T0,
    )
    assert [account for account, _ in out.health] == ["good"]
    assert orjson.loads(out.health[0][1])["account_id"] == "good"
    assert out.poison == {"publish": 1}
    assert _counted(store, "bad") == 1


def test_a_state_that_cannot_be_encoded_at_flush_keeps_its_stored_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, store = processor(), Store()
    apply(proc, store, [Record(0, 0, b"bad", event("bad", "b0", T0))], T0)
    stored = store.data["bad"]
    real = state_module.encode_state

    def encode(state: AccountState) -> bytes:
        if state.account_id == "bad":
            raise OverflowError("injected")
        return real(state)

    monkeypatch.setattr(processor_module, "encode_state", encode)
    proc.process(
        [Record(0, 1, b"bad", event("bad", "b1", T0 + 1)), Record(0, 2, b"good", event("good", "g0", T0))],
        store,
        T0,
    )
    writes = proc.flush(T0)
    assert sorted(k for k in writes if not k.startswith(ACTIVITY_KEY_PREFIX)) == ["good"]
    assert proc.flush_failures == 1
    store.data.update(writes)
    assert store.data["bad"] == stored
    # The next read of the account comes from the store, not from the version that failed.
    monkeypatch.undo()
    apply(proc, store, [Record(0, 3, b"bad", event("bad", "b3", T0 + 3))], T0)
    assert _counted(store, "bad") == 2


def test_an_unreadable_stored_state_dead_letters_that_accounts_records_only() -> None:
    proc, store = processor(), Store()
    store.data["broken"] = b"\x02garbage"
    out = apply(
        proc,
        store,
        [Record(0, 0, b"broken", event("broken", "x", T0)), Record(0, 1, b"acme", event("acme", "e", T0))],
        T0,
    )
    assert [(rec.offset, reason.split(":")[0]) for rec, reason in out.dead_letters] == [
        (0, "processing failed at load")
    ]
    assert out.outcomes["counted"] == 1 and _counted(store, "acme") == 1
