"""Test portfolios with known answers: a usage history and the truth about every account in it.

``generate_portfolio(params)`` is pure: it builds the calendar and the accounts from seeded
``random.Random`` streams (one per account and purpose, so accounts do not disturb each other) and
returns a :class:`Portfolio` whose :meth:`Portfolio.chunks` generates the events day by day across
accounts, in time order, with memory bounded by one day's events. The same parameters give the
same lines, byte for byte. ``main`` is the command line that writes them to files::

    python -m streamer.sim.portfolio --shape b2b --accounts 1000 --months 12 --start 2025-01-06 \\
        --seed 1 --out history.jsonl.gz --truth truth.json
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from streamer.sim.activity import AccountRun, account_day
from streamer.sim.b2b import build_b2b
from streamer.sim.calendar import DAY_MS, Calendar, add_months, build_calendar, date_ms, ms_datetime
from streamer.sim.consumer import build_consumer
from streamer.sim.model import SimAccount
from streamer.sim.reserved import reserved_events
from streamer.sim.truth import Episode, PortfolioParams, Shape, Truth, TruthAccount, truth_to_json

__all__ = ["DEFAULTS", "Portfolio", "generate_portfolio", "main", "write_history"]

# Accounts, months and start of each shape's default portfolio; both histories contain a Christmas.
DEFAULTS: dict[str, tuple[int, int, date]] = {
    "b2b": (1000, 12, date(2025, 1, 6)),
    "consumer": (2000, 8, date(2025, 6, 2)),
}
_SHUFFLE_BLOCK = 2000  # lines shuffled together by --shuffle: minutes to hours of the history


@dataclass(frozen=True, slots=True)
class Portfolio:
    """A generated portfolio: resolved parameters, calendar, accounts, and the truth about them."""

    params: PortfolioParams
    calendar: Calendar
    accounts: tuple[SimAccount, ...]
    truth: Truth

    def chunks(self) -> Iterator[list[str]]:
        """The history as lists of JSON lines: first the events before it starts, then one per day.

        Lines are in time order (ties by line), unless the parameters ask for ``shuffle``: then
        blocks of consecutive lines are permuted, a deterministic local disorder that keeps every
        line. Each call generates the history afresh, identically.
        """
        ordered = self._ordered()
        yield from _shuffled(ordered, self.params.seed) if self.params.shuffle else ordered

    def lines(self) -> Iterator[str]:
        """The history one JSON line at a time (see :meth:`chunks`)."""
        for chunk in self.chunks():
            yield from chunk

    def _ordered(self) -> Iterator[list[str]]:
        seed, scale = self.params.seed, self.params.scale
        reserved = sorted(e for a in self.accounts for e in reserved_events(a, self.calendar, seed))
        runs = [AccountRun.start(a, seed) for a in self.accounts]
        i = 0
        while i < len(reserved) and reserved[i][0] < self.calendar.start_ms:
            i += 1
        yield [line for _, line in reserved[:i]]
        for day in self.calendar.days():
            batch: list[tuple[int, str]] = []
            day_end = day.start_ms + DAY_MS
            for run in runs:
                if run.acct.started_ms < day_end:
                    account_day(run, day, scale, batch)
            runs = [r for r in runs if r.acct.stop_ms > day_end]  # cancelled accounts are done
            while i < len(reserved) and reserved[i][0] < day_end:
                batch.append(reserved[i])
                i += 1
            batch.sort()
            yield [line for _, line in batch]


def _shuffled(chunks: Iterator[list[str]], seed: int) -> Iterator[list[str]]:
    rng = random.Random(f"{seed}/shuffle")
    buffer: list[str] = []
    for chunk in chunks:
        buffer.extend(chunk)
        full = len(buffer) - len(buffer) % _SHUFFLE_BLOCK
        for at in range(0, full, _SHUFFLE_BLOCK):
            block = buffer[at : at + _SHUFFLE_BLOCK]
            rng.shuffle(block)
            yield block
        buffer = buffer[full:]
    rng.shuffle(buffer)
    yield buffer


def _truth_account(a: SimAccount, params: PortfolioParams, start_ms: int, end_ms: int) -> TruthAccount:
    baseline = max(start_ms, a.started_ms + 60 * DAY_MS)
    users = [u for u in a.users if u.from_ms <= baseline < u.until_ms]
    weekend = 5 + 2 * a.weekend
    return TruthAccount(
        account_id=a.account_id,
        shape=params.shape,
        archetype=a.archetype,
        started_at=ms_datetime(a.started_ms),
        cancelled_at=ms_datetime(a.cancel_ms) if a.cancel_ms is not None and a.cancel_ms < end_ms else None,
        signal_start_at=None if a.signal_ms is None else ms_datetime(a.signal_ms),
        seats=a.seats,
        seats_at_end=a.seats_end,
        plan=a.plan,
        segment=a.segment,
        owner=a.owner,
        region=a.region,
        source="segment" if a.source == "segment" else "native",
        users=len(a.users),
        baseline_users=len(users),
        key_users=a.key_users,
        features=a.features,
        engagement=round(a.level, 3),
        weekly_events=round(params.scale * a.level * sum(u.p * u.m for u in users) * weekend, 1),
        episodes=tuple(Episode(k, ms_datetime(s), ms_datetime(e), f) for k, s, e, f in a.episodes),
    )


def generate_portfolio(params: PortfolioParams) -> Portfolio:
    """Build the portfolio ``params`` describe (nothing is generated until its lines are read).

    Raises:
        ValueError: On parameters that cannot make a history (no accounts, under two months...).
    """
    if params.shape not in DEFAULTS:
        raise ValueError(f"shape must be one of {', '.join(DEFAULTS)}")
    if params.accounts < 1 or params.months < 2 or params.scale <= 0 or not 0 <= params.segment_share <= 1:
        raise ValueError("need accounts >= 1, months >= 2, scale > 0 and 0 <= segment share <= 1")
    start_ms, end_ms = date_ms(params.start), date_ms(add_months(params.start, params.months))
    n_segment = round(params.accounts * params.segment_share)
    segment = set(random.Random(f"{params.seed}/sources").sample(range(params.accounts), n_segment))
    sources = ["segment" if i in segment else "native" for i in range(params.accounts)]
    cal = build_calendar(
        params.shape, start_ms, end_ms, random.Random(f"{params.seed}/calendar"), n_segment > 0
    )
    build = build_b2b if params.shape == "b2b" else build_consumer
    accounts, churn = build(params, cal, sources)
    params = replace(params, churn_rate=round(churn, 4))
    truth = Truth(
        params=params,
        history_start=ms_datetime(start_ms),
        history_end=ms_datetime(end_ms),
        calendar=cal.entries,
        accounts=tuple(_truth_account(a, params, start_ms, end_ms) for a in accounts),
    )
    return Portfolio(params, cal, tuple(accounts), truth)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streamer.sim.portfolio",
        description="Generate a usage history of a realistic portfolio and the truth about each account.",
    )
    p.add_argument(
        "--shape", choices=sorted(DEFAULTS), required=True, help="b2b (seats) or consumer (one person)"
    )
    p.add_argument("--accounts", type=int, help="number of accounts (b2b 1000, consumer 2000)")
    p.add_argument("--months", type=int, help="length of the history (b2b 12, consumer 8)")
    p.add_argument(
        "--start", type=date.fromisoformat, help="first day, UTC (b2b 2025-01-06, consumer 2025-06-02)"
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--out", type=Path, required=True, help="events, JSON lines; gzip when the name ends in .gz"
    )
    p.add_argument("--truth", type=Path, required=True, help="truth document, JSON")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies product event rates (default 1)")
    p.add_argument(
        "--segment-share", type=float, default=0.2, help="share of accounts sending Segment messages"
    )
    p.add_argument("--churn-rate", type=float, help="b2b: annual, consumer: monthly churn (default: drawn)")
    p.add_argument("--shuffle", action="store_true", help="write events locally out of order")
    return p


def _write_chunks(write: Callable[[bytes], object], chunks: Iterator[list[str]]) -> int:
    events = 0
    for chunk in chunks:
        if chunk:
            events += len(chunk)
            write(("\n".join(chunk) + "\n").encode())
    return events


def write_history(path: Path, chunks: Iterator[list[str]]) -> int:
    """Write the lines to ``path``, gzipped when its name ends in .gz; returns how many were written."""
    with path.open("wb") as raw:
        if not path.name.endswith(".gz"):
            return _write_chunks(raw.write, chunks)
        # mtime=0 and no file name in the header: the same history gives the same gzip bytes. Level 1
        # packs these lines to about 15% (the default, 6: 12%) in less than half the time.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) as packed:
            return _write_chunks(packed.write, chunks)


def main(argv: Sequence[str] | None = None) -> int:
    """Write a portfolio's events (``--out``) and truth (``--truth``); report sizes on stderr."""
    args = _parser().parse_args(argv)
    shape: Shape = args.shape
    accounts, months, start = DEFAULTS[shape]
    params = PortfolioParams(
        shape=shape,
        accounts=args.accounts or accounts,
        months=args.months or months,
        start=args.start or start,
        seed=args.seed,
        scale=args.scale,
        segment_share=args.segment_share,
        churn_rate=args.churn_rate,
        shuffle=args.shuffle,
    )
    began = time.perf_counter()
    portfolio = generate_portfolio(params)
    args.truth.write_bytes(truth_to_json(portfolio.truth))
    events = write_history(args.out, portfolio.chunks())
    seconds = time.perf_counter() - began
    cancelled = Counter(a.archetype for a in portfolio.truth.accounts if a.cancelled_at is not None)
    sys.stderr.write(
        f"{events:,} events, {len(portfolio.accounts):,} accounts, {sum(cancelled.values())} cancelled "
        f"({', '.join(f'{k} {v}' for k, v in sorted(cancelled.items()))}); "
        f"{seconds:.1f} s, {events / seconds:,.0f} events/s\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
