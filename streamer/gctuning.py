"""Garbage-collector settings for the long-running processes (worker and API)."""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Iterator


def tune_gc() -> None:
    """Keep Python's garbage collector from pausing a process for tens or hundreds of milliseconds.

    Both processes hold many long-lived objects (the worker's account states and schedule, the API's
    application and its cached snapshots) and allocate thousands per batch or request body. With the
    default thresholds (700, 10, 10) young collections ran several times per batch and full ones
    rescanned every long-lived object: in the worker, pauses of 100-400 ms and the tail of event →
    health at 2,000 events/s (p99 269-343 ms, 73-91 ms after this); in the API, decoding one Segment
    batch of 1,000 messages took a quarter of its request time (bench/README.md). Objects made during
    start-up are frozen out of collection, young ones are collected every 50,000 allocations, and full
    collections are rare (the cycles these processes make are few and short-lived).
    """
    gc.freeze()
    gc.set_threshold(*_THRESHOLDS)


_THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def collected_rarely() -> Iterator[None]:
    """:func:`tune_gc` for the length of a batch job, then the collector as it was.

    For work done in a process that goes on after it (``churnwatch backtest`` also runs inside tests):
    a replay keeps every account's state and builds millions of short-lived objects, and with the
    default thresholds the collector rescanned the states again and again (4% of a replay's time).
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def return_freed_memory() -> None:
    """Hand the pages the C allocator holds free back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). After a burst that allocated and freed a lot (a changelog restored, a store filled),
    glibc keeps the freed pages and the process's resident memory stays at the burst's peak."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
