"""Readiness and metrics."""

from __future__ import annotations

import pytest

from api.metrics import method_label, status_label
from api.readmodel import InMemoryReadModel, ReadModel
from tests.unit.api.conftest import AppFactory, FakeProducer, StoreModel, client_for


async def test_readyz_follows_the_read_model(make_app: AppFactory) -> None:
    model = InMemoryReadModel(ready=False)
    model.set_progress(False, 42)
    app = make_app()
    app.state.read_model = model
    async with client_for(app, None) as c:
        loading = await c.get("/readyz")
        model.set_progress(True, 0)
        ready = await c.get("/readyz")

    assert loading.status_code == 503
    assert loading.json() == {
        "status": "loading",
        "lag": 42,
        "reason": "the read model is still loading the health and alert topics",
    }
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "lag": 0}


async def test_readyz_is_503_with_the_reason_while_kafka_is_unreachable(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    async with client_for(make_app(), None) as c:
        producer.unreachable = "Kafka at 127.0.0.1:9092 does not answer metadata requests"
        away = await c.get("/readyz")
        producer.unreachable = None
        back = await c.get("/readyz")

    assert away.status_code == 503
    assert away.json() == {
        "status": "unavailable",
        "lag": 0,
        "reason": "Kafka at 127.0.0.1:9092 does not answer metadata requests",
    }
    assert back.status_code == 200


async def test_metrics_count_by_route_template_and_status(make_app: AppFactory, model: StoreModel) -> None:
    model.set_progress(True, 7, write_failures=2)
    app = make_app()
    other = make_app()  # a second app in the same process must not clash
    async with client_for(app) as c, client_for(other) as c2:
        for account in ("a", "b", "c"):
            await c.get(f"/v1/accounts/{account}/health")
        await c2.get("/v1/accounts/z/health")
        text = (await c.get("/metrics")).text

    route = 'route="/v1/accounts/{account_id}/health"'
    assert f'churnwatch_api_requests_total{{method="GET",{route},status="404"}} 3.0' in text
    assert (
        'churnwatch_api_request_seconds_count{method="GET",route="/v1/accounts/{account_id}/health"' in text
    )
    assert "churnwatch_api_readmodel_lag_records 7.0" in text
    assert "churnwatch_api_store_write_failures_total 2.0" in text
    assert "/v1/accounts/a/health" not in text


def test_openapi_documents_every_route_with_summary_and_auth(make_app: AppFactory) -> None:
    schema = make_app().openapi()

    operations = [(path, op) for path, item in schema["paths"].items() for op in item.values()]
    assert {p for p, _ in operations} >= {
        "/v1/accounts/{account_id}/health",
        "/v1/accounts",
        "/v1/portfolio",
        "/v1/alerts",
        "/v1/alerts/stream",
        "/v1/events",
        "/v1/segment/batch",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert all(op.get("summary") for _, op in operations)
    secured = {p for p, op in operations if "401" in op["responses"]}
    assert secured == {p for p, _ in operations if p.startswith("/v1/")}
    assert "example" in schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]


def test_in_memory_model_implements_the_protocol() -> None:
    assert isinstance(InMemoryReadModel(), ReadModel)


async def test_metric_labels_come_from_closed_sets_whatever_clients_send(make_app: AppFactory) -> None:
    app = make_app()
    async with client_for(app, None) as c:
        for i in range(50):
            assert (await c.request(f"M{i:04d}XYZ", "/healthz")).status_code == 405
            assert (await c.get(f"/random/{i}")).status_code == 404
        await c.request("PROPFIND", "/healthz")
        await c.get("/healthz")
        text = (await c.get("/metrics")).text

    series = {
        line.split(" ")[0] for line in text.splitlines() if line.startswith("churnwatch_api_requests_total{")
    }
    assert series == {
        'churnwatch_api_requests_total{method="other",route="/healthz",status="405"}',
        'churnwatch_api_requests_total{method="GET",route="unmatched",status="404"}',
        'churnwatch_api_requests_total{method="GET",route="/healthz",status="200"}',
    }
    assert 'churnwatch_api_requests_total{method="other",route="/healthz",status="405"} 51.0' in text
    assert "XYZ" not in text and "/random/" not in text


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "200"),  # answered by the API: kept
        (499, "499"),  # client went away mid-body: kept
        (418, "4xx"),  # never answered by the API: its class
        (599, "5xx"),
        (102, "1xx"),
    ],
)
def test_status_label_is_a_known_status_or_its_class(status: int, label: str) -> None:
    assert status_label(status) == label


@pytest.mark.parametrize(
    ("method", "label"),
    [("GET", "GET"), ("DELETE", "DELETE"), ("get", "other"), ("M5971F5AC47C7", "other"), ("", "other")],
)
def test_method_label_is_a_standard_method_or_other(method: str, label: str) -> None:
    assert method_label(method) == label
