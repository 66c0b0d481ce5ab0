"""The compiled state codec (``native/``) against the Python reference in streamer.core.state.

The worker encodes and decodes states with the compiled codec; the Python one is the definition of the
format. On random states the two must write the same bytes and read back states that are equal field by
field, with the same types (an int read back as a float, or a tuple as a list, compares equal but is
another state), and on damaged bytes both must refuse or both must read the same state.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import churnwatch_native
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.core import state as state_module
from streamer.core.policy import Band
from streamer.core.state import (
    NATIVE_CODEC,
    AccountState,
    DayBucket,
    MilestoneProgress,
    Scored,
    TopUser,
    check_encodable,
    clone_state,
    decode_state,
    encode_state,
    event_id_hash,
    python_blake64,
    python_check_encodable,
    python_clone_state,
    python_decode_state,
    python_encode_state,
)
from tests.unit.core.test_state import T0, _full_state, states

if TYPE_CHECKING:
    from churnwatch_native import Codec


def _codec() -> Codec:
    # `make install` builds the extension: the suite runs on the compiled path, so a build that silently
    # fell back to Python fails here rather than passing on the slower codec.
    assert NATIVE_CODEC is not None, "churnwatch_native is not installed: `make install` builds it"
    return NATIVE_CODEC


def _typed(s: AccountState) -> str:
    # repr shows types (1 and 1.0 and True, a tuple and a list) and dict order, which == does not.
    return repr(s)


def test_the_worker_uses_the_compiled_codec() -> None:
    codec = _codec()
    assert encode_state == codec.encode
    raw = python_encode_state(_full_state())
    assert _typed(decode_state(raw)) == _typed(python_decode_state(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_compiled_and_python_codecs_write_the_same_bytes_and_read_the_same_state(s: AccountState) -> None:
    codec = _codec()
    raw = python_encode_state(s)
    assert codec.encode(s) == raw
    decoded = codec.decode(raw)
    assert decoded == s
    assert _typed(decoded) == _typed(python_decode_state(raw))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states(), st.data())
def test_damaged_bytes_are_refused_by_both_codecs_or_read_alike(s: AccountState, data: st.DataObject) -> None:
    codec = _codec()
    raw = bytearray(python_encode_state(s))
    how = data.draw(st.sampled_from(["cut", "flip", "extend"]))
    if how == "cut":
        raw = raw[: data.draw(st.integers(1, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(1, len(raw) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    blob = bytes(raw)
    try:
        expected = _typed(python_decode_state(blob))
    except ValueError:
        with pytest.raises(ValueError):
            codec.decode(blob)
    else:
        assert _typed(codec.decode(blob)) == expected


def test_a_state_of_another_version_is_left_to_the_python_decoder() -> None:
    codec = _codec()
    old = b"\x05" + python_encode_state(_full_state())[1:]
    with pytest.raises(ValueError, match="not a version 6 state"):
        codec.decode(old)
    with pytest.raises(ValueError):
        codec.decode(b"")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("open_tickets", 2**31),
        ("applied_offset", 2**63),
        ("nps_score", 128),
        ("published_score", 2**15),
        ("seats", -(2**63) - 1),
    ],
)
def test_a_value_the_format_cannot_hold_is_a_value_error_from_both_encoders(field: str, value: int) -> None:
    s = _full_state()
    setattr(s, field, value)
    with pytest.raises(struct.error):
        python_encode_state(s)
    with pytest.raises(ValueError, match="out of range"):
        _codec().encode(s)


def test_the_encoders_agree_on_bands_components_and_the_worst_case_strings() -> None:
    codec = _codec()
    wide = "\U0001f600" * 128
    s = AccountState(wide, T0, T0, last_band=Band.POOR, published_band=Band.GOOD, published_score=80)
    s.plan = s.segment = s.name = s.owner = s.contract = wide
    s.days = {-3: DayBucket(2**32 - 1, -0.0, 2**128 - 1, 2**64 - 1), 7: DayBucket()}
    s.top_users = [TopUser(2**64 - 1, 1.5, 3, 1)]
    s.scored = [Scored(1, 2, b"\x01" * 32)]
    s.milestones = {2**32 - 1: MilestoneProgress(None, 3, (1, 2**32 - 1), True)}
    s.published_components = {"sentiment": 1.0, "recency": 0.0}
    raw = python_encode_state(s)
    assert codec.encode(s) == raw
    assert codec.decode(raw) == s
    assert _typed(codec.decode(raw)) == _typed(python_decode_state(raw))
    s.published_components["no such component"] = 1.0
    with pytest.raises(ValueError, match="unknown published component"):
        codec.encode(s)
    with pytest.raises(ValueError, match="unknown published component"):
        python_encode_state(s)


@given(st.text())
def test_the_compiled_hash_of_ids_is_the_python_one(text: str) -> None:
    assert churnwatch_native.blake64(text) == python_blake64(text)


def test_ids_are_hashed_by_the_compiled_hash_and_a_lone_surrogate_is_refused_by_both() -> None:
    assert state_module._blake64 is churnwatch_native.blake64
    assert event_id_hash("evt-1") == python_blake64("evt-1") == 0x475CA1DD826E43BE
    with pytest.raises(UnicodeEncodeError):
        churnwatch_native.blake64("\ud800")
    with pytest.raises(UnicodeEncodeError):
        python_blake64("\ud800")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_the_compiled_copy_equals_the_python_one_and_shares_no_container(s: AccountState) -> None:
    s.quiet_cache = ("not", "copied")
    copy = _codec().clone_state(s)
    assert _typed(copy) == _typed(python_clone_state(s))
    assert copy.quiet_cache is None
    for name in ("days", "facts_at_ms", "published_components", "milestones", "top_users"):
        assert getattr(copy, name) is not getattr(s, name), name
    for name in ("history", "scored"):
        assert getattr(copy, name) is not getattr(s, name), name


_I64 = [-(2**63), -(2**63) + 1, 2**63 - 1, 2**63, 0]
# Per field, values at the bounds of what the encoding holds and just past them.
_BOUNDS: dict[str, list[Any]] = {
    **dict.fromkeys(("first_seen_ms", "clock_ms", "applied_offset"), _I64),
    **dict.fromkeys(
        (
            "last_activity_ms",
            "nps_at_ms",
            "subscription_started_ms",
            "subscription_cancelled_ms",
            "quiet_since_ms",
            "drop_since_ms",
            "seats",
            "due_ms",
            "renewal_ms",
            "first_activity_ms",
            "key_since_ms",
            "poor_pending_ms",
            "published_activity_ms",
            "published_quiet_since_ms",
            "published_drop_since_ms",
        ),
        [None, *_I64],
    ),
    "nps_score": [None, 0, 127, 128, -1],
    "published_score": [None, 0, 2**15 - 1, 2**15, -1],
    "open_tickets": [-(2**31), 2**31 - 1, 2**31, -(2**31) - 1],
    "published_milestones": [0, 2**16 - 1, 2**16, -1],
    "arr": [None, 0.0, -1.0, math.inf, math.nan, 1e300],
    "drop_base": [(), (1.0,) * 7, (1.0,) * 6, (1.0,) * 8],
    **dict.fromkeys(
        ("account_id", "name", "contract"), ["é" * 20_000, "é" * 40_000, "x" * 65_535, "\U0001f600" * 16_384]
    ),
    "recent_ids": [bytes(8 * 65_534), bytes(8 * 65_535), bytes(7), bytes(8 * 3 + 1)],
    "top_users": [[TopUser(1, 1.0, 1, 1)] * n for n in (255, 256)],
}
_PARTS = ("facts_at_ms", "scored", "milestones")


def _perturb(s: AccountState, data: st.DataObject) -> None:
    # The three containers checked entry by entry as often as all the fields together.
    name = data.draw(st.sampled_from(_PARTS) | st.sampled_from(list(_BOUNDS)))
    if name == "facts_at_ms":
        key = data.draw(st.sampled_from(["plan", "arr", "seats"]))
        s.facts_at_ms[key] = data.draw(st.sampled_from(_I64))
    elif name == "scored":
        # One part of the entry at a bound or just past it, the others valid.
        entry = {"day": 0, "score": 0, "size": 32}
        part = data.draw(st.sampled_from(list(entry)))
        entry[part] = data.draw(
            st.sampled_from(
                {
                    "day": [2**31 - 1, -(2**31), 2**31, -(2**31) - 1],
                    "score": [255, 256, -1],
                    "size": [27, 33],
                }[part]
            )
        )
        s.scored.append(Scored(entry["day"], entry["score"], bytes(entry["size"])))
    elif name == "milestones":
        fields: dict[str, Any] = {"key": 1, "reached": None, "events": 0, "users": 0}
        part = data.draw(st.sampled_from(list(fields)))
        fields[part] = data.draw(
            st.sampled_from(
                {
                    "key": [0, 2**32 - 1, 2**32, -1],
                    "reached": _I64,
                    "events": [2**16 - 1, 2**16, -1],
                    "users": [255, 256],
                }[part]
            )
        )
        progress = MilestoneProgress(fields["reached"], fields["events"], tuple(range(fields["users"])))
        s.milestones[fields["key"]] = progress
    else:
        setattr(s, name, data.draw(st.sampled_from(_BOUNDS[name])))


def _verdict(check: Callable[[AccountState], None], s: AccountState) -> str:
    try:
        check(s)
    except ValueError as err:
        return f"ValueError: {err}"
    return "encodable"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states(), st.integers(1, 3), st.data())
def test_the_compiled_check_refuses_what_the_python_one_refuses_with_the_same_message(
    s: AccountState, changes: int, data: st.DataObject
) -> None:
    # One change shows each bound on its own; two or three that the checks run in the same order.
    for _ in range(changes):
        _perturb(s, data)
    assert _verdict(_codec().check, s) == _verdict(python_check_encodable, s)


def test_states_are_copied_and_checked_by_compiled_code() -> None:
    assert clone_state == _codec().clone_state
    assert check_encodable == _codec().check
