"""The compiled count of a top user's active day against the Python reference, float for float."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import engine
from streamer.core.state import NATIVE_CODEC, TOP_USERS, AccountState, TopUser

U64 = 2**64 - 1
DAY = 20_400


def _bits(users: list[TopUser]) -> list[tuple[object, ...]]:
    # Weights compared by their bits: floats that differ in the last bit would hide behind ==.
    return [(u.user, struct.pack("<d", u.weight), u.last_day, u.first_day, type(u.weight)) for u in users]


users_ = st.sampled_from([0, 1, 7, 2**63, U64, 123_456_789_012_345_678])
weights = (
    st.floats(0, 1e6, allow_nan=False)
    | st.sampled_from([0.0, 1.0, 35.66, 5e-324, 1e300, 1.7976931348623157e308])
    | st.integers(0, 3)  # not a float: declined, the reference answers
)
entries = st.builds(
    TopUser,
    users_,
    weights,
    st.integers(DAY - 40_000, DAY + 3),  # some so far back that the decay underflows
    st.integers(DAY - 60, DAY),
)


def _both(users: list[TopUser], user: int, day: int) -> tuple[list[TopUser], list[TopUser]]:
    compiled = AccountState("a", 0, 0, top_users=list(users))
    python = AccountState("a", 0, 0, top_users=list(users))
    engine._touch_user(compiled, user, day)
    engine.python_touch_user(python, user, day)
    return compiled.top_users, python.top_users


@settings(max_examples=3000)
@given(st.lists(entries, max_size=TOP_USERS), users_, st.integers(DAY - 3, DAY + 30))
def test_the_compiled_count_is_the_python_one_to_the_last_bit(
    users: list[TopUser], user: int, day: int
) -> None:
    assert engine._native_touch_user is not None, "churnwatch_native is not built: run `make install`"
    compiled, python = _both(users, user, day)
    assert _bits(compiled) == _bits(python)


def test_ties_go_to_the_lowest_user_then_the_first() -> None:
    # Five users of equal weight as of today: the lowest id gives its place up.
    users = [TopUser(u, 2.0, DAY, DAY) for u in (9, 3, 5, 3, 8)]
    compiled, python = _both(users, 42, DAY)
    assert compiled == python
    assert compiled[1] == TopUser(42, 3.0, DAY, DAY) and compiled[3] == TopUser(3, 2.0, DAY, DAY)


def test_a_returning_user_decays_then_counts_one() -> None:
    users = [TopUser(7, 4.0, DAY - 28, DAY - 30)]
    compiled, _ = _both(users, 7, DAY)
    assert compiled == [TopUser(7, 3.0, DAY, DAY - 30)]  # 4 halved over 28 days, plus today


def test_what_it_declines_it_leaves_unchanged() -> None:
    assert NATIVE_CODEC is not None
    users = [TopUser(1, 2, DAY, DAY)]  # an integer weight
    assert NATIVE_CODEC.touch_user(users, 1, DAY + 1, TOP_USERS) is False
    assert users == [TopUser(1, 2, DAY, DAY)]
    # Last seen 2**40 days ahead: 0.5 ** -(2**40 / 28) overflows, and Python raises.
    ahead = [TopUser(u, 1.0, 2**40, 0) for u in range(TOP_USERS)]
    assert NATIVE_CODEC.touch_user(ahead, 99, DAY, TOP_USERS) is False
    assert ahead == [TopUser(u, 1.0, 2**40, 0) for u in range(TOP_USERS)]
    with pytest.raises(OverflowError):
        engine._touch_user(AccountState("a", 0, 0, top_users=ahead), 99, DAY)
