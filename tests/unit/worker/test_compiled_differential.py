"""The compiled hot path against its Python reference: the same input, byte-identical outputs.

:mod:`streamer.native` compiles the core and the partition processor with mypyc, and
:func:`streamer.native.load_sources` loads a second copy of the same modules from their sources into
this process. Hypothesis writes event streams (a few accounts over weeks: usage, facts, NPS,
tickets, subscriptions, milestones, duplicates, late and future events, gaps that make accounts go
quiet and drop, and the fuzz suite's extreme values) with clock ticks and flushes between batches;
both processors get every batch, and everything they write is compared as bytes: encoded alerts and
health snapshots, dead letters with their reasons, outcomes, every flush's state writes.

Compiled code can differ where Python's semantics are loose: mypyc stores an ``int`` given where a
``float`` is declared as a float, checks declared types at run time and has C-sized fast paths.
Those differences show up here as different bytes.

In ``make test`` the compiled path must be the one loaded (``make install`` builds it); this test
fails otherwise, rather than comparing the sources with themselves.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import native
from tests.unit.worker.test_worker_path_fuzz import _event as _extreme_event
from tests.unit.worker.test_worker_path_fuzz import _to_json

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
START = 1_780_000_000_000  # 2026-05-28
ACCOUNTS = ("acme", "globex", "initech", "umbrella")
USERS = ("u1", "u2", "u3", "u4", "u5", "u6")
RULES = """
[alerts]
quiet_after_days = 2
drop_window_days = 7
drop_baseline_days = 14
drop_min_weekly_user_days = 1.0
key_user_min_active_days = 3

[renewal]
raise_within_days = 60

[data_gaps]
min_accounts = 2

[[onboarding.milestones]]
name = "first report exported"
event = "report_exported"
deadline_days = 3

[[onboarding.milestones]]
name = "three users active"
event = "login"
users = 3
after = "first report exported"
deadline_days = 6

[[overrides]]
plan = "trial"

[overrides.alerts]
quiet_after_days = 1
"""
EXAMPLES = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def graphs() -> tuple[dict[str, ModuleType], dict[str, ModuleType]]:
    assert native.STATUS.compiled, (
        f"the compiled hot path is not in use ({native.STATUS.reason}): run `make install`, or set "
        f"{native.PURE_ENV}=1 and leave this test out"
    )
    import streamer.worker.processor  # noqa: F401  (the compiled graph, as every other test uses it)

    compiled = {m: sys.modules[m] for m in native.MODULES}
    assert native.loaded()
    pure = native.load_sources()
    assert all(str(module.__file__).endswith(".py") for module in pure.values())
    assert sys.modules["streamer.worker.processor"] is compiled["streamer.worker.processor"]
    return compiled, pure


def _usage(draw: st.DrawFn, clock: int) -> dict[str, Any]:
    name = draw(
        st.sampled_from(
            [
                "login",
                "login",
                "report_exported",
                "dashboard_viewed",
                "account_updated",
                "nps_response",
                "support_ticket_opened",
                "support_ticket_closed",
                "subscription_started",
                "subscription_cancelled",
            ]
        )
    )
    props: dict[str, Any] = {}
    if name == "account_updated":
        props = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "seats": st.integers(1, 50),
                    "plan": st.sampled_from(["pro", "trial", "enterprise"]),
                    "segment": st.sampled_from(["smb", "enterprise"]),
                    "owner": st.sampled_from(["ana", "bo"]),
                    "arr": st.floats(0, 1e6) | st.integers(0, 10**6),
                    "currency": st.sampled_from(["USD", "EUR"]),
                    "renewal_at": st.sampled_from(["2026-07-01", "2026-09-15T00:00:00Z"]),
                },
            )
        )
    elif name == "nps_response":
        props = {"score": draw(st.integers(0, 10))}
    offset = draw(st.one_of(st.integers(0, DAY_MS), st.integers(-120_000, 0), st.just(40 * DAY_MS)))
    return {
        "event_id": f"e{draw(st.integers(0, 400))}",
        "account_id": draw(st.sampled_from(ACCOUNTS)),
        "event": name,
        "timestamp": clock - offset,
        "user_id": draw(st.sampled_from(USERS)),
        "properties": props,
    }


@st.composite
def _stream(draw: st.DrawFn, extreme: bool) -> list[tuple[int, list[bytes]]]:
    """Steps of (clock advance in ms, the batch's record values); an empty batch is a clock tick."""
    steps: list[tuple[int, list[bytes]]] = []
    clock = START
    for _ in range(draw(st.integers(1, 14))):
        advance = draw(st.sampled_from([0, 60_000, 6 * HOUR_MS, DAY_MS, 3 * DAY_MS, 9 * DAY_MS]))
        clock += advance
        n = draw(st.integers(0, 12))
        docs: list[dict[str, Any]] = []
        for _ in range(n):
            docs.append(draw(_extreme_event()) if extreme and draw(st.booleans()) else _usage(draw, clock))
        values = [_to_json(d) for d in docs]
        resend = draw(st.booleans())
        if values and resend:
            values.append(values[draw(st.integers(0, len(values) - 1))])  # a re-sent record
        steps.append((advance, values))
    return steps


def _run(mods: dict[str, ModuleType], steps: list[tuple[int, list[bytes]]]) -> dict[str, list[Any]]:
    """Everything the processor writes, as bytes and plain values, in order."""
    proc_mod = mods["streamer.worker.processor"]
    policy = mods["streamer.core.policy"].load_policy(RULES)
    proc = proc_mod.PartitionProcessor(
        0,
        policy,
        lambda _: 0,
        allowed_lateness_ms=30_000,
        max_future_ms=300_000,
        cache_max=2,  # states leave the cache and come back from their encoding
        flush_interval_ms=0,
    )
    store = proc_mod.MemoryStore()
    written: dict[str, list[Any]] = {k: [] for k in ("alerts", "health", "dead", "outcomes", "writes")}

    def eat(out: Any) -> None:
        written["alerts"] += [value for _, value in out.encoded_alerts]
        written["health"] += out.health
        written["dead"] += [(rec.offset, reason) for rec, reason in out.dead_letters]
        written["outcomes"].append((sorted(out.outcomes.items()), sorted(out.poison.items())))

    def flush(now: int) -> None:
        writes = proc.flush(now)
        written["writes"].append(sorted(writes.items()))
        store.data.update(writes)

    clock = START
    offset = 0
    for n, (advance, values) in enumerate(steps):
        clock += advance
        records = []
        for value in values:
            records.append(proc_mod.Record(0, offset, None, value))
            offset += 1
        if records:
            eat(proc.process(records, store, clock, backlog=n % 3 == 2))
        else:
            eat(proc.tick(clock - 5_000, store, clock))
        flush(clock)
    end = clock + 30 * DAY_MS
    eat(proc.tick(end - 5_000, store, end))
    eat(proc.publish_pending(store, end))
    flush(end)
    written["bands"] = sorted((band.value, n) for band, n in proc.bands.items())
    return written


def _compare(
    graphs: tuple[dict[str, ModuleType], dict[str, ModuleType]], steps: list[tuple[int, list[bytes]]]
) -> dict[str, list[Any]]:
    compiled, pure = graphs
    expected = _run(pure, steps)
    got = _run(compiled, steps)
    for key in expected:  # one part at a time, for a readable failure
        assert got[key] == expected[key], key
    return expected


@EXAMPLES
@given(steps=_stream(extreme=False))
def test_the_compiled_processor_writes_what_the_sources_write(
    graphs: tuple[dict[str, ModuleType], dict[str, ModuleType]], steps: list[tuple[int, list[bytes]]]
) -> None:
    _compare(graphs, steps)


@EXAMPLES
@given(steps=_stream(extreme=True))
def test_the_compiled_processor_handles_extreme_values_as_the_sources_do(
    graphs: tuple[dict[str, ModuleType], dict[str, ModuleType]], steps: list[tuple[int, list[bytes]]]
) -> None:
    _compare(graphs, steps)


def test_the_streams_reach_alerts_snapshots_and_dead_letters(
    graphs: tuple[dict[str, ModuleType], dict[str, ModuleType]],
) -> None:
    # Not vacuous: a fixed stream through both raises alerts, publishes health and dead-letters.
    clock = START
    steps: list[tuple[int, list[bytes]]] = []
    for day in range(12):
        docs = [
            {
                "event_id": f"d{day}u{u}",
                "account_id": "acme",
                "event": "login",
                "timestamp": clock + day * DAY_MS,
                "user_id": f"u{u}",
            }
            for u in range(3)
        ]
        steps.append((DAY_MS if day else 0, [orjson.dumps(d) for d in docs] + [b"not json"]))
    steps.append((10 * DAY_MS, []))
    written = _compare(graphs, steps)
    kinds = [orjson.loads(value)["kind"] for value in written["alerts"]]
    assert "account_quiet" in kinds, kinds
    assert written["health"]
    assert [reason for _, reason in written["dead"]] == [
        "$: not valid JSON: invalid literal, expected 'null': line 1 column 1 (char 0)"
    ] * 12
