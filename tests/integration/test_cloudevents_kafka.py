"""CloudEvents on the input topic, both Kafka modes, through a real worker on the real broker."""

from __future__ import annotations

import orjson
from aiokafka import AIOKafkaProducer

from streamer.core.alerts import ms_to_rfc3339
from tests.integration.conftest import TopicFactory
from tests.integration.kafkautil import read_all, wait_until
from tests.integration.pipeline import counted_events, make_topics, metric, now_ms, states, wait_metric
from tests.integration.workers import WorkerFactory


async def test_binary_and_structured_cloudevents_are_counted_and_bad_ones_dead_lettered(
    kafka_bootstrap: str, topic_factory: TopicFactory, worker_factory: WorkerFactory, unique_id: str
) -> None:
    topics = await make_topics(topic_factory, partitions=2)
    worker = await worker_factory.ready(topics, partitions=2, group=f"g-{unique_id}")
    at = now_ms()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(3):  # binary mode: attributes in ce_ headers, data as the value
            headers = [
                ("ce_specversion", b"1.0"),
                ("ce_id", f"bin-{i}".encode()),
                ("ce_source", b"/app"),
                ("ce_type", b"report_exported"),
                ("ce_time", ms_to_rfc3339(at + i).encode()),
                ("ce_accountid", b"acme"),
                ("content-type", b"application/json"),
            ]
            value = orjson.dumps({"user_id": f"u{i}", "format": "csv"})
            await producer.send_and_wait(topics["events"], value, key=b"acme", headers=headers)
        for i in range(2):  # structured mode: the whole event one JSON object
            doc = {
                "specversion": "1.0",
                "id": f"str-{i}",
                "source": "/app",
                "type": "login",
                "time": ms_to_rfc3339(at + 10 + i),
                "subject": "acme",
                "data": {"user_id": "u9"},
            }
            headers = [("content-type", b"application/cloudevents+json")]
            await producer.send_and_wait(topics["events"], orjson.dumps(doc), key=b"acme", headers=headers)
        # A binary-mode event without a time is dead-lettered with the attribute's name.
        no_time = [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"bad"),
            ("ce_type", b"x"),
            ("ce_accountid", b"acme"),
        ]
        await producer.send_and_wait(topics["events"], b"{}", key=b"acme", headers=no_time)
    finally:
        await producer.stop()

    await wait_metric(worker, "churnwatch_events_total", 5, 60, outcome="counted")
    await wait_metric(worker, "churnwatch_events_total", 1, 60, outcome="invalid")
    dlq = await read_all(kafka_bootstrap, topics["dlq"])
    assert [dict(r.headers)["churnwatch.error"] for r in dlq] == [
        b"time: required: churnwatch needs the time the event happened"
    ]

    # The account's stored state: every event counted, from four users, the newest one last.
    async def stored() -> bool:
        state = (await states(kafka_bootstrap, f"g-{unique_id}")).get("acme")
        return state is not None and counted_events(state) == 5

    await wait_until(stored, 60, "acme's state with 5 counted events")
    state = (await states(kafka_bootstrap, f"g-{unique_id}"))["acme"]
    assert state.last_activity_ms == at + 11
    assert metric(worker, "churnwatch_events_total", outcome="counted") == 5
