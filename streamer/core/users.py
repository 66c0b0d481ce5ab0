"""Which account each user belongs to: the directory that attributes messages naming only a user.

Product apps send most Segment ``track`` calls without ``context.groupId``: the account is known only
from an earlier ``group`` call of the same user (or an ``identify`` naming the account). Every worker
keeps this directory in memory, fed by the users' ``group``/``identify`` calls it applies and by the
compacted users topic that all workers write those links to (:mod:`streamer.worker.users`).

Bounded: past ``max_users`` the user linked least recently is forgotten (its messages then wait and
are dead-lettered like those of a user never linked, until a new ``group`` call links it again).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

__all__ = ["UserDirectory"]


class UserDirectory:
    """user id → account id, most recently linked last, at most ``max_users`` users."""

    def __init__(self, max_users: int = 1_000_000) -> None:
        """An empty directory."""
        self.max_users = max_users
        self._accounts: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        """Users known."""
        return len(self._accounts)

    def account_of(self, users: Iterable[str]) -> str | None:
        """The account of the first of ``users`` that is known (a message's userId, then anonymousId)."""
        for user in users:
            account = self._accounts.get(user)
            if account is not None:
                return account
        return None

    def link(self, user: str, account: str) -> bool:
        """Record that ``user`` belongs to ``account``; True when that is news (a new or changed link)."""
        known = self._accounts.get(user)
        self._accounts[user] = account
        self._accounts.move_to_end(user)
        if len(self._accounts) > self.max_users:
            self._accounts.popitem(last=False)
        return known != account
