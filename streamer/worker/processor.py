"""One partition's share of the work: batches of raw records in, state writes and outputs out.

This is the glue between the pure core and Kafka, kept free of Faust and aiokafka so it can be
tested on its own. The worker in ``streamer.worker.app`` feeds it records and performs the writes it
returns, in the order that keeps counts exact under at-least-once delivery:

1. after every batch, alerts, health snapshots and dead letters are produced and acknowledged;
2. when a flush is due (every few seconds, or when many states wait), the changed account states
   (with the input offset each includes) go to the store and its changelog;
3. only then are the records up to that flush acknowledged, and Faust commits them.

Between flushes, states live decoded in a bounded cache, so an account touched by many batches is
decoded once and encoded once per flush rather than once per batch (as Kafka Streams' record cache
does between commits). A crash before 2 replays from the committed offset and re-sends alerts with
the same deterministic ids; a crash between 2 and 3 replays records whose offsets the stored state
already includes, and those are skipped.

The partition clock: due points (quiet deadlines, day boundaries) fire when the partition's clock
passes them. The clock is event time (the newest event seen, less the allowed lateness) while the
partition has a backlog, and wall time (less a small grace) once it has caught up, delivered by clock
ticks. A backlog therefore never raises an alert its own events would disprove, and a silent account
on an idle partition is still alerted moments after its deadline.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from streamer.core.alerts import DATA_GAP, Alert, Severity, alert_id, alert_to_dict, human_duration
from streamer.core.engine import Outcome, advance, mark_published, next_due_ms, record_event, snapshot_behind
from streamer.core.events import (
    InvalidEvent,
    Unattributed,
    UsageEvent,
    check_not_future,
    links_user,
    parse_record,
    with_account,
)
from streamer.core.partition import Context, GapChange, PartitionActivity, decode_activity, encode_activity
from streamer.core.policy import Policy, PolicySet
from streamer.core.scoring import changed_since_published, score, signals
from streamer.core.snapshot import account_snapshot
from streamer.core.state import (
    AccountState,
    check_encodable,
    clone_state,
    decode_state,
    encode_state,
    peek_state,
)
from streamer.core.users import UserDirectory
from streamer.worker.resends import ForwardedIds, ResendLog, read_source

log = logging.getLogger("churnwatch.worker")

DAY_MS = 86_400_000
# Snapshots left behind published per clock tick of a partition at most (_publish_settled): a burst
# of them after a catch-up must not hold the partition's due alerts back.
SETTLE_BUDGET = 500
# The store key of a partition's activity (streamer.core.partition). Longer than any account id
# (at most 128 characters), so it can never be one.
ACTIVITY_KEY_PREFIX = "#" * 129 + "partition-activity-"


def forwarded_key(partition: int) -> str:
    """The store key of the partition's :class:`ForwardedIds`."""
    return f"{ACTIVITY_KEY_PREFIX}forwarded-{partition}"


def resends_key(partition: int) -> str:
    """The store key of the partition's :class:`ResendLog` (under the same never-an-account prefix)."""
    return f"{ACTIVITY_KEY_PREFIX}resends-{partition}"


def activity_key(partition: int) -> str:
    """The store key under which a partition keeps its activity."""
    return f"{ACTIVITY_KEY_PREFIX}{partition}"


class StateStore(Protocol):
    """Where account states live between batches (a Faust table in production)."""

    def get(self, account_id: str) -> bytes | None:
        """The encoded state of an account, or None."""

    def scan(self) -> Iterable[tuple[str, bytes]]:
        """Every (account id, encoded state) this partition holds."""


class MemoryStore:
    """A :class:`StateStore` in a dict: a backtest's table, and the tests'."""

    def __init__(self) -> None:
        """An empty store; ``data`` maps account ids to encoded states."""
        self.data: dict[str, bytes] = {}

    def get(self, account_id: str) -> bytes | None:
        """The encoded state of an account, or None."""
        return self.data.get(account_id)

    def scan(self) -> Iterable[tuple[str, bytes]]:
        """Every (account id, encoded state) held."""
        return list(self.data.items())


# Not frozen, like UsageEvent: one is built for every record read. Treated as immutable all the same.
@dataclass(slots=True)
class Record:
    """A consumed Kafka record, reduced to what the processor needs (read-only by convention)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class BatchOutput:
    """What one batch or tick asks the adapter to write, in order.

    Alerts and snapshots are already encoded: an encoding failure is then one account's problem,
    caught with the record that caused it, never a failure of the whole write.
    """

    dead_letters: list[tuple[Record, str]] = field(default_factory=list)
    rekeyed: list[tuple[Record, int]] = field(default_factory=list)
    # Messages that named only their user, re-sent to their account's partition with its id:
    # (record, target partition, account id, new value).
    attributed: list[tuple[Record, int, str, bytes]] = field(default_factory=list)
    # New user → account links, for the users topic.
    user_links: list[tuple[str, str]] = field(default_factory=list)
    # Offsets held back (waiting for their user's account) and offsets released (attributed or
    # dead-lettered at last): held ones are not committable until released.
    held: set[int] = field(default_factory=set)
    released: list[int] = field(default_factory=list)
    # The source partition's committed offset when the re-sends above were made (see resends.py).
    source_floor: int = 0
    encoded_alerts: list[tuple[Alert, bytes]] = field(default_factory=list)
    health: list[tuple[str, bytes]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    # Failures isolated to one record or one account, by stage (decode, load, apply, advance,
    # publish, flush); the records among them are in ``dead_letters``.
    poison: Counter[str] = field(default_factory=Counter)
    event_lag_ms: list[int] = field(default_factory=list)

    @property
    def alerts(self) -> list[Alert]:
        """The alerts raised, in detection order."""
        return [alert for alert, _ in self.encoded_alerts]

    def extend(self, other: BatchOutput) -> None:
        """Append what ``other`` (a later part of the same fetch) asks to write."""
        self.dead_letters += other.dead_letters
        self.rekeyed += other.rekeyed
        self.attributed += other.attributed
        self.user_links += other.user_links
        self.held |= other.held
        self.released += other.released
        self.source_floor = max(self.source_floor, other.source_floor)
        self.encoded_alerts += other.encoded_alerts
        self.health += other.health
        self.outcomes.update(other.outcomes)
        self.poison.update(other.poison)
        self.event_lag_ms += other.event_lag_ms


def encode_alert(alert: Alert) -> bytes:
    """The JSON document of an alert, as written to the alerts topic."""
    return orjson.dumps(alert_to_dict(alert))


def _reason(stage: str, exc: BaseException) -> str:
    return f"processing failed at {stage}: {type(exc).__name__}: {exc}"[:1000]


class PartitionProcessor:
    """Applies records and clock ticks of one input partition to its accounts' states."""

    def __init__(
        self,
        partition: int,
        policies: PolicySet,
        partition_for: Callable[[str], int],
        *,
        allowed_lateness_ms: int,
        max_future_ms: int,
        backlog_publish_interval_ms: int = 10_000,
        cache_max: int = 10_000,
        flush_interval_ms: int = 0,
        publish: bool = True,
        isolate: bool = True,
        load_budget: int | None = None,
        users: UserDirectory | None = None,
        attribution_wait_ms: int = 10_000,
        max_waiting: int = 10_000,
        settle_ms: int = 5_000,
    ) -> None:
        """Create the processor for ``partition``; ``partition_for`` maps an account id to its partition.

        ``cache_max`` decoded states stay in memory between batches (more while they wait to be
        flushed); changed states are encoded for the store by :meth:`flush`, which is due every
        ``flush_interval_ms`` or when half the cache is waiting (0 flushes after every batch).
        ``load_budget`` bounds the stored accounts read per batch while the schedule is rebuilt after an
        assignment (:meth:`ensure_loaded`; None reads them all before the first batch).

        With ``users`` (the worker's directory, shared by its processors), a Segment message naming
        only its user is re-sent to its account's partition with the account's id; one whose user has
        no account yet waits, at most ``attribution_wait_ms`` (wall time) and ``max_waiting`` at a
        time, then goes to the DLQ. Without it, such messages are dead-lettered at once.
        """
        self.partition = partition
        self.policies = policies
        self.partition_for = partition_for
        self.allowed_lateness_ms = allowed_lateness_ms
        self.max_future_ms = max_future_ms
        self.backlog_publish_interval_ms = backlog_publish_interval_ms
        self._last_publish_wall_ms = 0
        self._unpublished: set[str] = set()
        self.clock_ms = 0
        self.last_offset = -1
        self.bands: Counter[str] = Counter()
        self.tracked = 0
        self.cache_max = cache_max
        self.flush_interval_ms = flush_interval_ms
        self._cache: dict[str, AccountState] = {}
        self._dirty: set[str] = set()
        self._last_flush_wall_ms = 0
        self._due: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}
        self._loaded = False
        self._loader: Iterator[tuple[str, bytes]] | None = None
        self.load_budget = load_budget
        self.users = users
        self.settle_ms = settle_ms
        # Accounts whose published snapshot is behind their state, with when it fell behind (wall ms).
        self._stale: dict[str, int] = {}
        self.attribution_wait_ms = attribution_wait_ms
        self.max_waiting = max_waiting
        # offset → (record, its message, deadline in wall ms), in offset order.
        self._waiting: dict[int, tuple[Record, Unattributed, int]] = {}
        self.flush_failures = 0
        # Without health snapshots (a backtest scores accounts itself, at the dates it is asked for).
        self.publish = publish
        # Without the rollback copy and the encodability check of every step: a backtest fails on a bug
        # rather than working around it, and is faster for it.
        self.isolate = isolate
        self.activity = self._with_gap_rules(PartitionActivity())
        self._activity_dirty = False
        # Re-sent records applied here, by source position (exactly once across crashes).
        self.resends = ResendLog()
        # Ids of the records this partition re-sent elsewhere (a second delivery is dropped here).
        self.forwarded = ForwardedIds()
        # This partition's committed offset, as the adapter last knew it: what it re-sends says so, and
        # what the resend log may forget by.
        self.source_floor = 0
        self._ctx = Context()
        self._ctx_key: tuple[int | None, int, int] = (None, 0, 0)

    # -- state access ---------------------------------------------------------------------------

    def _policy(self, state: AccountState) -> Policy:
        return self.policies.for_account(state.segment, state.plan)

    def _load(self, account_id: str, store: StateStore) -> AccountState | None:
        state = self._cache.get(account_id)
        if state is not None:
            return state
        raw = store.get(account_id)
        if raw is None:
            return None
        state = self._cache[account_id] = decode_state(raw)
        return state

    def _with_gap_rules(self, activity: PartitionActivity) -> PartitionActivity:
        # The thresholds are rules, not state: a changed rules file applies to stored activity too.
        g = self.policies.gaps
        activity.silence_min, activity.lull_min = g.silence_min, g.lull_min
        activity.day_min, activity.max_gap_days = g.day_min, g.max_gap_days
        return activity

    def context(self) -> Context:
        """The partition's excluded time (holidays are per account, in its policy)."""
        a = self.activity
        key = (a.gap_since_ms, len(a.gaps), len(a.gap_days))
        if key != self._ctx_key:
            self._ctx, self._ctx_key = a.context(), key
        return self._ctx

    def _schedule(self, state: AccountState) -> None:
        due = next_due_ms(state, self._policy(state), self.context())
        if due is None:
            self._scheduled.pop(state.account_id, None)
            return
        known = self._scheduled.get(state.account_id)
        # A later entry already in the heap pops early, finds nothing due and reschedules itself,
        # so only an earlier due time needs a new entry: the heap stays about one entry per account.
        if known is None or due < known:
            self._scheduled[state.account_id] = due
            heapq.heappush(self._due, (due, state.account_id))

    def ensure_loaded(self, store: StateStore) -> bool:
        """Rebuild the due-point heap and band counts from stored state, once per assignment.

        With ``load_budget`` (see the constructor) at most that many stored accounts are read per
        call, the rest on the next calls: a restarted worker applies its first batch at once instead
        of after reading a million states. Nothing is lost meanwhile. A due point of an account not
        read yet fires when it is read, at the time it was due (alerts carry the due time, never the
        time they fire), and an account's own events catch up on its due points first
        (``record_event``). Returns whether the rebuild is complete.
        """
        if self._loaded:
            return True
        if self._loader is None:
            stored_activity = store.get(activity_key(self.partition))
            if stored_activity is not None:
                try:
                    self.activity = self._with_gap_rules(decode_activity(stored_activity))
                except ValueError:
                    log.error(
                        "the stored activity of partition %d is unreadable; it starts afresh", self.partition
                    )
            stored_forwarded = store.get(forwarded_key(self.partition))
            if stored_forwarded is not None:
                try:
                    self.forwarded = ForwardedIds.decode(stored_forwarded)
                except ValueError:
                    log.error("the stored forwarded ids of partition %d are unreadable", self.partition)
            stored_resends = store.get(resends_key(self.partition))
            if stored_resends is not None:
                try:
                    self.resends = ResendLog.decode(stored_resends)
                except ValueError:
                    log.error("the stored resend log of partition %d is unreadable", self.partition)
            self._loader = iter(store.scan())
        budget = self.load_budget
        for n, (account_id, raw) in enumerate(self._loader, 1):
            self._load_stored(account_id, raw)
            if budget is not None and n >= budget:
                return False
        self._loader = None
        self._loaded = True
        return True

    def _load_stored(self, account_id: str, raw: bytes) -> None:
        if account_id.startswith(ACTIVITY_KEY_PREFIX) or self.partition_for(account_id) != self.partition:
            return
        self.tracked += 1
        peeked = peek_state(raw)
        if peeked is None:  # written before the due time was stored, or unreadable: decode it
            try:
                state = decode_state(raw)
            except ValueError:
                # Its events are dead-lettered when they come (stage "load"); the rest load.
                log.error("the stored state of account %r is unreadable", account_id)
                return
            due = next_due_ms(state, self._policy(state), self.context())
            peeked = due, state.published_band, state.unpublished
        due, band, unpublished = peeked
        if band is not None:
            self.bands[band] += 1
        if unpublished:
            self._unpublished.add(account_id)
        # An account applied since the rebuild began is scheduled from its current state already. (If it
        # left the cache and its due point fired meanwhile, this older one pops, finds nothing due and
        # reschedules: harmless.)
        if due is not None and account_id not in self._scheduled and account_id not in self._cache:
            self._scheduled[account_id] = due
            heapq.heappush(self._due, (due, account_id))

    def close(self) -> None:
        """Stop reading the store (a revoked partition's store is closed after this)."""
        if self._loader is not None:
            close = getattr(self._loader, "close", None)
            if close is not None:
                close()
            self._loader = None

    @property
    def dirty(self) -> int:
        """Accounts changed since the last :meth:`flush`."""
        return len(self._dirty)

    def flush_due(self, now_wall_ms: int) -> bool:
        """Whether changed states should be flushed now (see the constructor)."""
        if not self._dirty and not self.resends.dirty and not self.forwarded.dirty:
            return False
        return (
            now_wall_ms - self._last_flush_wall_ms >= self.flush_interval_ms
            or len(self._dirty) >= self.cache_max // 2
        )

    def flush(self, now_wall_ms: int = 0) -> dict[str, bytes]:
        """Encode every state changed since the last flush, for the adapter to write, and trim the cache.

        Records may be acknowledged only once the states they changed were flushed and written: the
        store then holds everything up to each account's applied offset.
        """
        writes = {}
        # The log first: stored with an account state it covers, a duplicate re-send never counts.
        self.resends.prune(self.source_floor)
        if self.resends.dirty:
            writes[resends_key(self.partition)] = self.resends.encode()
            self.resends.dirty = False
        if self.forwarded.dirty:
            writes[forwarded_key(self.partition)] = self.forwarded.encode()
            self.forwarded.dirty = False
        for account_id in self._dirty:
            state = self._cache[account_id]
            # Possibly earlier than the state's real next due point (see _schedule): harmless, it pops,
            # finds nothing due and reschedules.
            state.due_ms = self._scheduled.get(account_id)
            try:
                writes[account_id] = encode_state(state)
            except Exception as exc:
                # check_encodable after every step should make this unreachable. If it is reached, the
                # account keeps its last stored state rather than stopping the partition.
                del self._cache[account_id]
                self.flush_failures += 1
                log.error("account %r could not be encoded; kept its stored state", account_id, exc_info=exc)
        self._dirty.clear()
        if self._activity_dirty:
            writes[activity_key(self.partition)] = encode_activity(self.activity)
            self._activity_dirty = False
        self._last_flush_wall_ms = now_wall_ms
        excess = len(self._cache) - self.cache_max
        if excess > 0:
            # Every entry is clean now; the oldest loaded go first.
            for account_id in list(itertools.islice(self._cache, excess)):
                del self._cache[account_id]
        return writes

    def states(self, store: StateStore) -> Iterator[AccountState]:
        """Every account state of this partition: the cached ones as they are, the others decoded."""
        yield from self._cache.values()
        for account_id, raw in store.scan():
            if account_id.startswith(ACTIVITY_KEY_PREFIX):
                continue
            if account_id not in self._cache and self.partition_for(account_id) == self.partition:
                yield decode_state(raw)

    # -- work -----------------------------------------------------------------------------------

    def process(
        self,
        records: Iterable[Record],
        store: StateStore,
        now_wall_ms: int,
        backlog: bool = False,
        skip: Mapping[int, str] | None = None,
        parsed: Sequence[UsageEvent] | None = None,
    ) -> BatchOutput:
        """Apply a batch of input records (in offset order) and fire what the clock makes due.

        With ``backlog`` (more records wait behind this batch) health snapshots are deferred: an
        account touched a hundred times while catching up is scored and published once, when the
        partition has caught up or every ``backlog_publish_interval_ms``, instead of a hundred times.
        Records whose offsets are in ``skip`` are dead-lettered with its reason, unread (see
        ``streamer.worker.crashguard``). ``parsed``, when given, holds each record's event already parsed
        and checked (the backtest parses once for its own figures too).
        """
        self.ensure_loaded(store)
        out = BatchOutput(source_floor=self.source_floor)
        touched: dict[str, AccountState] = {}
        changed: set[str] = set()  # accounts whose events were counted (or facts applied)
        for i, rec in enumerate(records):
            self.last_offset = max(self.last_offset, rec.offset)
            if skip and rec.offset in skip:
                out.dead_letters.append((rec, skip[rec.offset]))
                out.outcomes["poison"] += 1
                out.poison["crash"] += 1
                continue
            try:
                event = parsed[i] if parsed is not None else self._decode(rec, now_wall_ms)
            except InvalidEvent as exc:
                if isinstance(exc, Unattributed) and self.users is not None:
                    message_id = exc.message.get("messageId")
                    if isinstance(message_id, str) and not self.forwarded.first(message_id, rec.offset):
                        out.outcomes["duplicate"] += 1  # delivered twice by its producer (ForwardedIds)
                        continue
                    self._attribute_or_wait(rec, exc, now_wall_ms, out)
                else:
                    self._reject(out, rec, str(exc))
                continue
            except Exception as exc:  # a parser bug: still only this record's problem
                self._poison_record(out, rec, "decode", exc)
                continue
            # Parsed events come routed by their account already (the backtest).
            target = self.partition if parsed is not None else self.partition_for(event.account_id)
            if target != self.partition:
                # Keyed by something other than the account id: its state lives elsewhere.
                if not self.forwarded.first(event.event_id, rec.offset):
                    out.outcomes["duplicate"] += 1  # delivered twice by its producer (ForwardedIds)
                    continue
                out.rekeyed.append((rec, target))
                out.outcomes["rekeyed"] += 1
                continue
            source = read_source(rec.headers) if rec.headers else None
            if source is not None and not self.resends.first(source, rec.offset):
                # Re-sent again after a crash of the worker that read it first (resends.py).
                out.outcomes["duplicate"] += 1
                continue
            if self.users is not None and links_user(event) and event.user_id is not None:
                if self.users.link(event.user_id, event.account_id):
                    out.user_links.append((event.user_id, event.account_id))
            # The clock moves record by record, not batch by batch, so what fires before which event
            # depends only on the order of the partition, never on how it was cut into batches.
            self._advance_clock(min(event.occurred_at_ms - self.allowed_lateness_ms, now_wall_ms), out)
            self._fire_due(touched, store, out)
            if self.policies.gaps.enabled and rec.offset > self.activity.applied_offset:
                # The partition's own rhythm counts each record once, replays after a crash excepted.
                self.activity.observe(event.occurred_at_ms)
                self.activity.applied_offset = rec.offset
                self._activity_dirty = True
            account_id = event.account_id
            try:
                state = touched.get(account_id) or self._load(account_id, store)
            except Exception as exc:  # an unreadable stored state: its account's events cannot apply
                self._poison_record(out, rec, "load", exc)
                continue
            if state is not None and rec.offset <= state.applied_offset:
                # Already in the stored state: a replay after a crash, before the commit. The local
                # store may hold a write whose changelog copy was lost in the crash, so write it again.
                touched[account_id] = state
                out.outcomes["replayed"] += 1
                continue
            # The core mutates the state in place; this copy is what the account goes back to if the
            # record cannot be applied (Kafka Streams' processing exception handler, with rollback).
            before = clone_state(state) if state is not None and self.isolate else None
            try:
                policy = self.policies.for_account(*self._facts_of(state, event))
                new = state is None
                state, outcome, alerts = record_event(state, event, policy, self.context())
                state.applied_offset = rec.offset
                if self.isolate:
                    check_encodable(state)
                encoded = [(alert, encode_alert(alert)) for alert in alerts]
            except Exception as exc:
                if not self.isolate:
                    raise
                self._restore(account_id, before, touched, keep=True)
                if before is not None:
                    # Consumed, as a dead letter: a replay after a crash skips it like any applied record.
                    before.applied_offset = rec.offset
                self._poison_record(out, rec, "apply", exc)
                continue
            if new:
                self.tracked += 1
            touched[account_id] = state
            # Scheduled now, not after the batch: a later record of this batch may pass the deadline.
            self._schedule(state)
            out.encoded_alerts.extend(encoded)
            out.outcomes[outcome.value] += 1
            if outcome is Outcome.COUNTED or outcome is Outcome.FACT:
                changed.add(account_id)
            if outcome is Outcome.COUNTED:
                out.event_lag_ms.append(now_wall_ms - event.occurred_at_ms)
        self._fire_due(touched, store, out)
        publish = not backlog or now_wall_ms - self._last_publish_wall_ms >= self.backlog_publish_interval_ms
        self._finish(touched, store, out, publish, now_wall_ms, changed)
        self._retry_waiting(now_wall_ms, out)
        return out

    def tick(self, clock_ms: int, store: StateStore, now_wall_ms: int) -> BatchOutput:
        """Advance the clock of a caught-up partition, fire what became due, publish what waits."""
        self.ensure_loaded(store)
        out = BatchOutput(source_floor=self.source_floor)
        touched: dict[str, AccountState] = {}
        self._advance_clock(clock_ms, out)
        self._fire_due(touched, store, out)
        self._finish(touched, store, out, True, now_wall_ms)
        self._publish_settled(store, out, now_wall_ms)
        self._retry_waiting(now_wall_ms, out)
        return out

    def publish_pending(self, store: StateStore, now_wall_ms: int) -> BatchOutput:
        """Publish every snapshot still waiting to settle, whatever its age: before the partition is given
        up, since its next owner does not know they wait."""
        out = BatchOutput(source_floor=self.source_floor)
        self._publish_settled(store, out, now_wall_ms, everything=True)
        return out

    def _publish_settled(
        self, store: StateStore, out: BatchOutput, now_wall_ms: int, everything: bool = False
    ) -> None:
        """Publish the snapshots left behind by changes too small to publish, ``settle_ms`` after the
        first of them: what the API and the dashboard show is never more than that behind the state."""
        if not self.publish:
            return
        waiting = self._stale.items()
        for account_id, since in list(waiting if everything else itertools.islice(waiting, SETTLE_BUDGET)):
            if not everything and now_wall_ms - since < self.settle_ms:
                break  # in the order they fell behind: the rest are more recent
            del self._stale[account_id]
            state = self._load(account_id, store)  # in the cache from here on
            if state is not None:
                self._publish(state, out, now_wall_ms, force=True)
                self._dirty.add(account_id)  # what it published is state (a restart compares with it)

    # -- messages naming only their user --------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Messages waiting for their user's account."""
        return len(self._waiting)

    def _attribute(self, rec: Record, message: Unattributed, out: BatchOutput) -> bool:
        account = self.users.account_of(message.users) if self.users is not None else None
        if account is None:
            return False
        # Re-sent, even to this partition: applied as a record of its own, in the input's order, it
        # counts once like any other (a copy re-sent after a crash is known by its source position:
        # streamer.worker.resends).
        value = orjson.dumps(with_account(message.message, account))
        out.attributed.append((rec, self.partition_for(account), account, value))
        out.outcomes["attributed"] += 1
        return True

    def _attribute_or_wait(
        self, rec: Record, message: Unattributed, now_wall_ms: int, out: BatchOutput
    ) -> None:
        if self._attribute(rec, message, out):
            return
        if rec.offset in self._waiting:  # read again (a replay): it keeps its place and deadline
            out.held.add(rec.offset)
            return
        if len(self._waiting) >= self.max_waiting:
            self._reject(out, rec, f"{message} ({self.max_waiting} messages wait already)")
            return
        self._waiting[rec.offset] = (rec, message, now_wall_ms + self.attribution_wait_ms)
        out.held.add(rec.offset)

    def _retry_waiting(self, now_wall_ms: int, out: BatchOutput) -> None:
        for offset, (rec, message, deadline) in list(self._waiting.items()):
            if self._attribute(rec, message, out):
                pass
            elif now_wall_ms >= deadline:
                self._reject(out, rec, f"{message} (none came within {self.attribution_wait_ms / 1000:g} s)")
            else:
                continue
            del self._waiting[offset]
            out.held.discard(offset)
            out.released.append(offset)

    @staticmethod
    def _reject(out: BatchOutput, rec: Record, reason: str) -> None:
        """Dead-letter an invalid record with its reason."""
        out.dead_letters.append((rec, reason))
        out.outcomes["invalid"] += 1

    def _decode(self, rec: Record, now_wall_ms: int) -> UsageEvent:
        event = parse_record(rec.value, rec.headers)
        check_not_future(event, now_wall_ms, self.max_future_ms)
        return event

    def _restore(
        self, account_id: str, before: AccountState | None, touched: dict[str, AccountState], *, keep: bool
    ) -> None:
        """Put an account back as it was before a failed step (a new account is forgotten).

        With ``keep`` the restored state is written with the batch (it records the consumed offset);
        otherwise the account is left exactly as it was, touched by this batch or not.
        """
        if before is None:
            touched.pop(account_id, None)
            self._cache.pop(account_id, None)
            self._dirty.discard(account_id)
            return
        if keep or account_id in touched:
            touched[account_id] = before
        if account_id in self._cache:
            self._cache[account_id] = before

    def _poison_record(self, out: BatchOutput, rec: Record, stage: str, exc: Exception) -> None:
        log.error(
            "record at partition %d offset %d failed at %s; dead-lettered, the worker goes on",
            rec.partition,
            rec.offset,
            stage,
            exc_info=exc,
        )
        out.dead_letters.append((rec, _reason(stage, exc)))
        out.outcomes["poison"] += 1
        out.poison[stage] += 1

    @staticmethod
    def _facts_of(state: AccountState | None, event: UsageEvent) -> tuple[str | None, str | None]:
        if state is None:
            props = event.properties
            segment, plan = props.get("segment"), props.get("plan")
            return (segment if isinstance(segment, str) else None, plan if isinstance(plan, str) else None)
        return state.segment, state.plan

    def _advance_clock(self, clock_ms: int, out: BatchOutput) -> None:
        if clock_ms <= self.clock_ms:
            return
        self.clock_ms = clock_ms
        if not self.policies.gaps.enabled:
            return
        self.activity.judging = self.tracked >= self.policies.gaps.min_accounts
        # Stored with the next flush even when no gap began or ended: the hours it closed are state
        # too, and a restart from an older copy jumps the hours between (over a long silence, one
        # jump that starts counting afresh) instead of closing them one by one as before it.
        self._activity_dirty = True
        for change in self.activity.advance(clock_ms):
            if change.started and not change.continued:
                out.encoded_alerts.append(self._gap_alert(change))
            log.warning(
                "partition %d: data gap %s at %s (%.0f events expected, %d seen in the last 6 hours)",
                self.partition,
                "began" if change.started else "ended",
                change.at_ms if change.started else change.ended_ms,
                change.expected,
                change.observed,
            )

    def _gap_alert(self, change: GapChange) -> tuple[Alert, bytes]:
        # The id is the week the gap began, so the partitions of one outage or holiday raise one alert id.
        day = change.episode_ms // DAY_MS
        monday = (day - (day + 3) % 7) * DAY_MS
        alert = Alert(
            alert_id=alert_id(None, DATA_GAP, monday),
            kind=DATA_GAP,
            account_id=None,
            detected_at_ms=change.judged_ms,
            severity=Severity.HIGH,
            health=None,
            evidence={
                "gap_started_ms": change.at_ms,
                "partition": self.partition,
                "events_expected_last_6h": change.expected,
                "events_seen_last_6h": change.observed,
            },
            reason=(
                f"Events stopped or fell together on partition {self.partition} "
                f"{human_duration(change.judged_ms - change.at_ms)} ago ({change.observed} in the last "
                f"6 hours, {change.expected:.0f} expected): a tracking outage or a holiday. Quiet and drop "
                "alerts are held; the gap will not count as silence."
            ),
        )
        return alert, encode_alert(alert)

    def _fire_due(self, touched: dict[str, AccountState], store: StateStore, out: BatchOutput) -> None:
        while self._due and self._due[0][0] <= self.clock_ms:
            _, account_id = heapq.heappop(self._due)
            if self._scheduled.get(account_id, -1) > self.clock_ms:
                continue  # superseded by a later schedule that is still in the heap
            self._scheduled.pop(account_id, None)
            try:
                state = touched.get(account_id) or self._load(account_id, store)
            except Exception as exc:
                self._poison_account(out, account_id, "load", exc)
                continue
            if state is None:
                continue
            before = clone_state(state) if self.isolate else state
            was_touched = account_id in touched
            try:
                alerts = advance(state, self.clock_ms, self._policy(state), self.context())
                if self.isolate:
                    check_encodable(state)
                encoded = [(alert, encode_alert(alert)) for alert in alerts]
            except Exception as exc:
                if not self.isolate:
                    raise
                # Left unscheduled until its next event, so one account cannot fail every tick.
                if not was_touched:
                    touched.pop(account_id, None)
                self._restore(account_id, before, touched, keep=False)
                self._poison_account(out, account_id, "advance", exc)
                continue
            out.encoded_alerts.extend(encoded)
            touched[account_id] = state
            self._schedule(state)

    def _finish(
        self,
        touched: dict[str, AccountState],
        store: StateStore,
        out: BatchOutput,
        publish: bool,
        now_wall_ms: int,
        changed: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        if not self.publish:
            self._cache.update(touched)
            self._dirty.update(touched)
            for alert in out.alerts:
                out.outcomes[f"alert:{alert.kind}"] += 1
            return
        deferred: set[str] = set()
        if publish:
            for account_id in self._unpublished - touched.keys():
                state = self._load(account_id, store)
                if state is not None:
                    touched[account_id] = state
            deferred, self._unpublished = self._unpublished, set()
            self._last_publish_wall_ms = now_wall_ms
        for account_id, state in touched.items():
            if publish:
                # Events (or facts) changed what its snapshot shows: if not enough to publish now, soon.
                settle = account_id in changed or account_id in deferred
                self._publish(state, out, now_wall_ms, settle=settle)
            else:
                # Recorded in the state too, so that a restart still publishes it.
                state.unpublished = True
                self._unpublished.add(account_id)
            self._cache[account_id] = state
            self._dirty.add(account_id)
        for alert in out.alerts:
            out.outcomes[f"alert:{alert.kind}"] += 1

    def _poison_account(self, out: BatchOutput, account_id: str, stage: str, exc: Exception) -> None:
        log.error("account %r failed at %s; left as it was", account_id, stage, exc_info=exc)
        out.poison[stage] += 1

    def _publish(
        self,
        state: AccountState,
        out: BatchOutput,
        now_wall_ms: int,
        force: bool = False,
        settle: bool = False,
    ) -> None:
        state.unpublished = False
        try:
            policy = self._policy(state)
            now_ms = max(self.clock_ms, state.clock_ms, state.last_activity_ms or 0)
            # Numbers first: most changes are not material, and explanations cost more than the score.
            ctx = self.context()
            sig = signals(state, now_ms, policy, ctx)
            # A snapshot showing another day of last activity or other episodes than the state is
            # republished whatever the score did: decided on the state alone (event time), so it holds
            # without clock ticks, through restarts and in a replay, unlike the settling below.
            # (Never published: changed whatever the score, which is then not worth computing twice.)
            if (
                not force
                and not snapshot_behind(state)
                and state.published_score is not None
                and not changed_since_published(state, score(state, now_ms, policy, ctx, False, sig), policy)
            ):
                # Not worth a snapshot now; if events changed what the published one shows (its counts,
                # its last activity within the day), it is brought up to date once the account has
                # settled (_publish_settled). A re-evaluation as time passes alone waits for a material
                # change.
                if settle:
                    self._stale.setdefault(state.account_id, now_wall_ms)
                return
            self._stale.pop(state.account_id, None)
            health = score(state, now_ms, policy, ctx, sig=sig)
            previous_score = state.published_score
            snapshot = orjson.dumps(account_snapshot(state, health, policy, previous_score))
        except Exception as exc:  # its snapshot is not published; the account's state is unchanged
            self._poison_account(out, state.account_id, "publish", exc)
            return
        previous_band = state.published_band
        mark_published(state, health, policy)
        if previous_band is not None:
            self.bands[previous_band] -= 1
        self.bands[health.band] += 1
        out.health.append((state.account_id, snapshot))


# A dead letter must fit the producer's request limit and a broker's default message.max.bytes (1 MB),
# whatever the input topic allowed; a 10 MB record that could not be dead-lettered stopped the worker.
DEAD_LETTER_MAX_BYTES = 512 * 1024


def dead_letter(
    rec: Record, reason: str, source_topic: str
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers of a dead letter; a key or value over 512 KiB is cut to that size.

    A cut is marked with ``churnwatch.truncated``: the original sizes as ``key=<bytes>,value=<bytes>``.
    """
    headers = headers_with_reason(rec, reason, source_topic)
    key, value = rec.key, rec.value
    if (key is not None and len(key) > DEAD_LETTER_MAX_BYTES) or (
        value is not None and len(value) > DEAD_LETTER_MAX_BYTES
    ):
        sizes = f"key={len(key) if key is not None else 0},value={len(value) if value is not None else 0}"
        headers.append(("churnwatch.truncated", sizes.encode()))
        key = key[:DEAD_LETTER_MAX_BYTES] if key is not None else None
        value = value[:DEAD_LETTER_MAX_BYTES] if value is not None else None
    return key, value, headers


def headers_with_reason(rec: Record, reason: str, source_topic: str) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: the original headers plus where it came from and why it was rejected."""
    return [
        *rec.headers,
        ("churnwatch.error", reason.encode("utf-8", "replace")[:1000]),
        ("churnwatch.source", f"{source_topic}/{rec.partition}@{rec.offset}".encode()),
    ]
