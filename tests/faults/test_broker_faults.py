"""Broker faults on brokers of the test's own (free ports, data dirs under tmp_path).

The shared session broker is never stopped: these tests start a single node to stop and restart,
and a three-node KRaft cluster to lose a node of.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.faults.accounts import make_accounts, usage_event
from tests.faults.procs import API_KEY, KEYS, KafkaNode, start_cluster, three_node_cluster
from tests.faults.traffic import (
    DAY_MS,
    History,
    PacedProducer,
    produce_fast,
    simulated_history,
    wait_streamed,
)
from tests.integration.kafkautil import committed, wait_until
from tests.integration.pipeline import TOPIC_ROLES, counted_events, metric, now_ms, states
from tests.integration.workers import ApiProcess, WorkerFactory

PARTITIONS = 4


def _topics(prefix: str) -> dict[str, str]:
    # The worker creates them itself (python -m streamer runs ensure_topics) with its replication factor.
    return {role: f"{prefix}-{role}" for role in TOPIC_ROLES}


def _recent_history(events: int, accounts: int) -> History:
    return simulated_history(
        seed=9, accounts=accounts, events=events, start_ms=now_ms() - 2 * DAY_MS, span_days=1.9
    )


def _live(n: int, seed: int, first_seq: int) -> list[tuple[bytes | None, bytes | None]]:
    """``n`` events of other simulated accounts, stamped now."""
    import random

    rng = random.Random(seed)
    accounts = make_accounts(20, rng)
    at = now_ms()
    return [
        ((a := accounts[i % 20]).account_id.encode(), usage_event(a, first_seq + i, at, rng))
        for i in range(n)
    ]


async def _exact(bootstrap: str, group: str, want: dict[str, int], timeout_s: float) -> None:
    got: dict[str, int] = {}

    async def exact() -> bool:
        nonlocal got
        got = {a: counted_events(s) for a, s in (await states(bootstrap, group)).items()}
        return got == want

    try:
        await wait_until(exact, timeout_s, f"{group} to count every event exactly once")
    except AssertionError:
        wrong = {a: (got.get(a), n) for a, n in want.items() if got.get(a) != n}
        raise AssertionError(
            f"{len(wrong)} accounts counted wrong (got, want): {list(wrong.items())[:10]}"
        ) from None


def _want(history: History, live: list[tuple[bytes | None, bytes | None]]) -> dict[str, int]:
    want = dict(history.counted)
    for key, _ in live:
        assert key is not None
        # The live accounts are the simulator's acct-0000.. too: share ids with the history only if
        # the seeds collide, so they are renamed below.
        want[key.decode()] = want.get(key.decode(), 0) + 1
    return want


def _rename(
    records: list[tuple[bytes | None, bytes | None]], prefix: str
) -> list[tuple[bytes | None, bytes | None]]:
    out: list[tuple[bytes | None, bytes | None]] = []
    for key, value in records:
        assert key is not None and value is not None
        out.append((prefix.encode() + key, value.replace(b'"acct-', f'"{prefix}acct-'.encode())))
    return out


@pytest.mark.timeout(600)
async def test_broker_stopped_and_restarted_mid_stream(tmp_path: Path, figures: dict[str, Any]) -> None:
    """Broker stopped and restarted mid-stream (same data dir)

    A single-node broker of the test's own runs a worker and the API (`python -m api`). 40,000 events
    of 100 simulated accounts are produced as a live stream over about 40 s (a producer that re-sends
    what the broker did not acknowledge, as product apps do). Once 30% of the stream is produced and
    the worker has committed some of it, the broker is stopped (SIGTERM) while the stream goes on,
    kept down for 10 s and started again on the same data directory; then 2,000 live events of 20
    further accounts are produced. Held means: neither process exits; the worker commits again and
    the API answers `/readyz` and serves a live account's health, each within 30 s of the broker
    answering again; every account counts exactly its distinct events.
    """
    node = KafkaNode(tmp_path / "kafka")
    (tmp_path / "workers").mkdir()
    factory = WorkerFactory(node.address, tmp_path / "workers")
    topics = _topics("restart")
    api = ApiProcess(node.address, topics, KEYS, tmp_path / "api.log")
    history = _recent_history(40_000, 100)
    stream = PacedProducer(node.address, topics["events"], list(history.records), 40)
    await node.start()
    try:
        worker = factory.create(topics, PARTITIONS, "restart-group")
        await worker.start()
        await worker.wait_ready()
        await api.start()
        await api.wait_ready()
        stream.start()
        total = len(history.records)
        figures["events in the stream"] = total
        await wait_streamed(stream, 0.3, 120)

        async def some_committed() -> bool:
            return await committed(node.address, "restart-group", topics["events"]) > 0

        await wait_until(some_committed, 60, "the worker's first commit")
        before = await committed(node.address, "restart-group", topics["events"])
        figures["produced / committed when the broker was stopped"] = [stream.sent, before]
        assert not stream.done, "the stream was over before the broker stopped: not mid-stream"
        stop_started = time.monotonic()
        await node.stop()
        figures["broker stop seconds"] = round(time.monotonic() - stop_started, 1)
        await asyncio.sleep(10)
        await node.start()
        up = time.monotonic()
        figures["broker restart seconds (start to answering)"] = round(up - stop_started - 10, 1)

        # A commit after the restart, not one that landed while the broker was shutting down: the
        # base is what the broker reports once it answers offset requests again.
        stopped_at = before

        async def offsets_back() -> bool:
            nonlocal before
            before = await committed(node.address, "restart-group", topics["events"])
            return before >= stopped_at

        await wait_until(offsets_back, 30, "the group's committed offsets to be readable again")
        figures["committed when the broker answered again"] = before
        live = _rename(_live(2000, 10, 0), "live-")
        producing = asyncio.create_task(produce_fast(node.address, topics["events"], live))

        async def worker_commits() -> bool:
            assert worker.proc is not None and worker.proc.returncode is None, worker.log_text()[-3000:]
            return await committed(node.address, "restart-group", topics["events"]) > before

        await wait_until(worker_commits, 60, "the worker to commit again")
        figures["worker: seconds from broker up to its next commit"] = round(time.monotonic() - up, 1)
        await producing
        account = live[-1][0]
        assert account is not None
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": API_KEY}, timeout=2) as client:

            async def api_serves() -> bool:
                assert api.proc is not None and api.proc.returncode is None
                try:
                    ready = (await client.get("/readyz")).status_code == 200
                    health = await client.get(f"/v1/accounts/{account.decode()}/health")
                except httpx.HTTPError:
                    return False
                return ready and health.status_code == 200

            await wait_until(api_serves, 60, "the API to serve a live account's health")
        figures["API: seconds from broker up to serving a live account's health"] = round(
            time.monotonic() - up, 1
        )
        await stream.wait()
        figures["stream send attempts that failed and were retried"] = stream.retries
        figures["worker starts"] = worker.starts
        await _exact(node.address, "restart-group", _want(history, live), 300)
        figures["events counted exactly once"] = sum(_want(history, live).values())
        assert figures["worker: seconds from broker up to its next commit"] <= 30
        assert figures["API: seconds from broker up to serving a live account's health"] <= 30
        assert worker.starts == 1
    finally:
        await stream.stop()
        await api.stop()
        await factory.stop_all()
        await node.stop()


@pytest.mark.timeout(900)
async def test_three_node_cluster_loses_a_broker_mid_stream(tmp_path: Path, figures: dict[str, Any]) -> None:
    """Three-node KRaft cluster loses a broker mid-stream

    Three KRaft nodes (each broker and controller; replication factor 3, min.insync.replicas 2) of
    the test's own. The worker creates its topics with replication factor 3. 40,000 events of 150
    simulated accounts are produced as a live stream over about 40 s (acks=all; a chunk the cluster
    did not acknowledge is sent again). Once 30% of the stream is produced and the worker has
    committed some of it, the node leading the most input partitions is killed with SIGKILL (and
    stays down) while the stream goes on; then 3,000 live events of 20 further accounts are
    produced. Held means: the worker keeps processing without restarting and every account counts
    exactly its distinct events.
    """
    nodes = three_node_cluster(tmp_path)
    bootstrap = ",".join(n.address for n in nodes)
    (tmp_path / "workers").mkdir()
    factory = WorkerFactory(bootstrap, tmp_path / "workers")
    topics = _topics("cluster")
    killed: KafkaNode | None = None
    history = _recent_history(40_000, 150)
    stream = PacedProducer(bootstrap, topics["events"], list(history.records), 40)
    await start_cluster(nodes)
    try:
        worker = factory.create(topics, PARTITIONS, "cluster-group", replication_factor="3")
        await worker.start()
        await worker.wait_ready(120)
        stream.start()
        total = len(history.records)
        figures["events in the stream"] = total

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topics["events"]])
        finally:
            await admin.close()
        replicas = {len(p["replicas"]) for p in described["partitions"]}
        figures["replicas per input partition"] = sorted(replicas)
        assert replicas == {3}
        leaders = [p["leader"] for p in described["partitions"]]
        victim_id = max(set(leaders), key=leaders.count)

        await wait_streamed(stream, 0.3, 120)

        async def some_committed() -> bool:
            return await committed(bootstrap, "cluster-group", topics["events"]) > 0

        await wait_until(some_committed, 60, "the worker's first commit")
        before = await committed(bootstrap, "cluster-group", topics["events"])
        killed = nodes[victim_id - 1]
        killed.kill()
        figures["produced / committed when the node was killed"] = [stream.sent, before]
        assert not stream.done, "the stream was over before the node was killed: not mid-stream"
        at = time.monotonic()
        figures["killed node (leader of input partitions)"] = (
            f"node {victim_id} ({leaders.count(victim_id)} of {PARTITIONS})"
        )

        async def commits_again() -> bool:
            return await committed(bootstrap, "cluster-group", topics["events"]) > before

        await wait_until(commits_again, 120, "the worker to commit after the node was killed")
        figures["seconds from the kill to the next commit"] = round(time.monotonic() - at, 1)
        await stream.wait()
        figures["stream send attempts that failed and were retried"] = stream.retries
        live = _rename(_live(3000, 11, 0), "live-")
        await produce_fast(bootstrap, topics["events"], live)
        await _exact(bootstrap, "cluster-group", _want(history, live), 600)
        figures["seconds from the kill to exact state"] = round(time.monotonic() - at, 1)
        figures["events counted exactly once"] = sum(_want(history, live).values())
        figures["worker starts"] = worker.starts
        figures["replayed records skipped"] = metric(worker, "churnwatch_events_total", outcome="replayed")
        assert worker.starts == 1 and worker.proc is not None and worker.proc.returncode is None
    finally:
        await stream.stop()
        await factory.stop_all()
        await asyncio.gather(*(n.stop() for n in nodes if n is not killed), return_exceptions=True)
