"""Bounded per-account state and its compact binary encoding.

An account keeps at most ``window_days`` daily buckets (days older than the window of
its newest day are evicted), a fixed-size ring of event-id hashes for deduplication and a
handful of facts, so its size is bounded regardless of traffic.

Distinct users and features are estimated with linear-counting sketches: each bucket has
a 128-bit user bitmap and a 64-bit feature bitmap, and distinct counts over several days
come from the OR of the bitmaps.

Encoding (version 2, little endian): a fixed header, the account id and four fact strings
(uint16 length + UTF-8, at most 128 characters so at most 512 bytes each), the buckets
(uint16 count + 40 bytes each) and the ring (uint16 count + 8 bytes each). Worst case with
the default policy (35 buckets, 64 ring entries) and 4-byte characters everywhere::

    header 147 + account id 514 + 4 facts * (522 incl. timestamp) + buckets 2 + 35*40
    + ring 2 + 64*8 = 4665 bytes

Version 2 added the next due time to the header, so a restarted worker rebuilds its schedule
from :func:`peek_state` without decoding every state; version 1 states still decode.

A typical ASCII account with a full window is about 2.1 KB; a fresh one about 250 bytes.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

__all__ = [
    "COMPONENT_NAMES",
    "AccountState",
    "DayBucket",
    "bit_for",
    "check_encodable",
    "clone_state",
    "decode_state",
    "encode_state",
    "estimate_distinct",
    "event_id_hash",
    "peek_state",
]

USER_BITS = 128
FEATURE_BITS = 64
STATE_VERSION = 2
COMPONENT_NAMES = ("activity", "recency", "utilization", "breadth", "sentiment")
FACT_STRINGS = ("plan", "segment", "name", "owner")
_BANDS = (None, "good", "average", "poor")
_NONE = -(2**63)  # sentinel for an absent int64 timestamp
_U32_MAX = 2**32 - 1

# version, first_seen, clock, offset, last_activity, nps_at, nps_score, open_tickets,
# sub_started, sub_cancelled, quiet_since, drop_since, flags (1 poor_open, 2 unpublished), last_band,
# published score, published band, 5 published component values, seats, seats_at, then (version 2)
# the next due time
_HEADER_V1 = struct.Struct("<B4qqbi4qBBhB5dqq")
_HEADER = struct.Struct("<B4qqbi4qBBhB5dqqq")
_PEEK = struct.Struct("<B4qqbi4qBBhB")  # up to the published band
_STR = struct.Struct("<H")
_STR_NONE = 0xFFFF
_RING = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U64 = 2**64 - 1


@functools.lru_cache(maxsize=64)
def _buckets_struct(n: int) -> struct.Struct:
    # One struct call for all buckets: day, events, weight, users (low, high 64 bits), features.
    return struct.Struct("<" + "iIdQQQ" * n)


@functools.lru_cache(maxsize=64)
def _ring_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}Q")


def _blake64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def event_id_hash(event_id: str) -> int:
    """Return the stable unsigned 64-bit hash used to deduplicate an event id."""
    return _blake64(event_id)


def bit_for(value: str, bits: int) -> int:
    """Return the sketch bit (as a mask) for a value in a bitmap of ``bits`` bits.

    Uses a keyed-free stable hash so that the same value maps to the same bit in every
    process (Python's ``hash()`` is salted per process).
    """
    return 1 << (_blake64(value) % bits)


def estimate_distinct(bitmap: int, bits: int) -> float:
    """Estimate the number of distinct values recorded in a linear-counting bitmap.

    Args:
        bitmap: The OR of the per-value bits.
        bits: Bitmap size ``m``.

    Returns:
        ``-m ln(zeros/m)``, or the saturation estimate ``m ln m`` when every bit is set.
    """
    zeros = bits - bitmap.bit_count()
    if zeros == bits:
        return 0.0
    if zeros == 0:
        return bits * math.log(bits)
    return -bits * math.log(zeros / bits)


class DayBucket(NamedTuple):
    """Activity of one UTC day.

    Immutable: an update replaces the bucket, so copying a state's ``days`` dict copies its buckets
    (see :func:`clone_state`).
    """

    events: int = 0
    weight: float = 0.0
    users: int = 0
    features: int = 0


@dataclass(slots=True)
class AccountState:
    """Everything the engine remembers about one account."""

    account_id: str
    first_seen_ms: int
    clock_ms: int
    last_activity_ms: int | None = None
    days: dict[int, DayBucket] = field(default_factory=dict)
    seats: int | None = None
    plan: str | None = None
    segment: str | None = None
    name: str | None = None
    owner: str | None = None
    # Each fact keeps the time of the event that set it, so older updates never win.
    facts_at_ms: dict[str, int] = field(default_factory=dict)
    nps_score: int | None = None
    nps_at_ms: int | None = None
    # Net opened-minus-closed; may dip below zero transiently when a close arrives first.
    open_tickets: int = 0
    subscription_started_ms: int | None = None
    subscription_cancelled_ms: int | None = None
    recent_ids: list[int] = field(default_factory=list)
    applied_offset: int = -1
    quiet_since_ms: int | None = None
    drop_since_ms: int | None = None
    poor_open: bool = False
    # Changed since the last published health snapshot (publication was deferred during a backlog).
    unpublished: bool = False
    last_band: str | None = None
    published_score: int | None = None
    published_band: str | None = None
    published_components: dict[str, float] = field(default_factory=dict)
    # When the engine must next look at the account with no new events (see engine.next_due_ms), as
    # last scheduled; stored so that a restart can rebuild its schedule without decoding the state.
    due_ms: int | None = None

    @property
    def subscription(self) -> str | None:
        """``'active'``, ``'cancelled'`` or None, from the newest subscription event."""
        started, cancelled = self.subscription_started_ms, self.subscription_cancelled_ms
        if cancelled is not None and (started is None or cancelled >= started):
            return "cancelled"
        return "active" if started is not None else None


_FIELDS = tuple(f.name for f in fields(AccountState))
_CONTAINERS = ("days", "facts_at_ms", "recent_ids", "published_components")


def _make_clone() -> Any:
    # Generated once: a plain constructor call with every field is about twice as fast as copy.copy,
    # and this runs once per applied event.
    args = ", ".join(f"{name}=s.{name}" for name in _FIELDS if name not in _CONTAINERS)
    source = (
        "def clone_state(s):\n"
        f"    return AccountState({args}, days=dict(s.days), facts_at_ms=dict(s.facts_at_ms),"
        " recent_ids=list(s.recent_ids), published_components=dict(s.published_components))\n"
    )
    namespace: dict[str, Any] = {"AccountState": AccountState}
    exec(source, namespace)  # noqa: S102 - fixed source built from the dataclass's own field names
    return namespace["clone_state"]


_clone = _make_clone()


def clone_state(s: AccountState) -> AccountState:
    """An independent copy of ``s``: changing one never changes the other (buckets are immutable)."""
    copy: AccountState = _clone(s)
    return copy


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def check_encodable(s: AccountState) -> None:
    """Raise ValueError, naming the field, if :func:`encode_state` could not encode ``s``.

    Cheap (a few comparisons), so the worker runs it after every event: a value that slipped past the
    event schema is then caught with the event that brought it, not at the next flush.
    """
    for name in ("first_seen_ms", "clock_ms", "applied_offset"):
        if not _I64_MIN <= getattr(s, name) <= _I64_MAX:
            raise ValueError(f"state field {name} out of range")
    for name in (
        "last_activity_ms",
        "nps_at_ms",
        "subscription_started_ms",
        "subscription_cancelled_ms",
        "quiet_since_ms",
        "drop_since_ms",
        "seats",
        "due_ms",
    ):
        v = getattr(s, name)
        # The lowest int64 stands for "absent" in the encoding, so it is not a value of its own.
        if v is not None and not _I64_MIN < v <= _I64_MAX:
            raise ValueError(f"state field {name} out of range")
    if s.nps_score is not None and not 0 <= s.nps_score <= 127:
        raise ValueError("state field nps_score out of range")
    if not _I32_MIN <= s.open_tickets <= _I32_MAX:
        raise ValueError("state field open_tickets out of range")
    if s.published_score is not None and not 0 <= s.published_score < 2**15:
        raise ValueError("state field published_score out of range")
    for name in ("account_id", *FACT_STRINGS):
        v = getattr(s, name)
        if v is not None and len(v) * 4 >= _STR_NONE and len(v.encode()) >= _STR_NONE:
            raise ValueError(f"state field {name} too long")
    for key, at in s.facts_at_ms.items():
        if not _I64_MIN < at <= _I64_MAX:
            raise ValueError(f"state field facts_at_ms.{key} out of range")
    if len(s.days) >= _STR_NONE or len(s.recent_ids) >= _STR_NONE:
        raise ValueError("state has too many buckets or ids")


def _opt(v: int | None) -> int:
    return _NONE if v is None else v


def _unopt(v: int) -> int | None:
    return None if v == _NONE else v


def _signed(v: int) -> int:
    return v - 2**64 if v >= 2**63 else v


def _put_str(out: list[bytes], s: str | None) -> None:
    if s is None:
        out.append(_STR.pack(_STR_NONE))
        return
    raw = s.encode()
    if len(raw) >= _STR_NONE:
        raise ValueError("string too long to encode")
    out.append(_STR.pack(len(raw)))
    out.append(raw)


def encode_state(s: AccountState) -> bytes:
    """Serialise an account state into the compact binary form (see module docstring).

    Args:
        s: The state.

    Returns:
        The encoded bytes, starting with the version byte.
    """
    comps = [s.published_components.get(n, math.nan) for n in COMPONENT_NAMES]
    if set(s.published_components) - set(COMPONENT_NAMES):
        raise ValueError("unknown published component")
    out = [
        _HEADER.pack(
            STATE_VERSION,
            s.first_seen_ms,
            s.clock_ms,
            s.applied_offset,
            _opt(s.last_activity_ms),
            _opt(s.nps_at_ms),
            -1 if s.nps_score is None else s.nps_score,
            s.open_tickets,
            _opt(s.subscription_started_ms),
            _opt(s.subscription_cancelled_ms),
            _opt(s.quiet_since_ms),
            _opt(s.drop_since_ms),
            int(s.poor_open) | (2 if s.unpublished else 0),
            _BANDS.index(s.last_band),
            -1 if s.published_score is None else s.published_score,
            _BANDS.index(s.published_band),
            *comps,
            _opt(s.seats),
            _opt(s.facts_at_ms.get("seats")),
            _opt(s.due_ms),
        )
    ]
    _put_str(out, s.account_id)
    for key in FACT_STRINGS:
        _put_str(out, getattr(s, key))
        out.append(_RING.pack(_opt(s.facts_at_ms.get(key)) & (2**64 - 1)))
    out.append(_STR.pack(len(s.days)))
    days = s.days
    flat = [
        field
        for day in sorted(days)
        for b in (days[day],)
        for field in (day, min(b.events, _U32_MAX), b.weight, b.users & _U64, b.users >> 64, b.features)
    ]
    out.append(_buckets_struct(len(days)).pack(*flat))
    out.append(_STR.pack(len(s.recent_ids)))
    out.append(_ring_struct(len(s.recent_ids)).pack(*s.recent_ids))
    return b"".join(out)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def take(self, st: struct.Struct) -> tuple[Any, ...]:
        vals = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return vals

    def count(self) -> int:
        n: int = self.take(_STR)[0]
        return n

    def string(self) -> str | None:
        n = self.count()
        if n == _STR_NONE:
            return None
        raw = self.buf[self.pos : self.pos + n]
        if len(raw) != n:
            raise ValueError("truncated state")
        self.pos += n
        return raw.decode()


def decode_state(b: bytes) -> AccountState:
    """Deserialise bytes produced by :func:`encode_state`.

    Args:
        b: Encoded state.

    Returns:
        The account state.

    Raises:
        ValueError: On an unknown version or truncated/corrupt input.
    """
    if not b or b[0] not in (1, STATE_VERSION):
        raise ValueError(f"unsupported state version {b[:1]!r}")
    r = _Reader(b)
    try:
        h = r.take(_HEADER if b[0] == STATE_VERSION else _HEADER_V1)
        account_id = r.string()
        if account_id is None:
            raise ValueError("missing account id")
        s = AccountState(account_id=account_id, first_seen_ms=h[1], clock_ms=h[2])
        s.applied_offset, s.last_activity_ms, s.nps_at_ms = h[3], _unopt(h[4]), _unopt(h[5])
        s.nps_score = None if h[6] == -1 else h[6]
        s.open_tickets = h[7]
        s.subscription_started_ms, s.subscription_cancelled_ms = _unopt(h[8]), _unopt(h[9])
        s.quiet_since_ms, s.drop_since_ms = _unopt(h[10]), _unopt(h[11])
        s.poor_open, s.unpublished, s.last_band = bool(h[12] & 1), bool(h[12] & 2), _BANDS[h[13]]
        s.published_score = None if h[14] == -1 else h[14]
        s.published_band = _BANDS[h[15]]
        comps = zip(COMPONENT_NAMES, h[16:21], strict=True)
        s.published_components = {n: v for n, v in comps if not math.isnan(v)}
        s.seats = _unopt(h[21])
        s.due_ms = _unopt(h[23]) if len(h) > 23 else None
        if h[22] != _NONE:
            s.facts_at_ms["seats"] = h[22]
        for key in FACT_STRINGS:
            setattr(s, key, r.string())
            at = _signed(r.take(_RING)[0])
            if at != _NONE:
                s.facts_at_ms[key] = at
        it = iter(r.take(_buckets_struct(r.count())))
        s.days = {
            day: DayBucket(events, weight, low | (high << 64), features)
            for day, events, weight, low, high, features in zip(it, it, it, it, it, it, strict=True)
        }
        s.recent_ids = list(r.take(_ring_struct(r.count())))
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt state: {err}") from None
    if r.pos != len(b):
        raise ValueError("trailing bytes in state")
    return s


def peek_state(b: bytes) -> tuple[int | None, str | None, bool] | None:
    """``(due_ms, published_band, unpublished)`` read from the header alone, or None for a version 1 state.

    A restarted worker needs only these to rebuild its schedule and band counts; reading them costs a
    fraction of :func:`decode_state`.
    """
    if len(b) < _HEADER.size or b[0] != STATE_VERSION:
        return None
    h = _PEEK.unpack_from(b)
    (due,) = _I64.unpack_from(b, _HEADER.size - 8)
    return _unopt(due), _BANDS[h[15]], bool(h[12] & 2)
