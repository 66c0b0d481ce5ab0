"""The compiled parts and the Python originals judge any partition alike, byte for byte.

Each compiled part is held to its Python original on its own (tests/unit/core/test_native_*.py). This
holds them together, through the worker's whole path: the same random histories as the cache's
differential test (usage, facts, NPS, tickets, cancellations, late and repeated events, clock ticks,
backlogs, and weeks of steady use that then drops or stops) go through a partition processor here, on
the compiled parts, and through one in a child process that cannot import ``churnwatch_native``, on the
originals. Its cache holds one account and it flushes after every batch and tick, so every event
decodes its account's state and every flush encodes it; a third of the timestamps are RFC 3339 text,
some with an offset. Alerts (ids, times, documents), health snapshots, outcomes, dead letters, band
counts and the stored states must be equal byte for byte.

Runs in ``make test``: derandomized, a fixed number of examples, no deadline.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import state
from streamer.worker.processor import MemoryStore
from tests.unit.test_python_fallback import WITHOUT_EXTENSION
from tests.unit.worker.test_cache_equivalence import (
    EQUIVALENT,
    HOUR_MS,
    RULES,
    History,
    _batches,
    _history,
    _processor,
    _steady_then_changed,
    _written,
)

REPO = Path(__file__).resolve().parents[3]
_OFFSET = timezone(timedelta(hours=5, minutes=30))

# The Python side: reads one history per line, writes what its processor wrote as one line.
_CHILD = (
    WITHOUT_EXTENSION
    + """
import orjson
from tests.unit.worker.test_compiled_equivalence import run
for line in sys.stdin:
    sys.stdout.write(orjson.dumps(run(orjson.loads(line)), option=orjson.OPT_NON_STR_KEYS).decode() + "\\n")
    sys.stdout.flush()
"""
)


def _with_text_times(history: History) -> History:
    """A third of the timestamps as RFC 3339 in UTC, a third with a +05:30 offset (the same instants)."""
    out: History = []
    for now, backlog, docs in history:
        changed = []
        for doc in docs:
            which = zlib.crc32(doc["event_id"].encode()) % 3
            if which:
                at = datetime.fromtimestamp(doc["timestamp"] / 1000, UTC)
                at = at.astimezone(_OFFSET) if which == 2 else at
                doc = {**doc, "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
            changed.append(doc)
        out.append((now, backlog, changed))
    return out


def _json(out: dict[str, Any]) -> dict[str, Any]:
    return {
        **out,
        "alerts": [(i, t, v.decode()) for i, t, v in out["alerts"]],
        "health": [(a, v.decode()) for a, v in out["health"]],
    }


def run(args: list[Any]) -> list[Any]:
    """Everything one processor wrote for a history (as JSON values), its flushes and its final store."""
    history, rules = args
    proc = _processor(rules, cache_max=1, flush_interval_ms=0)  # decodes its state for every event
    store = MemoryStore()
    written: list[Any] = []
    for now, backlog, records in _batches(_with_text_times(history)):
        for at, out in (
            (now, proc.process(records, store, now, backlog=backlog)),
            (now + HOUR_MS, proc.tick(now + HOUR_MS, store, now + HOUR_MS)),
        ):
            store.data.update(proc.flush(at))
            written.append(_json(_written(out)))
            written.append([dict(proc.bands), proc.tracked])
    written.append(sorted((k, v.hex()) for k, v in store.data.items()))
    return written


@pytest.fixture(scope="module")
def python_side() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", _CHILD],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=60)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _on_python(proc: subprocess.Popen[str], history: History, rules: str | None) -> list[Any]:
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(orjson.dumps([history, rules]).decode() + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=60)
        pytest.fail(f"the Python side stopped: {proc.stderr.read()[-3000:]}")
    result: list[Any] = orjson.loads(line)
    return result


def _assert_alike(proc: subprocess.Popen[str], history: History, rules: str | None) -> None:
    assert state.NATIVE_CODEC is not None, "churnwatch_native is not built: run `make install`"
    compiled = run([orjson.loads(orjson.dumps(history)), rules])
    compiled = orjson.loads(orjson.dumps(compiled, option=orjson.OPT_NON_STR_KEYS))
    assert compiled == _on_python(proc, history, rules)


@EQUIVALENT
@given(history=_history(), rules=st.sampled_from(RULES))
def test_the_compiled_parts_write_what_the_python_originals_write(
    python_side: subprocess.Popen[str], history: History, rules: str | None
) -> None:
    _assert_alike(python_side, history, rules)


@settings(EQUIVALENT, max_examples=30)
@given(history=_steady_then_changed())
def test_a_steady_account_that_changes_is_judged_alike_on_both(
    python_side: subprocess.Popen[str], history: History
) -> None:
    _assert_alike(python_side, history, None)
