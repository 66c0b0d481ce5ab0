"""The compiled parser of the common event shape against the Python reference.

Whatever it accepts must be read by ``python_parse_event`` as the same event (equal, of the same types);
whatever else it must decline, so that the reference reads it and gives its own error.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import events
from streamer.core.events import MAX_EVENT_MS, MIN_EVENT_MS, InvalidEvent, UsageEvent, python_parse_event

FIELDS = ["event_id", "account_id", "event", "timestamp", "user_id", "properties", "active", "kind"]
T = 1_780_000_000_000


def _fast(raw: bytes) -> UsageEvent | None:
    assert events._native_parse is not None, "churnwatch_native is not built: run `make install`"
    return events._native_parse(raw)


def _typed(e: UsageEvent) -> tuple[Any, ...]:
    values = (
        e.event_id,
        e.account_id,
        e.name,
        e.occurred_at_ms,
        e.user_id,
        e.properties,
        e.active,
        e.kind,
    )
    return tuple((type(v), v) for v in values)


texts = (
    st.text(min_size=0, max_size=130)
    | st.sampled_from(["e1", "acct-0001", "login", "x" * 128, "x" * 129, "é" * 128, "😀" * 128, "😀" * 129])
    | st.sampled_from(["account_updated", "nps_response", "subscription_cancelled", "activity", "\x00"])
)
times = (
    st.integers(MIN_EVENT_MS - 2, MIN_EVENT_MS + 2)
    | st.integers(MAX_EVENT_MS - 2, MAX_EVENT_MS + 2)
    | st.integers(-(2**63), 2**64 + 5)
    | st.just(T)
    | st.sampled_from(
        [
            "2026-05-28T10:00:00Z",
            "2026-05-28T10:00:00.123+05:30",
            "2026-05-28 10:00:00z",
            "2026-05-28T10:00:00",
            "1999-12-31T23:59:59.999Z",
            "2100-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
        ]
    )
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = (
    texts | times | st.booleans() | st.none() | st.sampled_from([{}, {"plan": "pro"}, {"score": 3}, [], [1]])
)
valid_texts = st.text(min_size=1, max_size=24) | st.sampled_from(["x" * 128, "é" * 128, "😀" * 128, "login"])
valid_times = st.integers(MIN_EVENT_MS, MAX_EVENT_MS - 1) | st.sampled_from(
    ["2026-05-28T10:00:00Z", "2026-05-28T10:00:00.123+05:30", "2026-05-28 10:00:00z"]
)
# Each field mostly valid (so that many documents are read), now and then anything.
per_field: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "event_id": (valid_texts, values),
    "account_id": (valid_texts, values),
    "event": (valid_texts | st.sampled_from(["account_updated", "nps_response"]), values),
    "timestamp": (valid_times, times | values),
    "user_id": (st.none() | valid_texts, values),
    "properties": (st.sampled_from([None, {}]), st.sampled_from([{"a": 1}, {"a": {}}, []]) | values),
    "active": (st.booleans(), values),
    "kind": (st.just("activity"), st.sampled_from(["nps_response", "bogus", None, 1])),
}


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {}
    for name in FIELDS:
        required = name in ("event_id", "account_id", "event", "timestamp")
        if draw(st.integers(0, 19)) < (19 if required else 7):
            valid, anything = per_field[name]
            doc[name] = draw(valid if draw(st.integers(0, 9)) < 9 else anything)
    if draw(st.integers(0, 19)) == 0:
        doc[draw(st.sampled_from(["type", "specversion", "foo", "Event_id"]))] = "track"
    text = json.dumps(
        doc, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([None, (",", ":")]))
    )
    # Now and then a field given twice, bytes after the document, or one byte changed.
    twice = draw(st.sampled_from([None] * 12 + FIELDS))
    if twice is not None and text != "{}":
        text = text[:-1] + f', "{twice}": "again"' + "}"
    after = draw(st.sampled_from(["", "", "", "", " \n", "x", "}"]))
    raw = (draw(st.sampled_from(["", " ", "\n"])) + text + after).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    return raw


@settings(max_examples=4000)
@given(documents())
def test_what_the_compiled_parser_accepts_the_reference_reads_alike(raw: bytes) -> None:
    fast = _fast(raw)
    if fast is None:
        return
    assert _typed(fast) == _typed(python_parse_event(raw))


COMMON = [
    {"event_id": "e1", "account_id": "a", "event": "login", "timestamp": T},
    {"event_id": "e1", "account_id": "a", "event": "login", "timestamp": "2026-05-28T10:00:00.5+02:00"},
    {"event_id": "é" * 128, "account_id": "😀", "event": "login", "timestamp": MIN_EVENT_MS, "user_id": None},
    {"event_id": "e1", "account_id": "a", "event": "x", "timestamp": MAX_EVENT_MS - 1, "user_id": "u\x00"},
    {
        "event_id": "e1",
        "account_id": "a",
        "event": "login",
        "timestamp": T,
        "properties": {},
        "active": False,
    },
    {"event_id": "e1", "account_id": "a", "event": "nps_response", "timestamp": T, "kind": "activity"},
    {"event_id": "e1", "account_id": "a", "event": "login", "timestamp": T, "properties": None},
]


@pytest.mark.parametrize("doc", COMMON)
def test_the_common_shape_is_read_by_the_compiled_parser(doc: dict[str, Any]) -> None:
    raw = orjson.dumps(doc)
    fast = _fast(raw)
    assert fast is not None
    assert _typed(fast) == _typed(python_parse_event(raw))


DECLINED = [
    b'{"event_id": "e1", "account_id": "a", "event": "login", "timestamp": 1780000000000, "event_id": "e2"}',
    b'{"event_id": "e1", "account_id": "a", "event": "login", "timestamp": 1780000000000, "type": "track"}',
    orjson.dumps(
        {"event_id": "e1", "account_id": "a", "event": "login", "timestamp": T, "properties": {"a": 1}}
    ),
    orjson.dumps({"event_id": "e1", "account_id": "a", "event": "nps_response", "timestamp": T}),
    orjson.dumps({"event_id": "e1", "account_id": "a", "event": "login", "timestamp": T, "kind": None}),
    orjson.dumps({"event_id": "e1", "account_id": "a", "event": "login", "timestamp": float(T)}),
    orjson.dumps({"event_id": "e1", "account_id": "a", "event": "login", "timestamp": MAX_EVENT_MS}),
    orjson.dumps({"event_id": "x" * 129, "account_id": "a", "event": "login", "timestamp": T}),
    orjson.dumps({"event_id": "", "account_id": "a", "event": "login", "timestamp": T}),
    orjson.dumps({"event_id": "e1", "account_id": "a", "event": "login", "timestamp": T, "active": None}),
    b'{"event_id": "\\ud800", "account_id": "a", "event": "login", "timestamp": 1780000000000}',
    b'{"event_id": "e1", "account_id": "a", "event": "login", "timestamp": 1780000000000} x',
    b'[{"event_id": "e1"}]',
]


@pytest.mark.parametrize("raw", DECLINED)
def test_the_rest_is_declined_and_read_by_the_reference(raw: bytes) -> None:
    assert _fast(raw) is None
    try:
        expected: Any = _typed(python_parse_event(raw))
    except InvalidEvent as err:
        expected = str(err)
    try:
        got: Any = _typed(events.parse_event(raw))
    except InvalidEvent as err:
        got = str(err)
    assert got == expected
