"""CloudEvents 1.0 on the input: structured (one JSON object) and binary (ce_ headers, data as value)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamer.core.events import EventKind, InvalidEvent, parse_event, parse_record

AT = "2026-03-02T09:30:00Z"
AT_MS = 1_772_443_800_000


def structured(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/billing",
        "type": "report_exported",
        "time": AT,
        "subject": "acme",
        "datacontenttype": "application/json",
        "data": {"user_id": "u-42", "format": "csv"},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def test_a_structured_cloudevent_maps_to_the_native_event() -> None:
    e = parse_event(orjson.dumps(structured()))
    assert (e.event_id, e.account_id, e.name, e.occurred_at_ms, e.user_id) == (
        "ce-1",
        "acme",
        "report_exported",
        AT_MS,
        "u-42",
    )
    assert dict(e.properties) == {"format": "csv"} and e.kind is EventKind.ACTIVITY


def test_the_accountid_extension_wins_over_subject_and_data() -> None:
    e = parse_event(
        structured(accountid="globex", userid="u-1", data={"account_id": "x", "user_id": "y", "n": 1})
    )
    assert (e.account_id, e.user_id, dict(e.properties)) == ("globex", "u-1", {"n": 1})
    e = parse_event(structured(subject=None, data={"account_id": "initech"}))
    assert (e.account_id, e.user_id) == ("initech", None)


def test_a_reserved_type_keeps_its_meaning() -> None:
    e = parse_event(structured(type="nps_response", data={"score": 9}))
    assert e.kind is EventKind.NPS_RESPONSE and e.properties["score"] == 9


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"specversion": "0.3"}, "specversion", 'must be "1.0"'),
        ({"time": None}, "time", "required: churnwatch needs the time the event happened"),
        ({"time": "yesterday"}, "time", "must be RFC 3339 with a UTC offset or integer epoch milliseconds"),
        (
            {"subject": None, "data": {}},
            "accountid",
            "required: the accountid extension, subject or data.account_id",
        ),
        (
            {"datacontenttype": "text/plain"},
            "datacontenttype",
            "must be a JSON media type (data is read as JSON)",
        ),
        ({"data": [1, 2]}, "data", "must be a JSON object"),
        ({"data_base64": "AAAA"}, "data_base64", "not supported: send data as JSON"),
        ({"id": None}, "id", "required"),
        ({"subject": "x" * 129}, "subject", "must be 1..128 characters"),
        ({"data": {"seats": 5, "n": float("inf")}}, "data.n", "numbers must be finite"),
    ],
)
def test_invalid_cloudevents_name_the_attribute(overrides: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_event(structured(**overrides))
    assert (err.value.field, err.value.rule) == (field, rule)


def binary_headers(**extra: str) -> list[tuple[str, bytes]]:
    attrs = {
        "specversion": "1.0",
        "id": "ce-2",
        "source": "/app",
        "type": "login",
        "time": AT,
        "subject": "acme",
    }
    attrs.update(extra)
    return [("content-type", b"application/json"), *((f"ce_{k}", v.encode()) for k, v in attrs.items())]


def test_a_binary_mode_record_takes_its_attributes_from_ce_headers_and_data_from_the_value() -> None:
    e = parse_record(orjson.dumps({"user_id": "u-7", "page": "/home"}), binary_headers(userid="u-8"))
    assert (e.event_id, e.account_id, e.name, e.occurred_at_ms, e.user_id) == (
        "ce-2",
        "acme",
        "login",
        AT_MS,
        "u-8",
    )
    assert dict(e.properties) == {"page": "/home"}
    # Without a value, the data is empty.
    assert dict(parse_record(None, binary_headers()).properties) == {}


def test_a_binary_mode_record_with_bad_parts_names_them() -> None:
    with pytest.raises(InvalidEvent) as err:
        parse_record(b"{", binary_headers())
    assert err.value.field == "data"
    with pytest.raises(InvalidEvent) as err:
        parse_record(b"{}", [*binary_headers(), ("ce_subject2", b"\xff")])
    assert err.value.field == "ce_subject2"


def test_records_without_ce_headers_are_read_as_before() -> None:
    native = {"event_id": "e1", "account_id": "acme", "event": "login", "timestamp": AT_MS}
    assert parse_record(orjson.dumps(native), [("traceparent", b"00-x")]).event_id == "e1"
    with pytest.raises(InvalidEvent) as err:
        parse_record(None)
    assert err.value.field == "$"
