"""Accounts and events for the fault suite: a small, seeded model of SaaS usage.

Steady, decaying, stopping and returning accounts with seats, plans, segments and owners; the fault
tests build their histories from it so that their traffic looks like the simulator's without
depending on its command-line machinery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

FEATURES = [
    "login",
    "dashboard_viewed",
    "report_viewed",
    "report_exported",
    "invite_sent",
    "comment_added",
    "search",
    "integration_synced",
    "file_uploaded",
    "settings_changed",
]
PLANS = ["starter", "pro", "enterprise"]
SEGMENTS = ["smb", "mid-market", "enterprise"]
OWNERS = ["ana@example.com", "ben@example.com", "chloe@example.com"]
BEHAVIOURS = ["steady", "steady", "steady", "decaying", "stops", "returns"]


@dataclass
class Account:
    """A simulated customer account."""

    account_id: str
    name: str
    seats: int
    users: list[str]
    plan: str
    segment: str
    owner: str
    behaviour: str
    events_per_minute: float
    stop_after_s: float
    return_after_s: float

    def rate(self, elapsed_s: float) -> float:
        """Events per second at ``elapsed_s`` into the run."""
        base = self.events_per_minute / 60
        if self.behaviour == "decaying":
            return base * max(0.0, 1 - elapsed_s / (2 * self.stop_after_s))
        if self.behaviour == "stops" and elapsed_s > self.stop_after_s:
            return 0.0
        if self.behaviour == "returns" and self.stop_after_s < elapsed_s < self.return_after_s:
            return 0.0
        return base


def make_accounts(n: int, rng: random.Random) -> list[Account]:
    """Build ``n`` accounts with seeded sizes, plans and behaviours."""
    accounts = []
    for i in range(n):
        seats = rng.choice([3, 5, 10, 25, 50])
        plan = rng.choice(PLANS)
        accounts.append(
            Account(
                account_id=f"acct-{i:04d}",
                name=f"Customer {i:04d}",
                seats=seats,
                users=[f"user-{i:04d}-{u}" for u in range(max(1, int(seats * rng.uniform(0.4, 1.0))))],
                plan=plan,
                segment=rng.choice(SEGMENTS),
                owner=rng.choice(OWNERS),
                behaviour=rng.choice(BEHAVIOURS),
                events_per_minute=rng.uniform(6, 30),
                stop_after_s=rng.uniform(10, 50),
                return_after_s=rng.uniform(90, 120),
            )
        )
    return accounts


def account_event(account: Account, seq: int, at_ms: int) -> bytes:
    """The ``account_updated`` event that tells churnwatch an account's facts."""
    return orjson.dumps(
        {
            "event_id": f"{account.account_id}-facts-{seq}",
            "account_id": account.account_id,
            "event": "account_updated",
            "timestamp": at_ms,
            "properties": {
                "name": account.name,
                "seats": account.seats,
                "plan": account.plan,
                "segment": account.segment,
                "owner": account.owner,
            },
        }
    )


def usage_event(account: Account, seq: int, at_ms: int, rng: random.Random) -> bytes:
    """One product usage event of a random user and feature of the account."""
    return orjson.dumps(
        {
            "event_id": f"{account.account_id}-{seq}",
            "account_id": account.account_id,
            "event": rng.choice(FEATURES[: 4 + len(account.users) % 7]),
            "timestamp": at_ms,
            "user_id": rng.choice(account.users),
        }
    )
