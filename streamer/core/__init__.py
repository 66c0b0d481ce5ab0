"""Pure domain core of churnwatch: event schema, rules, state, scoring and alerts.

Nothing in this package performs I/O or reads the clock; time is always passed in as
epoch milliseconds. The Kafka/HTTP adapters build on :mod:`streamer.core.engine`.
"""

from streamer.core.alerts import Alert, alert_to_dict, health_to_dict
from streamer.core.engine import (
    Outcome,
    advance,
    evaluate,
    mark_published,
    next_due_ms,
    record_event,
    snapshot_behind,
)
from streamer.core.events import (
    EventKind,
    InvalidEvent,
    UsageEvent,
    encode_event,
    parse_event,
    parse_event_time,
)
from streamer.core.policy import Policy, PolicyError, PolicySet, load_policy
from streamer.core.scoring import Component, Health, health_changed_materially, score
from streamer.core.state import AccountState, DayBucket, decode_state, encode_state, estimate_distinct

__all__ = [
    "AccountState",
    "Alert",
    "Component",
    "DayBucket",
    "EventKind",
    "Health",
    "InvalidEvent",
    "Outcome",
    "Policy",
    "PolicyError",
    "PolicySet",
    "UsageEvent",
    "advance",
    "alert_to_dict",
    "decode_state",
    "encode_event",
    "encode_state",
    "estimate_distinct",
    "evaluate",
    "health_changed_materially",
    "health_to_dict",
    "load_policy",
    "mark_published",
    "next_due_ms",
    "parse_event",
    "parse_event_time",
    "record_event",
    "score",
    "snapshot_behind",
]
