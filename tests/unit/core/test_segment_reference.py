"""The Segment parser against a reference: the same messages described as a strict pydantic model.

The parser checks the fields by hand (it is on the ingest path of every Segment message, and the model
cost twice as much). Whatever the message, both must agree: the same event, or an error on the same
field with the same rule. Derandomized, a fixed number of examples, no deadline.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.core.events import MAX_LEN, InvalidEvent, Unattributed, UsageEvent, parse_event

_Id = Field(default=None, min_length=1, max_length=MAX_LEN)


class _Context(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    groupId: str | None = _Id  # noqa: N815
    active: bool | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: str
    messageId: str = Field(min_length=1, max_length=MAX_LEN)  # noqa: N815
    event: str | None = _Id
    userId: str | None = _Id  # noqa: N815
    anonymousId: str | None = _Id  # noqa: N815
    groupId: str | None = _Id  # noqa: N815
    timestamp: Any = None
    originalTimestamp: Any = None  # noqa: N815
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: _Context | None = None


_RULES = {
    "missing": "required",
    "string_type": "must be a string",
    "string_too_short": f"must be 1..{MAX_LEN} characters",
    "string_too_long": f"must be 1..{MAX_LEN} characters",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "bool_type": "must be a boolean",
}


def _reference_error(doc: dict[str, Any]) -> tuple[str, str] | None:
    """The first field error the model finds in the fields both describe, as (field, rule)."""
    try:
        _Message.model_validate(doc)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        return ".".join(str(p) for p in first["loc"]), _RULES[first["type"]]
    return None


FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
_ids = (
    st.none()
    | st.sampled_from(["", "u-1", "acme", "x" * (MAX_LEN + 1), "Report Exported"])
    | st.integers(0, 3)
)
_objects = (
    st.none()
    | st.integers()
    | st.lists(st.integers(), max_size=2)
    | st.fixed_dictionaries(
        {},
        optional={
            "plan": st.sampled_from(["pro", 3]),
            "groupId": _ids,
            "company": st.fixed_dictionaries({"id": _ids}),
        },
    )
)
_contexts = (
    st.none()
    | st.integers()
    | st.fixed_dictionaries(
        {},
        optional={
            "groupId": _ids,
            "active": st.none() | st.booleans() | st.sampled_from([0, "yes"]),
            "traits": _objects,
            "library": st.just({"name": "analytics-python"}),
        },
    )
)
_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["track", "identify", "group", "page", "screen"])},
    optional={
        "messageId": _ids,
        "event": _ids,
        "userId": _ids,
        "anonymousId": _ids,
        "groupId": _ids,
        "timestamp": st.sampled_from(["2026-11-22T09:15:00Z", 1_772_442_000_000, None, "yesterday"]),
        "originalTimestamp": st.sampled_from(["2026-11-22T09:15:00+01:00", None]),
        "properties": _objects,
        "traits": _objects,
        "context": _contexts,
    },
)


@FUZZ
@given(_messages)
def test_the_parser_finds_what_the_reference_model_finds(doc: dict[str, Any]) -> None:
    expected = _reference_error(doc)
    try:
        parsed: UsageEvent | tuple[str, str] = parse_event(doc)
    except Unattributed as exc:
        parsed = (exc.field, "unattributed")
    except InvalidEvent as exc:
        parsed = (exc.field, exc.rule)
    if expected is not None:
        # The model's field errors come first, in its field order; the parser's are the same.
        assert parsed == expected, doc
    else:
        # Valid fields: the rest (timestamps, track names, reserved properties) is the parser's alone,
        # and none of it may be a field-type error.
        assert not (isinstance(parsed, tuple) and parsed[1] in set(_RULES.values()) - {"required"}), (
            doc,
            parsed,
        )
        if isinstance(parsed, UsageEvent):
            model = _Message.model_validate(doc)
            ctx = model.context
            assert parsed.event_id == model.messageId
            assert parsed.account_id == _reference_account(model)
            assert parsed.user_id == (model.userId or model.anonymousId)
            assert parsed.active == (ctx is None or ctx.active is not False)


def _reference_account(model: _Message) -> str | None:
    ctx = model.context
    if ctx is not None and ctx.groupId:
        return ctx.groupId
    if model.groupId:
        return model.groupId
    traits = model.traits
    if traits is None and ctx is not None and isinstance((ctx.model_extra or {}).get("traits"), dict):
        traits = (ctx.model_extra or {})["traits"]
    if model.type != "identify" or not traits:
        return None
    company = traits.get("company")
    found = traits.get("groupId")
    if found is None and isinstance(company, dict):
        found = company.get("id")
    return found if isinstance(found, str) else None
