"""Usage event schema v1: parsing, validation and canonical encoding.

Three input shapes are accepted:

* the native shape (``event_id``, ``account_id``, ``event``, ``timestamp``, optional
  ``user_id``, ``properties``, ``active`` and ``kind``),
* Segment spec messages, recognised by a ``type`` field, and
* CloudEvents 1.0, recognised by ``specversion``: structured (the whole event one JSON object, as
  ``application/cloudevents+json``) or, on Kafka, binary (attributes in ``ce_`` headers, the data as
  the record's value; :func:`parse_record`). See :func:`_parse_cloudevent` for the mapping.

Every validation failure is reported as :class:`InvalidEvent` naming the offending field
path and the rule it broke, so producers can fix their payloads without reading code.
The native shape is validated by hand because it is the hot path; Segment messages go
through pydantic models whose errors are translated into the same vocabulary.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_ARR",
    "MAX_LEN",
    "MAX_PROPERTY_DEPTH",
    "MAX_SEATS",
    "EventKind",
    "InvalidEvent",
    "UsageEvent",
    "check_encoded_size",
    "check_not_future",
    "check_time_not_future",
    "encode_event",
    "parse_event",
    "parse_event_time",
    "parse_renewal_at",
    "parse_record",
    "Unattributed",
    "links_user",
    "with_account",
]

MAX_LEN = 128
MAX_EVENT_BYTES = 256 * 1024
# Bounds of every value that reaches an account's state or a published document. They are checked
# where events are parsed, so the API and the worker reject the same events with the same message.
MAX_SEATS = 10_000_000
# Annual recurring revenue in the account's currency units, larger than any company's: a portfolio of
# millions of accounts still sums to less than 2**63 whole units (the read store sums ARR as integers).
MAX_ARR = 10**12
# ``properties`` (or Segment ``traits``) nested deeper than this are rejected: the documents that
# carry them are re-encoded downstream, and JSON encoders limit depth (orjson: 255).
MAX_PROPERTY_DEPTH = 32
_I64_MIN, _U64_END = -(2**63), 2**64
MIN_EVENT_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)
_TIME_RULE = "must be RFC 3339 with a UTC offset or integer epoch milliseconds"
_RANGE_RULE = "out of range 2000-01-01..2100-01-01"
_LEN_RULE = f"must be 1..{MAX_LEN} characters"
# fromisoformat alone also accepts ISO 8601 basic and date-only forms; RFC 3339 is narrower.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventKind(StrEnum):
    """What an event means to the account state."""

    ACTIVITY = "activity"
    ACCOUNT_UPDATED = "account_updated"
    NPS_RESPONSE = "nps_response"
    SUPPORT_TICKET_OPENED = "support_ticket_opened"
    SUPPORT_TICKET_CLOSED = "support_ticket_closed"
    SUBSCRIPTION_STARTED = "subscription_started"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"


_KIND_BY_NAME: dict[str, EventKind] = {k.value: k for k in EventKind if k is not EventKind.ACTIVITY}
_FACT_STRINGS = ("plan", "segment", "name", "owner", "contract")
_CURRENCY = re.compile(r"[A-Za-z]{3}\Z")
_DATE = re.compile(r"\d{4}-\d\d-\d\d\Z")
_RENEWAL_RULE = "must be an RFC 3339 date-time or a date (YYYY-MM-DD)"
_SEGMENT_TYPES = frozenset({"track", "group", "identify", "page", "screen"})


class InvalidEvent(ValueError):  # noqa: N818 - the name is part of the public contract
    """An event failed validation.

    Attributes:
        field: Dot-joined path of the offending field (``$`` for the whole document).
        rule: Human readable rule that was broken.
    """

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


# Not frozen: one is built for every event read, and a frozen dataclass sets each field through
# object.__setattr__ (1.0 against 0.28 us for these eight). Treated as immutable all the same.
@dataclass(slots=True)
class UsageEvent:
    """A validated usage event (read-only by convention: nothing changes one after it is parsed).

    ``properties`` must be treated as read-only too; it is not copied for speed.
    """

    event_id: str
    account_id: str
    name: str
    occurred_at_ms: int
    user_id: str | None
    properties: Mapping[str, Any]
    active: bool
    kind: EventKind


def parse_event_time(value: object, field: str = "timestamp") -> int:
    """Convert an event timestamp into epoch milliseconds.

    Args:
        value: An RFC 3339 string with an offset (``Z`` or ``+hh:mm``) or integer epoch ms.
        field: Field path used in error messages.

    Returns:
        Epoch milliseconds (UTC).

    Raises:
        InvalidEvent: If the value is naive, malformed, not a supported type, or outside
            2000-01-01..2100-01-01.
    """
    if type(value) is int:
        ms = value
    elif type(value) is str:
        parsed = rfc3339_ms(value)
        if parsed is None:
            raise InvalidEvent(field, _TIME_RULE)
        ms = parsed
    else:
        raise InvalidEvent(field, _TIME_RULE)
    if not MIN_EVENT_MS <= ms < MAX_EVENT_MS:
        raise InvalidEvent(field, _RANGE_RULE)
    return ms


def python_rfc3339_ms(value: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 timestamp with an offset (``Z`` or ``+hh:mm``), or None.

    The reference: :func:`rfc3339_ms` is the compiled one where it is installed, and must agree on
    every string.
    """
    if _RFC3339.match(value) is None:
        return None
    try:
        dt = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


rfc3339_ms: Callable[[str], int | None]
try:  # compiled (native/, built by `make install`): every event's timestamp is parsed by it
    from churnwatch_native import rfc3339_ms
except ImportError:  # pragma: no cover - exercised where the extension is not built
    rfc3339_ms = python_rfc3339_ms


_UNICODE_RULE = "must be valid Unicode (no unpaired surrogates)"


def _encodable(v: str) -> bool:
    # Only a document handed over as Python objects (not JSON bytes, which orjson checks) can hold a
    # lone surrogate, and such a string cannot be hashed, stored or re-encoded.
    if v.isascii():
        return True
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def _req_str(d: Mapping[str, Any], key: str, path: str) -> str:
    v = d.get(key)
    if v is None:
        raise InvalidEvent(path, "required")
    return _checked_str(v, path)


def _checked_str(v: object, path: str) -> str:
    if type(v) is not str:
        raise InvalidEvent(path, "must be a string")
    if not 0 < len(v) <= MAX_LEN:
        raise InvalidEvent(path, _LEN_RULE)
    if not _encodable(v):
        raise InvalidEvent(path, _UNICODE_RULE)
    return v


def _opt_str(v: object, path: str) -> str | None:
    if v is None:
        return None
    return _checked_str(v, path)


def _check_json(value: object, path: str) -> None:
    """Reject what could not be re-encoded as JSON downstream: depth, integer range, non-finite numbers.

    Most events carry a flat object of scalars, so this is a loop over a few values; containers are
    walked with an explicit stack, never recursion.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_PROPERTY_DEPTH:
            raise InvalidEvent(where, f"nested more than {MAX_PROPERTY_DEPTH} levels deep")
        items: Any = node.items() if isinstance(node, Mapping) else enumerate(node)
        for key, v in items:
            t = type(v)
            if t is str or t is bool or v is None:
                if t is str and not _encodable(v):
                    raise InvalidEvent(f"{where}.{key}", _UNICODE_RULE)
            elif t is int:
                if not _I64_MIN <= v < _U64_END:
                    raise InvalidEvent(f"{where}.{key}", "integers must fit in 64 bits")
            elif t is float:
                if v != v or v in (math.inf, -math.inf):
                    raise InvalidEvent(f"{where}.{key}", "numbers must be finite")
            elif t is dict:
                for k in v:
                    if type(k) is not str or not _encodable(k):
                        raise InvalidEvent(f"{where}.{key}", "object keys must be strings")
                stack.append((v, f"{where}.{key}", depth + 1))
            elif t is list:
                stack.append((v, f"{where}.{key}", depth + 1))
            else:
                raise InvalidEvent(f"{where}.{key}", "must be a JSON value")


def parse_renewal_at(value: object, field: str = "properties.renewal_at") -> int:
    """The epoch milliseconds of a ``renewal_at`` fact: an RFC 3339 date-time, or a date (its UTC midnight).

    Raises:
        InvalidEvent: When it is neither, or outside 2000-01-01..2100-01-01, naming ``field``.
    """
    if type(value) is not str or (_DATE.match(value) is None and _RFC3339.match(value) is None):
        raise InvalidEvent(field, _RENEWAL_RULE)
    if _DATE.match(value) is None:
        return parse_event_time(value, field)
    try:
        day = datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidEvent(field, _RENEWAL_RULE) from None
    ms = int((day - _EPOCH).total_seconds()) * 1000
    if not MIN_EVENT_MS <= ms < MAX_EVENT_MS:
        raise InvalidEvent(field, _RANGE_RULE)
    return ms


def _check_revenue(props: Mapping[str, Any], prefix: str) -> None:
    for key in ("arr", "mrr"):
        v = props.get(key)
        bound = MAX_ARR if key == "arr" else MAX_ARR // 12
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= bound):
            raise InvalidEvent(f"{prefix}.{key}", f"must be a number 0..{bound}")
    currency = props.get("currency")
    if currency is not None and (type(currency) is not str or _CURRENCY.match(currency) is None):
        raise InvalidEvent(f"{prefix}.currency", "must be an ISO 4217 code of 3 letters")
    renewal = props.get("renewal_at")
    if renewal is not None:
        parse_renewal_at(renewal, f"{prefix}.renewal_at")


def _validate_reserved(kind: EventKind, props: Mapping[str, Any], prefix: str) -> None:
    if kind is EventKind.ACCOUNT_UPDATED:
        seats = props.get("seats")
        if seats is not None and (type(seats) is not int or not 0 <= seats <= MAX_SEATS):
            raise InvalidEvent(f"{prefix}.seats", f"must be an integer 0..{MAX_SEATS}")
        _check_revenue(props, prefix)
        for key in _FACT_STRINGS:
            v = props.get(key)
            if v is not None and (type(v) is not str or len(v) > MAX_LEN):
                raise InvalidEvent(f"{prefix}.{key}", f"must be a string of at most {MAX_LEN} characters")
    elif kind is EventKind.NPS_RESPONSE:
        score = props.get("score")
        if score is None:
            raise InvalidEvent(f"{prefix}.score", "required: an integer 0..10")
        if type(score) is not int or not 0 <= score <= 10:
            raise InvalidEvent(f"{prefix}.score", "must be an integer 0..10")


def _parse_native(d: Mapping[str, Any]) -> UsageEvent:
    event_id = _req_str(d, "event_id", "event_id")
    account_id = _req_str(d, "account_id", "account_id")
    name = _req_str(d, "event", "event")
    ts = d.get("timestamp")
    if ts is None:
        raise InvalidEvent("timestamp", "required")
    occurred = parse_event_time(ts)
    user_id = _opt_str(d.get("user_id"), "user_id")
    props = d.get("properties")
    if props is None:
        props = {}
    elif type(props) is not dict and not isinstance(props, Mapping):
        raise InvalidEvent("properties", "must be an object")
    elif props:
        _check_json(props, "properties")
    active = d.get("active", True)
    if type(active) is not bool:
        raise InvalidEvent("active", "must be a boolean")
    raw_kind = d.get("kind")
    if raw_kind is None:
        kind = _KIND_BY_NAME.get(name, EventKind.ACTIVITY)
    else:
        try:
            kind = EventKind(raw_kind)
        except ValueError:
            raise InvalidEvent("kind", "must be one of " + ", ".join(k.value for k in EventKind)) from None
    if kind is not EventKind.ACTIVITY:
        _validate_reserved(kind, props, "properties")
    return UsageEvent(event_id, account_id, name, occurred, user_id, props, active, kind)


def _segment_field(d: Mapping[str, Any], key: str, path: str) -> str | None:
    """An optional id of a Segment message: absent or null, else a string of 1..MAX_LEN characters."""
    v = d.get(key)
    if v is None:
        return None
    if type(v) is str and 0 < len(v) <= MAX_LEN and v.isascii():
        return v  # the common case, without the calls of the full check
    return _checked_str(v, path)


def _segment_object(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    v = d.get(key)
    if v is None:
        return None
    if type(v) is not dict and not isinstance(v, Mapping):
        raise InvalidEvent(path, "must be an object")
    return v


def _parse_segment(d: Mapping[str, Any]) -> UsageEvent:
    seg_type = d.get("type")
    # The type check first: a list or an object is unhashable and would raise TypeError, not InvalidEvent.
    if type(seg_type) is not str or seg_type not in _SEGMENT_TYPES:
        raise InvalidEvent(
            "type",
            f"unsupported Segment type {seg_type!r}; expected one of " + ", ".join(sorted(_SEGMENT_TYPES)),
        )
    # Field by field, in the order of Segment's spec: the first field at fault is the one reported.
    if "messageId" not in d:
        raise InvalidEvent("messageId", "required")
    message_id = _checked_str(d["messageId"], "messageId")
    event = _segment_field(d, "event", "event")
    user = _segment_field(d, "userId", "userId")
    anonymous = _segment_field(d, "anonymousId", "anonymousId")
    group = _segment_field(d, "groupId", "groupId")
    properties = _segment_object(d, "properties", "properties")
    traits = _segment_object(d, "traits", "traits")
    ctx = _segment_object(d, "context", "context")
    ctx_group: str | None = None
    active = True
    if ctx is not None:
        ctx_group = _segment_field(ctx, "groupId", "context.groupId")
        ctx_active = ctx.get("active")
        if ctx_active is not None and type(ctx_active) is not bool:
            raise InvalidEvent("context.active", "must be a boolean")
        active = ctx_active is not False
    account_id = ctx_group or group
    if seg_type == "group" or seg_type == "identify":
        if traits is None and ctx is not None:
            in_context = ctx.get("traits")
            if type(in_context) is dict:
                traits = in_context  # where RudderStack's SDKs put an identify's traits
        if account_id is None and seg_type == "identify":
            account_id = _traits_account(traits)
    timestamp = d.get("timestamp")
    if timestamp is not None:
        occurred = parse_event_time(timestamp, "timestamp")
    elif d.get("originalTimestamp") is not None:
        occurred = parse_event_time(d["originalTimestamp"], "originalTimestamp")
    else:
        raise InvalidEvent("timestamp", "required: timestamp or originalTimestamp")
    props: Mapping[str, Any]
    prefix = "properties"
    if seg_type == "track":
        if event is None:
            raise InvalidEvent("event", "required for Segment track calls")
        name = event
        kind = _KIND_BY_NAME.get(name, EventKind.ACTIVITY)
        props = properties or {}
    elif seg_type == "group" or seg_type == "identify":
        name = seg_type
        # A group call describes the account itself, so it is the Segment form of account_updated.
        kind = EventKind.ACCOUNT_UPDATED if name == "group" else EventKind.ACTIVITY
        props, prefix = traits or {}, "traits"
    else:
        name, kind = seg_type, EventKind.ACTIVITY
        props = properties or {}
    if props:
        _check_json(props, prefix)
    if kind is not EventKind.ACTIVITY:
        _validate_reserved(kind, props, prefix)
    if account_id is None:
        users = tuple(u for u in (user, anonymous) if u is not None)
        if not users or seg_type == "group":
            raise InvalidEvent(
                "context.groupId",
                "required: Segment messages need context.groupId or groupId to name the account",
            )
        raise Unattributed(users, d, occurred)
    return UsageEvent(message_id, account_id, name, occurred, user or anonymous, props, active, kind)


def _traits_account(traits: Mapping[str, Any] | None) -> str | None:
    """The account an identify call's traits name: ``groupId``, else ``company.id`` (Segment's spec)."""
    if not traits:
        return None
    company = traits.get("company")
    for value, path in (
        (traits.get("groupId"), "traits.groupId"),
        (
            company.get("id") if isinstance(company, Mapping) else None,
            "traits.company.id",
        ),
    ):
        if value is not None:
            return _checked_str(value, path)
    return None


class Unattributed(InvalidEvent):
    """A valid Segment message that names no account, only its user (``userId``, ``anonymousId``).

    The worker attributes it through the users' ``group`` calls (:mod:`streamer.core.users`); the API
    stores it keyed by its user for the worker to do so.

    Attributes:
        users: The message's ``userId`` and ``anonymousId``, those it has, in that order.
        message: The message as received, to be parsed again once its account is known.
        occurred_at_ms: Its timestamp (everything but the account was checked).
    """

    def __init__(self, users: tuple[str, ...], message: Mapping[str, Any], occurred_at_ms: int) -> None:
        super().__init__(
            "context.groupId",
            f"no account for user {users[0]!r}: send a group call (userId → groupId) for the user, or "
            "context.groupId on the message",
        )
        self.users = users
        self.message = message
        self.occurred_at_ms = occurred_at_ms


def with_account(message: Mapping[str, Any], account_id: str) -> dict[str, Any]:
    """A Segment message with ``context.groupId`` set to ``account_id`` (its other fields unchanged)."""
    context = message.get("context")
    return {
        **message,
        "context": {**(context if isinstance(context, Mapping) else {}), "groupId": account_id},
    }


def links_user(event: UsageEvent) -> bool:
    """Whether an event says its user belongs to its account: a ``group`` call, or an ``identify``
    call naming the account (after the API re-encodes them, native events of those names)."""
    return event.user_id is not None and (
        (event.name == "group" and event.kind is EventKind.ACCOUNT_UPDATED) or event.name == "identify"
    )


def _native_parser() -> Callable[[bytes], UsageEvent | None] | None:
    """The compiled parser of the common event shape (``churnwatch_native``, built by ``make install``)."""
    try:
        from churnwatch_native import EventParser
    except ImportError:  # pragma: no cover - exercised where the extension is not built
        return None
    reserved = sorted(_KIND_BY_NAME)
    parser = EventParser(
        UsageEvent, EventKind.ACTIVITY, reserved, MAX_LEN, MAX_EVENT_BYTES, MIN_EVENT_MS, MAX_EVENT_MS
    )
    parse: Callable[[bytes], UsageEvent | None] = parser.parse
    return parse


# Every record the worker reads and every line a backtest replays (twice) is parsed.
_native_parse = _native_parser()


def parse_event(raw: bytes | str | Mapping[str, Any]) -> UsageEvent:
    """Parse and validate one usage event.

    Where the extension is installed, the shape nearly every event has (an activity in the native
    shape, without properties) is read by the compiled parser; it declines anything else, and
    :func:`python_parse_event`, the reference, reads it.

    Args:
        raw: JSON bytes/str or an already decoded mapping, in native or Segment shape.

    Returns:
        The validated event.

    Raises:
        InvalidEvent: On any schema violation, naming the field path and the rule.
    """
    if _native_parse is not None and type(raw) is bytes:
        event = _native_parse(raw)
        if event is not None:
            return event
    return python_parse_event(raw)


def python_parse_event(raw: bytes | str | Mapping[str, Any]) -> UsageEvent:
    """:func:`parse_event` in Python, with the same arguments, result and errors: the reference of the
    compiled parser, and the reader of every shape it declines."""
    if isinstance(raw, bytes | bytearray | memoryview | str):
        if len(raw) > MAX_EVENT_BYTES:
            # A usage event is a few hundred bytes; one this large is a producer bug, and re-sending it
            # (to its account's partition, when mis-keyed) could exceed Kafka's request size.
            raise InvalidEvent("$", f"larger than {MAX_EVENT_BYTES} bytes")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise InvalidEvent("$", f"not valid JSON: {err}") from None
    else:
        doc = raw
    if type(doc) is not dict and not isinstance(doc, Mapping):
        raise InvalidEvent("$", "must be a JSON object")
    if "specversion" in doc:
        return _parse_cloudevent(doc)
    if "type" in doc:
        return _parse_segment(doc)
    return _parse_native(doc)


CE_HEADER_PREFIX = "ce_"


def parse_record(value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> UsageEvent:
    """Parse a Kafka record: a CloudEvent in binary mode when it has a ``ce_specversion`` header,
    otherwise its value as :func:`parse_event` reads it.

    Raises:
        InvalidEvent: As :func:`parse_event`; a header attribute that is not UTF-8 names its header.
    """
    if not any(k == "ce_specversion" for k, _ in headers):
        if value is None:
            raise InvalidEvent("$", "empty message (a null value is not an event)")
        return parse_event(value)
    attributes: dict[str, Any] = {}
    for key, raw in headers:
        if key.startswith(CE_HEADER_PREFIX):
            try:
                attributes[key[len(CE_HEADER_PREFIX) :]] = raw.decode()
            except UnicodeDecodeError:
                raise InvalidEvent(key, "must be UTF-8") from None
    if value is not None:
        if len(value) > MAX_EVENT_BYTES:
            raise InvalidEvent("$", f"larger than {MAX_EVENT_BYTES} bytes")
        try:
            attributes["data"] = orjson.loads(value)
        except orjson.JSONDecodeError as err:
            raise InvalidEvent("data", f"not valid JSON: {err}") from None
    return _parse_cloudevent(attributes)


_CE_ACCOUNT_KEYS = ("accountid", "subject")


def _parse_cloudevent(d: Mapping[str, Any]) -> UsageEvent:
    """A CloudEvent as a native event.

    ``id`` is the event id, ``type`` the event name (a reserved name such as
    ``subscription_cancelled`` keeps its meaning), ``time`` the timestamp (required here, though
    optional in CloudEvents). The account is the ``accountid`` extension attribute, else ``subject``,
    else ``data.account_id``; the user is the ``userid`` extension, else ``data.user_id``. ``data``
    (a JSON object, ``datacontenttype`` JSON or absent) becomes the properties, without the two keys
    taken from it.
    """
    version = d.get("specversion")
    if version != "1.0":
        raise InvalidEvent("specversion", 'must be "1.0"')
    content_type = d.get("datacontenttype")
    if content_type is not None and (
        type(content_type) is not str or not content_type.split(";")[0].strip().endswith("json")
    ):
        raise InvalidEvent("datacontenttype", "must be a JSON media type (data is read as JSON)")
    if "data_base64" in d:
        raise InvalidEvent("data_base64", "not supported: send data as JSON")
    data = d.get("data")
    if data is None:
        data = {}
    elif type(data) is not dict:
        raise InvalidEvent("data", "must be a JSON object")
    props = dict(data)
    account = next((d[k] for k in _CE_ACCOUNT_KEYS if d.get(k) is not None), None)
    account_path = next((k for k in _CE_ACCOUNT_KEYS if d.get(k) is not None), "data.account_id")
    if account is None:
        account = props.pop("account_id", None)
        if account is None:
            raise InvalidEvent("accountid", "required: the accountid extension, subject or data.account_id")
    else:
        props.pop("account_id", None)
    user = d.get("userid")
    user_path = "userid"
    if user is None:
        user, user_path = props.pop("user_id", None), "data.user_id"
    else:
        props.pop("user_id", None)
    if d.get("time") is None:
        raise InvalidEvent("time", "required: churnwatch needs the time the event happened")
    native = {
        "event_id": _req_str(d, "id", "id"),
        "account_id": _checked_str(account, account_path),
        "event": _req_str(d, "type", "type"),
        "timestamp": d["time"],
        "user_id": _opt_str(user, user_path),
        "properties": props,
    }
    try:
        return _parse_native(native)
    except InvalidEvent as err:
        if err.field == "timestamp":
            raise InvalidEvent("time", err.rule) from None
        if err.field.startswith("properties"):
            raise InvalidEvent("data" + err.field[len("properties") :], err.rule) from None
        raise


def check_not_future(event: UsageEvent, now_ms: int, max_future_ms: int) -> None:
    """Reject an event stamped more than ``max_future_ms`` after ``now_ms`` (the receiver's clock).

    The worker applies it with its clock, and the API with its own, so that the API never accepts
    an event that the worker will dead-letter.

    Raises:
        InvalidEvent: On ``timestamp``, naming the bound.
    """
    check_time_not_future(event.occurred_at_ms, now_ms, max_future_ms)


def check_time_not_future(occurred_at_ms: int, now_ms: int, max_future_ms: int) -> None:
    """:func:`check_not_future` of a bare timestamp (of an :class:`Unattributed` message, say)."""
    if occurred_at_ms > now_ms + max_future_ms:
        raise InvalidEvent(
            "timestamp", f"more than {max_future_ms // 1000}s in the future of the receiver's clock"
        )


def check_encoded_size(raw: bytes) -> bytes:
    """``raw`` if a consumer of the topic would read it, else InvalidEvent on ``$`` naming the bound."""
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent("$", f"larger than {MAX_EVENT_BYTES} bytes")
    return raw


def encode_event(e: UsageEvent) -> bytes:
    """Encode an event as canonical native JSON that :func:`parse_event` round-trips.

    Args:
        e: The event.

    Returns:
        UTF-8 JSON bytes with sorted keys and the timestamp as epoch milliseconds.

    Raises:
        InvalidEvent: When the encoding is larger than :data:`MAX_EVENT_BYTES`, which a consumer
            of the topic would reject.
    """
    raw = orjson.dumps(
        {
            "event_id": e.event_id,
            "account_id": e.account_id,
            "event": e.name,
            "timestamp": e.occurred_at_ms,
            "user_id": e.user_id,
            "properties": dict(e.properties),
            "active": e.active,
            "kind": e.kind.value,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return check_encoded_size(raw)
