"""Replay a sorted history through the worker's own processor, in pure event time.

The same parser, rules, engine and partition processor as the worker, with the worker's partitioning
(Kafka's default partitioner over ``partitions``) and allowed lateness, so each partition's clock
moves exactly as a worker's does in event-time mode (``CHURNWATCH_CLOCK=event``) reading the same
history produced in time order: the alerts are the same, ids and detection times included. No Kafka,
no wall clock: a partition's clock is its newest event time less the allowed lateness, and it stops
at its last event (as a backfilled worker's does until it switches to live time).

At each evaluation date the replay pauses (every event before the date applied, none after) and
scores every live account at that instant, and records the account's 28-day counts per event name,
the features of the reference model (see :mod:`streamer.backtest.reference`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from streamer.backtest.history import History
from streamer.core.alerts import Alert
from streamer.core.events import UsageEvent, parse_event
from streamer.core.policy import DAY_MS, PolicySet
from streamer.core.scoring import score
from streamer.core.state import AccountState
from streamer.kafka.partitioner import kafka_partitioner
from streamer.worker.processor import MemoryStore, PartitionProcessor, Record

__all__ = ["FEATURE_DAYS", "Replay", "ScoreRow", "replay"]

FEATURE_DAYS = 28
_BATCH = 2048
# Nothing in a history is "in the future": the bound on timestamps is for live input.
_NO_FUTURE_BOUND = 2**62


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One live account scored at one evaluation date."""

    account_id: str
    at_ms: int
    score: int
    band: str
    components: dict[str, float]
    # Events in the 28 days before the date, per reference event name (the last one is "other").
    counts: tuple[int, ...]
    segment: str | None
    plan: str | None
    # The account's first cancellation after the date, if the history has one.
    next_cancel_ms: int | None


@dataclass(slots=True)
class Replay:
    """What a replay produced."""

    alerts: list[tuple[Alert, bytes]] = field(default_factory=list)
    rows: list[ScoreRow] = field(default_factory=list)
    dates: list[int] = field(default_factory=list)
    feature_names: tuple[str, ...] = ()
    events: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    # Account id -> its first event time, for every account the history holds.
    first_seen: dict[str, int] = field(default_factory=dict)


def _live(state: AccountState, at_ms: int) -> bool:
    return state.first_seen_ms < at_ms and state.subscription != "cancelled"


def replay(
    history: History,
    policies: PolicySet,
    dates: Sequence[int],
    *,
    partitions: int = 8,
    allowed_lateness_ms: int = 30_000,
    feature_names: Sequence[str] = (),
    cache_accounts: int = 200_000,
    progress: Callable[[int], None] | None = None,
) -> Replay:
    """Replay ``history`` and score every live account at each of ``dates`` (epoch ms, ascending).

    Args:
        history: A history read by :func:`streamer.backtest.history.read_history`.
        policies: The rules, as the worker loads them.
        dates: Evaluation instants.
        partitions: The worker's partition count (it decides which accounts share a clock).
        allowed_lateness_ms: The worker's ``CHURNWATCH_ALLOWED_LATENESS_MS``.
        feature_names: Event names counted separately for the reference model; others are "other".
        cache_accounts: Decoded states kept in memory per partition; the rest are kept encoded.
        progress: Called with the number of events replayed, now and then.

    Returns:
        The alerts (with their JSON documents, as on ``churn-alerts``) and the score rows.
    """
    murmur = kafka_partitioner(partitions)
    routes: dict[str, int] = {}

    def partition_for(account_id: str) -> int:
        p = routes.get(account_id)
        if p is None:
            p = routes[account_id] = murmur(account_id)
        return p

    procs = [
        PartitionProcessor(
            p,
            policies,
            partition_for,
            allowed_lateness_ms=allowed_lateness_ms,
            max_future_ms=_NO_FUTURE_BOUND,
            cache_max=cache_accounts,
            flush_interval_ms=_NO_FUTURE_BOUND,
            publish=False,
            isolate=False,
        )
        for p in range(partitions)
    ]
    stores = [MemoryStore() for _ in range(partitions)]
    pending: list[list[tuple[Record, UsageEvent]]] = [[] for _ in range(partitions)]
    offsets = [0] * partitions
    result = Replay(dates=list(dates), feature_names=(*feature_names, "other"))
    name_index = {name: i for i, name in enumerate(feature_names)}
    other = len(feature_names)
    outcomes: dict[str, int] = {}
    # Per evaluation date whose 28-day window is open: account id -> counts per feature name.
    windows: dict[int, dict[str, list[int]]] = {}
    next_date = 0

    def run(p: int) -> None:
        batch = pending[p]
        if not batch:
            return
        out = procs[p].process(
            [rec for rec, _ in batch], stores[p], _NO_FUTURE_BOUND, True, parsed=[ev for _, ev in batch]
        )
        batch.clear()
        result.alerts.extend(out.encoded_alerts)
        for outcome, n in out.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        if procs[p].flush_due(0):
            stores[p].data.update(procs[p].flush(0))

    for at, line in history.events():
        while next_date < len(dates) and at >= dates[next_date]:
            for p in range(partitions):
                run(p)
            result.rows += _score_all(
                procs, stores, policies, dates[next_date], windows.pop(dates[next_date], {}), other, history
            )
            next_date += 1
        event = parse_event(line)
        p = partition_for(event.account_id)
        pending[p].append((Record(p, offsets[p], None, line), event))
        offsets[p] += 1
        if len(pending[p]) >= _BATCH:
            run(p)
        # The reference model's features: this event counts for every date whose window holds it.
        j = next_date
        while j < len(dates) and dates[j] - FEATURE_DAYS * DAY_MS <= at:
            counts = windows.setdefault(dates[j], {}).setdefault(event.account_id, [0] * (other + 1))
            counts[name_index.get(event.name, other)] += 1
            j += 1
        result.events += 1
        if progress is not None and result.events % 16384 == 0:
            progress(result.events)
    for p in range(partitions):
        run(p)
    # Dates after the last event: every event is before them.
    while next_date < len(dates):
        result.rows += _score_all(
            procs, stores, policies, dates[next_date], windows.pop(dates[next_date], {}), other, history
        )
        next_date += 1
    result.outcomes = outcomes
    for proc, store in zip(procs, stores, strict=True):
        for state in proc.states(store):
            result.first_seen[state.account_id] = state.first_seen_ms
    # Every partition of one outage raises its data_gap with the same id, as consumers of churn-alerts
    # see it; one is kept, the earliest.
    result.alerts.sort(key=lambda item: (item[0].detected_at_ms, item[0].alert_id))
    seen: set[str] = set()
    kept = []
    for item in result.alerts:
        if item[0].account_id is None:
            if item[0].alert_id in seen:
                continue
            seen.add(item[0].alert_id)
        kept.append(item)
    result.alerts = kept
    return result


def _score_all(
    procs: Sequence[PartitionProcessor],
    stores: Sequence[MemoryStore],
    policies: PolicySet,
    at_ms: int,
    counts: dict[str, list[int]],
    other: int,
    history: History,
) -> Iterator[ScoreRow]:
    empty = (0,) * (other + 1)
    for proc, store in zip(procs, stores, strict=True):
        for state in proc.states(store):
            if not _live(state, at_ms):
                continue
            policy = policies.for_account(state.segment, state.plan)
            health = score(state, at_ms, policy, proc.context(), explain=False)
            cancels = history.cancellations.get(state.account_id, ())
            i = bisect.bisect_right(cancels, at_ms)
            yield ScoreRow(
                account_id=state.account_id,
                at_ms=at_ms,
                score=health.score,
                band=health.band,
                components={c.name: c.value for c in health.components},
                counts=tuple(counts.get(state.account_id, empty)),
                segment=state.segment,
                plan=state.plan,
                next_cancel_ms=cancels[i] if i < len(cancels) else None,
            )
