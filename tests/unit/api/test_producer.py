"""The producer's reachability probe, with fake probes instead of a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from api.producer import watch_reachability


async def _reports(probe: Callable[[], Awaitable[bool]], count: int) -> list[str | None]:
    reports: list[str | None] = []
    done = asyncio.Event()

    def report(reason: str | None) -> None:
        reports.append(reason)
        if len(reports) == count:
            done.set()

    task = asyncio.create_task(
        watch_reachability(probe, report, timeout_s=0.05, interval_s=0, what="Kafka at k:1")
    )
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return reports[:count]  # with no interval, a few more probes may run before the task is cancelled


async def test_each_probe_is_reported_reachable_or_with_the_reason() -> None:
    answers = iter([True, False, True])

    async def probe() -> bool:
        return next(answers, True)

    assert await _reports(probe, 3) == [None, "Kafka at k:1 does not answer metadata requests", None]


async def test_a_probe_that_hangs_is_unreachable_after_the_timeout() -> None:
    async def probe() -> bool:
        await asyncio.Event().wait()
        return True

    assert await _reports(probe, 1) == ["Kafka at k:1 did not answer a metadata request within 0.05 s"]


async def test_a_probe_that_raises_is_unreachable_and_probing_goes_on() -> None:
    calls = 0

    async def probe() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError
        return True

    assert await _reports(probe, 2) == ["Kafka at k:1 is not reachable (ConnectionRefusedError)", None]
