"""Integration fixtures: the real Kafka broker, unique topics per test, and worker processes.

The session fixture makes sure a broker answers: the one named by CHURNWATCH_KAFKA_BOOTSTRAP (which
`make test` sets), or the project's own, started here and stopped at the end when this session
started it. Nothing is mocked: every integration test talks to Apache Kafka.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.kafkautil import broker_answers
from tests.integration.workers import WorkerFactory

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration carries the integration marker."""
    for item in items:
        if "tests/integration/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real, answering Apache Kafka broker."""
    external = os.environ.get("CHURNWATCH_KAFKA_BOOTSTRAP", "")
    bootstrap = external or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    started = False
    if not asyncio.run(broker_answers(bootstrap, timeout_s=5)):
        if external and external != f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}":
            pytest.fail(f"CHURNWATCH_KAFKA_BOOTSTRAP={external} does not answer")
        env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
        subprocess.run([str(KAFKA_SH), "start"], check=True, env=env)
        started = True
    yield bootstrap
    if started:
        env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
        subprocess.run([str(KAFKA_SH), "stop"], check=False, env=env)


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def topic_factory(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Create uniquely named topics for one test; they are deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(prefix: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = f"t-{prefix}-{uuid.uuid4().hex[:10]}"
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        created.append(name)
        return name

    yield create
    try:
        if created:
            await admin.delete_topics(created)
    finally:
        await admin.close()


@pytest.fixture
def unique_id() -> str:
    """A short id that names this test's topics and consumer groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def worker_factory(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[WorkerFactory]:
    """Start real worker processes (``python -m streamer``); all are stopped after the test."""
    factory = WorkerFactory(kafka_bootstrap, tmp_path)
    yield factory
    await factory.stop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh read store for the API: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("postgres_url"))
