"""Key restrictions: the scope values, their configuration and its checks, and the key command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from api.auth import hash_key, lookup
from api.keys import main as keys_main
from api.restrictions import EVERY_ACCOUNT, AccountPrefix, AccountScope
from api.settings import ApiSettings

REPO = Path(__file__).resolve().parents[3]
DIGEST = "ab" * 32
READS = ["health:read", "alerts:read"]


@pytest.mark.parametrize(
    ("scope", "facts", "permitted"),
    [
        (EVERY_ACCOUNT, None, True),  # unrestricted: even an account whose facts are unknown
        (EVERY_ACCOUNT, {"owner": "bob"}, True),
        (AccountScope(owner="ann"), {"owner": "ann", "segment": "smb"}, True),
        (AccountScope(owner="ann"), {"owner": "bob"}, False),
        (AccountScope(owner="ann"), {"owner": "Ann"}, False),  # compared exactly
        (AccountScope(owner="ann"), {}, False),  # no owner yet
        (AccountScope(owner="ann"), None, False),  # facts unknown
        (AccountScope(owner="ann"), ["owner", "ann"], False),  # not an object
        (AccountScope(segment="enterprise"), {"owner": "bob", "segment": "enterprise"}, True),
        (AccountScope(segment="enterprise"), {"segment": "smb"}, False),
        # Both given: both must match.
        (AccountScope(owner="ann", segment="enterprise"), {"owner": "ann", "segment": "enterprise"}, True),
        (AccountScope(owner="ann", segment="enterprise"), {"owner": "ann", "segment": "smb"}, False),
        (AccountScope(owner="ann", segment="enterprise"), {"owner": "bob", "segment": "enterprise"}, False),
    ],
)
def test_account_scope_permits_accounts_whose_facts_match_every_restriction(
    scope: AccountScope, facts: Any, permitted: bool
) -> None:
    assert scope.permits(facts) is permitted


@pytest.mark.parametrize(
    ("prefix", "account_id", "permitted"),
    [
        (None, "anything", True),
        ("eu-", "eu-acme", True),
        ("eu-", "eu-", True),  # the prefix alone is an id that starts with it
        ("eu-", "EU-acme", False),  # case-sensitive
        ("eu-", "neu-acme", False),  # a prefix, not a substring
        ("eu-", "eu", False),
    ],
)
def test_account_prefix_permits_ids_that_start_with_it(
    prefix: str | None, account_id: str, permitted: bool
) -> None:
    assert AccountPrefix(prefix).permits(account_id) is permitted


def test_a_configured_key_resolves_to_a_principal_with_its_restrictions() -> None:
    settings = ApiSettings(
        api_keys={
            hash_key("k1"): {"name": "emea", "scopes": READS, "owner": "ann", "segment": "enterprise"},
            hash_key("k2"): {"name": "app-eu", "scopes": ["events:write"], "account_prefix": "eu-"},
            hash_key("k3"): {"name": "all", "scopes": READS},
        }
    )

    emea, app_eu, everything = (lookup(k, settings.api_keys) for k in ("k1", "k2", "k3"))

    assert emea is not None and app_eu is not None and everything is not None
    assert (emea.reads, emea.writes) == (AccountScope(owner="ann", segment="enterprise"), AccountPrefix())
    assert (app_eu.reads, app_eu.writes) == (EVERY_ACCOUNT, AccountPrefix("eu-"))
    assert (everything.reads, everything.writes) == (EVERY_ACCOUNT, AccountPrefix())


_KNOWN = "known: name, scopes, owner, segment, account_prefix"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "ana", "scopes": READS, "ownr": "ana@example.com"},
            f"key 'ana' (abababababab…): ownr: unknown field ({_KNOWN})",
        ),
        (
            {"name": "ana", "scopes": READS, "owner": ""},
            "key 'ana' (abababababab…): owner: String should have at least 1 character",
        ),
        (
            {"name": "ana", "scopes": READS, "segment": 7},
            "key 'ana' (abababababab…): segment: Input should be a valid string",
        ),
        (
            {"name": "ana", "scopes": READS, "account_prefix": "x" * 129},
            "key 'ana' (abababababab…): account_prefix: String should have at most 128 characters",
        ),
        (
            {"name": "ana", "scopes": ["events:write"], "owner": "ana@example.com"},
            "key 'ana' (abababababab…): owner: restricts reads, but the key has neither health:read nor "
            "alerts:read",
        ),
        (
            {"name": "ana", "scopes": [*READS, "events:write"], "segment": "enterprise"},
            "key 'ana' (abababababab…): segment: a key restricted by segment cannot also have events:write "
            "(its events could set any account's segment and so widen what it reads); give writing a key "
            "of its own",
        ),
        (
            {"name": "app-eu", "scopes": READS, "account_prefix": "eu-"},
            "key 'app-eu' (abababababab…): account_prefix: restricts writes, but the key has no events:write",
        ),
        (
            {"scopes": READS, "owner": "", "colour": "red"},
            f"key abababababab…: name: Field required; owner: String should have at least 1 character; "
            f"colour: unknown field ({_KNOWN})",
        ),
    ],
)
def test_invalid_restrictions_are_refused_naming_the_key_and_the_field(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        ApiSettings(api_keys={DIGEST: spec, hash_key("fine"): {"name": "fine", "scopes": READS}})

    [error] = caught.value.errors()
    assert error["loc"] == ("api_keys",)
    assert error["msg"] == f"Value error, {message}"


def test_the_api_process_refuses_to_start_with_an_invalid_restriction() -> None:
    keys = {DIGEST: {"name": "ana", "scopes": READS, "owner": "ana", "team": "emea"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")}
    env["CHURNWATCH_API_KEYS"] = orjson.dumps(keys).decode()

    done = subprocess.run(
        [sys.executable, "-m", "api", "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert f"Value error, key 'ana' (abababababab…): team: unknown field ({_KNOWN})" in done.stderr


@pytest.mark.parametrize(
    ("args", "config"),
    [
        (
            ["--name", "ana", "--owner", "ana@example.com"],
            {"name": "ana", "scopes": ["alerts:read", "health:read"], "owner": "ana@example.com"},
        ),
        (
            ["--name", "emea", "--scope", "health:read", "--segment", "enterprise", "--owner", "ann"],
            {"name": "emea", "scopes": ["health:read"], "owner": "ann", "segment": "enterprise"},
        ),
        (
            ["--name", "app-eu", "--scope", "events:write", "--account-prefix", "eu-"],
            {"name": "app-eu", "scopes": ["events:write"], "account_prefix": "eu-"},
        ),
        (
            ["--name", "etl"],
            {"name": "etl", "scopes": ["alerts:read", "events:write", "health:read"]},
        ),
    ],
)
def test_the_key_command_prints_an_entry_with_the_restrictions_the_api_accepts(
    args: list[str], config: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    keys_main(args)

    lines = capsys.readouterr().out.splitlines()
    key = lines[0].removeprefix("API key (shown once, store it now): ")
    entry = orjson.loads(lines[-1])
    assert entry == {hash_key(key): config}
    principal = lookup(key, ApiSettings(api_keys=entry).api_keys)
    assert principal is not None


def test_the_key_command_keeps_restrictions_for_a_key_kept_in_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ana-key"
    keys_main(["--name", "ana", "--owner", "ana@example.com", "--config-for", str(path)])

    entry = orjson.loads(capsys.readouterr().out)
    assert entry == {
        hash_key(path.read_text().strip()): {
            "name": "ana",
            "scopes": ["alerts:read", "health:read"],
            "owner": "ana@example.com",
        }
    }


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--name", "ana", "--owner", "ana", "--scope", "health:read", "--scope", "events:write"],
            "owner: a key restricted by owner cannot also have events:write (its events could set any "
            "account's owner and so widen what it reads); give writing a key of its own",
        ),
        (
            ["--name", "app-eu", "--scope", "health:read", "--account-prefix", "eu-"],
            "account_prefix: restricts writes, but the key has no events:write",
        ),
        (["--name", "ana", "--segment", ""], "segment: String should have at least 1 character"),
    ],
)
def test_the_key_command_refuses_restrictions_the_api_would_refuse(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        keys_main(args)

    out = capsys.readouterr()
    assert exited.value.code == 2
    assert out.out == ""
    assert out.err.endswith(f"python -m api.keys: error: {error}\n")


def test_the_key_command_documents_its_restriction_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        keys_main(["--help"])

    text = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    for option in (
        "--owner OWNER read only accounts whose facts.owner is OWNER",
        "--segment SEGMENT read only accounts whose facts.segment is SEGMENT",
        "--account-prefix PREFIX write only events of accounts whose id starts with PREFIX",
    ):
        assert option in text
