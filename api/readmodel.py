"""What the API serves from: the latest snapshot per account and a bounded feed of recent alerts.

:class:`InMemoryReadModel` holds the data and is fed record by record; :class:`KafkaReadModel`
(in :mod:`api.kafka_readmodel`) feeds one from the ``account-health`` and ``churn-alerts`` topics.

Every query takes the :class:`~api.restrictions.AccountScope` of the key asking and answers as if
the accounts outside it did not exist, so no route can forget to restrict a key.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from api.portfolio import instant_ms, portfolio_figures
from api.portfolio_history import (
    Counted,
    DayKey,
    counted_of,
    day_deltas,
    fold_before,
    kept_from,
    scope_of,
    weekly_figures,
)
from api.query import AccountFilters, AccountSort, alert_position, alerts_cursor, page_accounts
from api.restrictions import AccountScope
from streamer.core.alerts import AlertKind

if TYPE_CHECKING:
    from api.store.rows import SnapshotRows

Doc = dict[str, Any]
Page = tuple[list[Doc], str | None]
# Alert kinds tied to an episode in the snapshot, and the episode field that says it is open.
EPISODE_OF_KIND: dict[str, str] = {
    AlertKind.ACCOUNT_QUIET: "quiet_since",
    AlertKind.USAGE_DROP: "drop_since",
    AlertKind.HEALTH_DEGRADED: "poor",
}
_SUBSCRIBER_QUEUE = 1000


@dataclass(slots=True)
class Batch:
    """What a loader read from the topics, decoded and checked, to apply in one go."""

    # (account id, snapshot) in the order read; None forgets the account (a tombstone).
    snapshots: list[tuple[str, Doc | None]] = field(default_factory=list)
    # The JSON text each snapshot was read as, by its index in ``snapshots`` (a store keeps it as it
    # came instead of encoding the document again); a snapshot without one is encoded when stored.
    texts: dict[int, str] = field(default_factory=dict)
    # Snapshots a fill decoded, checked and turned into rows in other processes (:mod:`api.fill`), in
    # the order read; None forgets the account. Only a SQL store that is filling takes them, in a
    # batch without ``snapshots``.
    rows: list[tuple[str, SnapshotRows | None]] = field(default_factory=list)
    alerts: list[Doc] = field(default_factory=list)
    # The next offset to read of each (topic, partition) once the batch is applied.
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


def day_of(at_ms: int) -> str:
    """The UTC day (``YYYY-MM-DD``) of an instant in ms since the epoch: a snapshot's day in the history."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).date().isoformat()


def history_row(doc: Doc, at_ms: int) -> Doc:
    """What the history keeps of a snapshot taken at ``at_ms``: its UTC ``day``, ``at_ms``, ``score``,
    ``band`` and ``components``."""
    return {
        "day": day_of(at_ms),
        "at_ms": at_ms,
        "score": int(doc.get("score", 0)),
        "band": str(doc.get("band")),
        "components": doc.get("components") or [],
    }


def history_window(days: int, now: datetime) -> str:
    """The first of the ``days`` UTC days ending with ``now``'s (``YYYY-MM-DD``)."""
    return (now.astimezone(UTC).date() - timedelta(days=days - 1)).isoformat()


def detected_ms(doc: Doc) -> int:
    """When an alert was detected, in ms since the epoch (0 when it does not say)."""
    return instant_ms(doc.get("detected_at")) or 0


def open_alerts(doc: Doc, latest: Iterable[Doc]) -> list[Doc]:
    """The alerts among ``latest`` (an account's newest of each kind) whose episode is still open in its
    snapshot ``doc``, oldest first."""
    episodes = doc.get("episodes") or {}
    out = []
    for alert in latest:
        field_ = EPISODE_OF_KIND.get(str(alert.get("kind")))
        since = episodes.get(field_) if field_ else None
        if not since:
            continue
        # Quiet and drop episodes have a start; an alert from an earlier, closed episode is not open.
        started = (alert.get("evidence") or {}).get("episode_started_at")
        if isinstance(since, str) and started is not None and started != since:
            continue
        out.append(alert)
    return sorted(out, key=lambda a: (str(a.get("detected_at")), str(a.get("kind"))))


class AlertSubscribers:
    """Live alert subscriptions, each with the scope of the key that asked."""

    def __init__(self) -> None:
        """No subscriptions yet."""
        self._queues: dict[asyncio.Queue[Doc], AccountScope] = {}

    def __len__(self) -> int:
        return len(self._queues)

    def publish(self, doc: Doc, sees: Callable[[AccountScope, Doc], bool]) -> None:
        """Hand ``doc`` to every subscription whose scope ``sees`` it."""
        for queue, scope in self._queues.items():
            # Judged on arrival, by the facts the account has then; a stalled client loses alerts
            # rather than growing memory.
            if not queue.full() and sees(scope, doc):
                queue.put_nowait(doc)

    async def subscribe(self, scope: AccountScope) -> AsyncGenerator[Doc, None]:
        """Alerts published from now on that ``scope`` sees."""
        queue: asyncio.Queue[Doc] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self._queues[queue] = scope
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.pop(queue, None)


@runtime_checkable
class ReadModel(Protocol):
    """The queries the routes need."""

    @property
    def ready(self) -> bool:
        """True once the model has caught up with what existed when it started."""

    @property
    def lag(self) -> int:
        """Records known to exist but not applied yet."""

    @property
    def write_failures(self) -> int:
        """Failed attempts to write what was read to the store (each retried until it succeeds)."""

    async def start(self) -> None:
        """Begin loading; returns before loading is done."""

    async def stop(self) -> None:
        """Stop loading and release resources."""

    async def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:
        """The latest snapshot of one account plus ``open_alerts``; None if unknown or outside ``scope``.
        Asynchronous: a store that waits for a server lets the event loop serve other requests."""

    def list_accounts(
        self,
        filters: AccountFilters,
        sort: AccountSort,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        """One page of the snapshots within ``scope``."""

    def portfolio(self, now: datetime, *, scope: AccountScope) -> Doc:
        """Portfolio figures over the latest snapshot of every account within ``scope``, as of ``now``."""

    def portfolio_history(self, weeks: int, now: datetime, *, scope: AccountScope) -> list[Doc]:
        """The portfolio of each of the ``weeks`` ISO weeks ending with ``now``'s, oldest first, over the
        accounts within ``scope`` (:func:`api.portfolio_history.weekly_figures`)."""

    def owners(self, *, scope: AccountScope) -> list[str]:
        """The owners (``facts.owner``) of the accounts within ``scope``, in code-point order."""

    def alerts(
        self,
        since: datetime | None,
        kind: str | None,
        account: str | None,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        """One page of recent alerts of accounts within ``scope``, newest first: by detection time,
        then by arrival (an alert read late, e.g. from a backfill, takes its place by when it was
        detected)."""

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[Doc, None]:
        """Alerts of accounts within ``scope`` applied from now on, as they arrive."""

    def history(self, account_id: str, days: int, now: datetime, *, scope: AccountScope) -> list[Doc] | None:
        """The account's stored days (``day``, ``at_ms``, ``score``, ``band``, ``components``) from the
        first of the ``days`` UTC days ending with ``now``'s on, oldest first, led by the latest day
        before them (what the account showed until its next snapshot: a day without one had no
        material change); None if the account is unknown or outside ``scope``."""


class LoadProgress:
    """How far a store's loader has come, as the store reports it (``ready``, ``lag``)."""

    def __init__(self, ready: bool) -> None:
        """Start ``ready`` or not, with nothing to catch up."""
        self._ready = ready
        self._lag = 0
        self._write_failures = 0

    @property
    def ready(self) -> bool:  # see ReadModel
        return self._ready

    @property
    def lag(self) -> int:  # see ReadModel
        return self._lag

    @property
    def write_failures(self) -> int:  # see ReadModel
        return self._write_failures

    def set_progress(self, ready: bool, lag: int, write_failures: int = 0) -> None:
        """Record how far loading has come (and how often writing failed on the way)."""
        self._ready, self._lag, self._write_failures = ready, lag, write_failures

    async def start(self) -> None:  # see ReadModel
        return None


class InMemoryReadModel(LoadProgress):
    """A read model held in dicts and a deque; always ready unless told otherwise."""

    def __init__(self, alert_buffer: int = 10_000, ready: bool = True, history_days: int = 120) -> None:
        """Create an empty model keeping at most ``alert_buffer`` alerts for the feed and
        ``history_days`` days of daily scores."""
        self._accounts: dict[str, Doc] = {}
        # Per account, its days as the SQL store's ``history`` rows, by day (YYYY-MM-DD).
        self._history: dict[str, dict[str, Doc]] = {}
        self._history_newest: dict[str, int] = {}  # the newest snapshot's time, in ms, per account
        self._history_days = history_days
        self._history_cutoff = ""
        # (detection time in ms, arrival number, alert), oldest first: the feed is read from its end.
        self._feed: list[tuple[int, int, Doc]] = []
        self._alert_buffer = alert_buffer
        self._latest: dict[str, dict[str, Doc]] = {}
        # As the SQL store's ``portfolio_days``: how each account counts, and each row's (accounts, ARR).
        self._counted: dict[str, Counted] = {}
        self._days: dict[DayKey, tuple[int, int]] = {}
        self._days_from = ""  # the first day kept apart (see api.portfolio_history.kept_from)
        self._seq = 0
        self._ids: set[object] = set()  # alert ids in the feed
        self._subscribers = AlertSubscribers()
        super().__init__(ready)

    async def stop(self) -> None:  # see ReadModel
        return None

    def positions(self) -> dict[tuple[str, int], int]:
        """Nothing is kept across restarts: a loader reads the topics from the beginning."""
        return {}

    def claim(self, source: str) -> bool:  # noqa: ARG002 - nothing kept, so nothing of another source
        """See :meth:`api.store.sql.SqlReadModel.claim`."""
        return False

    def begin_fill(self) -> bool:
        """Nothing to prepare: memory has no indexes."""
        return False

    def finish_fill(self) -> list[str]:
        """Nothing to build."""
        return []

    def clear(self) -> None:
        """Forget every snapshot and alert."""
        self._accounts.clear()
        self._history.clear()
        self._history_newest.clear()
        self._history_cutoff = ""
        self._counted.clear()
        self._days.clear()
        self._days_from = ""
        self._feed.clear()
        self._ids.clear()
        self._latest.clear()

    async def apply_batch(self, batch: Batch) -> None:
        """Apply what a loader read: snapshots first (alerts are judged by their account's facts)."""
        if batch.rows:
            raise ValueError("snapshots as rows are for a SQL store's fill: this store needs documents")
        for account_id, doc in batch.snapshots:
            self.apply_health(account_id, doc)
        for doc in batch.alerts:
            self.apply_alert(doc)

    def apply_health(self, account_id: str, doc: Doc | None) -> None:
        """Store the newest snapshot of an account; None (a tombstone) forgets it and its history."""
        self._count_day(account_id, doc)
        if doc is None:
            self._accounts.pop(account_id, None)
            self._history.pop(account_id, None)
            self._history_newest.pop(account_id, None)
            return
        self._accounts[account_id] = doc
        self._record_day(account_id, doc)

    def _record_day(self, account_id: str, doc: Doc) -> None:
        # As the SQL store: a snapshot older than the account's newest is not history (a replay), and
        # each day keeps its latest.
        at_ms = instant_ms(doc.get("at")) or 0
        if at_ms < self._history_newest.get(account_id, -1):
            return
        self._history_newest[account_id] = at_ms
        row = history_row(doc, at_ms)
        self._history.setdefault(account_id, {})[row["day"]] = row
        cutoff = (datetime.fromisoformat(row["day"]) - timedelta(days=self._history_days)).date().isoformat()
        if cutoff > self._history_cutoff:  # a new day: every account's days past the retention go
            self._history_cutoff = cutoff
            for held in self._history.values():
                for old in [d for d in held if d <= cutoff]:
                    del held[old]

    def _count_day(self, account_id: str, doc: Doc | None) -> None:
        new = None if doc is None else counted_of(doc, instant_ms(doc.get("at")) or 0)
        deltas, sums, state = day_deltas([(account_id, new)], self._counted)
        counted = state[account_id]
        if counted is None:
            self._counted.pop(account_id, None)
        else:
            self._counted[account_id] = counted
        for key in deltas.keys() | sums.keys():
            accounts, arr = self._days.get(key, (0, 0))
            held = (accounts + deltas[key], arr + sums[key])
            if held == (0, 0):
                self._days.pop(key, None)
            else:
                self._days[key] = held
        if not deltas and not sums:
            return
        first = kept_from(date.fromisoformat(max(key[4] for key in deltas.keys() | sums.keys())))
        if first.isoformat() > self._days_from:
            self._days_from = first.isoformat()
            old = [(key, *held) for key, held in self._days.items() if key[4] < self._days_from]
            for key, *_ in old:
                del self._days[key]
            for key, held in fold_before(old, first).items():
                if held != (0, 0):
                    self._days[key] = held

    def apply_alert(self, doc: Doc) -> None:
        """Append an alert to the feed and hand it to every live subscriber."""
        alert_id = doc.get("alert_id")
        if alert_id in self._ids:
            return  # read again (a replay): kept and sent once
        self._seq += 1
        detected = detected_ms(doc)
        self._ids.add(alert_id)
        insort(self._feed, (detected, self._seq, doc), key=lambda item: item[:2])
        if len(self._feed) > self._alert_buffer:
            self._ids.discard(self._feed.pop(0)[2].get("alert_id"))  # the earliest detected
        account_id = doc.get("account_id")
        if isinstance(account_id, str):  # an operations alert (data_gap) belongs to no account
            kinds = self._latest.setdefault(account_id, {})
            held = kinds.get(str(doc.get("kind")))
            if held is None or detected_ms(held) <= detected:
                kinds[str(doc.get("kind"))] = doc
        self._subscribers.publish(doc, self._sees_alert)

    def _snapshots(self, scope: AccountScope) -> Iterable[Doc]:
        if scope.unrestricted:
            return self._accounts.values()
        return (d for d in self._accounts.values() if scope.permits(d.get("facts")))

    def _sees_alert(self, scope: AccountScope, doc: Doc) -> bool:
        """Whether ``scope`` covers the alert's account, judged by its current facts where known."""
        if scope.unrestricted:
            return True
        account_id = doc.get("account_id")
        if not isinstance(account_id, str):
            return False  # operations alerts are about the whole service: unrestricted keys only
        snapshot = self._accounts.get(account_id)
        # The snapshot has the account's current facts; an alert only those it had when raised, but it
        # may arrive before the account's first snapshot.
        return scope.permits(snapshot.get("facts") if snapshot is not None else doc.get("account"))

    async def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:  # see ReadModel
        doc = self._accounts.get(account_id)
        # Outside the scope is answered like unknown, so a key cannot tell which accounts exist.
        if doc is None or not scope.permits(doc.get("facts")):
            return None
        return {**doc, "open_alerts": open_alerts(doc, self._latest.get(account_id, {}).values())}

    def list_accounts(  # see ReadModel
        self,
        filters: AccountFilters,
        sort: AccountSort,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        return page_accounts(self._snapshots(scope), filters, sort, cursor, limit)

    def portfolio(self, now: datetime, *, scope: AccountScope) -> Doc:  # see ReadModel
        return portfolio_figures(self._snapshots(scope), now)

    def portfolio_history(
        self, weeks: int, now: datetime, *, scope: AccountScope
    ) -> list[Doc]:  # see ReadModel
        rows = scope_of(scope)
        held = ((k[4], k[5], k[6], n, arr) for k, (n, arr) in self._days.items() if k[:4] == rows)
        return weekly_figures(held, weeks, now.astimezone(UTC).date())

    def owners(self, *, scope: AccountScope) -> list[str]:  # see ReadModel
        found = {(d.get("facts") or {}).get("owner") for d in self._snapshots(scope)}
        return sorted(owner for owner in found if isinstance(owner, str))

    @property
    def subscribers(self) -> int:
        """Live alert subscriptions (lets callers wait until a stream is listening)."""
        return len(self._subscribers)

    def alerts(  # see ReadModel
        self,
        since: datetime | None,
        kind: str | None,
        account: str | None,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        before = None
        if cursor is not None:
            before = alerts_cursor(cursor)
        out: list[tuple[int, int, Doc]] = []
        for detected, seq, doc in reversed(self._feed):
            if before is not None and (detected, seq) >= before:
                continue
            if kind is not None and doc.get("kind") != kind:
                continue
            if account is not None and doc.get("account_id") != account:
                continue
            if since is not None and datetime.fromisoformat(doc["detected_at"]) < since:
                continue
            if not self._sees_alert(scope, doc):
                continue
            out.append((detected, seq, doc))
            if len(out) > limit:
                break
        page = out[:limit]
        nxt = alert_position(page[-1][0], page[-1][1]) if len(out) > limit else None
        return [d for _, _, d in page], nxt

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[Doc, None]:  # see ReadModel
        return self._subscribers.subscribe(scope)

    def history(  # see ReadModel
        self, account_id: str, days: int, now: datetime, *, scope: AccountScope
    ) -> list[Doc] | None:
        doc = self._accounts.get(account_id)
        if doc is None or not scope.permits(doc.get("facts")):
            return None
        first = history_window(days, now)
        held = sorted(self._history.get(account_id, {}).items())
        before = [row for day, row in held if day < first][-1:]
        return [*before, *(row for day, row in held if day >= first)]
