"""The compiled newest day of an account against ``max``: the same value, or what ``max`` does."""

from __future__ import annotations

from typing import Any

import pytest
from churnwatch_native import newest_day
from hypothesis import given
from hypothesis import strategies as st

from streamer.core import engine

keys = st.integers(-(2**63), 2**63 - 1) | st.integers(19_000, 21_000) | st.sampled_from([-1, 0])


@given(st.dictionaries(keys, st.none(), min_size=1, max_size=60))
def test_the_newest_of_64_bit_days_is_max(days: dict[int, None]) -> None:
    got = newest_day(days)
    assert type(got) is int and got == max(days)
    assert engine._newest_day is newest_day


@given(
    st.dictionaries(keys, st.none(), max_size=20),
    st.sampled_from([2**63, -(2**63) - 1, 2**64 + 3, True, 1.5]),
)
def test_any_other_key_is_left_to_max(days: dict[Any, None], odd: Any) -> None:
    days[odd] = None
    got = newest_day(days)
    assert type(got) is type(max(days)) and got == max(days)


def test_no_day_raises_as_max_does() -> None:
    with pytest.raises(ValueError, match="empty"):
        newest_day({})
