"""The simulator's accounts and events as history (replayed at full speed), and checks against it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tests.faults.accounts import Account, account_event, make_accounts, usage_event
from tests.integration.kafkautil import wait_until
from tests.integration.pipeline import make_topics, rules_file

DAY_MS = 86_400_000


@dataclass
class History:
    """Records in time order plus what a correct worker must end up with."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    counted: Counter[str] = field(default_factory=Counter)  # distinct usage events per account
    last_activity_ms: dict[str, int] = field(default_factory=dict)
    activity_ms: dict[str, list[int]] = field(default_factory=dict)  # every usage event's time
    resent: int = 0

    @property
    def accounts(self) -> list[str]:
        return sorted(self.counted)

    def quiet_deadlines(self, quiet_ms: int) -> set[tuple[str, int]]:
        """Every (account, last activity + quiet_ms) that the history lets pass without activity:
        the quiet alerts a correct worker may raise, stamped with their deadline."""
        out = set()
        for account, times in self.activity_ms.items():
            ordered = sorted(set(times))
            for at, following in zip(ordered, [*ordered[1:], None], strict=True):
                if following is None or following >= at + quiet_ms:
                    out.add((account, at + quiet_ms))
        return out


def _active(account: Account, frac: float) -> bool:
    """Whether the account is using the product at ``frac`` (0..1) of the history, by its behaviour."""
    stop = 0.2 + 0.6 * (account.stop_after_s - 10) / 40  # the simulator's 10..50 s mapped into the span
    if account.behaviour == "stops":
        return frac < stop
    if account.behaviour == "returns":
        return not stop < frac < stop + 0.3
    return True


def simulated_history(seed: int, accounts: int, events: int, start_ms: int, span_days: float) -> History:
    """``events`` usage events of the simulator's accounts over ``span_days`` from ``start_ms``.

    Behaviours as in the simulator: steady, decaying, stopping, and stopping then returning (a silence
    of 30% of the span, longer than the tests' quiet threshold). About 1% of events are re-sent with
    the same id, as an at-least-once producer would, up to 20 s later (at most 1% of the span, so
    that in a short live stream a re-send stays within the worker's window of recent event ids).
    """
    rng = random.Random(seed)
    people = make_accounts(accounts, rng)
    total_rate = sum(a.events_per_minute for a in people)
    span_ms = int(span_days * DAY_MS)
    resend_within_ms = max(1, min(20_000, span_ms // 100))
    timed: list[tuple[int, bytes, bytes]] = []
    history = History()
    for account in people:
        key = account.account_id.encode()
        timed.append((start_ms, key, account_event(account, 0, start_ms)))
        want = max(1, round(events * account.events_per_minute / total_rate))
        seq = 0
        while seq < want:
            frac = rng.random()
            if not _active(account, frac):
                continue
            if account.behaviour == "decaying" and rng.random() < frac:
                continue
            seq += 1
            at = start_ms + int(frac * span_ms)
            value = usage_event(account, seq, at, rng)
            timed.append((at, key, value))
            history.counted[account.account_id] += 1
            prev = history.last_activity_ms.get(account.account_id, 0)
            history.last_activity_ms[account.account_id] = max(prev, at)
            history.activity_ms.setdefault(account.account_id, []).append(at)
            if rng.random() < 0.01:
                timed.append((at + rng.randrange(0, resend_within_ms), key, value))
                history.resent += 1
    timed.sort(key=lambda item: item[0])
    history.records = [(k, v) for _, k, v in timed]
    return history


async def produce_fast(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]], **config: object
) -> None:
    """Produce many records quickly (batched, acks=all, idempotent) and wait for every ack."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        **config,
    )
    await producer.start()
    try:
        for start in range(0, len(records), 5000):
            futures = [await producer.send(topic, key=k, value=v) for k, v in records[start : start + 5000]]
            for fut in futures:
                await fut
    finally:
        await producer.stop()


class PacedProducer:
    """Produces records in order, evenly over about ``seconds``: a live stream the faults hit mid-way.

    Chunk k goes out at k * 0.1 s after the start (on the wall clock, so the pace does not drift).
    Like a product app that retries, a chunk whose send fails (the broker away, a leader moving) is
    sent again until it is acknowledged, then the stream catches up with its schedule; the worker
    deduplicates by event id, so a re-send changes no count. ``sent`` is how many records are
    acknowledged so far; ``retries`` how many attempts failed.
    """

    def __init__(
        self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], seconds: float
    ) -> None:
        self.bootstrap, self.topic, self.records = bootstrap, topic, records
        self.chunk = max(1, round(len(records) * 0.1 / seconds))
        self.sent = 0
        self.retries = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    @property
    def done(self) -> bool:
        return self.sent >= len(self.records)

    def fraction(self) -> float:
        return self.sent / len(self.records)

    async def wait(self) -> None:
        assert self.task is not None
        await self.task

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        producer: AIOKafkaProducer | None = None
        started = time.monotonic()
        try:
            while not self.done:
                due = started + 0.1 * (self.sent // self.chunk)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                chunk = self.records[self.sent : self.sent + self.chunk]
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(
                            bootstrap_servers=self.bootstrap, acks="all", request_timeout_ms=10_000
                        )
                        await producer.start()
                    futures = [await producer.send(self.topic, key=k, value=v) for k, v in chunk]
                    await asyncio.gather(*futures)
                except KafkaError:
                    self.retries += 1
                    if producer is not None:
                        with contextlib.suppress(KafkaError):
                            await producer.stop()
                        producer = None
                    await asyncio.sleep(1)
                    continue
                self.sent += len(chunk)
        finally:
            if producer is not None:
                with contextlib.suppress(KafkaError):
                    await producer.stop()


async def wait_streamed(stream: PacedProducer, fraction: float, timeout_s: float) -> None:
    """Wait until ``fraction`` of the stream is acknowledged by the broker."""

    async def reached() -> bool:
        return stream.fraction() >= fraction

    await wait_until(reached, timeout_s, f"{fraction:.0%} of the stream produced")


def event_ids(value: bytes) -> str:
    """The event id of a native event."""
    doc = orjson.loads(value)
    return str(doc["event_id"])


@dataclass
class Replay:
    """A history produced into fresh topics (one per role), and the rules file its workers use."""

    history: History
    topics: dict[str, str]
    rules: str

    @property
    def total(self) -> int:
        return len(self.history.records)


async def replay(
    bootstrap: str,
    topic_factory: Any,
    tmp_path: Path,
    history: History,
    *,
    partitions: int = 4,
    quiet_days: float = 3,
    data_gaps: bool = True,
    figures: dict[str, Any] | None = None,
) -> Replay:
    """Make the topics, write the rules (quiet after ``quiet_days``) and produce the history.

    The history ends days before now, and all of it together: a partition that has learnt its rhythm
    takes that for a tracking outage and holds the accounts' quiet alerts (``data_gaps=False`` judges
    each account's silence on its own, as a test of what happens to the alerts needs).
    """
    topics = await make_topics(topic_factory, partitions)
    extra = "" if data_gaps else "[data_gaps]\nenabled = false\n"
    rules = str(rules_file(tmp_path, quiet_days * 86400.0, "quiet_missed_active_days = 0\n" + extra))
    started = time.monotonic()
    await produce_fast(bootstrap, topics["events"], list(history.records))
    if figures is not None:
        figures["events produced"] = len(history.records)
        figures["accounts"] = len(history.counted)
        figures["re-sent events (same id)"] = history.resent
        figures["produce seconds"] = round(time.monotonic() - started, 1)
    return Replay(history, topics, rules)
