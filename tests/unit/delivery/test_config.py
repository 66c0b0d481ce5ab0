"""The delivery file: routing, snoozes and errors with key paths."""

# Each table row reads best as one line: a case and its expectation side by side.
# ruff: noqa: E501

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamer.delivery.config import DeliveryConfigError, Target, alert_facts, load_delivery_config, targets

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - a test value
T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)

FILE = f"""
[[destinations]]
name = "slack-ent"
type = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[[destinations]]
name = "crm"
type = "webhook"
url = "https://crm.example.com/hook"
secret = "{SECRET}"

[[destinations]]
name = "alice"
type = "webhook"
url = "http://127.0.0.1:9000/alice"
secret = "{SECRET}"

[[routes]]
kinds = ["account_quiet", "usage_drop"]
bands = ["poor", "average"]
segment = "enterprise"
destinations = ["slack-ent", "crm"]

[[routes]]
destinations = ["crm"]

[[routes]]
owner = "alice"
plans = ["pro"]
destinations = ["alice"]

[[snoozes]]
destination = "slack-ent"
account = "acme"
until = 2026-03-02T00:00:00Z

[[snoozes]]
kind = "usage_drop"
until = "2026-03-01T12:00:00+01:00"
"""
CONFIG = load_delivery_config(FILE)


def alert(
    kind: str = "account_quiet", band: str = "poor", account: str = "acme", **facts: str
) -> dict[str, Any]:
    return {"alert_id": "x", "kind": kind, "account_id": account, "health": {"band": band}, "evidence": facts}


@pytest.mark.parametrize(
    ("doc", "now_ms", "expected"),
    [
        # Enterprise quiet alert: the first route (snoozed for slack until 2026-03-02) and the catch-all.
        (alert(segment="enterprise"), T0, [Target("slack-ent", True), Target("crm", False)]),
        (alert(segment="enterprise"), T0 + 86_400_000, [Target("slack-ent", False), Target("crm", False)]),
        (
            alert(account="other", segment="enterprise"),
            T0,
            [Target("slack-ent", False), Target("crm", False)],
        ),
        # Wrong band or segment: only the catch-all.
        (alert(band="good", segment="enterprise"), T0, [Target("crm", False)]),
        (alert(segment="smb"), T0, [Target("crm", False)]),
        (alert(), T0, [Target("crm", False)]),
        # A kind snoozed for every destination until 11:00Z.
        (
            alert("usage_drop", account="b", segment="enterprise"),
            T0,
            [Target("slack-ent", True), Target("crm", True)],
        ),
        (alert("usage_drop", account="b"), T0 + 11 * 3_600_000, [Target("crm", False)]),
        # Owner and plan must both match.
        (alert(account="b", owner="alice", plan="pro"), T0, [Target("crm", False), Target("alice", False)]),
        (alert(account="b", owner="alice", plan="free"), T0, [Target("crm", False)]),
    ],
)
def test_routing_and_snoozes(doc: dict[str, Any], now_ms: int, expected: list[Target]) -> None:
    assert targets(CONFIG, doc, now_ms) == expected


def test_facts_prefer_the_account_object_then_top_level_then_evidence() -> None:
    doc = {
        "alert_id": "x",
        "kind": "usage_drop",
        "account_id": "a",
        "account": {"segment": "ent"},
        "plan": "pro",
        "evidence": {"segment": "smb", "plan": "free", "owner": "bo"},
    }
    facts = alert_facts(doc)
    assert (facts.segment, facts.plan, facts.owner, facts.band) == ("ent", "pro", "bo", None)


def test_no_routes_means_no_destinations() -> None:
    config = load_delivery_config('[[destinations]]\nname="a"\ntype="slack"\nurl="https://x.test/"\n')
    assert targets(config, alert(), T0) == []


DEST = '[[destinations]]\nname = "a"\ntype = "slack"\nurl = "https://x.test/"\n'


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("colour = 1", r"^\$\.colour: unknown key"),
        (
            "[[destinations]]\nname='a'\ntype='slack'\nurl='https://x.test/'\nuri='x'",
            r"destinations\[0\]\.uri: unknown",
        ),
        (
            "[[destinations]]\nname='a'\ntype='email'\nurl='https://x.test/'",
            r"destinations\[0\]\.type: must be one",
        ),
        (
            "[[destinations]]\nname='a'\ntype='slack'\nurl='ftp://x'",
            r"destinations\[0\]\.url: must be an http",
        ),
        (
            "[[destinations]]\nname='a'\ntype='webhook'\nurl='https://x.test/'",
            r"destinations\[0\]\.secret: must be",
        ),
        (
            "[[destinations]]\nname='a'\ntype='webhook'\nurl='https://x.test/'\nsecret='abc'",
            r"destinations\[0\]\.secret: secret must start with",
        ),
        (
            "[[destinations]]\nname='a'\ntype='slack'\nurl='https://x.test/'\nsecret='whsec_YQ=='",
            r"destinations\[0\]\.secret: only webhook",
        ),
        (DEST + DEST, r"destinations\[1\]\.name: duplicate"),
        (
            DEST + "[[routes]]\ndestinations=['b']",
            r"routes\[0\]\.destinations\[0\]: no destination named 'b'",
        ),
        (
            DEST + "[[routes]]\ndestinations=['a']\nkinds=['quiet']",
            r"routes\[0\]\.kinds: unknown \['quiet'\]",
        ),
        (DEST + "[[routes]]\ndestinations=['a']\nbands=['bad']", r"routes\[0\]\.bands: unknown"),
        (
            DEST + "[[routes]]\ndestinations=['a']\nband='poor'\nbands=['poor']",
            r"routes\[0\]: give bands or band",
        ),
        (DEST + "[[routes]]\ndestinations=['a']\nsegmnet='x'", r"routes\[0\]\.segmnet: unknown key"),
        (DEST + "[[routes]]\ndestinations=[]", r"routes\[0\]\.destinations: must be a non-empty"),
        (DEST + "[[snoozes]]\naccount='x'", r"snoozes\[0\]\.until: required"),
        (
            DEST + "[[snoozes]]\naccount='x'\nuntil=2026-01-01T00:00:00",
            r"snoozes\[0\]\.until: needs a UTC offset",
        ),
        (DEST + "[[snoozes]]\naccount='x'\nuntil='tomorrow'", r"snoozes\[0\]\.until: not an RFC 3339"),
        (DEST + "[[snoozes]]\nuntil=2026-01-01T00:00:00Z", r"snoozes\[0\]: needs account and/or kind"),
        (DEST + "[[snoozes]]\nkind='x'\nuntil=2026-01-01T00:00:00Z", r"snoozes\[0\]\.kind: unknown kind"),
        (
            DEST + "[[snoozes]]\ndestination='z'\nkind='usage_drop'\nuntil=2026-01-01T00:00:00Z",
            r"no destination",
        ),
        ("routes = 3", r"routes: must be an array of tables"),
        ("[[destinations]", r"\$: invalid TOML"),
    ],
)
def test_errors_name_the_key_path(text: str, error: str) -> None:
    with pytest.raises(DeliveryConfigError, match=error):
        load_delivery_config(text)


def test_the_documented_example_delivery_file_loads() -> None:
    from pathlib import Path

    from streamer.delivery.config import load_delivery_config

    text = (Path(__file__).resolve().parents[3] / "deploy" / "delivery.example.toml").read_text()
    config = load_delivery_config(text)
    assert set(config.destinations) == {"cs-slack", "crm"}
    assert len(config.routes) == 3 and len(config.snoozes) == 1


def test_the_fingerprint_changes_with_every_part_of_a_destination() -> None:
    from pydantic import SecretStr

    from streamer.delivery.config import Destination

    base = Destination("crm", "webhook", SecretStr("https://crm.example.com/hook"), SecretStr(SECRET))
    assert base.fingerprint == CONFIG.destinations["crm"].fingerprint
    assert len(base.fingerprint) == 64
    variants = [
        Destination("crm2", "webhook", base.url, base.secret),
        Destination("crm", "slack", base.url, None),
        Destination("crm", "webhook", SecretStr("https://crm.example.com/hook2"), base.secret),
        Destination("crm", "webhook", base.url, SecretStr("whsec_YWJj")),
        # Length-prefixed parts: moving a character from one part to the next changes it too.
        Destination("cr", "mwebhook", base.url, base.secret),
    ]
    assert len({base.fingerprint, *(v.fingerprint for v in variants)}) == 6


def test_daily_digest_is_a_kind_for_routes_and_snoozes_and_ledger_prefixes_are_not_names() -> None:
    config = load_delivery_config(
        '[[destinations]]\nname = "s"\ntype = "slack"\nurl = "https://hooks.slack.com/x"\n'
        '[[routes]]\nkind = "daily_digest"\ndestinations = ["s"]\n'
        '[[snoozes]]\nkind = "daily_digest"\nuntil = 2026-12-01T09:00:00Z\n'
    )
    assert config.routes[0].kinds == frozenset({"daily_digest"})
    for name in ("baseline:x", "disabled:y"):
        with pytest.raises(DeliveryConfigError, match=r"destinations\[0\]\.name: must not start with"):
            load_delivery_config(
                f'[[destinations]]\nname = "{name}"\ntype = "slack"\nurl = "https://h.example"\n'
            )


def test_onboarding_kinds_are_routed_and_snoozed_like_every_kind() -> None:
    config = load_delivery_config(
        f"""
[[destinations]]
name = "csm"
type = "webhook"
url = "https://csm.example.com/hook"
secret = "{SECRET}"

[[routes]]
kinds = ["milestone_missed", "onboarding_complete"]
destinations = ["csm"]

[[snoozes]]
kind = "onboarding_complete"
until = 2026-03-02T00:00:00Z
"""
    )
    assert targets(config, alert("milestone_missed"), T0) == [Target("csm", False)]
    assert targets(config, alert("onboarding_complete"), T0) == [Target("csm", True)]
    assert targets(config, alert("milestone_reached"), T0) == []
