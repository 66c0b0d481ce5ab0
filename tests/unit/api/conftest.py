"""Fixtures: an app over a read model and a fake producer, and a client for it.

Every test that takes the ``model`` fixture runs on each store: in memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.auth import hash_key
from api.readmodel import InMemoryReadModel
from api.settings import ApiSettings
from api.store.sql import SqlReadModel
from tests.postgres import PostgresServer, database_name

StoreModel = InMemoryReadModel | SqlReadModel
"""The stores the API serves from, each filled by hand in these tests."""

READER = "reader-key"
WRITER = "writer-key"
ADMIN = "admin-key"
# Keys restricted to some accounts: by owner, by segment, by both (readers), by id prefix (writer).
ANN = "ann-key"
ENTERPRISE = "enterprise-key"
ANN_ENTERPRISE = "ann-enterprise-key"
EU_WRITER = "eu-writer-key"
NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)


@dataclass
class FakeProducer:
    """Records what would have been produced; can be told to fail, to hang, or that Kafka is away."""

    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    fail: bool = False
    hang: bool = False
    unreachable: str | None = None
    calls: int = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send_batch(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()  # a broker that never acknowledges
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.extend((topic, k, v) for k, v in records)


@dataclass
class FakeTime:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(**overrides: Any) -> ApiSettings:
    """Settings with three unrestricted keys (read-only, write-only, everything) and the restricted ones."""
    reads = ["health:read", "alerts:read"]
    keys = {
        hash_key(READER): {"name": "reader", "scopes": reads},
        hash_key(WRITER): {"name": "writer", "scopes": ["events:write"]},
        hash_key(ADMIN): {"name": "admin", "scopes": ["health:read", "alerts:read", "events:write"]},
        hash_key(ANN): {"name": "ann", "scopes": reads, "owner": "ann"},
        hash_key(ENTERPRISE): {"name": "enterprise", "scopes": reads, "segment": "enterprise"},
        hash_key(ANN_ENTERPRISE): {
            "name": "ann-ent",
            "scopes": reads,
            "owner": "ann",
            "segment": "enterprise",
        },
        hash_key(EU_WRITER): {"name": "eu-writer", "scopes": ["events:write"], "account_prefix": "eu-"},
    }
    return ApiSettings(api_keys=keys, **overrides)


def health(account_id: str, score: int = 50, band: str = "average") -> dict[str, Any]:
    """The health part of a snapshot or alert, every field of the contract (streamer.wire.documents)."""
    return {
        "account_id": account_id,
        "at": "2025-03-15T00:00:00.000Z",
        "score": score,
        "band": band,
        "components": [
            {
                "name": "recency",
                "value": 100.0,
                "weight": 0.75,
                "contribution": 37.5,
                "explanation": "active today",
            },
            {
                "name": "sentiment",
                "value": 70.0,
                "weight": 0.25,
                "contribution": 5.0,
                "explanation": "no NPS",
            },
        ],
        "current_weekly": 12.0,
        "baseline_weekly": 12.0,
        "active_users_7d": 2,
        "active_users_28d": 2,
        "user_days_week": 6.0,
        "user_days_usual": 6.0,
        "missed_active_days": 0.0,
        "features_28d": 3,
        "onboarding": False,
    }


def snapshot(account_id: str, score: int = 50, band: str = "average", **extra: Any) -> dict[str, Any]:
    """A health snapshot with every field of the worker's (the API serves it through the contract)."""
    doc: dict[str, Any] = {
        "version": 1,
        **health(account_id, score, band),
        "trend": "flat",
        "score_change": None,
        "first_seen_at": "2025-01-10T00:00:00.000Z",
        "last_activity_at": "2025-03-10T00:00:00.000Z",
        "facts": {"name": account_id.title(), "seats": 5, "plan": "pro", "segment": "smb", "owner": "ann"},
        "nps": {"score": None, "at": None},
        "subscription": {"status": None, "started_at": None, "cancelled_at": None},
        "open_tickets": 0,
        "episodes": {"quiet_since": None, "drop_since": None, "poor": False},
        "daily": {
            "from": "2025-03-14",
            "to": "2025-03-15",
            "events": [3, 4],
            "weighted": [3.0, 4.0],
            "users": [1, 2],
            "features": [1, 2],
        },
    }
    doc.update(extra)
    return doc


def alert(alert_id: str, account_id: str, kind: str = "account_quiet", **extra: Any) -> dict[str, Any]:
    """An alert document shaped like ``alert_to_dict``'s."""
    doc: dict[str, Any] = {
        "alert_id": alert_id,
        "kind": kind,
        "account_id": account_id,
        "detected_at": "2025-03-14T00:00:00.000Z",
        "severity": "high",
        "reason": "No activity for 7 days",
        "health": health(account_id, 30, "poor"),
        "evidence": {"episode_started_at": "2025-03-07T00:00:00.000Z"},
        "account": {"name": account_id.title()},
    }
    doc.update(extra)
    return doc


STORES = ["memory", "sqlite", "postgresql"]


def open_model(request: pytest.FixtureRequest, store: str, **options: Any) -> StoreModel:
    """An empty store of the kind ``store`` names, closed when the test ends."""
    if store == "memory":
        return InMemoryReadModel(**options)
    if store == "sqlite":
        url = f"sqlite:///{request.getfixturevalue('tmp_path')}/store.db"
    else:
        # A copy of a database migrated once per session: a test pays for CREATE DATABASE alone.
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = database_name(request.node.nodeid)
        url = server.create_database(name, template=request.getfixturevalue("store_template"))
        request.addfinalizer(lambda: server.drop_database(name))
    sql = SqlReadModel(url, **options)
    request.addfinalizer(sql.close)
    return sql


@pytest.fixture(scope="session")
def store_template(postgres_server: PostgresServer) -> str:
    """The name of a PostgreSQL database holding the read store's empty, migrated schema."""
    name = "read_store_template"
    SqlReadModel(postgres_server.create_database(name)).close()
    return name


@pytest.fixture(params=STORES)
def model(request: pytest.FixtureRequest) -> Iterator[StoreModel]:
    yield open_model(request, request.param)


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(model: StoreModel, producer: FakeProducer, fake_time: FakeTime) -> AppFactory:
    def make(**overrides: Any) -> FastAPI:
        return create_app(settings(**overrides), model, producer, clock=lambda: NOW, monotonic=fake_time)

    return make


def client_for(
    app: FastAPI,
    key: str | None = READER,
    raise_app_exceptions: bool = True,
    address: str = "127.0.0.1",
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """A client talking to ``app`` in-process from ``address``, authenticated with ``key`` when given."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=raise_app_exceptions, client=(address, 40000)
    )
    return httpx.AsyncClient(
        transport=transport, base_url="http://localhost", headers=headers, follow_redirects=follow_redirects
    )


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as c:
        yield c


@pytest.fixture
async def writer(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(), WRITER) as c:
        yield c


class SseClient:
    """Drives the ASGI app directly: httpx's ASGI transport buffers whole bodies, a stream never ends."""

    def __init__(self, app: FastAPI, key: str = READER) -> None:
        self.app = app
        self.key = key
        self.body = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.arrived = asyncio.Event()
        self.disconnect = asyncio.Event()
        self._requested = False

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
        self.arrived.set()

    async def run(self) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/v1/alerts/stream",
            "raw_path": b"/v1/alerts/stream",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"localhost"), (b"authorization", f"Bearer {self.key}".encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("localhost", 80),
        }
        await self.app(scope, self._receive, self._send)

    async def wait_for(self, needle: bytes, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while needle not in self.body:
                self.arrived.clear()
                await self.arrived.wait()


async def wait_subscribed(model: StoreModel) -> None:
    """Return once an alert stream is listening (alerts applied before it are not replayed)."""
    async with asyncio.timeout(5):
        while model.subscribers == 0:
            await asyncio.sleep(0.01)
