"""What the API serves from: the latest snapshot per account and a bounded feed of recent alerts.

:class:`InMemoryReadModel` holds the data and is fed record by record; :class:`KafkaReadModel`
(in :mod:`api.kafka_readmodel`) feeds one from the ``account-health`` and ``churn-alerts`` topics.

Every query takes the :class:`~api.restrictions.AccountScope` of the key asking and answers as if
the accounts outside it did not exist, so no route can forget to restrict a key.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from api.portfolio import portfolio_figures
from api.query import AccountFilters, AccountSort, InvalidCursor, decode_cursor, encode_cursor, page_accounts
from api.restrictions import AccountScope
from streamer.core.alerts import AlertKind

Doc = dict[str, Any]
Page = tuple[list[Doc], str | None]
# Alert kinds tied to an episode in the snapshot, and the episode field that says it is open.
EPISODE_OF_KIND: dict[str, str] = {
    AlertKind.ACCOUNT_QUIET: "quiet_since",
    AlertKind.USAGE_DROP: "drop_since",
    AlertKind.HEALTH_DEGRADED: "poor",
}
_SUBSCRIBER_QUEUE = 1000


@runtime_checkable
class ReadModel(Protocol):
    """The queries the routes need."""

    @property
    def ready(self) -> bool:
        """True once the model has caught up with what existed when it started."""

    @property
    def lag(self) -> int:
        """Records known to exist but not applied yet."""

    async def start(self) -> None:
        """Begin loading; returns before loading is done."""

    async def stop(self) -> None:
        """Stop loading and release resources."""

    def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:
        """The latest snapshot of one account plus ``open_alerts``; None if unknown or outside ``scope``."""

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
        """One page of recent alerts of accounts within ``scope``, newest first."""

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[Doc, None]:
        """Alerts of accounts within ``scope`` applied from now on, as they arrive."""


class InMemoryReadModel:
    """A read model held in dicts and a deque; always ready unless told otherwise."""

    def __init__(self, alert_buffer: int = 10_000, ready: bool = True) -> None:
        """Create an empty model keeping at most ``alert_buffer`` alerts for the feed."""
        self._accounts: dict[str, Doc] = {}
        self._feed: deque[tuple[int, Doc]] = deque(maxlen=alert_buffer)
        self._latest: dict[str, dict[str, Doc]] = {}
        self._seq = 0
        self._subscribers: dict[asyncio.Queue[Doc], AccountScope] = {}
        self._ready = ready
        self._lag = 0

    @property
    def ready(self) -> bool:  # see ReadModel
        return self._ready

    @property
    def lag(self) -> int:  # see ReadModel
        return self._lag

    def set_progress(self, ready: bool, lag: int) -> None:
        """Record how far loading has come."""
        self._ready, self._lag = ready, lag

    async def start(self) -> None:  # see ReadModel
        return None

    async def stop(self) -> None:  # see ReadModel
        return None

    def apply_health(self, account_id: str, doc: Doc | None) -> None:
        """Store the newest snapshot of an account; None (a tombstone) forgets it."""
        if doc is None:
            self._accounts.pop(account_id, None)
        else:
            self._accounts[account_id] = doc

    def apply_alert(self, doc: Doc) -> None:
        """Append an alert to the feed and hand it to every live subscriber."""
        self._seq += 1
        self._feed.append((self._seq, doc))
        account_id = doc.get("account_id")
        if isinstance(account_id, str):  # an operations alert (data_gap) belongs to no account
            self._latest.setdefault(account_id, {})[str(doc.get("kind"))] = doc
        for queue, scope in self._subscribers.items():
            # Judged on arrival, by the facts the account has then; a stalled client loses alerts
            # rather than growing memory.
            if not queue.full() and self._sees_alert(scope, doc):
                queue.put_nowait(doc)

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

    def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:  # see ReadModel
        doc = self._accounts.get(account_id)
        # Outside the scope is answered like unknown, so a key cannot tell which accounts exist.
        if doc is None or not scope.permits(doc.get("facts")):
            return None
        episodes = doc.get("episodes") or {}
        open_alerts = []
        for kind, alert in self._latest.get(account_id, {}).items():
            field = EPISODE_OF_KIND.get(kind)
            since = episodes.get(field) if field else None
            if not since:
                continue
            # Quiet and drop episodes have a start; an alert from an earlier, closed episode is not open.
            started = (alert.get("evidence") or {}).get("episode_started_at")
            if isinstance(since, str) and started is not None and started != since:
                continue
            open_alerts.append(alert)
        return {**doc, "open_alerts": open_alerts}

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
            payload = decode_cursor(cursor)
            if len(payload) != 2 or payload[0] != "alerts" or type(payload[1]) is not int:
                raise InvalidCursor("cursor does not belong to the alert feed")
            before = payload[1]
        out: list[tuple[int, Doc]] = []
        for seq, doc in reversed(self._feed):
            if before is not None and seq >= before:
                continue
            if kind is not None and doc.get("kind") != kind:
                continue
            if account is not None and doc.get("account_id") != account:
                continue
            if since is not None and datetime.fromisoformat(doc["detected_at"]) < since:
                continue
            if not self._sees_alert(scope, doc):
                continue
            out.append((seq, doc))
            if len(out) > limit:
                break
        page = out[:limit]
        nxt = encode_cursor(["alerts", page[-1][0]]) if len(out) > limit else None
        return [d for _, d in page], nxt

    async def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[Doc, None]:  # see ReadModel
        queue: asyncio.Queue[Doc] = asyncio.Queue(_SUBSCRIBER_QUEUE)
        self._subscribers[queue] = scope
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.pop(queue, None)
