"""A history file of usage events, read once, sorted by event time in bounded memory.

A history is JSON lines exactly as accepted on ``usage-events`` (native or Segment shape), plain or
gzip. Lines are parsed with the worker's own parser; an invalid line is counted by reason and
skipped, as the worker would dead-letter it. Lines are sorted by event time (ties keep file order)
with an external merge sort: runs of at most ``run_lines`` lines are sorted in memory and spilled
to temporary files, then merged, so tens of millions of events need only one run's memory.

While reading, the facts a backtest needs before it replays anything are collected: each account's
cancellation times (the outcomes), the event names by frequency, and the time span.
"""

from __future__ import annotations

import gzip
import heapq
import itertools
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from streamer.core.events import EventKind, InvalidEvent, parse_event

__all__ = ["History", "open_text", "read_history"]


def open_text(path: Path) -> IO[bytes]:
    """Open a history file for binary reading, gunzipping it when it is gzip (by its magic bytes)."""
    raw = path.open("rb")
    if raw.peek(2)[:2] == b"\x1f\x8b":
        raw.close()
        return cast(IO[bytes], gzip.open(path, "rb"))
    return raw


@dataclass(slots=True)
class History:
    """A history read and sorted: iterate it with :meth:`events` (bytes lines in event-time order)."""

    lines: int = 0
    valid: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    # The span of the history's activity: facts and subscription starts dated long before the first
    # product event (an account's real start date, say) do not start it.
    first_ms: int | None = None
    last_ms: int | None = None
    earliest_ms: int | None = None
    # Account id -> its subscription_cancelled times, in event-time order.
    cancellations: dict[str, list[int]] = field(default_factory=dict)
    # Account id -> its subscription_started times, in event-time order.
    starts: dict[str, list[int]] = field(default_factory=dict)
    names: Counter[str] = field(default_factory=Counter)
    was_sorted: bool = True
    _runs: list[Path] = field(default_factory=list)
    _memory: list[tuple[int, int, bytes]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def events(self) -> Iterator[tuple[int, bytes]]:
        """``(event time ms, line)`` for every valid line, in event-time order (file order on ties)."""
        if not self._runs:
            for at, _, line in self._memory:
                yield at, line
            return
        with ExitStack() as stack:
            files = [stack.enter_context(path.open("rb")) for path in self._runs]
            streams = [_read_run(f) for f in files]
            for at, _, line in heapq.merge(*streams):
                yield at, line

    def close(self) -> None:
        """Delete the spilled runs."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._runs.clear()
        self._memory.clear()


def _read_run(f: IO[bytes]) -> Iterator[tuple[int, int, bytes]]:
    for row in f:
        at, seq, line = row.split(b"\t", 2)
        yield int(at), int(seq), line.rstrip(b"\n")


def read_history(
    path: Path,
    *,
    run_lines: int = 500_000,
    progress: Callable[[int], None] | None = None,
) -> History:
    """Read, validate and sort a history file.

    Args:
        path: JSON lines, plain or gzip.
        run_lines: Most lines sorted in memory at once.
        progress: Called with the bytes read so far, now and then.

    Returns:
        The history, ready to iterate in event-time order; call :meth:`History.close` when done.
    """
    history = History()
    run: list[tuple[int, int, bytes]] = []
    previous = -(2**63)
    size_seen = 0
    with open_text(path) as f:
        for seq, line in enumerate(f):
            size_seen += len(line)
            history.lines += 1
            line = line.rstrip(b"\r\n")
            if not line.strip():
                history.lines -= 1
                continue
            try:
                event = parse_event(line)
            except InvalidEvent as err:
                history.invalid[err.field] += 1
                continue
            at = event.occurred_at_ms
            history.valid += 1
            history.names[event.name] += 1
            if at < previous:
                history.was_sorted = False
            previous = max(previous, at)
            history.earliest_ms = at if history.earliest_ms is None else min(history.earliest_ms, at)
            history.last_ms = at if history.last_ms is None else max(history.last_ms, at)
            if event.kind is EventKind.ACTIVITY and (history.first_ms is None or at < history.first_ms):
                history.first_ms = at
            if event.kind is EventKind.SUBSCRIPTION_CANCELLED:
                history.cancellations.setdefault(event.account_id, []).append(at)
            elif event.kind is EventKind.SUBSCRIPTION_STARTED:
                history.starts.setdefault(event.account_id, []).append(at)
            run.append((at, seq, line))
            if len(run) >= run_lines:
                _spill(history, run)
                run = []
            if progress is not None and seq % 8192 == 0:
                progress(size_seen)
    if history.first_ms is None:
        history.first_ms = history.earliest_ms
    if history._runs:
        if run:
            _spill(history, run)
    else:
        run.sort()
        history._memory = run
    for times in itertools.chain(history.cancellations.values(), history.starts.values()):
        times.sort()
    return history


def _spill(history: History, run: list[tuple[int, int, bytes]]) -> None:
    if history._tmp is None:
        history._tmp = tempfile.TemporaryDirectory(prefix="churnwatch-backtest-")
    run.sort()
    path = Path(history._tmp.name) / f"run-{len(history._runs):05d}"
    with path.open("wb") as out:
        out.writelines(b"%d\t%d\t%s\n" % row for row in run)
    history._runs.append(path)
