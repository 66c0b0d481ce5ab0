"""PartitionProcessor without Kafka: offsets, rekeying, dead letters, deferred publishing, the clock."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from streamer.core.policy import DAY_MS, load_policy
from streamer.core.state import decode_state
from streamer.core.users import UserDirectory
from streamer.worker.processor import (
    DEAD_LETTER_MAX_BYTES,
    BatchOutput,
    MemoryStore,
    PartitionProcessor,
    Record,
    dead_letter,
    forwarded_key,
)
from streamer.worker.resends import read_source, with_source

T0 = int(datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp() * 1000)
QUIET_RULES = "[alerts]\nquiet_after_days = 1\n"
HOUR = 3_600_000


Store = MemoryStore  # the same two reads a Faust table gives the processor


def event(account: str, event_id: str, at_ms: int, user: str | None = None) -> bytes:
    doc = {"event_id": event_id, "account_id": account, "event": "login", "timestamp": at_ms}
    return orjson.dumps(doc if user is None else {**doc, "user_id": user})


def processor(rules: str | None = None, owner: int = 0) -> PartitionProcessor:
    # Accounts named "elsewhere-*" belong to partition 1; everything else to partition 0.
    return PartitionProcessor(
        owner,
        load_policy(rules),
        lambda account: 1 if account.startswith("elsewhere") else 0,
        allowed_lateness_ms=0,
        max_future_ms=60_000,
    )


def apply(
    proc: PartitionProcessor, store: Store, records: list[Record], now_ms: int, backlog: bool = False
) -> BatchOutput:
    out = proc.process(records, store, now_ms, backlog)
    store.data.update(proc.flush(now_ms))
    return out


def test_records_at_or_below_an_accounts_applied_offset_are_skipped_as_replays() -> None:
    proc, store = processor(), Store()
    first = [Record(0, i, b"acme", event("acme", f"e{i}", T0 + i)) for i in range(3)]
    apply(proc, store, first, T0)

    # A restarted worker re-reads from an older committed offset: offsets 1 and 2 are already in.
    again = [Record(0, i, b"acme", event("acme", f"e{i}", T0 + i)) for i in range(1, 5)]
    out = apply(processor(), store, again, T0)

    assert out.outcomes["replayed"] == 2
    assert out.outcomes["counted"] == 2
    state = decode_state(store.data["acme"])
    assert sum(b.events for b in state.days.values()) == 5
    assert state.applied_offset == 4


def test_record_keyed_to_the_wrong_partition_is_rekeyed_not_applied() -> None:
    proc, store = processor(), Store()
    out = apply(proc, store, [Record(0, 0, b"x", event("elsewhere-1", "e1", T0))], T0)
    assert [(rec.offset, target) for rec, target in out.rekeyed] == [(0, 1)]
    assert list(store.data) == [forwarded_key(0)]  # no account's state: only the id it re-sent


def test_invalid_and_future_records_become_dead_letters_with_reasons() -> None:
    proc, store = processor(), Store()
    records = [
        Record(0, 0, b"acme", b"{oops"),
        Record(0, 1, b"acme", None),
        Record(0, 2, b"acme", event("acme", "far", T0 + 3_600_000)),
        Record(0, 3, b"acme", event("acme", "ok", T0)),
    ]
    out = apply(proc, store, records, T0)
    reasons = [reason for _, reason in out.dead_letters]
    assert len(reasons) == 3
    assert "JSON" in reasons[0]
    assert "empty" in reasons[1]
    assert reasons[2].startswith("timestamp: ") and "future" in reasons[2]
    assert out.outcomes["counted"] == 1


def test_backlog_defers_health_snapshots_until_the_partition_catches_up() -> None:
    proc, store = processor(), Store()
    records = [Record(0, i, f"a{i}".encode(), event(f"a{i}", f"e{i}", T0)) for i in range(5)]
    # The first batch of a run always publishes (nothing was published for a while) ...
    apply(proc, store, records[:1], T0, backlog=True)
    # ... later backlog batches within the interval only mark accounts as unpublished.
    out = apply(proc, store, records[1:], T0 + 1000, backlog=True)
    assert out.health == []
    assert all(decode_state(store.data[f"a{i}"]).unpublished for i in range(1, 5))

    caught_up = proc.tick(T0 + 2000, store, T0 + 2000)
    store.data.update(proc.flush())

    assert sorted(account for account, _ in caught_up.health) == ["a1", "a2", "a3", "a4"]
    assert not any(decode_state(store.data[f"a{i}"]).unpublished for i in range(5))


def test_unpublished_flag_survives_a_restart_and_is_published_by_the_next_processor() -> None:
    proc, store = processor(), Store()
    apply(proc, store, [Record(0, 0, b"a0", event("a0", "e0", T0))], T0, backlog=True)
    apply(proc, store, [Record(0, 1, b"a1", event("a1", "e1", T0))], T0 + 10, backlog=True)

    restarted = processor()
    out = restarted.tick(T0 + 20, store, T0 + 20)

    assert [account for account, _ in out.health] == ["a1"]


def test_tick_raises_quiet_alert_at_the_deadline_once() -> None:
    proc, store = processor(QUIET_RULES), Store()
    apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)

    early = proc.tick(T0 + DAY_MS - 1, store, T0 + DAY_MS - 1)
    due = proc.tick(T0 + DAY_MS + 500, store, T0 + DAY_MS + 500)
    store.data.update(proc.flush())
    later = proc.tick(T0 + DAY_MS + 5000, store, T0 + DAY_MS + 5000)

    assert early.alerts == []
    assert [(a.kind, a.detected_at_ms) for a in due.alerts] == [("account_quiet", T0 + DAY_MS)]
    assert later.alerts == []


def test_other_accounts_events_advance_the_clock_during_a_backlog() -> None:
    # No ticks while catching up: the clock comes from the partition's own events.
    proc, store = processor(QUIET_RULES), Store()
    records = [
        Record(0, 0, b"acme", event("acme", "e0", T0)),
        Record(0, 1, b"zeta", event("zeta", "z0", T0 + DAY_MS + 10)),
    ]
    out = apply(proc, store, records, T0 + 5 * DAY_MS, backlog=True)
    assert [(a.account_id, a.kind) for a in out.alerts] == [("acme", "account_quiet")]


def test_a_restarted_processor_rebuilds_its_deadlines_from_the_stored_due_times() -> None:
    proc, store = processor(QUIET_RULES), Store()
    apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)
    assert decode_state(store.data["acme"]).due_ms == (T0 // DAY_MS + 1) * DAY_MS  # the next midnight

    restarted = processor(QUIET_RULES)
    early = restarted.tick(T0 + DAY_MS - 1, store, T0 + DAY_MS - 1)
    due = restarted.tick(T0 + DAY_MS + 500, store, T0 + DAY_MS + 500)

    assert early.alerts == []
    assert [(a.kind, a.detected_at_ms) for a in due.alerts] == [("account_quiet", T0 + DAY_MS)]


def test_a_schedule_rebuilt_a_few_accounts_per_batch_raises_the_same_alerts_as_one_read_at_once() -> None:
    proc, store = processor(QUIET_RULES), Store()
    accounts = [f"acct-{i}" for i in range(10)]
    records = [Record(0, i, a.encode(), event(a, f"e{i}", T0 + i)) for i, a in enumerate(accounts)]
    apply(proc, store, records, T0 + 10)

    def restart(budget: int | None) -> tuple[list[tuple[str, str, int]], list[int]]:
        restarted = processor(QUIET_RULES)
        restarted.load_budget = budget
        alerts, tracked = [], []
        # One more event (offset 10) of acct-7, then ticks past everyone's deadline.
        more = [Record(0, 10, b"acct-7", event("acct-7", "late", T0 + DAY_MS // 2))]
        outs = [restarted.process(more, store, T0 + DAY_MS // 2)]
        tracked.append(restarted.tracked)
        for step in range(1, 6):
            at = T0 + DAY_MS + step * 1000
            outs.append(restarted.tick(at, store, at))
            tracked.append(restarted.tracked)
        for out in outs:
            alerts += [(a.account_id or "", a.kind, a.detected_at_ms) for a in out.alerts]
        return sorted(alerts), tracked

    at_once, tracked_at_once = restart(None)
    in_steps, tracked_in_steps = restart(3)

    assert in_steps == at_once
    assert [a for a, _, _ in at_once] == [a for a in sorted(accounts) if a != "acct-7"]
    assert {t for _, _, t in at_once} == {T0 + DAY_MS + i for i in range(10) if i != 7}
    assert tracked_at_once == [10] * 6
    assert tracked_in_steps == [3, 6, 9, 10, 10, 10]


def test_dead_letters_over_512_kib_are_cut_and_marked_with_their_sizes() -> None:
    big = Record(0, 7, b"k", b"x" * (DEAD_LETTER_MAX_BYTES + 10))
    key, value, headers = dead_letter(big, "$: not valid JSON", "usage-events")
    assert key == b"k" and value == b"x" * DEAD_LETTER_MAX_BYTES
    found = dict(headers)
    assert found["churnwatch.truncated"] == f"key=1,value={DEAD_LETTER_MAX_BYTES + 10}".encode()
    assert found["churnwatch.error"] == b"$: not valid JSON"
    assert found["churnwatch.source"] == b"usage-events/0@7"
    small = Record(0, 8, None, b"{")
    assert dead_letter(small, "r", "t")[:2] == (None, b"{")
    assert "churnwatch.truncated" not in dict(dead_letter(small, "r", "t")[2])


HOUR_MS = 3_600_000


def _partition_that_goes_silent(rules: str) -> tuple[BatchOutput, int]:
    """Ten accounts active every hour for three weeks, then all silent together for two days."""
    proc, store = processor(rules), Store()
    records: list[Record] = []
    last = T0
    for hour in range(21 * 24):
        for a in range(10):
            last = T0 + hour * HOUR_MS + a * 1000
            records.append(Record(0, len(records), f"a{a}".encode(), event(f"a{a}", f"{a}-{hour}", last)))
    out = apply(proc, store, records, last, backlog=True)
    out.extend(proc.tick(last + 2 * DAY_MS, store, last + 2 * DAY_MS))
    return out, last


def test_a_whole_partition_falling_silent_is_a_data_gap_that_holds_quiet_alerts() -> None:
    rules = "[alerts]\nquiet_after_days = 1\nquiet_missed_active_days = 0\n[data_gaps]\nmin_accounts = 10\n"
    out, last = _partition_that_goes_silent(rules)
    assert [a.kind for a in out.alerts] == ["data_gap"]
    assert out.alerts[0].evidence["gap_started_ms"] == last


def test_a_partition_of_fewer_accounts_than_min_accounts_judges_no_gap() -> None:
    # Ten accounts (the default asks for 20): their silence is theirs, each goes quiet.
    out, _ = _partition_that_goes_silent("[alerts]\nquiet_after_days = 1\nquiet_missed_active_days = 0\n")
    assert sorted((a.kind, a.account_id) for a in out.alerts) == [
        ("account_quiet", f"a{a}") for a in range(10)
    ]


def test_with_data_gaps_disabled_every_account_of_a_silent_partition_goes_quiet() -> None:
    rules = "[alerts]\nquiet_after_days = 1\nquiet_missed_active_days = 0\n[data_gaps]\nenabled = false\n"
    out, last = _partition_that_goes_silent(rules)
    quiet = sorted((a.account_id, a.detected_at_ms) for a in out.alerts)
    assert quiet == [(f"a{a}", last - (9 - a) * 1000 + DAY_MS) for a in range(10)]
    assert {a.kind for a in out.alerts} == {"account_quiet"}


def segment(message_id: str, user: str, at_ms: int, group: str | None = None, kind: str = "track") -> bytes:
    doc: dict[str, object] = {"type": kind, "messageId": message_id, "userId": user, "timestamp": at_ms}
    if kind == "track":
        doc["event"] = "Report Exported"
    if group is not None:
        doc["groupId" if kind == "group" else "context"] = group if kind == "group" else {"groupId": group}
    return orjson.dumps(doc)


def attributing(wait_ms: int = 10_000) -> tuple[PartitionProcessor, UserDirectory]:
    users = UserDirectory()
    proc = processor()
    proc.users, proc.attribution_wait_ms = users, wait_ms
    return proc, users


def test_a_message_naming_only_its_user_is_resent_with_the_account_of_the_users_group_call() -> None:
    proc, users = attributing()
    records = [
        Record(0, 0, b"acme", segment("g1", "u1", T0, "acme", kind="group")),
        Record(0, 1, b"u1", segment("t1", "u1", T0 + 1)),
    ]
    out = proc.process(records, Store(), T0 + 10)

    assert out.user_links == [("u1", "acme")] and users.account_of(["u1"]) == "acme"
    [(rec, target, account, value)] = out.attributed
    assert (rec.offset, target, account) == (1, 0, "acme")
    assert orjson.loads(value)["context"] == {"groupId": "acme"}
    assert out.held == set() and out.outcomes["attributed"] == 1


def test_a_message_waits_for_its_users_link_and_is_released_when_it_comes() -> None:
    proc, users = attributing()
    store = Store()
    out = proc.process([Record(0, 5, b"u2", segment("t2", "u2", T0))], store, T0)
    assert (out.held, out.attributed, proc.waiting) == ({5}, [], 1)

    assert proc.tick(T0 + 1000, store, T0 + 1000).released == []
    users.link("u2", "elsewhere-globex")  # learnt from another worker's group call
    later = proc.tick(T0 + 2000, store, T0 + 2000)
    assert later.released == [5] and proc.waiting == 0
    [(rec, target, account, _)] = later.attributed
    assert (rec.offset, target, account) == (5, 1, "elsewhere-globex")


def test_a_message_whose_user_never_gets_an_account_is_dead_lettered_saying_what_to_send() -> None:
    proc, _ = attributing(wait_ms=5000)
    store = Store()
    proc.process([Record(0, 7, b"u3", segment("t3", "u3", T0))], store, T0)
    assert proc.tick(T0 + 4999, store, T0 + 4999).dead_letters == []
    out = proc.tick(T0 + 5000, store, T0 + 5000)
    [(rec, reason)] = out.dead_letters
    assert rec.offset == 7 and out.released == [7]
    assert reason == (
        "context.groupId: no account for user 'u3': send a group call (userId → groupId) for the user, or "
        "context.groupId on the message (none came within 5 s)"
    )


def test_without_a_user_directory_such_messages_are_dead_lettered_at_once() -> None:
    out = processor().process([Record(0, 0, b"u1", segment("t1", "u1", T0))], Store(), T0)
    assert [r.offset for r, _ in out.dead_letters] == [0] and out.held == set()


def test_a_change_too_small_to_publish_is_published_once_the_account_has_settled() -> None:
    proc, store = processor(), Store()
    first = apply(proc, store, [Record(0, 0, b"acme", event("acme", "e0", T0))], T0)
    assert [a for a, _ in first.health] == ["acme"]
    second = apply(proc, store, [Record(0, 1, b"acme", event("acme", "e1", T0 + 1000))], T0 + 1000)
    assert second.health == []  # one more login the same day: not a material change

    assert proc.tick(T0 + 5999, store, T0 + 5999).health == []
    settled = proc.tick(T0 + 6000, store, T0 + 6000)
    [(account, snapshot)] = settled.health
    assert account == "acme" and sum(orjson.loads(snapshot)["daily"]["events"]) == 2
    assert proc.tick(T0 + 20_000, store, T0 + 20_000).health == []  # once


def test_a_steady_account_has_a_snapshot_of_each_day_it_is_active_without_clock_ticks() -> None:
    # Issue 18: a steady account's score stops moving after a few days, so with material changes alone
    # its snapshot (last activity, daily chart, breakdown) stayed days behind wherever no clock tick
    # settled it: a partition that never catches up, a backfill on event time, a restart in between.
    # Two users each morning and a third each afternoon, a batch each; the worker restarts on day 10.
    proc, store = processor(), Store()
    shown = []
    for day in range(21):
        if day == 10:
            proc = processor()  # what its snapshot showed is in the stored state
        at = T0 + day * DAY_MS
        morning = [
            Record(0, 3 * day + u, b"acme", event("acme", f"e{day}-{u}", at + u * HOUR, f"u{u}"))
            for u in range(2)
        ]
        afternoon = [Record(0, 3 * day + 2, b"acme", event("acme", f"e{day}-2", at + 5 * HOUR, "u2"))]
        for records, wall in ((morning, at + HOUR), (afternoon, at + 5 * HOUR)):
            out = apply(proc, store, records, wall)
            shown += [(day, orjson.loads(snapshot)) for _, snapshot in out.health]
    # Once a day, with the day's first activity; the afternoon's login waits to settle (on a tick).
    assert [(day, snapshot["last_activity_at"]) for day, snapshot in shown] == [
        (day, f"2026-03-{2 + day:02d}T10:00:00.000Z") for day in range(21)
    ]
    assert sum(shown[-1][1]["daily"]["events"]) == 3 * 20 + 2


def test_a_message_re_sent_twice_across_a_crash_counts_once_however_many_events_come_between() -> None:
    """The worker that attributed a message crashed before committing it: its successor re-sends it. The
    copies arrive 200 of the account's events apart, beyond its 64 recent event ids, and across a restart
    of the receiving processor."""
    source, _ = attributing()
    source.source_floor = 40  # the source partition's committed offset
    group = Record(0, 40, b"u1", segment("g1", "u1", T0, "acme", kind="group"))
    out = source.process([group, Record(0, 41, b"u1", segment("t1", "u1", T0 + 1))], Store(), T0 + 10)
    [(rec, _, account, value)] = out.attributed
    resent = Record(
        0, 500, account.encode(), value, with_source(rec.headers, 0, rec.offset, out.source_floor)
    )
    assert read_source(resent.headers) == (0, 41, 40)

    proc, store = processor(), Store()
    others = [Record(0, 501 + i, b"acme", event("acme", f"e{i}", T0 + 2 + i)) for i in range(200)]
    apply(proc, store, [resent, *others], T0 + 1000)
    # The receiving worker restarts; the source's successor re-sends offset 41 (its floor unchanged).
    copy = Record(0, 701, resent.key, resent.value, resent.headers)
    out = apply(processor(), store, [copy], T0 + 2000)

    assert out.outcomes["duplicate"] == 1 and out.outcomes["counted"] == 0
    state = decode_state(store.data["acme"])
    assert sum(b.events for b in state.days.values()) == 201


def test_a_replay_of_the_receiving_partition_is_not_taken_for_a_second_copy() -> None:
    proc, store = processor(), Store()
    headers = (("churnwatch.resent-from", b"1:7:0"),)
    resent = Record(0, 3, b"acme", event("acme", "t7", T0), headers)
    proc.process([resent], store, T0)
    # Crash after the resend log was stored, before the account's state was: the record is read again.
    store.data.update({k: v for k, v in proc.flush(T0).items() if k != "acme"})
    out = apply(processor(), store, [resent], T0 + 10)
    assert out.outcomes["counted"] == 1 and out.outcomes["duplicate"] == 0
    assert sum(b.events for b in decode_state(store.data["acme"]).days.values()) == 1


def test_a_second_copy_read_again_after_a_crash_is_still_a_duplicate_once_its_source_committed() -> None:
    """The receiving partition stored its states after a second copy (beyond the account's recent event
    ids) and after a re-send that says the source has committed past the copied record, then crashed
    before committing its own offsets. The replay reads the second copy again: the log must still know
    it, although the source never re-sends that record again."""
    proc, store = processor(), Store()

    def copy(offset: int, account: str, source: bytes) -> Record:
        value = event(account, f"t{source.decode()}", T0 + offset)
        return Record(0, offset, account.encode(), value, (("churnwatch.resent-from", source),))

    first, second = copy(3, "acme", b"1:7:0"), copy(200, "acme", b"1:7:0")
    later = copy(201, "beta", b"1:9:8")  # the source committed up to 8: it never reads 7 again
    between = [Record(0, 100 + i, b"acme", event("acme", f"e{i}", T0 + 100 + i)) for i in range(70)]
    proc.source_floor = 200  # this partition's committed offset: 200 and 201 are read again after a crash
    out = apply(proc, store, [first, *between, second, later], T0 + 1000)
    assert (out.outcomes["counted"], out.outcomes["duplicate"]) == (72, 1)

    out = apply(processor(), store, [second, later], T0 + 2000)
    assert (out.outcomes["duplicate"], out.outcomes["replayed"], out.outcomes["counted"]) == (1, 1, 0)
    assert sum(b.events for b in decode_state(store.data["acme"]).days.values()) == 71


def test_a_message_its_producer_delivered_twice_is_re_sent_once_even_across_a_restart() -> None:
    """A track naming only its user, delivered twice by its producer (the same messageId at two offsets)
    with a restart of the worker between them: the second is dropped where it was read, before it is
    re-sent, because at the account it would arrive far behind the first. The first read again after
    the restart (a replay) is re-sent again (the receiver's resend log drops that copy)."""
    store = Store()
    proc, users = attributing()
    group = Record(0, 40, b"u1", segment("g1", "u1", T0, "acme", kind="group"))
    first = Record(0, 41, b"u1", segment("t1", "u1", T0 + 1))
    out = proc.process([group, first], store, T0 + 10)
    store.data.update(proc.flush(T0 + 10))
    assert len(out.attributed) == 1

    again, users_again = attributing()
    users_again.link("u1", "acme")
    second = Record(0, 300, b"u1", segment("t1", "u1", T0 + 1))
    out = again.process([first, second], store, T0 + 20)

    assert [rec.offset for rec, *_ in out.attributed] == [41]
    assert out.outcomes["duplicate"] == 1
