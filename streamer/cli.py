"""``churnwatch``: one command for every part of churnwatch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamer import backfill
from streamer.backtest import run as backtest

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the subcommand; the exit status."""
    parser = argparse.ArgumentParser(prog="churnwatch", description="Streaming churn early warning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backtest.add_parser(sub)
    backfill.add_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
