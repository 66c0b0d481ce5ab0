"""Which input records a partition was applying when the process died, remembered across restarts.

The processor isolates every exception to its record (see ``PartitionProcessor``), so a record can
no longer stop the worker by raising. What it cannot catch is a process that dies while applying:
a crash in native code, the kernel's OOM killer, an ``os._exit`` deep in a library. The restarted
worker reads the same records again and would die again, for ever. This guard breaks that loop, as
a poison-pill detector does:

1. Before a partition applies a range of offsets, the range is written to a small file in the data
   directory (``enter``); it is removed when applying returns (``leave``). The write is not synced:
   only a process crash has to be survived, and the page cache survives that.
2. A range still in the file when the worker starts was being applied when the process died: it is
   recorded as a crash.
3. Once ``max_crashes`` recorded crashes overlap, their common offsets are *suspect*: the adapter
   applies them one record at a time, each in its own range, so the next crash names one record.
4. A single record with ``max_crashes`` crashes is dead-lettered without being applied.
5. A range applied past the suspect offsets clears the history.

Crashes while *writing* outputs (a broker outage) are not counted: the guard only covers applying.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["CrashGuard", "Suspects", "split"]

log = logging.getLogger("churnwatch.worker")


@dataclass(slots=True)
class Suspects:
    """What the guard says about a range about to be applied."""

    # Offsets to apply one record at a time, lowest and highest (inclusive); None when all is well.
    isolate: tuple[int, int] | None = None
    # Offsets to dead-letter without applying them, with the reason.
    skip: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class _History:
    inflight: tuple[int, int] | None = None
    crashes: list[tuple[int, int]] = field(default_factory=list)


class CrashGuard:
    """Per-partition crash history in ``directory`` (one small JSON file per partition)."""

    def __init__(self, directory: Path, max_crashes: int = 2) -> None:
        """Load the history; a range left in flight by the previous process counts as a crash."""
        self.directory = directory
        self.max_crashes = max_crashes
        self._history: dict[int, _History] = {}
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("partition-*.json"):
            try:
                partition = int(path.stem.removeprefix("partition-"))
                doc = json.loads(path.read_text())
                history = _History(
                    (int(doc["inflight"][0]), int(doc["inflight"][1])) if doc.get("inflight") else None,
                    [(int(a), int(b)) for a, b in doc.get("crashes", [])],
                )
            except (ValueError, KeyError, TypeError, OSError):
                log.warning("ignoring unreadable crash history %s", path)
                continue
            if history.inflight is not None:
                log.error(
                    "the worker died while applying offsets %d..%d of partition %d",
                    *history.inflight,
                    partition,
                )
                history.crashes.append(history.inflight)
                history.inflight = None
                self._history[partition] = history
                self._save(partition)
            elif history.crashes:
                self._history[partition] = history

    def suspects(self, partition: int, first: int, last: int) -> Suspects:
        """What to do with offsets ``first..last`` of ``partition`` before applying them."""
        history = self._history.get(partition)
        if history is None or len(history.crashes) < self.max_crashes:
            return Suspects()
        recent = history.crashes[-self.max_crashes :]
        lo, hi = max(a for a, _ in recent), min(b for _, b in recent)
        if lo > hi or hi < first or lo > last:
            return Suspects()
        skip = {}
        if lo == hi:
            reason = f"the worker died {self.max_crashes} times while applying this record; not applied"
            skip[lo] = reason
        return Suspects(isolate=(max(lo, first), min(hi, last)), skip=skip)

    def enter(self, partition: int, first: int, last: int) -> None:
        """Record that ``first..last`` of ``partition`` is being applied."""
        history = self._history.setdefault(partition, _History())
        history.inflight = (first, last)
        self._save(partition)

    def leave(self, partition: int) -> None:
        """Record that applying the range in flight returned; past the suspects, forget the crashes."""
        history = self._history.get(partition)
        if history is None or history.inflight is None:
            return
        first, _ = history.inflight
        history.inflight = None
        if history.crashes and first > max(b for _, b in history.crashes):
            history.crashes.clear()
        if not history.crashes:
            del self._history[partition]
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"partition-{partition}.json").unlink()
            return
        self._save(partition)

    def _save(self, partition: int) -> None:
        history = self._history[partition]
        path = self.directory / f"partition-{partition}.json"
        tmp = path.with_suffix(".tmp")
        doc = {"inflight": history.inflight, "crashes": history.crashes}
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)


class _HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_HasOffset)


def split(records: Sequence[R], isolate: tuple[int, int] | None) -> list[Sequence[R]]:
    """Cut a fetch (in offset order) so that each record within ``isolate`` is applied on its own."""
    if isolate is None:
        return [records] if records else []
    lo, hi = isolate
    before = [r for r in records if r.offset < lo]
    after = [r for r in records if r.offset > hi]
    parts: list[Sequence[R]] = [before] if before else []
    parts += [[r] for r in records if lo <= r.offset <= hi]
    if after:
        parts.append(after)
    return parts
