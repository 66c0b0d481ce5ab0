"""The compiled RFC 3339 parser against the Python reference (a regular expression, then fromisoformat)."""

from __future__ import annotations

import churnwatch_native
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import events
from streamer.core.events import python_rfc3339_ms

# Mostly well-formed timestamps with every field free to be out of range, and characters that look like
# digits or separators but are not the ASCII ones.
_digit = st.sampled_from("0123456789") | st.sampled_from("٣２x ")


def _num(n: int) -> st.SearchStrategy[str]:
    return st.lists(_digit, min_size=n, max_size=n).map("".join) | st.integers(0, 10**n - 1).map(
        lambda v: str(v).zfill(n)
    )


timestamps = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{off}",
    _num(4),
    _num(2),
    _num(2),
    st.sampled_from("Tt x"),
    _num(2),
    _num(2),
    _num(2),
    st.none().map(lambda _: "") | st.text("0123456789", max_size=9).map(lambda f: "." + f),
    st.sampled_from(["Z", "z", "", "Z\n", "+00:00"])
    | st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _num(2), _num(2)),
)


@settings(max_examples=3000)
@given(timestamps)
def test_the_compiled_parser_reads_every_timestamp_as_the_python_one(value: str) -> None:
    assert churnwatch_native.rfc3339_ms(value) == python_rfc3339_ms(value)


@settings(max_examples=1000)
@given(st.text(max_size=40))
def test_the_compiled_parser_refuses_what_the_python_one_refuses(value: str) -> None:
    assert churnwatch_native.rfc3339_ms(value) == python_rfc3339_ms(value)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01t00:00:00.9999999z", 1_767_225_600_999),
        ("2024-02-29 12:00:00+01:30", 1_709_202_600_000),
        ("2026-01-01T00:00:00-00:60", 1_767_229_200_000),  # minutes are not checked, only the total
        ("0001-01-01T00:00:00+23:59", -62_135_683_140_000),
        ("2026-02-29T00:00:00Z", None),
        ("2026-01-01T23:59:60Z", None),
        ("2026-01-01T00:00:00+23:60", None),
        ("0000-01-01T00:00:00Z", None),
        ("2026-01-01T00:00:00.Z", None),
        ("2026-01-01T00:00:00\\ud800Z", None),
    ],
)
def test_known_timestamps(value: str, ms: int | None) -> None:
    value = value.encode().decode("unicode_escape", "surrogatepass") if "\\u" in value else value
    assert churnwatch_native.rfc3339_ms(value) == ms
    assert python_rfc3339_ms(value) == ms


def test_events_are_parsed_by_the_compiled_parser() -> None:
    assert events.rfc3339_ms is churnwatch_native.rfc3339_ms
