"""A state kept decoded in the cache and one read back from the store judge alike; batches do not matter.

Between flushes the processor keeps account states decoded in a bounded cache; an account that left
it is decoded again from what the last flush encoded. Whether an account stayed in memory or made
the round trip through its encoding must change nothing it writes. Hypothesis feeds the same random
histories (usage from a few users, facts, NPS, tickets, cancellations, late and repeated events,
clock ticks that pass quiet deadlines, backlogs) to two processors: one whose cache holds a single
account and which flushes after every batch and tick (every event decodes its state), and one that
never flushes until the end (no state is ever decoded). Alerts (ids, times, documents), health
snapshots, outcomes, dead letters, band counts and the final stored states must be equal byte for
byte. This is the differential test any other implementation of the state (a compact or compiled
one) is held to.

The same histories cut into batches of one to five records raise the same alerts at the same times
as whole batches, and count the same events: what fires before which event depends on the order of
the partition alone (the clock moves record by record).

Runs in ``make test``: derandomized, a fixed number of examples, no deadline.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.core.policy import load_policy
from streamer.worker.processor import BatchOutput, MemoryStore, PartitionProcessor, Record

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0 = 1_780_000_000_000  # 2026-05-28
RULES = ("[alerts]\nquiet_after_days = 1\n", None)
# Batches as (wall clock, backlog, documents).
History = list[tuple[int, bool, list[dict[str, Any]]]]
EQUIVALENT = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


def _processor(rules: str | None, cache_max: int, flush_interval_ms: int) -> PartitionProcessor:
    return PartitionProcessor(
        0,
        load_policy(rules),
        lambda _: 0,
        allowed_lateness_ms=30_000,
        max_future_ms=300_000,
        cache_max=cache_max,
        flush_interval_ms=flush_interval_ms,
        settle_ms=HOUR_MS,
    )


@st.composite
def _doc(draw: st.DrawFn, day_ms: int) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["login", "login", "report_exported", "dashboard_viewed", "account_updated", "nps_response"]
            + ["support_ticket_opened", "support_ticket_closed", "subscription_cancelled"]
        )
    )
    props: dict[str, Any] = {}
    if kind == "account_updated":
        props = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "seats": st.integers(1, 40),
                    "plan": st.sampled_from(["free", "pro", "enterprise"]),
                    "segment": st.sampled_from(["smb", "enterprise"]),
                    "owner": st.sampled_from(["ana", "bo"]),
                    "arr": st.floats(0, 1e6, allow_nan=False),
                },
            )
        )
    elif kind == "nps_response":
        props = {"score": draw(st.integers(0, 10))}
    return {
        "event_id": f"e{draw(st.integers(0, 60))}",  # repeats: duplicates of earlier events
        "account_id": draw(st.sampled_from(["acme", "globex", "initech", "umbrella"])),
        "event": kind,
        # Late by up to two days (some past the allowed lateness, so into closed days).
        "timestamp": day_ms - draw(st.integers(0, 2 * DAY_MS)),
        "user_id": draw(st.sampled_from([None, "u1", "u2", "u3", "u4"])),
        "properties": props,
    }


@st.composite
def _history(draw: st.DrawFn) -> History:
    """Batches as (wall clock, backlog, documents): days pass between them, some of them many."""
    batches = []
    now = T0
    for _ in range(draw(st.integers(1, 7))):
        now += draw(st.sampled_from([HOUR_MS, DAY_MS, 2 * DAY_MS, 4 * DAY_MS, 9 * DAY_MS]))
        docs = draw(st.lists(_doc(now), min_size=0, max_size=12))
        batches.append((now, draw(st.booleans()), docs))
    return batches


def _batches(history: History) -> list[tuple[int, bool, list[Record]]]:
    """The history as records of one partition, offsets running on from batch to batch."""
    batches, offset = [], 0
    for now, backlog, docs in history:
        records = [
            Record(0, offset + i, doc["account_id"].encode(), orjson.dumps(doc)) for i, doc in enumerate(docs)
        ]
        offset += len(docs)
        batches.append((now, backlog, records))
    return batches


def _written(out: BatchOutput) -> dict[str, Any]:
    return {
        "alerts": sorted((a.alert_id, a.detected_at_ms, value) for a, value in out.encoded_alerts),
        "health": sorted(out.health),
        "outcomes": dict(out.outcomes),
        "dead_letters": [(rec.offset, reason) for rec, reason in out.dead_letters],
        "poison": dict(out.poison),
    }


@st.composite
def _steady_then_changed(draw: st.DrawFn) -> History:
    """Weeks of steady daily use by a team, then, from a drawn day on, fewer users or silence.

    Long enough for the rhythm, the drop test, the weekly history and the scored days to come into
    play (usage_drop), which random sparse histories do not reach.
    """
    accounts = draw(st.lists(st.tuples(st.integers(2, 6), st.integers(0, 3)), min_size=1, max_size=3))
    days = draw(st.integers(30, 48))
    change_day = draw(st.integers(21, days - 1))
    weekends = draw(st.booleans())
    batches = []
    for d in range(days):
        now = T0 + d * DAY_MS + 18 * HOUR_MS
        docs: list[dict[str, Any]] = []
        for a, (team, after) in enumerate(accounts):
            if weekends and (d + 3) % 7 >= 5:  # T0 is a Thursday: days 2 and 3 are a weekend
                continue
            users = team if d < change_day else after
            for u in range(users):
                if users > 2 and (u * 5 + d * 3) % 7 == 0:  # someone is away now and then
                    continue
                for k in range(1 + (u + d) % 3):
                    at = now - (9 - u - k) * HOUR_MS
                    docs.append(
                        {
                            "event_id": f"{a}-{d}-{u}-{k}",
                            "account_id": f"team-{a}",
                            "event": ("report_exported", "login", "dashboard_viewed")[(u + k) % 3],
                            "timestamp": at,
                            "user_id": f"user-{a}-{u}",
                            "properties": {},
                        }
                    )
        batches.append((now, draw(st.booleans()), docs))
    return batches


def _assert_the_cache_changes_nothing(history: History, rules: str | None) -> Counter[str]:
    """Run both processors over ``history``; every alert kind raised, for the test to check its reach."""
    churned = _processor(rules, cache_max=1, flush_interval_ms=0)  # decodes its state for every event
    kept = _processor(rules, cache_max=1_000_000, flush_interval_ms=10**12)  # never decodes one
    churned_store, kept_store = MemoryStore(), MemoryStore()
    kinds: Counter[str] = Counter()
    for now, backlog, records in _batches(history):
        a = churned.process(records, churned_store, now, backlog=backlog)
        churned_store.data.update(churned.flush(now))
        b = kept.process(records, kept_store, now, backlog=backlog)
        assert _written(a) == _written(b)
        kinds.update(alert.kind for alert in a.alerts)
        # A caught-up partition's clock ticks an hour later: quiet deadlines and settled snapshots.
        a = churned.tick(now + HOUR_MS, churned_store, now + HOUR_MS)
        churned_store.data.update(churned.flush(now + HOUR_MS))
        b = kept.tick(now + HOUR_MS, kept_store, now + HOUR_MS)
        assert _written(a) == _written(b)
        kinds.update(alert.kind for alert in a.alerts)
        assert churned.bands == kept.bands
        assert churned.tracked == kept.tracked
    kept_store.data.update(kept.flush(history[-1][0] + HOUR_MS))
    assert churned_store.data == kept_store.data
    assert churned.flush_failures == kept.flush_failures == 0
    return kinds


@EQUIVALENT
@given(history=_history(), rules=st.sampled_from(RULES))
def test_an_account_judges_alike_from_the_cache_and_read_back_from_its_encoding(
    history: History, rules: str | None
) -> None:
    _assert_the_cache_changes_nothing(history, rules)


REACHED: Counter[str] = Counter()


@settings(EQUIVALENT, max_examples=30)
@given(history=_steady_then_changed())
def test_a_steady_account_that_changes_judges_alike_from_the_cache_and_its_encoding(
    history: History,
) -> None:
    REACHED.update(_assert_the_cache_changes_nothing(history, None))


def test_the_steady_histories_reach_the_drop_and_quiet_alerts() -> None:
    # Runs after the test above in file order; on its own it runs that test first.
    if not REACHED:
        test_a_steady_account_that_changes_judges_alike_from_the_cache_and_its_encoding()
    assert {"usage_drop", "account_quiet"} <= REACHED.keys(), REACHED


def _alerts_and_counts(
    history: History, rules: str | None, cut: int | None
) -> tuple[list[tuple[str, int, bytes]], dict[str, int]]:
    """Every alert (id, time, document) and event count of the history fed in pieces of ``cut`` records."""
    proc = _processor(rules, cache_max=1_000_000, flush_interval_ms=0)
    store = MemoryStore()
    alerts: list[tuple[str, int, bytes]] = []
    counts: dict[str, int] = {}
    for now, backlog, records in _batches(history):
        size = cut or max(len(records), 1)
        outs = [
            proc.process(records[i : i + size], store, now, backlog=backlog)
            for i in range(0, len(records), size)
        ]
        outs.append(proc.tick(now + HOUR_MS, store, now + HOUR_MS))
        for out in outs:
            alerts += [(a.alert_id, a.detected_at_ms, value) for a, value in out.encoded_alerts]
            for outcome in ("counted", "duplicate", "fact", "replayed"):
                counts[outcome] = counts.get(outcome, 0) + out.outcomes[outcome]
        store.data.update(proc.flush(now))
    return sorted(alerts), counts


@EQUIVALENT
@given(history=_history(), rules=st.sampled_from(RULES), cut=st.integers(1, 5))
def test_alerts_do_not_depend_on_how_the_partition_was_cut_into_batches(
    history: History, rules: str | None, cut: int
) -> None:
    assert _alerts_and_counts(history, rules, cut) == _alerts_and_counts(history, rules, None)
