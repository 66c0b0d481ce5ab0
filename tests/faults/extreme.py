"""Schema-valid events with extreme values, and their near misses, for the fault suite.

The malformed records of ``test_hostile_input`` break the schema; these keep to it (or miss a bound
by one) with values at the edges: integers past 64 bits, huge and tiny floats, long and unusual
Unicode, nesting at the limits, repeated ids, timestamps at the bounds, reserved events with
extreme facts. Seeded, so a run is reproducible; each value is written as the JSON a producer would
send (the standard library's writer, which, unlike orjson, writes integers past 64 bits).
"""

from __future__ import annotations

import json
import random
from typing import Any

from streamer.core.events import MAX_EVENT_MS, MAX_PROPERTY_DEPTH, MAX_SEATS, MIN_EVENT_MS

# The poison record of the issue that introduced these tests: accepted, then crash-looped the worker.
ISSUE_POISON = {
    "event_id": "poison-1",
    "account_id": "poison-acct",
    "event": "account_updated",
    "properties": {"seats": 9223372036854775808},
}

_INTS = [
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**100,
    -(2**63),
    -(2**63) - 1,
    -(2**100),
    MAX_SEATS,
    MAX_SEATS + 1,
]
_FLOATS = [1e308, -1e308, 5e-324, -0.0, 2.0**63, 1.7976931348623157e308, 1e-300]
_STRINGS = [
    "é" * 128,
    "😀" * 128,
    "😀" * 129,
    "\u202eevil",
    "\x00\x01\x1f",
    "a/b%2F c?d#e",
    "\ufeffbom",
    "𝔘" * 64,
    "x" * 5000,
    "<script>alert(1)</script>",
    "",
]
_RESERVED = [
    "account_updated",
    "nps_response",
    "support_ticket_opened",
    "support_ticket_closed",
    "subscription_started",
    "subscription_cancelled",
]


def _nested(depth: int, leaf: Any) -> Any:
    doc = leaf
    for i in range(depth):
        doc = {"k": doc} if i % 2 else [doc]
    return doc


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(_INTS)
    if kind == 1:
        return rng.choice(_FLOATS)
    if kind == 2:
        return rng.choice(_STRINGS)
    if kind == 3:
        leaves: list[Any] = [*_INTS, *_STRINGS]
        return _nested(MAX_PROPERTY_DEPTH - 2 + rng.randrange(4), rng.choice(leaves))
    if kind == 4:
        return [rng.choice(_INTS), rng.choice(_FLOATS), rng.choice(_STRINGS)]
    return {rng.choice(_STRINGS): rng.choice(_INTS)}


def extreme_event(i: int, rng: random.Random, now_ms: int) -> bytes:
    """The i-th extreme event: an account of its own (``xacct-…``), so valid traffic stays exact."""
    account = f"xacct-{i % 97}" if rng.random() < 0.8 else rng.choice(_STRINGS[:8]) + str(i % 7)
    name = rng.choice(_RESERVED + ["login", "Report Exported", rng.choice(_STRINGS)])
    props: dict[str, Any] = {f"p{j}": _value(rng) for j in range(rng.randrange(4))}
    if name == "account_updated":
        props["seats"] = rng.choice(_INTS + [rng.randrange(0, MAX_SEATS), 1.5, -1])
        for fact in ("plan", "segment", "name", "owner"):
            if rng.random() < 0.5:
                props[fact] = rng.choice(_STRINGS)
    elif name == "nps_response":
        props["score"] = rng.choice([0, 10, 11, -1, 2**64, 9.5])
    # Clearly inside the time bounds, or clearly outside: never racing the worker's future bound.
    at: Any = now_ms - rng.randrange(0, 3_600_000)
    if rng.random() < 0.4:
        at = rng.choice(
            [
                now_ms - rng.randrange(0, 40) * 86_400_000,
                MIN_EVENT_MS,
                MIN_EVENT_MS - 1,
                MAX_EVENT_MS - 1,
                MAX_EVENT_MS,
                "2000-01-01T00:00:00Z",
                "1999-12-31T23:59:59.999Z",
            ]
        )
    event_id = f"x-{i}" if rng.random() < 0.9 else f"x-{i - 1}"  # some repeat the previous id
    doc: dict[str, Any] = {
        "event_id": event_id,
        "account_id": account,
        "event": name,
        "timestamp": at,
        "user_id": rng.choice([None, "u", rng.choice(_STRINGS)]),
        "properties": props,
    }
    if rng.random() < 0.3:
        segment: dict[str, Any] = {
            "type": "group" if name == "account_updated" else "track",
            "messageId": event_id,
            "event": name,
            "userId": doc["user_id"] or "u",
            "timestamp": at,
            "context": {"groupId": account},
            "traits" if name == "account_updated" else "properties": props,
        }
        doc = segment
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()


def issue_poison(now_ms: int) -> bytes:
    """The issue's poison record, stamped ``now_ms``."""
    return json.dumps({**ISSUE_POISON, "timestamp": now_ms}).encode()
