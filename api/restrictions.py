"""Key restrictions: which accounts one API key may read, and which it may write events for.

Readers are restricted by what an account *is* (its ``owner`` and ``segment`` facts), writers by its
id (a prefix), because a writer names accounts that may not exist yet. Plain values: the read model
applies an :class:`AccountScope` to every kind of read, ingest applies an :class:`AccountPrefix` to
every item, and neither needs to know about requests or keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AccountScope:
    """The accounts a key may read: those whose facts match every restriction given (all without one)."""

    owner: str | None = None
    segment: str | None = None

    @property
    def unrestricted(self) -> bool:
        """True when the key reads every account, including operations alerts that name none."""
        return self.owner is None and self.segment is None

    def permits(self, facts: Mapping[str, Any] | None) -> bool:
        """Whether an account with these facts is within the scope.

        Args:
            facts: The account's facts (``facts`` of a snapshot, ``account`` of an alert); None or a
                non-object when unknown, which only an unrestricted scope permits.
        """
        if self.unrestricted:
            return True
        if not isinstance(facts, Mapping):
            return False
        if self.owner is not None and facts.get("owner") != self.owner:
            return False
        return self.segment is None or facts.get("segment") == self.segment


@dataclass(frozen=True, slots=True)
class AccountPrefix:
    """The accounts a key may write events for: ids starting with ``prefix`` (any id when None)."""

    prefix: str | None = None

    def permits(self, account_id: str) -> bool:
        """Whether an event for ``account_id`` may be written with this key."""
        return self.prefix is None or account_id.startswith(self.prefix)

    @property
    def refusal(self) -> str:
        """The rule an ingest error states for an event outside the prefix."""
        return f"outside this key's accounts (prefix {self.prefix!r})"


EVERY_ACCOUNT = AccountScope()
"""The scope of a key without read restrictions."""
