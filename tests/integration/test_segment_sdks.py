"""Segment's and RudderStack's own SDKs (Python, and Segment's for Node) pointed at the API, on the real
broker, read back as health."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import rudderstack.analytics.client as rudder
import segment.analytics.client as segment

from streamer.core.state import USER_BITS, bit_for, estimate_distinct
from tests.integration.conftest import TopicFactory
from tests.integration.kafkautil import consume_until
from tests.integration.pipeline import make_topics
from tests.integration.workers import ApiProcess, WorkerFactory

KEY = "sdk-write-key"
POLL_LIMIT_S = 60.0
NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def calls(client: Any, account: str) -> None:
    """What a product app sends: group calls, then tracks and a page naming only their user (as most
    apps send them), one with context.groupId, an identify naming the account in its traits, and a
    track of a user no group call ever names, and a track the API refuses. Users belong to one account:
    ids are prefixed by it."""
    u = [f"{account}-u{i}" for i in range(3)]
    for user in u[:2]:
        client.group(user_id=user, group_id=account, traits={"name": f"{account} Inc", "plan": "pro"})
    client.track(user_id=u[0], event="Report Exported", properties={"n": 0})
    client.track(user_id=u[1], event="Report Exported", properties={"n": 1})
    client.track(user_id=u[1], event="Report Exported", properties={"n": 2}, context={"groupId": account})
    client.page(user_id=u[1], name="Pricing")
    client.identify(user_id=u[2], traits={"email": "u2@example.com", "groupId": account})
    client.track(user_id=f"orphan-{account}", event="Orphan")
    # Invalid (dated a day ahead): refused on its own in the batch's answer, the rest stored.
    ahead = datetime.now(UTC) + timedelta(days=1)
    client.track(user_id=u[1], event="From The Future", timestamp=ahead, context={"groupId": account})


async def health(url: str, account: str, events: int) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_LIMIT_S
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}) as http:
        while time.monotonic() < deadline:
            resp = await http.get(f"/v1/accounts/{account}/health")
            if resp.status_code == 200 and sum(resp.json()["daily"]["events"]) >= events:
                return dict(resp.json())
            await asyncio.sleep(0.25)
    raise AssertionError(f"health of {account} with {events} events not within {POLL_LIMIT_S}s")


async def test_segment_and_rudderstack_sdks_send_batches_that_come_back_as_exact_health(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    worker_factory: WorkerFactory,
    unique_id: str,
    tmp_path: Path,
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(topics, partitions=2, group=f"g-{unique_id}", attribution_wait_ms="3000")
    scopes = ["events:write", "health:read"]
    api = ApiProcess(kafka_bootstrap, topics, {KEY: {"name": "sdk", "scopes": scopes}}, tmp_path / "api.log")
    await api.start()
    errors: list[Any] = []
    try:
        await api.wait_ready(POLL_LIMIT_S)
        seg = segment.Client(KEY, host=api.url, gzip=True, on_error=lambda e, _batch: errors.append(e))
        rud = rudder.Client(KEY, host=api.url, gzip=True, on_error=lambda e, _batch: errors.append(e))
        for client, account in ((seg, f"seg-{unique_id}"), (rud, f"rud-{unique_id}")):
            calls(client, account)
            await asyncio.to_thread(client.flush)
            client.join()
        # The same calls through @segment/analytics-node (tests/node/send.mjs; `make node-sdk` installs it).
        assert (NODE_DIR / "node_modules" / "@segment" / "analytics-node").is_dir(), "run make node-sdk"
        node = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(NODE_DIR / "send.mjs"),
            api.url,
            KEY,
            f"node-{unique_id}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        node_out, _ = await asyncio.wait_for(node.communicate(), 60)
        assert node.returncode == 0, node_out.decode()
        seg_health = await health(api.url, f"seg-{unique_id}", 5)
        rud_health = await health(api.url, f"rud-{unique_id}", 5)
        node_health = await health(api.url, f"node-{unique_id}", 5)
        async with httpx.AsyncClient(base_url=api.url) as http:
            metrics = (await http.get("/metrics")).text
    finally:
        await api.stop()

    # The orphans: each dead-lettered once its wait was over, saying what to send. Nothing else is: the
    # track dated ahead was refused by the API (had it been stored, the worker would have dead-lettered
    # it at once, before any orphan's wait was over), and the SDKs saw 200 for its batch.
    orphans = await consume_until(kafka_bootstrap, topics["dlq"], lambda recs: len(recs) >= 3, 30)
    reasons = sorted(dict(r.headers)["churnwatch.error"].decode() for r in orphans)
    assert reasons == [
        f"context.groupId: no account for user 'orphan-{sdk}-{unique_id}': send a group call"
        " (userId → groupId) for the user, or context.groupId on the message (none came within 3 s)"
        for sdk in ("node", "rud", "seg")
    ]
    assert errors == []  # every batch answered 2xx: nothing for the SDKs to drop or retry
    # The three SDKs used the batch route (the Python ones gzip-encoded), one batch each.
    batches = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("churnwatch_api_requests_total{") and 'route="/v1/batch"' in line
    ]
    assert sum(batches) == 3 and 'route="/v1/batch",status="200"' in metrics
    healths = ((seg_health, "seg"), (rud_health, "rud"), (node_health, "node"))
    for doc, account in ((doc, f"{sdk}-{unique_id}") for doc, sdk in healths):
        # Three tracks, a page and an identify are activity (four of them attributed through the users'
        # group calls); the group calls are the account's facts.
        assert sum(doc["daily"]["events"]) == 5, account
        assert doc["facts"]["plan"] == "pro" and doc["facts"]["name"] == f"{account} Inc"
        # Distinct users are a linear-counting sketch: three users whose bits collide count as fewer.
        bits = 0
        for i in range(3):
            bits |= bit_for(f"{account}-u{i}", USER_BITS)
        assert doc["active_users_7d"] == round(estimate_distinct(bits, USER_BITS))
