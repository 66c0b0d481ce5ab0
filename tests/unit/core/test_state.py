"""Per-account state: buckets, eviction, sketches and the binary encoding."""

from __future__ import annotations

import dataclasses
import math
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.changes import KEPT
from streamer.core.engine import record_event
from streamer.core.events import EventKind, UsageEvent
from streamer.core.policy import DAY_MS, Band, Policy
from streamer.core.state import (
    COMPONENT_NAMES,
    REVENUE_FACTS,
    USER_BITS,
    AccountState,
    DayBucket,
    MilestoneProgress,
    Scored,
    TopUser,
    bit_for,
    check_encodable,
    clone_state,
    decode_state,
    encode_state,
    estimate_distinct,
    id_ring,
    in_ring,
    peek_state,
    ring_ids,
)

POLICY = Policy()
T0 = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp() * 1000)


def activity(i: int, at_ms: int, user: str | None = "u", name: str = "view") -> UsageEvent:
    return UsageEvent(f"e{i}", "acme", name, at_ms, user, {}, True, EventKind.ACTIVITY)


def test_activity_is_bucketed_by_utc_day() -> None:
    s = None
    for i, at in enumerate([T0 + 1, T0 + DAY_MS - 1, T0 + DAY_MS]):
        s, _, _ = record_event(s, activity(i, at, user=f"u{i}"), POLICY)
    assert s is not None
    day = T0 // DAY_MS
    assert sorted(s.days) == [day, day + 1]
    assert s.days[day].events == 2
    assert s.days[day].weight == 2.0
    assert s.days[day].users.bit_count() == 2


def test_days_leave_the_window_a_whole_week_at_a_time_into_the_weekly_history() -> None:
    day0 = T0 // DAY_MS  # a Monday
    s, _, _ = record_event(None, activity(1, T0), POLICY)
    s, _, _ = record_event(s, activity(2, T0 + 36 * DAY_MS), POLICY)
    # Day 0 is older than the 36-day window now, but its week (Monday..Sunday) is not all older yet.
    assert sorted(s.days) == [day0, day0 + 36] and s.history == []
    s, _, _ = record_event(s, activity(3, T0 + 42 * DAY_MS + 3_600_000, user="v"), POLICY)
    assert sorted(s.days) == [day0 + 36, day0 + 42]
    # The week of day 0: one user-day over 7 days counted; the next week, empty, is history too.
    week0 = (day0 + 3) // 7
    [(week, units, days)] = s.history
    assert (week, round(units, 2), days, s.history_through) == (week0, 1.0, 7, week0)
    s, _, _ = record_event(s, activity(4, T0 + 49 * DAY_MS), POLICY)
    assert s.history[1:] == [(week0 + 1, 0.0, 7)]


def test_event_weights_apply_per_event_name() -> None:
    policy = Policy(event_weights={"export": 3.0})
    s, _, _ = record_event(None, activity(1, T0, name="export"), policy)
    s, _, _ = record_event(s, activity(2, T0, name="view"), policy)
    assert s.days[T0 // DAY_MS].weight == 4.0


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20, 30, 45, 60])
def test_distinct_user_estimate_is_within_15_percent_up_to_60_users(n: int) -> None:
    bitmap = 0
    for i in range(n):
        bitmap |= bit_for(f"user-{i}@example.com", USER_BITS)
    assert abs(estimate_distinct(bitmap, USER_BITS) - n) <= max(0.15 * n, 0.5)


def test_distinct_estimate_of_empty_and_saturated_bitmaps() -> None:
    assert estimate_distinct(0, 64) == 0.0
    assert estimate_distinct(2**64 - 1, 64) == pytest.approx(64 * math.log(64))


def test_sketch_bits_are_stable_across_processes() -> None:
    # Fixed expectations: Python's salted hash() would make these differ between runs.
    assert bit_for("user-1", 128) == 1 << 26
    assert bit_for("checkout", 64) == 1 << 62


def test_worst_case_encoding_matches_the_documented_size() -> None:
    wide = "\U0001f600" * 128
    s = AccountState(account_id=wide, first_seen_ms=T0, clock_ms=T0, seats=5)
    s.plan = s.segment = s.name = s.owner = wide
    s.days = {d: DayBucket(2**32 - 1, 1.5, 2**128 - 1, 2**64 - 1) for d in range(42)}
    s.recent_ids = id_ring(range(64))
    s.published_score, s.published_band = 50, Band.AVERAGE
    s.published_components = {"activity": 1.0}
    s.top_users = [TopUser(2**64 - 1 - i, 40.5, 9, 1) for i in range(5)]
    s.history = [(w, 123.5, 7) for w in range(8)]
    s.history_through = 7
    s.key_user, s.key_since_ms, s.poor_pending_ms = 2**64 - 1, T0, T0
    s.drop_pending_day, s.drop_base, s.drop_dispersion = 20_000, (1.5,) * 7, 2.5
    s.published_activity_ms, s.published_quiet_since_ms, s.published_drop_since_ms = T0, T0, T0
    s.published_poor = True
    s.arr, s.currency, s.renewal_ms, s.contract = 1e13, "EUR", T0, wide
    s.facts_at_ms = dict.fromkeys(("seats", "plan", "segment", "name", "owner", *REVENUE_FACTS), T0)
    s.scored = [Scored(20_000 + d, 100, b"\xff" * 32) for d in range(KEPT)]
    assert len(encode_state(s)) == 6183  # the empty onboarding progress is 11 bytes
    assert decode_state(encode_state(s)) == s
    # At most 16 milestones, each counting at most 16 users: the documented worst case.
    s.first_activity_ms = T0
    s.milestones = {
        2**32 - 1 - k: MilestoneProgress(T0, 2**16 - 1, tuple(range(16)), True) for k in range(16)
    }
    assert len(encode_state(s)) == 7463
    assert decode_state(encode_state(s)) == s


ms_values = st.integers(-(2**62), 2**62)
opt_ms = st.none() | ms_values
short_text = st.none() | st.text(max_size=128)
buckets = st.builds(
    DayBucket,
    st.integers(0, 2**32 - 1),
    st.floats(allow_nan=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**64 - 1),
)
components = st.dictionaries(st.sampled_from(COMPONENT_NAMES), st.floats(0, 100))
top_users = st.lists(
    st.builds(
        TopUser, st.integers(0, 2**64 - 1), st.floats(0, 50), st.integers(0, 30_000), st.integers(0, 30_000)
    ),
    max_size=5,
)
scored_days = st.lists(
    st.builds(
        Scored, st.integers(-(2**31), 2**31 - 1), st.integers(0, 255), st.binary(min_size=32, max_size=32)
    ),
    max_size=KEPT,
)
weeks = st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 1e6), st.integers(0, 7)), max_size=8)
bands = st.sampled_from([None, *Band])
progress = st.dictionaries(
    st.integers(0, 2**32 - 1),
    st.builds(
        MilestoneProgress,
        opt_ms,
        st.integers(0, 2**16 - 1),
        st.lists(st.integers(0, 2**32 - 1), max_size=16).map(tuple),
        st.booleans(),
    ),
    max_size=16,
)


@st.composite
def states(draw: st.DrawFn) -> AccountState:
    s = AccountState(
        account_id=draw(st.text(min_size=1, max_size=128)),
        first_seen_ms=draw(ms_values),
        clock_ms=draw(ms_values),
    )
    s.last_activity_ms, s.nps_at_ms = draw(opt_ms), draw(opt_ms)
    s.days = draw(st.dictionaries(st.integers(-(2**31), 2**31 - 1), buckets, max_size=35))
    s.seats = draw(st.none() | st.integers(0, 2**62))
    s.plan, s.segment, s.name, s.owner = (draw(short_text) for _ in range(4))
    s.facts_at_ms = draw(
        st.dictionaries(
            st.sampled_from(["seats", "plan", "segment", "name", "owner", *REVENUE_FACTS]), ms_values
        )
    )
    s.arr = draw(st.none() | st.floats(0, 1e13))
    s.currency = draw(st.none() | st.sampled_from(["EUR", "USD", "JPY"]))
    s.renewal_ms, s.contract = draw(opt_ms), draw(short_text)
    s.nps_score = draw(st.none() | st.integers(0, 10))
    s.open_tickets = draw(st.integers(-(2**31), 2**31 - 1))
    s.subscription_started_ms, s.subscription_cancelled_ms = draw(opt_ms), draw(opt_ms)
    s.recent_ids = id_ring(draw(st.lists(st.integers(0, 2**64 - 1), max_size=64)))
    s.applied_offset = draw(st.integers(-1, 2**62))
    s.quiet_since_ms, s.drop_since_ms = draw(opt_ms), draw(opt_ms)
    s.poor_open, s.last_band = draw(st.booleans()), draw(bands)
    s.published_score, s.published_band = draw(st.none() | st.integers(0, 100)), draw(bands)
    s.published_components = draw(components)
    s.due_ms, s.unpublished = draw(opt_ms), draw(st.booleans())
    s.top_users, s.history = draw(top_users), draw(weeks)
    s.history_through = draw(st.none() | st.integers(0, 5000))
    s.key_user = draw(st.none() | st.integers(0, 2**64 - 1))
    s.key_since_ms, s.poor_pending_ms = draw(opt_ms), draw(opt_ms)
    s.drop_pending_day = draw(st.none() | st.integers(-(2**31) + 1, 2**31 - 1))
    s.drop_base = draw(st.just(()) | st.tuples(*(st.floats(0, 1e6),) * 7))
    s.drop_dispersion = draw(st.floats(1, 100))
    s.published_activity_ms, s.published_quiet_since_ms = draw(opt_ms), draw(opt_ms)
    s.published_drop_since_ms, s.published_poor = draw(opt_ms), draw(st.booleans())
    s.scored = draw(scored_days)
    s.first_activity_ms, s.milestones = draw(opt_ms), draw(progress)
    s.published_milestones = draw(st.integers(0, 2**16 - 1))
    return s


@given(states())
def test_state_encoding_round_trips_exactly(s: AccountState) -> None:
    encoded = encode_state(s)
    assert encoded[0] == 6
    assert decode_state(encoded) == s
    assert peek_state(encoded) == (s.due_ms, s.published_band, s.unpublished)


# A state as version 2 wrote it (five published components, no user signals): its header, then acme.
V2 = bytes.fromhex(
    "020018748b9b0100000518748b9b010000ffffffffffffffff0018748b9b0100000000000000000080ff0000000000000000"
    "000000800000000000000080e81b748b9b0100000000000000000080000050000100000000000049400000000000005940"
    "000000000000f87f000000000000f87f00000000008051400c000000000000000018748b9b01000000749a909b01000004"
    "0061636d65030070726f0018748b9b010000ffff0000000000000080ffff0000000000000080ffff000000000000008001"
    "00ea4f0000030000000000000000000840050000000000000000000000000000000300000000000000020007000000000000"
    "000900000000000000"
)


def _v2_state() -> AccountState:
    s = AccountState("acme", T0, T0 + 5, last_activity_ms=T0, published_band=Band.GOOD, published_score=80)
    s.days[T0 // DAY_MS] = DayBucket(3, 3.0, 0b101, 0b11)
    s.published_components = {"activity": 50.0, "recency": 100.0, "sentiment": 70.0}
    s.seats, s.plan, s.facts_at_ms = 12, "pro", {"seats": T0, "plan": T0}
    s.recent_ids, s.quiet_since_ms, s.due_ms = id_ring([7, 9]), T0 + 1000, T0 + DAY_MS
    return s


def test_version_2_and_1_states_still_decode_and_only_version_1_cannot_be_peeked() -> None:
    s = _v2_state()
    assert decode_state(V2) == s
    assert peek_state(V2) == (T0 + DAY_MS, "good", False)
    header_v2 = struct.calcsize("<B4qqbi4qBBhB5dqqq")
    v1 = b"\x01" + V2[1 : header_v2 - 8] + V2[header_v2:]  # the same state without the due time
    s.due_ms = None
    assert decode_state(v1) == s
    assert peek_state(v1) is None


# A state as version 3 wrote it (before the published snapshot's activity and episodes were kept).
V3 = bytes.fromhex(
    "030018748b9b0100000518748b9b010000ffffffffffffffff0018748b9b0100000000000000000080ff0000000000000000"
    "000000800000000000000080e81b748b9b010000000000000000008001005000010000000000005940000000000000494000"
    "0000000000f87f000000000000f87f000000000000f87f000000000000f87f000000000000f87f0000000000000080000000"
    "000000008000749a909b010000040061636d65ffff0000000000000080ffff0000000000000080ffff0000000000000080ff"
    "ff00000000000000800100ea4f00000300000000000000000008400500000000000000000000000000000003000000000000"
    "000000012a000000000000000018748b9b010000000000800000000000000080000000000000f03f000000000000f87f0000"
    "00000000f87f000000000000f87f000000000000f87f000000000000f87f000000000000f87f000000000000f87f012a0000"
    "00000000000000000000000440ea4f0000ea4f00000000008000"
)


def test_a_version_3_state_decodes_as_one_whose_snapshot_showed_nothing_yet() -> None:
    # What its snapshot showed is unknown: counted as nothing, so the account is republished the next time
    # the worker looks at it (its snapshot may be days behind: the republish rule did not exist then).
    s = AccountState("acme", T0, T0 + 5, last_activity_ms=T0, published_band=Band.GOOD, published_score=80)
    s.days[T0 // DAY_MS] = DayBucket(3, 3.0, 0b101, 0b11)
    s.published_components = {"activity": 50.0, "recency": 100.0}
    s.quiet_since_ms, s.poor_open, s.due_ms = T0 + 1000, True, T0 + DAY_MS
    s.key_user, s.key_since_ms = 42, T0
    s.top_users = [TopUser(42, 2.5, T0 // DAY_MS, T0 // DAY_MS)]
    decoded = decode_state(V3)
    assert decoded == s
    assert (decoded.published_activity_ms, decoded.published_quiet_since_ms) == (None, None)
    assert (decoded.published_drop_since_ms, decoded.published_poor) == (None, False)
    assert peek_state(V3) == (T0 + DAY_MS, "good", False)
    assert encode_state(decoded)[0] == 6  # written back in the current version


# A state as version 4 wrote it (before the scored days were kept): _v2_state with revenue facts.
V4 = bytes.fromhex(
    "040018748b9b0100000518748b9b010000ffffffffffffffff0018748b9b0100000000000000000080ff0000000000000000"
    "000000800000000000000080e81b748b9b010000000000000000008000005000010000000000005940000000000000494000"
    "0000000000f87f000000000000f87f000000000000f87f000000000000f87f00000000008051400c00000000000000001874"
    "8b9b01000000749a909b010000040061636d65030070726f0018748b9b010000ffff0000000000000080ffff000000000000"
    "0080ffff00000000000000800100ea4f00000300000000000000000008400500000000000000000000000000000003000000"
    "0000000002000700000000000000090000000000000000000000000000000000000000000000800000008000000000000000"
    "80000000000000f03f000000000000f87f000000000000f87f000000000000f87f000000000000f87f000000000000f87f00"
    "0000000000f87f000000000000f87f0018748b9b010000000000000000008000000000000000800000000080000000000008"
    "4cfd4000e0f2259c0100000018748b9b0100000018748b9b0100000118748b9b0100000218748b9b01000003004555520600"
    "616e6e75616c"
)


def test_a_version_4_state_decodes_with_no_scored_days_and_is_written_back_as_version_6() -> None:
    s = _v2_state()
    s.arr, s.currency, s.renewal_ms, s.contract = 120_000.5, "EUR", T0 + 30 * DAY_MS, "annual"
    s.facts_at_ms.update(arr=T0, currency=T0, renewal_at=T0 + 1, contract=T0 + 2)
    s.published_activity_ms = T0
    decoded = decode_state(V4)
    assert decoded == s and decoded.scored == []
    assert peek_state(V4) == (T0 + DAY_MS, "good", False)
    # Version 5 appends the scored days (a count of 0 here), version 6 the empty onboarding progress.
    assert encode_state(decoded) == b"\x06" + V4[1:] + b"\x00" + encode_state(decoded)[-11:]
    assert decoded.milestones == {} and decoded.first_activity_ms is None


def test_a_version_5_state_decodes_as_one_without_onboarding_progress() -> None:
    s = _v2_state()
    s.arr, s.currency = 1000.0, "EUR"
    # Version 5 ended with the scored days: the same bytes without the progress block (11 bytes empty).
    v5 = b"\x05" + encode_state(s)[1:-11]
    assert decode_state(v5) == s
    assert peek_state(v5) == (T0 + DAY_MS, "good", False)
    s.first_activity_ms = T0
    s.milestones = {7: MilestoneProgress(None, 2, (1, 2), False), 9: MilestoneProgress(T0, 1, (), True)}
    assert decode_state(encode_state(s)) == s


def test_revenue_facts_round_trip() -> None:
    s = _v2_state()
    s.arr, s.currency, s.renewal_ms, s.contract = 120_000.5, "EUR", T0 + 30 * DAY_MS, "annual, net 30"
    s.facts_at_ms.update(arr=T0, currency=T0, renewal_at=T0 + 1, contract=T0 + 2)
    assert decode_state(encode_state(s)) == s


@pytest.mark.parametrize(
    "blob",
    [
        b"",  # empty
        b"\x07" + bytes(200),  # unknown version
        encode_state(AccountState("acme", T0, T0))[:-1],  # truncated
        encode_state(AccountState("acme", T0, T0)) + b"\x00",  # trailing garbage
    ],
)
def test_corrupt_state_bytes_raise_value_error(blob: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(blob)


def _full_state() -> AccountState:
    s = AccountState("acme", T0, T0 + 5)
    s.days = {T0 // DAY_MS - d: DayBucket(d + 1, d + 0.5, 1 << d, 1 << (d % 64)) for d in range(35)}
    s.recent_ids = id_ring(range(64))
    s.facts_at_ms = {"plan": T0, "seats": T0}
    s.published_components = {"activity": 50.0}
    s.scored = [Scored(T0 // DAY_MS, 60, bytes(32))]
    return s


def test_a_clone_is_independent_of_its_original() -> None:
    original = _full_state()
    encoded = encode_state(original)
    copy = clone_state(original)
    assert encode_state(copy) == encoded
    copy.days[T0 // DAY_MS] = DayBucket(99, 99.0, 0, 0)
    copy.recent_ids += id_ring([7])
    copy.facts_at_ms["plan"] = 0
    copy.published_components["recency"] = 1.0
    copy.seats, copy.quiet_since_ms = 5, T0
    copy.scored.append(Scored(1, 2, bytes(32)))
    copy.milestones[1] = MilestoneProgress(T0, 1)
    assert encode_state(original) == encoded


def test_a_clone_copies_every_field_but_the_unstored_quiet_cache() -> None:
    # clone_state lists the fields one by one: a field added to AccountState must be added there too.
    original = AccountState("acme", T0, T0)
    for n, f in enumerate(dataclasses.fields(AccountState)):
        if f.name in ("account_id", "first_seen_ms", "clock_ms"):
            continue
        kind = str(f.type)  # a distinct value of the declared type: compiled, attributes check it
        if kind.startswith("dict"):
            value: Any = {n: n}
        elif kind.startswith("list"):
            value = [n]
        elif kind.startswith("tuple"):
            value = (float(n),)
        elif kind == "bool":
            value = True
        elif kind.startswith("Band"):
            value = Band.POOR
        elif kind.startswith("str"):
            value = f"v{n}"
        elif kind.startswith("float"):
            value = float(n)
        else:
            value = n
        setattr(original, f.name, value)
    copy = clone_state(original)
    for f in dataclasses.fields(AccountState):
        expected = None if f.name == "quiet_cache" else getattr(original, f.name)
        assert getattr(copy, f.name) == expected, f.name


_extreme_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-(2**63), -(2**63) + 1, 2**63 - 1, 2**63, -(2**31) - 1, 2**31, -1, 0, 127, 128]),
)


@settings(max_examples=400, derandomize=True)
@given(
    seats=st.none() | _extreme_ints,
    tickets=_extreme_ints,
    nps=st.none() | _extreme_ints,
    last=st.none() | _extreme_ints,
    offset=_extreme_ints,
    score=st.none() | _extreme_ints,
    name=st.none() | st.text(max_size=3) | st.sampled_from(["é" * 20_000, "x" * 70_000]),
)
def test_check_encodable_never_accepts_a_state_the_encoder_cannot_round_trip(
    seats: int | None,
    tickets: int,
    nps: int | None,
    last: int | None,
    offset: int,
    score: int | None,
    name: str | None,
) -> None:
    s = _full_state()
    s.seats, s.open_tickets, s.nps_score, s.last_activity_ms = seats, tickets, nps, last
    s.applied_offset, s.published_score, s.name = offset, score, name
    try:
        check_encodable(s)
        ok = True
    except ValueError:
        ok = False
    try:
        d = decode_state(encode_state(s))
        # Encoded and read back unchanged: a sentinel value (-1 for "no NPS") would come back as None.
        encodes = (d.seats, d.open_tickets, d.nps_score, d.last_activity_ms) == (
            seats,
            tickets,
            nps,
            last,
        ) and (
            d.applied_offset,
            d.published_score,
            d.name,
        ) == (offset, score, name)
    except (struct.error, ValueError):
        encodes = False
    # It may be stricter than the encoder (a score of -2 encodes but is no score), never looser.
    assert encodes or not ok


def test_check_encodable_accepts_the_values_at_the_documented_bounds() -> None:
    s = _full_state()
    s.seats, s.open_tickets, s.nps_score, s.published_score = 10_000_000, -5, 10, 100
    s.name = "é" * 128
    check_encodable(s)
    s.applied_offset = 2**63 - 1
    check_encodable(s)
    s.scored = [Scored(2**31 - 1, 255, bytes(32))] * 255
    check_encodable(s)


@pytest.mark.parametrize(
    "entry",
    [
        Scored(2**31, 50, bytes(32)),  # a day past int32
        Scored(0, 256, bytes(32)),  # a score past uint8
        Scored(0, 50, bytes(27)),  # parts of another size
    ],
)
def test_check_encodable_rejects_a_scored_day_the_encoder_cannot_write(entry: Scored) -> None:
    s = _full_state()
    s.scored = [entry]
    with pytest.raises(ValueError, match="scored"):
        check_encodable(s)


# Ids of bytes 0 and 1 only: a run of eight that straddles two ids of the ring is common.
_BINARY_IDS = st.binary(min_size=8, max_size=8).map(lambda b: bytes(x & 1 for x in b))


@given(st.lists(_BINARY_IDS, max_size=12), _BINARY_IDS)
def test_an_id_is_in_the_ring_when_it_is_one_of_its_ids_not_when_it_straddles_two(
    ids: list[bytes], h: bytes
) -> None:
    ring = b"".join(ids)
    assert in_ring(ring, h) is (h in ids)
    assert id_ring(ring_ids(ring)) == ring


def test_an_id_found_after_a_straddling_match_is_in_the_ring() -> None:
    a, b = 0x0807060504030201, 0x100F0E0D0C0B0A09
    ring = id_ring([a, b])
    straddle = ring[4:12]
    assert not in_ring(ring, straddle)
    assert in_ring(ring + straddle, straddle)
    assert ring_ids(ring + straddle) == [a, b, 0x0C0B0A0908070605]
    # Fourteen zero bytes across two ids hold seven straddling matches of a zero id, and no id.
    assert not in_ring(bytes([1, *[0] * 14, 1]), bytes(8))
    assert in_ring(bytes([1, *[0] * 14, 1]) + bytes(8), bytes(8))
