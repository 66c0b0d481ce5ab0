"""``churnwatch``: one command for every part of churnwatch.

Each subcommand is also its module's own entry point (``python -m streamer``, ``python -m api``, …),
which keeps working; the modules are imported only when their subcommand runs, so ``churnwatch
backtest`` never loads Faust or the API.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streamer import backfill
from streamer.backtest import run as backtest

__all__ = ["main"]

# Subcommands whose module parses its own arguments: name -> (module, one-line help).
_FORWARDED = {
    "worker": ("streamer.worker.__main__", "run a worker: usage events in, health and alerts out"),
    "api": ("api.__main__", "serve the API, HTTP ingest and the dashboard"),
    "delivery": ("streamer.delivery.__main__", "deliver alerts to Slack and signed webhooks"),
    "simulate": ("streamer.sim.live", "simulate product usage of seeded accounts into Kafka or a file"),
    "keys": ("api.keys", "create an API key and print its CHURNWATCH_API_KEYS entry"),
    "watch": ("streamer.watch", "follow the alert topic in the terminal"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="churnwatch",
        description="Streaming churn early warning. `churnwatch COMMAND --help` describes each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in _FORWARDED.items():
        sub.add_parser(name, help=summary, add_help=False)
    backtest.add_parser(sub)
    backfill.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _FORWARDED:
        module = importlib.import_module(_FORWARDED[args[0]][0])
        module.main(args[1:], prog=f"churnwatch {args[0]}")
        return 0
    ns = _parser().parse_args(args)
    code: int = ns.func(ns)
    return code


if __name__ == "__main__":
    sys.exit(main())
