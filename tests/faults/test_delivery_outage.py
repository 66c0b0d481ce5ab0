"""Alert delivery while the webhook receiver is away, on alerts the worker raised from simulated traffic."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.traffic import DAY_MS, replay, simulated_history
from tests.integration.kafkautil import read_all, wait_until
from tests.integration.pipeline import alerts, now_ms
from tests.integration.test_delivery import Receiver, Setup, assert_each_once, wait_for, webhook_toml
from tests.integration.workers import WorkerFactory, free_port


@pytest.mark.timeout(600)
async def test_receiver_away_for_a_while_then_every_alert_delivered_once(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """Webhook receiver unavailable for a while

    A worker replays 20,000 events of 300 simulated accounts (quiet threshold 3 days, so quiet,
    recovery and drop alerts are raised); `python -m streamer.delivery` sends them to a signed
    webhook whose receiver refuses connections for the first 30 s, then answers 503 for 5 s, then
    200. Held means: every alert id on the alert topic reaches the receiver with a 2xx exactly once,
    nothing goes to the delivery DLQ, and the delivery process never restarts.
    """
    history = simulated_history(
        seed=12, accounts=300, events=20_000, start_ms=now_ms() - 24 * DAY_MS, span_days=20
    )
    run = await replay(kafka_bootstrap, topic_factory, tmp_path, history, quiet_days=3, data_gaps=False)
    topics = run.topics
    worker = worker_factory.create(topics, 4, f"deliver-{unique_id}", rules_file=run.rules)
    await worker.start()

    setup = Setup(
        kafka_bootstrap,
        topics["alerts"],
        await topic_factory("alerts-dlq", 1),
        await topic_factory("deliveries", 1, {"cleanup.policy": "compact"}),
        tmp_path,
    )
    receiver = Receiver(free_port())
    proc = setup.process(webhook_toml(receiver.port), delivery_max_attempts="100", delivery_max_delay_s="2")
    try:
        await proc.start()
        await proc.wait_log("churnwatch delivery ready")
        down_since = time.monotonic()
        quiet = set(history.last_activity_ms)

        async def all_raised() -> bool:
            return {
                a.account_id
                for a in await alerts(kafka_bootstrap, topics["alerts"])
                if a.kind == "account_quiet"
            } >= quiet

        await wait_until(all_raised, 240, "the worker to raise every account's final quiet alert")
        remaining = 30 - (time.monotonic() - down_since)
        if remaining > 0:
            await asyncio.sleep(remaining)
        figures["receiver refused connections for (s)"] = round(time.monotonic() - down_since, 1)
        figures["delivery retries while away"] = proc.metric("churnwatch_delivery_retries_total")
        phase = {"503_until": time.monotonic() + 5.0}
        receiver.respond = lambda _hit: 503 if time.monotonic() < phase["503_until"] else 200
        receiver.start()
        back = time.monotonic()
        seen = await alerts(kafka_bootstrap, topics["alerts"])
        ids = {a.alert_id for a in seen}
        figures["alerts raised by the worker"] = len(ids)
        figures["alert records on the topic (re-sends included)"] = len(seen)
        figures["alerts by kind"] = {
            k: sum(a.kind == k for a in seen) for k in sorted({a.kind for a in seen})
        }
        await wait_for(
            lambda: {h.headers["webhook-id"] for h in receiver.ok()} >= ids,
            240,
            "every alert delivered after the receiver came back",
            proc=proc,
        )
        figures["seconds from the receiver's return to the last delivery"] = round(time.monotonic() - back, 1)
        await setup.wait_all_committed(len(seen), 60)  # every alert is done with: nothing more may arrive
        figures["503 answers"] = sum(h.status == 503 for h in receiver.hits)
        figures["2xx deliveries"] = len(receiver.ok())
        assert_each_once(receiver, ids)
        dead = await read_all(kafka_bootstrap, setup.dlq)
        figures["delivery DLQ records"] = len(dead)
        assert dead == []
        assert proc.proc is not None and proc.proc.returncode is None
    finally:
        receiver.stop()
        await proc.stop()
