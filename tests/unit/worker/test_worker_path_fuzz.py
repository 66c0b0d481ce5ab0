"""A fuzz target of the worker's whole path: parse → apply → encode → decode → snapshot → JSON.

Hypothesis writes schema-valid events with extreme values (integers past 64 bits, huge and tiny
floats, long and unusual Unicode, nesting at the limits, repeated and out-of-order ids, timestamps
at the bounds) and near-valid ones, as JSON bytes the way they arrive from Kafka, and runs them
through :class:`PartitionProcessor` with the clock moving between batches. Nothing may fail but the
documented rejection: every record is applied or dead-lettered with a schema reason, no failure is
isolated as poison (that would be a bug the schema let through), every stored state decodes to
what was encoded, and every snapshot and alert is JSON.

Runs in ``make test``: derandomized, a fixed number of examples, no deadline.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamer.core.events import MAX_EVENT_MS, MAX_PROPERTY_DEPTH, MAX_SEATS, MIN_EVENT_MS
from streamer.core.policy import load_policy
from streamer.core.state import decode_state, encode_state
from streamer.worker.processor import ACTIVITY_KEY_PREFIX, PartitionProcessor, Record
from tests.unit.worker.test_processor import Store

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
DAY_MS = 86_400_000
NOW = 1_780_000_000_000  # 2026-05-28

_big_ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(
        [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, MAX_SEATS, MAX_SEATS + 1, -1, 0, 10**30]
    ),
)
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 2.0**63, 1e-300]),
)
_unicode = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=130),
    st.sampled_from(["é" * 128, "😀" * 128, "\u202e", "\x00", "a/b%2F c", "\ufeff", "x" * 129, "𝔘" * 64]),
)
_scalars = st.none() | st.booleans() | _big_ints | _floats | _unicode


def _nested(depth: int, leaf: Any) -> Any:
    doc = leaf
    for i in range(depth):
        doc = {"k": doc} if i % 2 else [doc]
    return doc


_property_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=5),
    st.builds(
        _nested, st.integers(min_value=MAX_PROPERTY_DEPTH - 2, max_value=MAX_PROPERTY_DEPTH + 2), _scalars
    ),
    st.recursive(_scalars, lambda inner: st.dictionaries(_unicode, inner, max_size=3), max_leaves=8),
)
_reserved = st.sampled_from(
    [
        "account_updated",
        "nps_response",
        "support_ticket_opened",
        "support_ticket_closed",
        "subscription_started",
        "subscription_cancelled",
        "login",
        "report_exported",
    ]
)
_times = st.one_of(
    st.integers(min_value=NOW - 60 * DAY_MS, max_value=NOW),
    st.sampled_from(
        [MIN_EVENT_MS, MIN_EVENT_MS - 1, MAX_EVENT_MS - 1, MAX_EVENT_MS, NOW + 300_000, NOW + 300_001]
    ),
    st.sampled_from(
        ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59.999+00:00", "2026-05-27T23:59:59.9999999-12:00"]
    ),
)
_ids = st.one_of(st.sampled_from(["e1", "e2", "e3"]), _unicode)
_accounts = st.one_of(st.sampled_from(["acme", "globex", "é😀"]), _unicode)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(_reserved | _unicode)
    props: dict[str, Any] = draw(st.dictionaries(_unicode, _property_values, max_size=4))
    if name == "account_updated":
        props.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "seats": _big_ints | _floats,
                        "plan": _unicode,
                        "segment": _unicode,
                        "name": _unicode,
                        "owner": _unicode,
                    },
                )
            )
        )
    elif name == "nps_response":
        props["score"] = draw(st.integers(min_value=-5, max_value=15) | _big_ints)
    doc: dict[str, Any] = {
        "event_id": draw(_ids),
        "account_id": draw(_accounts),
        "event": name,
        "timestamp": draw(_times),
        "user_id": draw(st.none() | _unicode),
        "properties": props,
    }
    if draw(st.booleans()):
        message = {
            "type": draw(st.sampled_from(["track", "group", "identify", "page", "screen"])),
            "messageId": doc["event_id"],
            "event": name,
            "userId": doc["user_id"],
            "timestamp": doc["timestamp"],
            "context": {"groupId": doc["account_id"]},
            "properties" if name != "account_updated" else "traits": props,
        }
        return {k: v for k, v in message.items() if v is not None}
    return doc


def _to_json(doc: dict[str, Any]) -> bytes:
    # The standard library writes integers past 64 bits, which orjson refuses to write.
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@FUZZ
@given(
    batches=st.lists(st.lists(_event(), min_size=1, max_size=8), min_size=1, max_size=4),
    step=st.integers(0, 3),
)
def test_no_event_fails_the_worker_path_except_by_the_documented_rejection(
    batches: list[list[dict[str, Any]]], step: int
) -> None:
    proc = PartitionProcessor(
        0,
        load_policy("[alerts]\nquiet_after_days = 1\n"),
        lambda _: 0,
        allowed_lateness_ms=30_000,
        max_future_ms=300_000,
        flush_interval_ms=0,
    )
    store = Store()
    offset = 0
    for n, batch in enumerate(batches):
        now = NOW + n * step * DAY_MS
        records = []
        for doc in batch:
            records.append(Record(0, offset, None, _to_json(doc)))
            offset += 1
            if offset % 3 == 0:  # a re-sent record with the same id, out of order
                records.append(Record(0, offset, None, _to_json(doc)))
                offset += 1
        out = proc.process(records, store, now, backlog=n % 2 == 1)
        for outcome in out.outcomes:  # shown by --hypothesis-show-statistics
            event(f"outcome {outcome.split(':')[0]}")
        for _, reason in out.dead_letters:
            event(f"rejected on {reason.split(':')[0].split('.')[0]}")
        assert out.poison == {}, out.dead_letters
        assert not any(reason.startswith("processing failed") for _, reason in out.dead_letters)
        assert sum(out.outcomes.values()) - sum(
            v for k, v in out.outcomes.items() if k.startswith("alert:")
        ) == len(records)
        for _, snapshot in out.health:
            assert isinstance(orjson.loads(snapshot), dict)
        for alert, value in out.encoded_alerts:
            assert orjson.loads(value)["alert_id"] == alert.alert_id
        tick = proc.tick(now + DAY_MS, store, now + DAY_MS)
        assert tick.poison == {}
        writes = proc.flush(now)
        assert proc.flush_failures == 0
        for key, raw in writes.items():
            if not key.startswith(ACTIVITY_KEY_PREFIX):
                assert encode_state(decode_state(raw)) == raw
        store.data.update(writes)
