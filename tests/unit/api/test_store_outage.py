"""A read store that fails: the loader keeps the batch and retries, and reads answer 503, not 500."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from api.kafka_readmodel import KafkaReadModel
from api.readmodel import Batch, InMemoryReadModel
from api.restrictions import EVERY_ACCOUNT
from tests.unit.api.conftest import AppFactory, client_for, settings, snapshot


class FlakyStore(InMemoryReadModel):
    """Fails its first ``failures`` writes and every read while ``down``."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.down = False

    async def apply_batch(self, batch: Batch) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        await super().apply_batch(batch)

    async def get_account(self, account_id: str, **kw: Any) -> Any:
        if self.down:
            raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))
        return await super().get_account(account_id, **kw)


async def test_a_batch_the_store_refuses_is_written_again_until_it_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore(failures=3)
    loader = KafkaReadModel(settings(), store)
    loader.retry_delay_s = 0.01
    await loader._apply(Batch(snapshots=[("acme", snapshot("acme", score=61))]))

    assert loader.write_failures == 3
    doc = await store.get_account("acme", scope=EVERY_ACCOUNT)
    assert doc is not None and doc["score"] == 61
    assert caplog.text.count("writing to the read store failed, retrying in") == 3


async def test_a_read_while_the_store_is_down_answers_503_with_retry_after(make_app: AppFactory) -> None:
    store = FlakyStore(failures=0)
    store.apply_health("acme", snapshot("acme"))
    store.down = True
    app = make_app()
    app.state.read_model = store
    async with client_for(app) as client:
        resp = await client.get("/v1/accounts/acme/health")

    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "5"
    assert resp.json() == {
        "error": {"code": "store_unavailable", "message": "the read store does not answer; retry shortly"}
    }
