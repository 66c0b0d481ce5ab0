"""``python -m api.keys``: create a new API key.

Usage::

    python -m api.keys --name billing-etl --scope events:write --scope health:read
    python -m api.keys --name ana --owner ana@example.com
    python -m api.keys --name app-eu --scope events:write --account-prefix eu-

Writes the random key once (store it in the client's secret store; it cannot be recovered) and
the JSON entry to merge into ``CHURNWATCH_API_KEYS``, which holds only its SHA-256 hash::

    CHURNWATCH_API_KEYS='{"<sha256 hex>": {"name": "billing-etl", "scopes": ["events:write"]}}'

Clients then send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. ``--owner`` and
``--segment`` restrict what the key reads to accounts with that owner or segment (both: both),
``--account-prefix`` what it writes to accounts whose id starts with the prefix; the entry is
checked as the API checks it at start-up.

``python -m api.keys --name demo --config-for .local/demo-api-key`` keeps a key in that file
(creating it once) and writes only the ``CHURNWATCH_API_KEYS`` value for it; ``make demo`` uses it.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
from pydantic import ValidationError

from api.auth import SCOPES, hash_key
from api.settings import ApiKeySpec, spec_problems

_READ_SCOPES = ["health:read", "alerts:read"]


def key_config(
    name: str,
    scopes: list[str],
    *,
    owner: str | None = None,
    segment: str | None = None,
    account_prefix: str | None = None,
) -> dict[str, object]:
    """The configuration of one key: name, sorted scopes and only the restrictions given.

    Raises:
        ValidationError: When the API would refuse this entry at start-up.
    """
    restrictions = {"owner": owner, "segment": segment, "account_prefix": account_prefix}
    config: dict[str, object] = {"name": name, "scopes": sorted(set(scopes))}
    config.update({field: value for field, value in restrictions.items() if value is not None})
    ApiKeySpec.model_validate(config)
    return config


def new_key_entry(
    name: str,
    scopes: list[str],
    *,
    owner: str | None = None,
    segment: str | None = None,
    account_prefix: str | None = None,
) -> tuple[str, dict[str, object]]:
    """Create a random key and its configuration entry.

    Args:
        name: Who the key is for (appears in logs and rate-limit messages).
        scopes: Granted scopes.
        owner: Read only accounts whose ``facts.owner`` is this.
        segment: Read only accounts whose ``facts.segment`` is this.
        account_prefix: Write only events of accounts whose id starts with this.

    Returns:
        The plain key and ``{sha256_hex: {"name": ..., "scopes": [...], <restrictions>}}``.

    Raises:
        ValidationError: When the API would refuse this entry at start-up.
    """
    config = key_config(name, scopes, owner=owner, segment=segment, account_prefix=account_prefix)
    key = "cw_" + secrets.token_urlsafe(32)
    return key, {hash_key(key): config}


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m api.keys",
        description="Create a churnwatch API key and print its CHURNWATCH_API_KEYS entry.",
        epilog="Restrictions limit a key to some accounts: reading accounts outside them answers as if "
        "they did not exist (404, left out of lists, figures and alerts); writing events for them "
        "rejects those events one by one. A key restricted by --owner or --segment cannot have "
        "events:write.",
    )
    parser.add_argument("--name", required=True, help="who the key is for")
    parser.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        default=None,
        help="grant a scope (repeatable; default: all, or health:read and alerts:read with --owner or "
        "--segment)",
    )
    parser.add_argument("--owner", help="read only accounts whose facts.owner is OWNER")
    parser.add_argument("--segment", help="read only accounts whose facts.segment is SEGMENT")
    parser.add_argument(
        "--account-prefix", metavar="PREFIX", help="write only events of accounts whose id starts with PREFIX"
    )
    parser.add_argument("--config-for", metavar="FILE", help="reuse (or create) the key kept in FILE")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Parse arguments, create a key and write it with its configuration entry to stdout."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    default_scopes = _READ_SCOPES if args.owner is not None or args.segment is not None else list(SCOPES)
    scopes = args.scope or default_scopes
    restrictions = {"owner": args.owner, "segment": args.segment, "account_prefix": args.account_prefix}
    try:
        config = key_config(args.name, scopes, **restrictions)
    except ValidationError as err:
        parser.error(spec_problems(err))
    if args.config_for:
        path = Path(args.config_for)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_key_entry(args.name, [])[0] + "\n")
            path.chmod(0o600)
        key = path.read_text().strip()
        sys.stdout.write(orjson.dumps({hash_key(key): config}).decode() + "\n")
        return
    key, entry = new_key_entry(args.name, scopes, **restrictions)
    sys.stdout.write(f"API key (shown once, store it now): {key}\n")
    sys.stdout.write(f"SHA-256: {next(iter(entry))}\n")
    sys.stdout.write("Merge into CHURNWATCH_API_KEYS:\n")
    sys.stdout.write(orjson.dumps(entry).decode() + "\n")


if __name__ == "__main__":
    main()
