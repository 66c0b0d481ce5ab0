"""The delivery adapter: consume alerts, fan them out to per-destination senders, record the outcome.

Thin I/O around the pure parts (routing, signing, retry decisions, ledger bookkeeping). Order of
writes for one alert at one destination: the HTTP request is answered 2xx (or the alert is written
to the DLQ), then the ledger record is acknowledged by Kafka (acks=all), and only when every
destination of the alert is finished may its offset be committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from streamer.delivery import metrics
from streamer.delivery.backoff import Action, decide, parse_retry_after
from streamer.delivery.config import DeliveryConfig, Destination, targets
from streamer.delivery.digests import DigestRunner, HealthPartitions
from streamer.delivery.ledger import (
    BASELINE_PREFIX,
    DEAD,
    DELIVERED,
    Ledger,
    OffsetTracker,
    disabled_key,
    disabled_value,
    ledger_key,
    ledger_value,
)
from streamer.delivery.ports import AlertConsumer, EnsureTopics, LedgerReader, Producer, Record
from streamer.delivery.settings import DeliverySettings
from streamer.delivery.signing import sign
from streamer.delivery.slack import slack_message
from streamer.wire.documents import AlertDocument

log = logging.getLogger("churnwatch.delivery")

DAY_MS = 86_400_000
DISABLED_REASON = "destination disabled (410)"

RetryWait = Callable[[float, asyncio.Event], Awaitable[bool]]
"""Waits ``delay_s`` before a retry, or less when ``stopping`` is set; returns whether it was."""


async def wait_or_stop(delay_s: float, stopping: asyncio.Event) -> bool:
    """The production :data:`RetryWait`: SIGTERM does not sit out a long backoff."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), delay_s)
    return stopping.is_set()


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Job:
    """One alert to deliver to one destination."""

    partition: int
    offset: int
    epoch: int
    key: bytes | None
    value: bytes
    alert: Mapping[str, Any]
    alert_id: str
    timestamp_ms: int
    slack: Mapping[str, Any] | None = None  # the Slack message when it is not the alert's (a digest)


async def ensure_delivery_topics(settings: DeliverySettings) -> int:
    """Create the DLQ and the ledger topic when they are missing; returns the ledger's partition count."""
    specs = {
        settings.delivery_dlq_topic: {"retention.ms": str(30 * DAY_MS)},
        # Compaction keeps one status per pair; the retention matches the alert topic's, since a
        # ledger entry only has to outlive the alert it guards against re-sending.
        settings.delivery_ledger_topic: {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(90 * DAY_MS),
        },
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=config)
            for name, config in specs.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            for topic in missing:
                log.info("created topic %s", topic.name)
        for _ in range(150):
            (described,) = await admin.describe_topics([settings.delivery_ledger_topic])
            parts = described.get("partitions") or []
            # Right after creation a partition can lack a leader for a moment; reading it then fails.
            if parts and all(p["leader"] >= 0 for p in parts):
                return len(parts)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"topic {settings.delivery_ledger_topic} has no leaders")
    finally:
        await admin.close()


async def health_partitions(settings: DeliverySettings) -> int:
    """The health topic's partition count, once it exists with leaders (the worker creates it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        waited = False
        while True:
            if settings.health_topic in set(await admin.list_topics()):
                (described,) = await admin.describe_topics([settings.health_topic])
                parts = described.get("partitions") or []
                if parts and all(p["leader"] >= 0 for p in parts):
                    return len(parts)
            if not waited:
                log.warning("digest: waiting for topic %s (the worker creates it)", settings.health_topic)
                waited = True
            await asyncio.sleep(1.0)
    finally:
        await admin.close()


class Sender:
    """One destination's queue and its single worker, so a slow destination holds up only itself."""

    def __init__(self, dest: Destination, service: DeliveryService) -> None:
        self.dest = dest
        self.service = service
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.fingerprint = dest.fingerprint
        metrics.DISABLED.labels(dest.name).set(0)

    @property
    def disabled(self) -> bool:
        """Whether this destination, as configured now, answered 410 Gone (here, before, or elsewhere)."""
        return self.fingerprint in self.service.ledger.disabled

    async def run(self) -> None:
        """Deliver queued jobs one at a time until the service stops."""
        svc = self.service
        while not svc.stopping.is_set():
            get = asyncio.ensure_future(self.queue.get())
            stop = asyncio.ensure_future(svc.stopping.wait())
            await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not get.done():
                get.cancel()
                return
            await self.deliver(get.result())

    async def deliver(self, job: Job) -> None:
        """Deliver one alert: retry within the budget, else dead-letter it; record the outcome."""
        svc, name = self.service, self.dest.name
        if svc.ledger.finished(name, job.alert_id):
            metrics.DELIVERIES.labels(name, "skipped").inc()
            svc.tracker.finish(job.partition, job.offset, job.epoch)
            return
        attempt = 0
        while not self.disabled:
            attempt += 1
            status, retry_after, error = await self._attempt(job)
            s = svc.settings
            step = decide(
                status,
                error,
                attempt,
                s.delivery_max_attempts,
                retry_after,
                s.delivery_base_delay_s,
                s.delivery_max_delay_s,
                svc.rng,
            )
            if step.action is Action.DELIVERED:
                metrics.DELIVERIES.labels(name, "delivered").inc()
                metrics.LATENCY.labels(name).observe(max(0.0, time.time() - job.timestamp_ms / 1000))
                await svc.record_delivered(job, name)
                return
            if step.action is Action.DISABLE:
                await svc.disable(self)
                log.error(
                    "destination %s disabled: it answered 410 Gone; its alerts go to the DLQ until its "
                    "configuration changes",
                    name,
                )
                break
            if step.action is Action.DEAD:
                await svc.dead_letter(job, name, step.reason)
                return
            metrics.RETRIES.labels(name).inc()
            log.warning("%s: alert %s attempt %d failed (%s)", name, job.alert_id, attempt, step.reason)
            # Waiting on the stop event: SIGTERM does not sit out a long backoff. The job then stays
            # unfinished, its offset uncommitted, and the next run resumes it.
            if await svc.retry_wait(step.delay_s, svc.stopping):
                return
        metrics.DISABLED.labels(name).set(1)
        await svc.dead_letter(job, name, DISABLED_REASON)

    async def _attempt(self, job: Job) -> tuple[int | None, float | None, str]:
        dest = self.dest
        if dest.type == "slack":
            message = (
                job.slack
                if job.slack is not None
                else slack_message(job.alert, self.service.settings.public_url)
            )
            body = orjson.dumps(message)
            headers = {"content-type": "application/json"}
        else:
            body = job.value
            assert dest.secret is not None  # noqa: S101 - the config loader requires it for webhooks
            headers = {
                "content-type": "application/json",
                **sign(dest.secret.get_secret_value(), job.alert_id, int(time.time()), body),
            }
        url = dest.url.get_secret_value()
        try:
            resp = await self.service.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as err:
            # The error goes to the log and the DLQ headers; some httpx errors quote the URL, as
            # given or as httpx normalised it.
            text = f"{type(err).__name__}: {err}"
            for form in (str(httpx.URL(url)), url):
                text = text.replace(form, "<url>")
            return None, None, text[:300]
        retry_after = parse_retry_after(resp.headers.get("retry-after"), datetime.now(UTC))
        return resp.status_code, retry_after, f"HTTP {resp.status_code}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: DeliveryService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.commit()
        for tp in revoked:
            self.service.tracker.revoke(tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self.service.tracker.assign(tp.partition)
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class DeliveryService:
    """Consumes ``churn-alerts`` as group ``<app_id>-delivery`` and delivers each alert."""

    def __init__(
        self,
        settings: DeliverySettings,
        config: DeliveryConfig,
        *,
        http: httpx.AsyncClient,
        producer: Producer,
        consumer: AlertConsumer,
        reader: LedgerReader,
        ensure_topics: EnsureTopics,
        retry_wait: RetryWait = wait_or_stop,
        health_reader: LedgerReader | None = None,
        health_partitions: HealthPartitions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Wire the service to its clients; :meth:`run` starts them and closes them all at the end.

        Args:
            settings: The delivery settings.
            config: Destinations, routes and snoozes.
            http: Sends every request (timeouts and headers are the caller's).
            producer: Writes the ledger and the DLQ; must acknowledge only durable writes.
            consumer: Consumes the alerts topic in the delivery group, auto-commit off.
            reader: A group-less consumer for the ledger topic.
            ensure_topics: Makes sure the DLQ and ledger exist; returns the ledger's partitions.
            retry_wait: Waits between attempts (tests record the delays instead of sleeping).
            health_reader: A group-less consumer for the health topic; with ``health_partitions``
                and ``digest_enabled``, the daily digest runs.
            health_partitions: Returns the health topic's partition count.
            clock: The current time, for the digest's schedule.
        """
        self.settings = settings
        self.config = config
        self.rng = random.Random(settings.delivery_seed)  # noqa: S311 - retry jitter, not cryptography
        self.stopping = asyncio.Event()
        self.ledger = Ledger(
            max_entries=settings.delivery_ledger_max_entries,
            max_age_ms=round(settings.delivery_ledger_max_age_s * 1000),
        )
        self.tracker = OffsetTracker()
        self.http = http
        self.producer = producer
        self.consumer = consumer
        self.reader = reader
        self.ensure_topics = ensure_topics
        self.retry_wait = retry_wait
        self.senders = {name: Sender(dest, self) for name, dest in config.destinations.items()}
        self.acks: set[asyncio.Task[None]] = set()
        self.failed: BaseException | None = None
        self._paused = False
        self.clock = clock
        self.digests = (
            DigestRunner(self, health_reader, health_partitions, clock)
            if settings.digest_enabled and health_reader is not None and health_partitions is not None
            else None
        )

    def now_ms(self) -> int:
        """The current time in epoch milliseconds, from the injected clock."""
        return round(self.clock().timestamp() * 1000)

    def queue_digest(
        self,
        destination: str,
        owner: str,
        digest_id: str,
        body: bytes,
        slack: Mapping[str, Any] | None,
        now_ms: int,
    ) -> None:
        """Hand one digest to a destination's sender; it is delivered and recorded like an alert.

        It belongs to no alert offset (partition -1), so finishing it moves no commit.
        """
        job = Job(-1, -1, 0, owner.encode(), body, {}, digest_id, now_ms, slack)
        self.senders[destination].queue.put_nowait(job)

    async def write_ledger(self, destination: str, alert_id: str, status: str) -> None:
        """Produce the ledger record and wait for its acknowledgement, then remember it locally."""
        key = ledger_key(destination, alert_id).encode()
        at_ms = _now_ms()
        await self.producer.send_and_wait(
            self.settings.delivery_ledger_topic, key=key, value=ledger_value(status, at_ms)
        )
        self.ledger.record(destination, alert_id, at_ms)

    async def disable(self, sender: Sender) -> None:
        """Persist that a destination answered 410 Gone, so that no restart calls it again.

        The record goes to the ledger topic, keyed by the fingerprint of the destination's
        configuration, rather than to a local file: the topic is already read fully at start and
        followed while running, delivery runs as a stateless Deployment (a file would vanish with
        the pod and would not reach the other replicas), and a changed URL or secret gives a new
        fingerprint, which is not disabled. Deleting the record (a tombstone for its key) enables
        the unchanged destination again.
        """
        key, name = disabled_key(sender.fingerprint).encode(), sender.dest.name
        await self.producer.send_and_wait(
            self.settings.delivery_ledger_topic, key=key, value=disabled_value(name, _now_ms())
        )
        self.ledger.disable(sender.fingerprint)
        metrics.DISABLED.labels(name).set(1)

    async def record_delivered(self, job: Job, destination: str) -> None:
        """Queue the ledger record of a 2xx; the offset is released once Kafka acknowledged it.

        The sender moves on to the next alert while the record is in flight, so one destination's
        throughput is bounded by its receiver, not by a Kafka round trip per alert.
        """
        # Remembered at once: a duplicate of this alert later in the stream is not sent again.
        at_ms = _now_ms()
        self.ledger.record(destination, job.alert_id, at_ms)
        key = ledger_key(destination, job.alert_id).encode()
        value = ledger_value(DELIVERED, at_ms)
        ack = await self.producer.send(self.settings.delivery_ledger_topic, key=key, value=value)
        task = asyncio.create_task(self._released_on_ack(ack, job))
        self.acks.add(task)
        task.add_done_callback(self.acks.discard)

    async def _released_on_ack(self, ack: Awaitable[Any], job: Job) -> None:
        try:
            await ack
        except KafkaError as err:
            # Without the ledger record the offset must stay uncommitted; stopping makes the next
            # run resume here (and re-send this alert with the same webhook-id).
            log.error("ledger write failed, stopping: %s", err)
            self.stopping.set()
            self.failed = err
            return
        self.tracker.finish(job.partition, job.offset, job.epoch)

    async def dead_letter(self, job: Job, destination: str, reason: str) -> None:
        """Write the alert to the DLQ with the destination and the error, then mark it dead."""
        headers = [("churnwatch.destination", destination.encode()), ("churnwatch.error", reason.encode())]
        await self.producer.send_and_wait(
            self.settings.delivery_dlq_topic, key=job.key, value=job.value, headers=headers
        )
        log.warning("%s: alert %s dead-lettered: %s", destination, job.alert_id, reason)
        if job.alert_id:
            await self.write_ledger(destination, job.alert_id, DEAD)
        metrics.DLQ.labels(destination).inc()
        metrics.DELIVERIES.labels(destination, "dead").inc()
        self.tracker.finish(job.partition, job.offset, job.epoch)

    def _apply(self, rec: Record) -> None:
        if rec.key is not None and rec.key.startswith(BASELINE_PREFIX.encode()):
            if self.digests is not None:
                self.digests.apply_baseline(rec.key, rec.value)
            return
        self.ledger.apply(rec.key, rec.value, rec.timestamp, _now_ms())

    async def load_ledger(self, partitions: int) -> None:
        """Read the ledger topic to its end with the reader, which then keeps following it."""
        reader = self.reader
        tps = [TopicPartition(self.settings.delivery_ledger_topic, p) for p in range(partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        end = await reader.end_offsets(tps)
        while any([await reader.position(tp) < end[tp] for tp in tps]):
            for records in (await reader.getmany(*tps, timeout_ms=500)).values():
                for rec in records:
                    self._apply(rec)
        log.info("ledger loaded: %d finished deliveries", len(self.ledger))
        for name, sender in self.senders.items():
            if sender.disabled:
                # Written again so that the record stays younger than the topic's delete retention.
                await self.disable(sender)
                log.error(
                    "destination %s stays disabled: it answered 410 Gone before; its alerts go to the "
                    "DLQ until its configuration changes",
                    name,
                )

    async def follow_ledger(self) -> None:
        """Keep applying ledger records that other instances write (after a rebalance moved partitions)."""
        while not self.stopping.is_set():
            for records in (await self.reader.getmany(timeout_ms=500)).values():
                for rec in records:
                    self._apply(rec)

    async def commit(self) -> None:
        """Commit, per partition, up to the lowest alert not yet finished at all of its destinations."""
        offsets = self.tracker.committable()
        if not offsets:
            return
        topic = self.settings.alerts_topic
        try:
            await self.consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
        except (CommitFailedError, KafkaError) as err:
            # A rebalance is in progress; the new owner resumes from the last commit and the ledger
            # keeps it from re-sending what was delivered since.
            log.warning("commit failed: %s", err)
            return
        self.tracker.committed(offsets)

    async def _dispatch(self, rec: Record) -> None:
        partition = rec.partition
        epoch = self.tracker.epoch(partition)
        try:
            alert = orjson.loads(rec.value or b"")
            if not isinstance(alert, dict):
                raise ValueError("not an alert object")
            AlertDocument.model_validate(alert)  # the contract; routing reads the document as it is
        except ValidationError as err:
            self.tracker.add(partition, rec.offset, 1)
            job = Job(partition, rec.offset, epoch, rec.key, rec.value or b"", {}, "", rec.timestamp)
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])
            await self.dead_letter(job, "-", f"invalid alert: {problems}")
            return
        except (orjson.JSONDecodeError, ValueError, TypeError) as err:
            self.tracker.add(partition, rec.offset, 1)
            job = Job(partition, rec.offset, epoch, rec.key, rec.value or b"", {}, "", rec.timestamp)
            await self.dead_letter(job, "-", f"invalid alert: {err}")
            return
        now_ms = int(time.time() * 1000)
        todo: list[str] = []
        for target in targets(self.config, alert, now_ms):
            if target.snoozed:
                metrics.DELIVERIES.labels(target.destination, "snoozed").inc()
            elif self.ledger.finished(target.destination, alert["alert_id"]):
                metrics.DELIVERIES.labels(target.destination, "skipped").inc()
            else:
                todo.append(target.destination)
        self.tracker.add(partition, rec.offset, len(todo))
        job_fields = (rec.key, rec.value or b"", alert, alert["alert_id"], rec.timestamp)
        for name in todo:
            self.senders[name].queue.put_nowait(Job(partition, rec.offset, epoch, *job_fields))

    async def _flow_control(self) -> None:
        # Pausing instead of not polling keeps the consumer in its group while a destination is down.
        full = self.tracker.in_flight() >= self.settings.delivery_max_in_flight
        if full != self._paused:
            parts = self.consumer.assignment()
            if full:
                self.consumer.pause(*parts)
            else:
                self.consumer.resume(*parts)
            self._paused = full

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then finish requests in flight (within the grace) and commit."""
        s = self.settings
        reader = self.reader
        tasks: list[asyncio.Task[None]] = []
        try:
            ledger_partitions = await self.ensure_topics()
            await self.producer.start()
            await reader.start()
            await self.load_ledger(ledger_partitions)
            self.consumer.subscribe([s.alerts_topic], listener=_Rebalance(self))
            await self.consumer.start()
            tasks = [asyncio.create_task(snd.run(), name=f"send-{n}") for n, snd in self.senders.items()]
            tasks.append(asyncio.create_task(self.follow_ledger(), name="ledger"))
            if self.digests is not None:
                tasks.append(asyncio.create_task(self.digests.run(), name="digest"))
            log.info(
                "churnwatch delivery ready: %d destinations, %d routes",
                len(self.senders),
                len(self.config.routes),
            )
            await self._consume(stop, tasks)
        finally:
            self.stopping.set()
            # Senders finish the request in flight (and its ledger write) so that a planned stop does
            # not turn a 2xx into a re-delivery; a request still running after the grace is cancelled.
            late: set[asyncio.Task[None]] = set()
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=s.delivery_shutdown_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            # Every 2xx's ledger record is acknowledged before the last commit.
            await asyncio.gather(*self.acks, return_exceptions=True)
            with contextlib.suppress(KafkaError):
                await self.commit()
            await self.consumer.stop()
            await reader.stop()
            if self.digests is not None and self.digests.started:
                await self.digests.reader.stop()
            await self.producer.stop()
            await self.http.aclose()
            log.info("churnwatch delivery stopped")

    async def _consume(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        s = self.settings
        last_commit = time.monotonic()
        while not stop.is_set():
            if self.failed is not None:
                raise self.failed
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            await self._flow_control()
            batch = await self.consumer.getmany(timeout_ms=100, max_records=1000)
            for records in batch.values():
                for rec in records:
                    await self._dispatch(rec)
            if time.monotonic() - last_commit >= s.delivery_commit_interval_ms / 1000:
                await self.commit()
                last_commit = time.monotonic()
