"""``python -m api.keys``: create a new API key.

Usage::

    python -m api.keys --name billing-etl --scope events:write --scope health:read

Writes the random key once (store it in the client's secret store; it cannot be recovered) and
the JSON entry to merge into ``CHURNWATCH_API_KEYS``, which holds only its SHA-256 hash::

    CHURNWATCH_API_KEYS='{"<sha256 hex>": {"name": "billing-etl", "scopes": ["events:write"]}}'

Clients then send ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

``python -m api.keys --name demo --config-for .local/demo-api-key`` keeps a key in that file
(creating it once) and writes only the ``CHURNWATCH_API_KEYS`` value for it; ``make demo`` uses it.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

import orjson

from api.auth import SCOPES, hash_key


def new_key_entry(name: str, scopes: list[str]) -> tuple[str, dict[str, object]]:
    """Create a random key and its configuration entry.

    Args:
        name: Who the key is for (appears in logs and rate-limit messages).
        scopes: Granted scopes.

    Returns:
        The plain key and ``{sha256_hex: {"name": ..., "scopes": [...]}}``.
    """
    key = "cw_" + secrets.token_urlsafe(32)
    return key, {hash_key(key): {"name": name, "scopes": sorted(set(scopes))}}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, create a key and write it with its configuration entry to stdout."""
    parser = argparse.ArgumentParser(description="Create a churnwatch API key.")
    parser.add_argument("--name", required=True, help="who the key is for")
    parser.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        default=None,
        help="grant a scope (repeatable; default: all)",
    )
    parser.add_argument("--config-for", metavar="FILE", help="reuse (or create) the key kept in FILE")
    args = parser.parse_args(argv)
    if args.config_for:
        path = Path(args.config_for)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_key_entry(args.name, [])[0] + "\n")
            path.chmod(0o600)
        key = path.read_text().strip()
        config = {hash_key(key): {"name": args.name, "scopes": sorted(set(args.scope or SCOPES))}}
        sys.stdout.write(orjson.dumps(config).decode() + "\n")
        return
    key, entry = new_key_entry(args.name, args.scope or list(SCOPES))
    sys.stdout.write(f"API key (shown once, store it now): {key}\n")
    sys.stdout.write(f"SHA-256: {next(iter(entry))}\n")
    sys.stdout.write("Merge into CHURNWATCH_API_KEYS:\n")
    sys.stdout.write(orjson.dumps(entry).decode() + "\n")


if __name__ == "__main__":
    main()
