"""Bounded per-account state and its compact binary encoding.

An account keeps at most ``window_days`` daily buckets (days older than the window of
its newest day are evicted), a fixed-size ring of event-id hashes for deduplication and a
handful of facts, so its size is bounded regardless of traffic.

Distinct users and features are estimated with linear-counting sketches: each bucket has
a 128-bit user bitmap and a 64-bit feature bitmap, and distinct counts over several days
come from the OR of the bitmaps.

Encoding (version 6, little endian): a fixed header, the account id and four fact strings
(uint16 length + UTF-8, at most 128 characters so at most 512 bytes each), the buckets
(uint16 count + 40 bytes each), the ring (uint16 count + 8 bytes each), then the episode
extension (key user, pending episodes, the drop test's frozen baseline, what the last published
snapshot showed: 117 bytes) and the top users (uint8 count + 24 bytes each), and the weekly
history (int32 + uint8 count + 13 bytes a week), then the revenue facts: ARR (double, NaN when
unknown), renewal time, the four facts' timestamps, currency and contract (uint16 length + UTF-8),
then the scored days (uint8 count + 37 bytes each: day, score, 8 components' value and contribution),
then the onboarding progress: the first activity time (int64), what the last published
snapshot showed of it (uint16) and one entry per milestone (uint8 count; a 32-bit hash of its name,
when it was reached, how many matching events were counted, whether its miss was alerted, and the
distinct users seen so far as 32-bit hashes: 16 + 4 bytes each).
Worst case with the default policy (42 buckets: the window is pruned a whole week at a time, 64 ring
entries, 5 top users, 8 weeks, 8 scored days) and 4-byte characters everywhere::

    header 163 + account id 514 + 4 facts * (522 incl. timestamp) + buckets 2 + 42*40
    + ring 2 + 64*8 + extension 117 + top users 1 + 5*24 + history 5 + 8*13
    + revenue 48 + currency 5 + contract 514 + scored days 1 + 8*37 + onboarding 8 + 2 + 1 = 6183 bytes

plus, with milestones configured (at most 16, each counting at most 16 users), at most
16 * (16 + 16*4) = 1280 bytes more of onboarding progress: 7463 bytes in all.

Version 2 added the next due time to the header, so a restarted worker rebuilds its schedule
from :func:`peek_state` without decoding every state; version 3 the user-based signals; version 4
the last activity and the episodes the last published snapshot showed, and the revenue facts; version 5
the scored days (:mod:`streamer.core.changes`); version 6 the onboarding progress. Versions 1 to 5 still
decode: a version 5 state with no onboarding progress yet; a version 4 one also with no scored days;
a version 1 to 3 one also as if its snapshot had shown nothing (what it showed is unknown), so the
account's snapshot is republished the next time the worker looks at it.

A typical ASCII account with a full window is about 2.7 KB; a fresh one about 300 bytes.

The functions here are the format's definition. Where the ``churnwatch_native`` extension is installed
(``native/``, built by ``make install``), :func:`encode_state`, :func:`decode_state` (of a current
state), :func:`clone_state` and :func:`check_encodable` are its compiled versions, which must agree
with the ``python_`` ones (tests/unit/core/test_native_codec.py).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from streamer.core.policy import Band

if TYPE_CHECKING:
    from churnwatch_native import Codec

__all__ = [
    "COMPONENT_NAMES",
    "AccountState",
    "DayBucket",
    "MilestoneProgress",
    "SCORED_COMPONENTS",
    "Scored",
    "TopUser",
    "bit_for",
    "check_encodable",
    "clone_state",
    "decode_state",
    "encode_state",
    "estimate_distinct",
    "event_id_hash",
    "milestone_key",
    "peek_state",
    "python_blake64",
    "python_check_encodable",
    "python_clone_state",
    "python_decode_state",
    "python_encode_state",
    "NATIVE_CODEC",
]

USER_BITS = 128
FEATURE_BITS = 64
STATE_VERSION = 6
TOP_USERS = 5
HISTORY_WEEKS = 8
COMPONENT_NAMES = ("recency", "activity", "users", "stickiness", "utilization", "breadth", "sentiment")
# The components a scored day keeps (what changed): those above and the onboarding milestones'.
SCORED_COMPONENTS = (*COMPONENT_NAMES, "onboarding")
_V2_COMPONENTS = ("activity", "recency", "utilization", "breadth", "sentiment")
FACT_STRINGS = ("plan", "segment", "name", "owner")
_BANDS = (None, Band.GOOD, Band.AVERAGE, Band.POOR)
_NONE = -(2**63)  # sentinel for an absent int64 timestamp
_U32_MAX = 2**32 - 1

# version, first_seen, clock, offset, last_activity, nps_at, nps_score, open_tickets,
# sub_started, sub_cancelled, quiet_since, drop_since, flags (1 poor_open, 2 unpublished), last_band,
# published score, published band, 5 published component values, seats, seats_at, then (version 2)
# the next due time
_HEADER_V1 = struct.Struct("<B4qqbi4qBBhB5dqq")
_HEADER_V2 = struct.Struct("<B4qqbi4qBBhB5dqqq")
_HEADER = struct.Struct("<B4qqbi4qBBhB7dqqq")
# flags (1 key user set, 2 published poor), key user, key episode start, drop pending day, poor pending
# since, drop dispersion, 7 weekday means, then (version 4) the published last activity, quiet since and
# drop since. Doubles, like every float of the state: a state that stays in memory and one read back
# from the store must judge alike.
_EXTENSION_V3 = struct.Struct("<BQqiqd7d")
_EXTENSION = struct.Struct("<BQqiqd7dqqq")
_TOP_USER = struct.Struct("<Qdii")
_WEEK = struct.Struct("<idB")
# arr (NaN: unknown), renewal_ms, then when each revenue fact was set
_REVENUE = struct.Struct("<dq4q")
REVENUE_FACTS = ("arr", "currency", "renewal_at", "contract")
_NO_DAY = -(2**31)
# day, score, then per component of COMPONENT_NAMES its value and contribution in tenths
_SCORED = struct.Struct(f"<iB{4 * len(SCORED_COMPONENTS)}s")
_PEEK = struct.Struct("<B4qqbi4qBBhB")  # up to the published band
_STR = struct.Struct("<H")
_STR_NONE = 0xFFFF
_RING = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U8 = struct.Struct("<B")
_I32 = struct.Struct("<i")
_U64 = 2**64 - 1
# Onboarding progress (version 6): first activity, what the published snapshot showed, then per
# milestone its key, reached at, events counted, flags (1: its miss was alerted), how many user hashes follow.
_PROGRESS = struct.Struct("<qHB")
_MILESTONE = struct.Struct("<IqHBB")
_U16_MAX = 2**16 - 1
_COMPONENT_SET = frozenset(COMPONENT_NAMES)
_NO_BASE = (math.nan,) * 7


@functools.lru_cache(maxsize=64)
def _buckets_struct(n: int) -> struct.Struct:
    # One struct call for all buckets: day, events, weight, users (low, high 64 bits), features.
    return struct.Struct("<" + "iIdQQQ" * n)


def id_ring(ids: Iterable[int]) -> bytes:
    """``recent_ids`` holding the 64-bit hashes ``ids``, oldest first."""
    return b"".join(i.to_bytes(8, "little") for i in ids)


def ring_ids(ring: bytes) -> list[int]:
    """The 64-bit hashes in ``recent_ids``, oldest first."""
    return [int.from_bytes(ring[i : i + 8], "little") for i in range(0, len(ring), 8)]


# What the check and the encoder say of a ring whose length is not a multiple of 8.
_RING_NOT_WHOLE = "state field recent_ids is not whole 8-byte ids"


def in_ring(ring: bytes, h: bytes) -> bool:
    """Whether the 8-byte hash ``h`` is one of the hashes in ``ring`` (a match straddling two is not)."""
    i = ring.find(h)
    while i > 0 and i & 7:
        i = ring.find(h, i + 1)
    return i >= 0


def python_blake64(text: str) -> int:
    """The unsigned 64-bit BLAKE2b (digest size 8, little endian) of ``text``'s UTF-8: the reference of the
    compiled ``blake64``, which hashes every event id and user id where it is installed."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


_blake64: Callable[[str], int]
try:
    from churnwatch_native import blake64 as _blake64
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _blake64 = python_blake64


def event_id_hash(event_id: str) -> int:
    """Return the stable unsigned 64-bit hash used to deduplicate an event id."""
    return _blake64(event_id)


# The values are users and feature names: a few per account, hashed again for each of their events.
@functools.lru_cache(maxsize=65_536)
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
    table = _ESTIMATES.get(bits)
    if table is not None:
        return table[bitmap.bit_count()]
    return _estimate(bits - bitmap.bit_count(), bits)


def _estimate(zeros: int, bits: int) -> float:
    if zeros == bits:
        return 0.0
    if zeros == 0:
        return bits * math.log(bits)
    return -bits * math.log(zeros / bits)


# The estimate depends only on how many bits are set: a table per sketch size.
_ESTIMATES = {b: tuple(_estimate(b - ones, b) for ones in range(b + 1)) for b in (64, 128)}


class DayBucket(NamedTuple):
    """Activity of one UTC day.

    Immutable: an update replaces the bucket, so copying a state's ``days`` dict copies its buckets
    (see :func:`clone_state`).
    """

    events: int = 0
    weight: float = 0.0
    users: int = 0
    features: int = 0


def milestone_key(name: str) -> int:
    """The 32-bit key a milestone's progress is stored under (a stable hash of its name)."""
    return _blake64(name) & 0xFFFF_FFFF


class MilestoneProgress(NamedTuple):
    """How far an account got towards one onboarding milestone (immutable, like :class:`DayBucket`)."""

    reached_ms: int | None = None
    events: int = 0  # matching events counted, at most the milestone's count
    users: tuple[int, ...] = ()  # 32-bit hashes of the distinct users counted, at most its users
    missed: bool = False  # its milestone_missed alert was raised


class Scored(NamedTuple):
    """The health of one UTC day, as last evaluated that day (see :mod:`streamer.core.changes`)."""

    day: int
    score: int
    # Per component of COMPONENT_NAMES, in that order: its value and its contribution in tenths (two
    # little-endian int16), -32768 for one not scored. Packed: an account keeps several days of them.
    parts: bytes


class TopUser(NamedTuple):
    """One of an account's most active users: a hash of the user id and its recent active days."""

    user: int
    # Active days, each worth less as it ages (half after 28 days), as of ``last_day``.
    weight: float
    last_day: int
    first_day: int


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
    # Annual recurring revenue, in ``currency`` (ISO 4217, upper case); the next renewal; the contract.
    arr: float | None = None
    currency: str | None = None
    renewal_ms: int | None = None
    contract: str | None = None
    # Each fact keeps the time of the event that set it, so older updates never win.
    facts_at_ms: dict[str, int] = field(default_factory=dict)
    nps_score: int | None = None
    nps_at_ms: int | None = None
    # Net opened-minus-closed; may dip below zero transiently when a close arrives first.
    open_tickets: int = 0
    subscription_started_ms: int | None = None
    subscription_cancelled_ms: int | None = None
    # The hashes of the most recent event ids (event_id_hash), oldest first, 8 bytes each (little endian):
    # as stored, and a fifth of the memory of a list of ints in every decoded state.
    recent_ids: bytes = b""
    applied_offset: int = -1
    quiet_since_ms: int | None = None
    drop_since_ms: int | None = None
    poor_open: bool = False
    # Changed since the last published health snapshot (publication was deferred during a backlog).
    unpublished: bool = False
    last_band: Band | None = None
    published_score: int | None = None
    published_band: Band | None = None
    published_components: dict[str, float] = field(default_factory=dict)
    # When the engine must next look at the account with no new events (see engine.next_due_ms), as
    # last scheduled; stored so that a restart can rebuild its schedule without decoding the state.
    due_ms: int | None = None
    # The most active users (at most TOP_USERS), for the key-user signal.
    top_users: list[TopUser] = field(default_factory=list)
    # The open key-user episode: which user, since when.
    key_user: int | None = None
    key_since_ms: int | None = None
    # A drop seen but not yet persistent: the day it was first seen, and the baseline it is measured
    # against (user-days per weekday, and their dispersion), frozen on that day.
    drop_pending_day: int | None = None
    drop_base: tuple[float, ...] = ()
    drop_dispersion: float = 1.0
    # Poor since then, not yet for long enough to alert (health_degraded persists a day).
    poor_pending_ms: int | None = None
    # What the last published snapshot showed besides its health: the last activity and the open
    # episodes. One that shows another day of activity or other episodes than the state is republished
    # whatever the score did (engine.snapshot_behind).
    published_activity_ms: int | None = None
    published_quiet_since_ms: int | None = None
    published_drop_since_ms: int | None = None
    published_poor: bool = False
    # Weeks that left the daily window, newest last (at most HISTORY_WEEKS): (week index, user-days,
    # days counted), so a decline is measured against the account's level of the months before too.
    history: list[tuple[int, float, int]] = field(default_factory=list)
    history_through: int | None = None  # the last week added
    # The health of the last days evaluated (at most changes.KEPT, one per UTC day), oldest first: what
    # "what changed" compares the current health with.
    scored: list[Scored] = field(default_factory=list)
    # Onboarding milestones (streamer.core.milestones): the first product activity, which decides whether
    # the account is judged on them at all, and the progress per milestone, by milestone_key.
    first_activity_ms: int | None = None
    milestones: dict[int, MilestoneProgress] = field(default_factory=dict)
    # Milestones reached, and misses alerted (times 256), as the last published snapshot showed them.
    published_milestones: int = 0
    # Not stored: the engine's last quiet deadline and what it was computed from (engine._quiet_deadline).
    quiet_cache: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def subscription(self) -> str | None:
        """``'active'``, ``'cancelled'`` or None, from the newest subscription event."""
        started, cancelled = self.subscription_started_ms, self.subscription_cancelled_ms
        if cancelled is not None and (started is None or cancelled >= started):
            return "cancelled"
        return "active" if started is not None else None


_FIELDS = tuple(f.name for f in fields(AccountState))
_CONTAINERS = (
    "days",
    "facts_at_ms",
    "published_components",
    "top_users",
    "quiet_cache",
    "history",
    "milestones",
    "scored",
)


def _make_clone() -> Any:
    # Generated once: a plain constructor call with every field is about twice as fast as copy.copy,
    # and this runs once per applied event.
    args = ", ".join(f"{name}=s.{name}" for name in _FIELDS if name not in _CONTAINERS)
    source = (
        "def clone_state(s):\n"
        f"    return AccountState({args}, days=dict(s.days), facts_at_ms=dict(s.facts_at_ms),"
        " published_components=dict(s.published_components),"
        " top_users=list(s.top_users), history=list(s.history),"
        " scored=list(s.scored), milestones=dict(s.milestones))\n"
    )
    namespace: dict[str, Any] = {"AccountState": AccountState}
    exec(source, namespace)  # noqa: S102 - fixed source built from the dataclass's own field names
    return namespace["clone_state"]


_clone = _make_clone()


def python_clone_state(s: AccountState) -> AccountState:
    """An independent copy of ``s``: changing one never changes the other (buckets and ids are immutable).

    The reference of the compiled copy (:func:`clone_state` where the extension is installed), which the
    worker makes of every state before applying an event to it."""
    copy: AccountState = _clone(s)
    return copy


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def python_check_encodable(s: AccountState) -> None:
    """Raise ValueError, naming the field, if :func:`encode_state` could not encode ``s``.

    Cheap (a few comparisons), so the worker runs it after every event: a value that slipped past the
    event schema is then caught with the event that brought it, not at the next flush. The reference of
    the compiled check (:func:`check_encodable` where the extension is installed): the same checks in
    the same order.
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
        "renewal_ms",
        "first_activity_ms",
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
    if s.arr is not None and not 0 <= s.arr < math.inf:
        raise ValueError("state field arr out of range")
    for name in ("account_id", *FACT_STRINGS, "currency", "contract"):
        v = getattr(s, name)
        if v is not None and len(v) * 4 >= _STR_NONE and len(v.encode()) >= _STR_NONE:
            raise ValueError(f"state field {name} too long")
    for key, at in s.facts_at_ms.items():
        if not _I64_MIN < at <= _I64_MAX:
            raise ValueError(f"state field facts_at_ms.{key} out of range")
    if (
        len(s.days) >= _STR_NONE
        or len(s.recent_ids) >= 8 * _STR_NONE
        or len(s.top_users) > 255
        or len(s.history) > 255
        or len(s.scored) > 255
    ):
        raise ValueError("state has too many buckets, ids or users")
    if len(s.recent_ids) % 8:
        raise ValueError(_RING_NOT_WHOLE)
    for name in (
        "key_since_ms",
        "poor_pending_ms",
        "published_activity_ms",
        "published_quiet_since_ms",
        "published_drop_since_ms",
    ):
        v = getattr(s, name)
        if v is not None and not _I64_MIN < v <= _I64_MAX:
            raise ValueError(f"state field {name} out of range")
    if len(s.drop_base) not in (0, 7):
        raise ValueError("state field drop_base must hold 7 weekday means")
    for day, score, parts in s.scored:
        if not (_I32_MIN <= day <= _I32_MAX and 0 <= score <= 255 and len(parts) == _SCORED.size - 5):
            raise ValueError("state field scored out of range")
    if len(s.milestones) > 255 or not 0 <= s.published_milestones <= _U16_MAX:
        raise ValueError("state has too many milestones")
    for mkey, m in s.milestones.items():
        if not 0 <= mkey <= _U32_MAX or not 0 <= m.events <= _U16_MAX or len(m.users) > 255:
            raise ValueError("state field milestones out of range")
        if m.reached_ms is not None and not _I64_MIN < m.reached_ms <= _I64_MAX:
            raise ValueError("state field milestones out of range")


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


def python_encode_state(s: AccountState) -> bytes:
    """Serialise an account state into the compact binary form (see module docstring).

    The reference encoder: :func:`encode_state` is the compiled one where it is installed, and must
    return the same bytes.

    Args:
        s: The state.

    Returns:
        The encoded bytes, starting with the version byte.
    """
    published = s.published_components
    comps = [published.get(n, math.nan) for n in COMPONENT_NAMES]
    if not _COMPONENT_SET.issuperset(published):
        raise ValueError("unknown published component")
    # Every changed state is encoded at each flush: the absent values are spelled out inline (_NONE)
    # rather than through a helper call each.
    none = _NONE
    facts_at = s.facts_at_ms
    out = [
        _HEADER.pack(
            STATE_VERSION,
            s.first_seen_ms,
            s.clock_ms,
            s.applied_offset,
            none if s.last_activity_ms is None else s.last_activity_ms,
            none if s.nps_at_ms is None else s.nps_at_ms,
            -1 if s.nps_score is None else s.nps_score,
            s.open_tickets,
            none if s.subscription_started_ms is None else s.subscription_started_ms,
            none if s.subscription_cancelled_ms is None else s.subscription_cancelled_ms,
            none if s.quiet_since_ms is None else s.quiet_since_ms,
            none if s.drop_since_ms is None else s.drop_since_ms,
            int(s.poor_open) | (2 if s.unpublished else 0),
            _BANDS.index(s.last_band),
            -1 if s.published_score is None else s.published_score,
            _BANDS.index(s.published_band),
            *comps,
            none if s.seats is None else s.seats,
            facts_at.get("seats", none),
            none if s.due_ms is None else s.due_ms,
        )
    ]
    _put_str(out, s.account_id)
    for key, value in zip(FACT_STRINGS, (s.plan, s.segment, s.name, s.owner), strict=True):
        _put_str(out, value)
        out.append(_RING.pack(facts_at.get(key, none) & _U64))
    out.append(_STR.pack(len(s.days)))
    days = s.days
    flat = [
        field
        for day in sorted(days)
        for b in (days[day],)
        for field in (day, min(b.events, _U32_MAX), b.weight, b.users & _U64, b.users >> 64, b.features)
    ]
    out.append(_buckets_struct(len(days)).pack(*flat))
    ids = s.recent_ids
    if len(ids) % 8:
        raise ValueError(_RING_NOT_WHOLE)
    out.append(_STR.pack(len(ids) // 8))
    out.append(ids)
    out.append(
        _EXTENSION.pack(
            (1 if s.key_user is not None else 0) | (2 if s.published_poor else 0),
            s.key_user or 0,
            none if s.key_since_ms is None else s.key_since_ms,
            _NO_DAY if s.drop_pending_day is None else s.drop_pending_day,
            none if s.poor_pending_ms is None else s.poor_pending_ms,
            s.drop_dispersion,
            *(s.drop_base or _NO_BASE),
            none if s.published_activity_ms is None else s.published_activity_ms,
            none if s.published_quiet_since_ms is None else s.published_quiet_since_ms,
            none if s.published_drop_since_ms is None else s.published_drop_since_ms,
        )
    )
    _put_records(out, _TOP_USER, s.top_users)
    out.append(_I32.pack(_NO_DAY if s.history_through is None else s.history_through))
    _put_records(out, _WEEK, s.history)
    out.append(
        _REVENUE.pack(
            math.nan if s.arr is None else s.arr,
            none if s.renewal_ms is None else s.renewal_ms,
            facts_at.get("arr", none),
            facts_at.get("currency", none),
            facts_at.get("renewal_at", none),
            facts_at.get("contract", none),
        )
    )
    _put_str(out, s.currency)
    _put_str(out, s.contract)
    out.append(bytes((len(s.scored),)))
    out.extend(_SCORED.pack(*day) for day in s.scored)
    out.append(_PROGRESS.pack(_opt(s.first_activity_ms), s.published_milestones, len(s.milestones)))
    for mkey in sorted(s.milestones):
        m = s.milestones[mkey]
        out.append(_MILESTONE.pack(mkey, _opt(m.reached_ms), m.events, int(m.missed), len(m.users)))
        out.append(struct.pack(f"<{len(m.users)}I", *m.users))
    return b"".join(out)


def python_decode_state(b: bytes) -> AccountState:
    """Deserialise bytes produced by :func:`encode_state`.

    The reference decoder, and the one for states older than the current version: :func:`decode_state`
    decodes a current one with the compiled codec where it is installed, which must build an equal state.

    Args:
        b: Encoded state.

    Returns:
        The account state.

    Raises:
        ValueError: On an unknown version or truncated/corrupt input.
    """
    if not b or b[0] not in (1, 2, 3, 4, 5, STATE_VERSION):
        raise ValueError(f"unsupported state version {b[:1]!r}")
    version = b[0]
    # Every event of an account that left the cache decodes its state again: the reads are inlined
    # (no reader object, one struct call per block, the containers built once and handed to the
    # constructor) rather than written field by field.
    unpack = struct.Struct.unpack_from
    none = _NONE
    try:
        header = (_HEADER_V1, _HEADER_V2, _HEADER, _HEADER, _HEADER, _HEADER)[version - 1]
        h = unpack(header, b, 0)
        pos = header.size
        account_id, pos = _string(b, pos)
        if account_id is None:
            raise ValueError("missing account id")
        names = COMPONENT_NAMES if version >= 3 else _V2_COMPONENTS
        comps = zip(names, h[16 : 16 + len(names)], strict=True)
        rest = h[16 + len(names) :]
        facts_at: dict[str, int] = {}
        if rest[1] != none:
            facts_at["seats"] = rest[1]
        strings: list[str | None] = []
        for key in FACT_STRINGS:
            value, pos = _string(b, pos)
            strings.append(value)
            (at,) = unpack(_RING, b, pos)
            pos += 8
            at = _signed(at)
            if at != none:
                facts_at[key] = at
        (n,) = unpack(_STR, b, pos)
        pos += 2
        st = _buckets_struct(n)
        it = iter(unpack(st, b, pos))
        pos += st.size
        days = {
            day: DayBucket(events, weight, low | (high << 64), features)
            for day, events, weight, low, high, features in zip(it, it, it, it, it, it, strict=True)
        }
        (n,) = unpack(_STR, b, pos)
        pos += 2
        recent_ids = b[pos : pos + 8 * n]
        if len(recent_ids) != 8 * n:
            raise struct.error("truncated")
        pos += 8 * n
        nps_score, published_score = h[6], h[14]
        flags = h[12]
        s = AccountState(
            account_id=account_id,
            first_seen_ms=h[1],
            clock_ms=h[2],
            last_activity_ms=None if h[4] == none else h[4],
            days=days,
            seats=None if rest[0] == none else rest[0],
            plan=strings[0],
            segment=strings[1],
            name=strings[2],
            owner=strings[3],
            facts_at_ms=facts_at,
            nps_score=None if nps_score == -1 else nps_score,
            nps_at_ms=None if h[5] == none else h[5],
            open_tickets=h[7],
            subscription_started_ms=None if h[8] == none else h[8],
            subscription_cancelled_ms=None if h[9] == none else h[9],
            recent_ids=recent_ids,
            applied_offset=h[3],
            quiet_since_ms=None if h[10] == none else h[10],
            drop_since_ms=None if h[11] == none else h[11],
            poor_open=bool(flags & 1),
            unpublished=bool(flags & 2),
            last_band=_BANDS[h[13]],
            published_score=None if published_score == -1 else published_score,
            published_band=_BANDS[h[15]],
            published_components={name: v for name, v in comps if v == v},  # NaN: not published
            due_ms=(None if rest[2] == none else rest[2]) if len(rest) > 2 else None,
        )
        if version >= 3:
            ext = _EXTENSION if version >= 4 else _EXTENSION_V3
            flags, key_user, key_since, pending, poor_pending, dispersion, *more = unpack(ext, b, pos)
            pos += ext.size
            base, shown = more[:7], more[7:]
            if shown:  # version 4; an older state's snapshot counts as having shown nothing yet
                s.published_activity_ms, s.published_quiet_since_ms, s.published_drop_since_ms = map(
                    _unopt, shown
                )
                s.published_poor = bool(flags & 2)
            s.poor_pending_ms = None if poor_pending == none else poor_pending
            s.key_user = key_user if flags & 1 else None
            s.key_since_ms = None if key_since == none else key_since
            s.drop_pending_day = None if pending == _NO_DAY else pending
            s.drop_dispersion = dispersion
            s.drop_base = () if math.isnan(base[0]) else tuple(base)
            flat, pos = _records(b, pos, _TOP_USER)
            if flat:
                it = iter(flat)
                s.top_users = list(map(TopUser, it, it, it, it))
            (through,) = unpack(_I32, b, pos)
            pos += 4
            s.history_through = None if through == _NO_DAY else through
            flat, pos = _records(b, pos, _WEEK)
            if flat:
                it = iter(flat)
                s.history = list(zip(it, it, it, strict=True))
        if version >= 4:
            arr, renewal, *set_at = unpack(_REVENUE, b, pos)
            pos += _REVENUE.size
            s.arr = None if math.isnan(arr) else arr
            s.renewal_ms = None if renewal == none else renewal
            for key, t in zip(REVENUE_FACTS, set_at, strict=True):
                if t != none:
                    facts_at[key] = t
            s.currency, pos = _string(b, pos)
            s.contract, pos = _string(b, pos)
        if version >= 5:
            n = b[pos]
            pos += 1
            if n:
                scored = []
                for _ in range(n):
                    scored.append(Scored(*unpack(_SCORED, b, pos)))
                    pos += _SCORED.size
                s.scored = scored
        if version >= 6:  # an older state has no onboarding progress yet
            first_activity, s.published_milestones, n = unpack(_PROGRESS, b, pos)
            pos += _PROGRESS.size
            s.first_activity_ms = None if first_activity == none else first_activity
            for _ in range(n):
                mkey, reached, events, flags, users = unpack(_MILESTONE, b, pos)
                pos += _MILESTONE.size
                st = struct.Struct(f"<{users}I")
                hashes = unpack(st, b, pos)
                pos += st.size
                s.milestones[mkey] = MilestoneProgress(_unopt(reached), events, hashes, bool(flags & 1))
    except (struct.error, IndexError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt state: {err}") from None
    if pos != len(b):
        raise ValueError("trailing bytes in state")
    return s


def _string(b: bytes, pos: int) -> tuple[str | None, int]:
    """The string at ``pos`` (uint16 length + UTF-8, or the absent marker) and the position after it."""
    (n,) = _STR.unpack_from(b, pos)
    pos += 2
    if n == _STR_NONE:
        return None, pos
    end = pos + n
    if end > len(b):
        raise ValueError("truncated state")
    return b[pos:end].decode(), end


@functools.lru_cache(maxsize=64)
def _records_struct(record: struct.Struct, n: int) -> struct.Struct:
    # ``n`` fixed-size records read in one call.
    return struct.Struct("<" + record.format[1:] * n)


def _put_records(out: list[bytes], record: struct.Struct, items: Sequence[Iterable[Any]]) -> None:
    """A uint8 count, then the ``record``s packed in one call (read back by :func:`_records`)."""
    out.append(bytes((len(items),)))
    if items:
        out.append(_records_struct(record, len(items)).pack(*itertools.chain.from_iterable(items)))


def _records(b: bytes, pos: int, record: struct.Struct) -> tuple[tuple[Any, ...], int]:
    """The fields of the ``record``s at ``pos`` (a uint8 count, then the records), flat, in one call, and
    the position after them."""
    n = b[pos]
    pos += 1
    if not n:
        return (), pos
    st = _records_struct(record, n)
    return st.unpack_from(b, pos), pos + st.size


def peek_state(b: bytes) -> tuple[int | None, str | None, bool] | None:
    """``(due_ms, published_band, unpublished)`` read from the header alone, or None for a version 1 state.

    A restarted worker needs only these to rebuild its schedule and band counts; reading them costs a
    fraction of :func:`decode_state`.
    """
    header = (_HEADER_V2 if b[0] == 2 else _HEADER) if b and 2 <= b[0] <= STATE_VERSION else None
    if header is None or len(b) < header.size:
        return None
    h = _PEEK.unpack_from(b)
    (due,) = _I64.unpack_from(b, header.size - 8)
    return _unopt(due), _BANDS[h[15]], bool(h[12] & 2)


def _native_codec() -> Codec | None:
    """The compiled codec (the ``churnwatch_native`` extension, built by ``make install``), or None."""
    try:
        from churnwatch_native import Codec
    except ImportError:
        return None
    classes = (AccountState, DayBucket, TopUser, Scored, MilestoneProgress)
    return Codec(*classes, list(_BANDS), list(COMPONENT_NAMES), list(_FIELDS))


# The compiled codec where it is installed: every event of an account that left the worker's cache decodes
# its state and every flush encodes it, so this is on the worker's hot path. Without the extension the
# Python codec above does the same, more slowly.
NATIVE_CODEC = _native_codec()
_CURRENT = bytes((STATE_VERSION,))

if NATIVE_CODEC is None:
    encode_state = python_encode_state
    decode_state = python_decode_state
    clone_state = python_clone_state
    check_encodable = python_check_encodable
else:
    _native_decode = NATIVE_CODEC.decode
    encode_state = NATIVE_CODEC.encode
    clone_state = NATIVE_CODEC.clone_state
    check_encodable = NATIVE_CODEC.check

    def decode_state(b: bytes) -> AccountState:
        """Deserialise bytes produced by :func:`encode_state` (the compiled codec for a current state)."""
        if b[:1] == _CURRENT:
            state: AccountState = _native_decode(b)
            return state
        return python_decode_state(b)
