"""A bounded fuzz target for the decoder: whatever the bytes, a valid event or InvalidEvent, nothing else.

Runs in CI with ``make test``: derandomized, a fixed number of examples, no deadline.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.core.events import MAX_EVENT_MS, MAX_LEN, MIN_EVENT_MS, InvalidEvent, UsageEvent, parse_event

FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_field_values = (
    _json
    | st.text(min_size=0, max_size=200)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from(
        [
            "2026-11-22T09:15:00+01:00",
            "2026-11-22T09:15:00Z",
            "2026-11-22 09:15:00",
            "1970-01-01T00:00:00Z",
            "3000-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T25:00:00Z",
            "nps_response",
            "account_updated",
            "track",
            "group",
            "identify",
            "page",
            "screen",
        ]
    )
)
_native_keys = ["event_id", "account_id", "event", "timestamp", "user_id", "properties", "active", "kind"]
_segment_keys = [
    "type",
    "messageId",
    "event",
    "userId",
    "anonymousId",
    "groupId",
    "timestamp",
    "originalTimestamp",
    "properties",
    "traits",
    "context",
]


def _valid_native() -> st.SearchStrategy[dict[str, Any]]:
    ident = st.text(min_size=1, max_size=MAX_LEN)
    return st.fixed_dictionaries(
        {
            "event_id": ident,
            "account_id": ident,
            "event": ident,
            "timestamp": st.integers(min_value=MIN_EVENT_MS, max_value=MAX_EVENT_MS - 1),
        }
    )


def _mutate(base: st.SearchStrategy[dict[str, Any]], keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Near-valid documents: a valid or plausible base with fields replaced, added or removed."""

    def apply(doc: dict[str, Any], changes: dict[str, Any], drop: list[str]) -> dict[str, Any]:
        out = {**doc, **changes}
        for key in drop:
            out.pop(key, None)
        return out

    return st.builds(
        apply,
        base,
        st.dictionaries(st.sampled_from(keys), _field_values, max_size=3),
        st.lists(st.sampled_from(keys), max_size=2),
    )


_segment_base = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "group", "identify", "page", "screen"]),
        "messageId": st.text(min_size=1, max_size=20),
        "event": st.text(min_size=1, max_size=20),
        "timestamp": st.just("2026-11-22T08:15:00Z"),
        "context": st.fixed_dictionaries({"groupId": st.text(min_size=1, max_size=20)}) | _json,
    }
)


def _check(raw: bytes | str | dict[str, Any]) -> None:
    try:
        parsed = parse_event(raw)
    except InvalidEvent as err:
        assert err.field and err.rule
        return
    assert isinstance(parsed, UsageEvent)
    assert 0 < len(parsed.event_id) <= MAX_LEN and 0 < len(parsed.account_id) <= MAX_LEN
    assert MIN_EVENT_MS <= parsed.occurred_at_ms < MAX_EVENT_MS


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@FUZZ
@given(st.text(max_size=256))
def test_arbitrary_text(raw: str) -> None:
    _check(raw)


@FUZZ
@given(_mutate(_valid_native(), _native_keys))
def test_near_valid_native_documents(doc: dict[str, Any]) -> None:
    _check(doc)
    _check(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) if _encodable(doc) else b"{}")


@FUZZ
@given(_mutate(_segment_base, _segment_keys))
def test_near_valid_segment_documents(doc: dict[str, Any]) -> None:
    _check(doc)
    if _encodable(doc):
        _check(orjson.dumps(doc))


@FUZZ
@given(_mutate(_valid_native(), _native_keys), st.integers(min_value=0, max_value=400))
def test_truncated_and_corrupted_json(doc: dict[str, Any], cut: int) -> None:
    if not _encodable(doc):
        return
    raw = orjson.dumps(doc)
    _check(raw[:cut])
    _check(raw[:cut] + b"\xff" + raw[cut:])


def _encodable(doc: Any) -> bool:
    try:
        orjson.dumps(doc)
    except TypeError:  # orjson refuses integers beyond 64 bits: not a JSON input the worker can receive
        return False
    return True
