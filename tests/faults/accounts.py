"""Accounts and events for the fault suite: a small, seeded model of SaaS usage.

Steady, decaying, stopping and returning accounts with seats, plans, segments and owners; the fault
tests build their histories from it so that their traffic looks like the simulator's without
depending on its command-line machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaProducer

from bench.workload import FEATURES, PLANS, SEGMENTS

log = logging.getLogger("churnwatch.faults.traffic")

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


async def run(bootstrap: str, topic: str, n: int, seed: int, duration_s: float) -> int:
    """Produce until ``duration_s`` has passed (0 = until interrupted); returns events sent."""
    rng = random.Random(seed)
    accounts = make_accounts(n, rng)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sent = 0
    started = time.monotonic()
    try:
        now_ms = int(time.time() * 1000)
        for account in accounts:
            await producer.send(topic, account_event(account, 0, now_ms), key=account.account_id.encode())
        behaviours = {b: sum(a.behaviour == b for a in accounts) for b in set(BEHAVIOURS)}
        log.info("simulating %d accounts (%s) into %s", n, behaviours, topic)
        tick_s = 0.25
        while not stop.is_set() and (duration_s <= 0 or time.monotonic() - started < duration_s):
            elapsed = time.monotonic() - started
            now_ms = int(time.time() * 1000)
            for account in accounts:
                # Poisson arrivals: on average rate * tick events this tick.
                expected = account.rate(elapsed) * tick_s
                while rng.random() < expected:
                    sent += 1
                    value = usage_event(account, sent, now_ms, rng)
                    await producer.send(topic, value, key=account.account_id.encode())
                    expected -= 1
            with_timeout = asyncio.wait_for(stop.wait(), tick_s)
            try:
                await with_timeout
            except TimeoutError:
                pass
            if int(elapsed) % 15 == 0 and elapsed - int(elapsed) < tick_s:
                log.info("%d events sent after %.0fs", sent, elapsed)
    finally:
        await producer.stop()
    return sent


def main() -> None:
    """``python -m tests.faults.accounts``: produce the accounts' usage live, for the soak."""
    parser = argparse.ArgumentParser(description="Steady simulated usage into Kafka, in real time.")
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until interrupted")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    bootstrap = os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    topic = os.environ.get("CHURNWATCH_EVENTS_TOPIC", "usage-events")
    sent = asyncio.run(run(bootstrap, topic, args.accounts, args.seed, args.duration))
    log.info("done: %d events", sent)


if __name__ == "__main__":
    main()
