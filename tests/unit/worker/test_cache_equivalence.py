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
def _history(draw: st.DrawFn) -> list[tuple[int, bool, list[dict[str, Any]]]]:
    """Batches as (wall clock, backlog, documents): days pass between them, some of them many."""
    batches = []
    now = T0
    for _ in range(draw(st.integers(1, 7))):
        now += draw(st.sampled_from([HOUR_MS, DAY_MS, 2 * DAY_MS, 4 * DAY_MS, 9 * DAY_MS]))
        docs = draw(st.lists(_doc(now), min_size=0, max_size=12))
        batches.append((now, draw(st.booleans()), docs))
    return batches


def _batches(history: list[tuple[int, bool, list[dict[str, Any]]]]) -> list[tuple[int, bool, list[Record]]]:
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


@EQUIVALENT
@given(history=_history(), rules=st.sampled_from(RULES))
def test_an_account_judges_alike_from_the_cache_and_read_back_from_its_encoding(
    history: list[tuple[int, bool, list[dict[str, Any]]]], rules: str | None
) -> None:
    churned = _processor(rules, cache_max=1, flush_interval_ms=0)  # decodes its state for every event
    kept = _processor(rules, cache_max=1_000_000, flush_interval_ms=10**12)  # never decodes one
    churned_store, kept_store = MemoryStore(), MemoryStore()
    for now, backlog, records in _batches(history):
        a = churned.process(records, churned_store, now, backlog=backlog)
        churned_store.data.update(churned.flush(now))
        b = kept.process(records, kept_store, now, backlog=backlog)
        assert _written(a) == _written(b)
        # A caught-up partition's clock ticks an hour later: quiet deadlines and settled snapshots.
        a = churned.tick(now + HOUR_MS, churned_store, now + HOUR_MS)
        churned_store.data.update(churned.flush(now + HOUR_MS))
        b = kept.tick(now + HOUR_MS, kept_store, now + HOUR_MS)
        assert _written(a) == _written(b)
        assert churned.bands == kept.bands
        assert churned.tracked == kept.tracked
    kept_store.data.update(kept.flush(history[-1][0] + HOUR_MS))
    assert churned_store.data == kept_store.data
    assert churned.flush_failures == kept.flush_failures == 0


def _alerts_and_counts(
    history: list[tuple[int, bool, list[dict[str, Any]]]], rules: str | None, cut: int | None
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
    history: list[tuple[int, bool, list[dict[str, Any]]]], rules: str | None, cut: int
) -> None:
    assert _alerts_and_counts(history, rules, cut) == _alerts_and_counts(history, rules, None)
