"""RudderStack's Kafka destination on the input topic: Segment-shaped messages keyed by user, most without
a group id, attributed through the users' group calls by a real worker on the real broker."""

from __future__ import annotations

import orjson

from streamer.core.alerts import ms_to_rfc3339
from tests.integration.conftest import TopicFactory
from tests.integration.kafkautil import consume_until, produce, wait_until
from tests.integration.pipeline import counted_events, make_topics, metric, now_ms, states
from tests.integration.workers import WorkerFactory


def rudder(kind: str, message_id: str, user: str, at_ms: int, **extra: object) -> bytes:
    """A message as RudderStack's Kafka destination writes it (its own extra fields included)."""
    doc = {
        "type": kind,
        "messageId": message_id,
        "userId": user,
        "anonymousId": f"anon-{user}",
        "rudderId": f"r-{message_id}",
        "channel": "server",
        "originalTimestamp": ms_to_rfc3339(at_ms),
        "sentAt": ms_to_rfc3339(at_ms),
        "context": {"library": {"name": "rudder-sdk-python"}},
        **extra,
    }
    return orjson.dumps(doc)


async def test_user_keyed_messages_are_attributed_and_a_user_without_account_is_dead_lettered(
    kafka_bootstrap: str, topic_factory: TopicFactory, worker_factory: WorkerFactory, unique_id: str
) -> None:
    topics = await make_topics(topic_factory, partitions=3)
    group = f"g-{unique_id}"
    worker = await worker_factory.ready(topics, partitions=3, group=group, attribution_wait_ms="2000")
    at = now_ms()
    records = [
        # Tracks of ann before her group call: they wait for it.
        (b"ann", rudder("track", "t1", "ann", at, event="Report Exported")),
        (b"ann", rudder("track", "t2", "ann", at + 1, event="Report Exported")),
        (b"ann", rudder("group", "g1", "ann", at + 2, groupId="acme", traits={"plan": "pro"})),
        (b"bob", rudder("group", "g2", "bob", at + 3, groupId="acme")),
        (b"bob", rudder("page", "p1", "bob", at + 4, name="Pricing")),
        # ann's t2 again, re-sent by an at-least-once producer: dropped where it is read, never re-sent.
        (b"ann", rudder("track", "t2", "ann", at + 1, event="Report Exported")),
        (b"eve", rudder("track", "t3", "eve", at + 6, event="Orphan")),
    ]
    await produce(kafka_bootstrap, topics["events"], records)

    async def exact() -> bool:
        state = (await states(kafka_bootstrap, group)).get("acme")
        return state is not None and counted_events(state) == 3

    await wait_until(exact, 60, "acme's state with its 3 distinct events")
    dlq = await consume_until(kafka_bootstrap, topics["dlq"], lambda recs: len(recs) >= 1, 30)
    assert [(r.key, dict(r.headers)["churnwatch.error"].decode()) for r in dlq] == [
        (
            b"eve",
            "context.groupId: no account for user 'eve': send a group call (userId → groupId) for the user,"
            " or context.groupId on the message (none came within 2 s)",
        )
    ]
    state = (await states(kafka_bootstrap, group))["acme"]
    assert (state.plan, state.last_activity_ms) == ("pro", at + 4)
    assert metric(worker, "churnwatch_events_total", outcome="attributed") == 3
    assert metric(worker, "churnwatch_events_total", outcome="duplicate") == 1
