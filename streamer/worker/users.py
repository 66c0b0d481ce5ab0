"""The users topic, read into the worker's :class:`~streamer.core.users.UserDirectory`.

Every worker reads the whole compacted topic (key: user id, value: account id) from the start,
before it applies its first batch, and then follows it: links written by any worker (from the
``group`` calls it applies) reach every other within moments, so a message naming only its user
waits at most until its user's ``group`` call has been applied somewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.core.users import UserDirectory

__all__ = ["UsersFeed"]

log = logging.getLogger("churnwatch.worker")


class UsersFeed:
    """Loads the users topic into a directory, then follows it in a background task."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, directory: UserDirectory) -> None:
        """Feed ``directory`` from the ``partitions`` partitions of ``topic``."""
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.directory = directory
        self.loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def ready(self) -> None:
        """Start following the topic (once) and return when everything it held at start is loaded."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())
        await self.loaded.wait()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The worker still attributes what its own group calls link meanwhile; messages of users
                # linked only elsewhere wait (and are dead-lettered with their reason when it is over).
                log.exception("reading %s failed; retrying in 5 s", self.topic)
                self.loaded.set()
                await asyncio.sleep(5)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
                for records in fetched.values():
                    for rec in records:
                        if rec.key is not None and rec.value is not None:
                            user = rec.key.decode("utf-8", "replace")
                            self.directory.link(user, rec.value.decode("utf-8", "replace"))
                if not self.loaded.is_set() and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    log.info("user directory loaded: %d users from %s", len(self.directory), self.topic)
                    self.loaded.set()
        finally:
            await consumer.stop()
