"""The compiled rhythm against the Python reference: the same Rhythm, float for float."""

from __future__ import annotations

import math
import struct

import churnwatch_native
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import rhythm as rhythm_module
from streamer.core.rhythm import Rhythm, python_rhythm, rhythm


def _bits(r: Rhythm) -> tuple[object, ...]:
    # Floats compared by their bits: equal floats that differ in the last bit would hide behind ==.
    def b(x: float) -> bytes:
        return struct.pack("<d", x)

    return (
        r.days,
        r.active_days,
        [b(x) for x in r.share],
        [b(x) for x in r.mean],
        b(r.dispersion),
        b(r.total),
    )


user_days = st.floats(0, 200, allow_nan=False) | st.sampled_from([0.0, 1.0, 1.0039, 2.5, 1e-9])


@settings(max_examples=1500)
@given(
    st.dictionaries(st.integers(19_990, 20_060), user_days, max_size=45),
    st.integers(19_980, 20_050),
    st.integers(0, 40),
    st.frozensets(st.integers(19_985, 20_065), max_size=10) | st.just(frozenset()),
    st.integers(19_970, 20_060),
)
def test_the_compiled_rhythm_is_the_python_one_to_the_last_bit(
    u: dict[int, float], first: int, length: int, excluded: frozenset[int], since: int
) -> None:
    last = first + length - 1
    assert _bits(rhythm(u, first, last, excluded, since)) == _bits(
        python_rhythm(u, first, last, excluded, since)
    )


def test_a_known_rhythm() -> None:
    # Four weeks, active Monday to Friday with 3 user-days, one holiday Monday excluded.
    first = 20_003  # a Monday
    u = {d: 3.0 for d in range(first, first + 28) if (d + 3) % 7 < 5}
    r = rhythm(u, first, first + 27, frozenset({first + 7}), 0)
    assert (r.days, r.active_days, r.total) == (27, 19, 57.0)
    assert r.share[:5] == (0.95,) * 5
    assert r.share[5] == r.share[6] == (0 + 0.5 * (19.5 / 28)) / 4.5
    assert r.mean == (3.0, 3.0, 3.0, 3.0, 3.0, 0.0, 0.0)
    assert r.dispersion == 1.0
    assert _bits(r) == _bits(python_rhythm(u, first, first + 27, frozenset({first + 7}), 0))
    assert not math.isnan(r.total)


def test_scores_use_the_compiled_rhythm() -> None:
    assert rhythm_module._rhythm_parts is churnwatch_native.rhythm_parts
