"""Slack Block Kit message shape."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.core.alerts import Alert, AlertKind, Severity, alert_to_dict
from streamer.core.milestones import NOT_ONBOARDING
from streamer.core.scoring import Band, Health
from streamer.delivery.slack import slack_message

BLOCK_TYPES = {"header", "section", "context", "actions"}


def doc(account_id: str = "acme", kind: str = "usage_drop", **extra: Any) -> dict[str, Any]:
    health = Health(account_id, 1_750_000_000_000, 31, Band.POOR, (), 4.0, 40.0, 2, 3, NOT_ONBOARDING)
    alert = Alert(
        "a" * 32,
        AlertKind(kind),
        account_id,
        1_750_000_000_000,
        Severity.HIGH,
        health,
        {"last_activity_ms": 1_749_000_000_000, "current_weekly": 4.0, "baseline_weekly": 40.0, "ratio": 0.1},
    )
    return {**alert_to_dict(alert), **extra}


def assert_text_object(obj: Any) -> None:
    assert isinstance(obj, dict)
    assert obj["type"] in {"mrkdwn", "plain_text"}
    assert isinstance(obj["text"], str) and obj["text"]


def assert_block_kit(message: dict[str, Any]) -> None:
    assert isinstance(message["blocks"], list) and message["blocks"]
    for block in message["blocks"]:
        assert isinstance(block, dict) and block["type"] in BLOCK_TYPES
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= 150
        for obj in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if obj is None:
                continue
            if obj.get("type") == "button":
                assert_text_object(obj["text"])
                assert obj["text"]["type"] == "plain_text"
            else:
                assert_text_object(obj)


@pytest.mark.parametrize(
    "alert",
    [
        doc(),
        doc(kind="account_quiet"),
        doc(kind="account_recovered", evidence={"closed_episode": "account_quiet"}),
        doc(account_id="x" * 400),
        doc(account_id="acme/eu west", account={"name": "Acme GmbH", "owner": "alice"}),
        {"alert_id": "b", "kind": "weird", "account_id": "z"},
    ],
)
def test_every_message_is_valid_block_kit(alert: dict[str, Any]) -> None:
    assert_block_kit(slack_message(alert, "https://cw.example.com"))


def test_message_content() -> None:
    message = slack_message(doc(account={"name": "Acme GmbH", "owner": "alice"}), "https://cw.example.com/")
    header, section, context, actions = message["blocks"]
    assert header["text"]["text"] == "Acme GmbH (acme): usage dropped"
    fields = [f["text"] for f in section["fields"]]
    assert "*Score*\n31 (poor) ↓" in fields
    assert "*Owner*\nalice" in fields
    assert "*Severity*\nhigh" in fields
    assert "baseline 40 per week" in context["elements"][0]["text"]
    assert "ratio 10%" in context["elements"][0]["text"]
    assert actions["elements"][0]["url"] == "https://cw.example.com/v1/accounts/acme/health"
    assert message["text"] == header["text"]["text"]


def test_ids_are_escaped_in_the_link_and_long_headers_are_cut() -> None:
    message = slack_message(doc(account_id="acme/eu west"), "https://cw.example.com")
    assert message["blocks"][3]["elements"][0]["url"].endswith("/v1/accounts/acme%2Feu%20west/health")
    long = slack_message(doc(account_id="x" * 400), "https://cw.example.com")
    assert len(long["blocks"][0]["text"]["text"]) == 150
