"""API keys and scopes, body limit, rate limit and the error shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from api.auth import hash_key, lookup
from api.ratelimit import FailureThrottle
from api.settings import ApiKeySpec
from tests.unit.api.conftest import (
    ADMIN,
    READER,
    WRITER,
    AppFactory,
    FakeProducer,
    FakeTime,
    StoreModel,
    client_for,
    snapshot,
)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}])
async def test_missing_or_unknown_key_is_401_with_challenge(
    make_app: AppFactory, headers: dict[str, str]
) -> None:
    async with client_for(make_app(), None) as anon:
        resp = await anon.get("/v1/accounts", headers=headers)

    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.json()["error"]["code"] == "unauthorized"


async def test_x_api_key_header_is_accepted(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as anon:
        resp = await anon.get("/v1/accounts", headers={"X-API-Key": READER})

    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("headers", "found"),
    [
        # The first one is valid: "the first wins" would have let these through.
        (
            [("Authorization", f"Bearer {READER}"), ("Authorization", "Bearer junk")],
            "2 Authorization headers",
        ),
        ([("X-API-Key", READER), ("X-API-Key", "junk")], "2 X-API-Key headers"),
        ([("Authorization", "Basic junk"), ("X-API-Key", READER)], "both Authorization and X-API-Key"),
        ([("Authorization", f"Bearer {READER}"), ("X-API-Key", READER)], "both Authorization and X-API-Key"),
    ],
)
async def test_more_than_one_credential_is_400_naming_what_was_sent(
    make_app: AppFactory, headers: list[tuple[str, str]], found: str
) -> None:
    async with client_for(make_app(), None) as anon:
        resp = await anon.get("/v1/accounts", headers=headers)

    assert resp.status_code == 400
    assert resp.json()["error"] == {
        "code": "ambiguous_credentials",
        "message": f"send exactly one credential (Authorization: Bearer <key> or X-API-Key), got {found}",
    }


@pytest.mark.parametrize("value", ["Basic junk", "Bearer", "Bearer   ", READER])
async def test_an_authorization_header_that_is_not_bearer_is_401(make_app: AppFactory, value: str) -> None:
    async with client_for(make_app(), None) as anon:
        resp = await anon.get("/v1/accounts", headers={"Authorization": value})

    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_bearer_scheme_is_case_insensitive(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as anon:
        resp = await anon.get("/v1/accounts", headers={"Authorization": f"bearer {READER}"})

    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("key", "method", "path"),
    [
        (READER, "POST", "/v1/events"),
        (WRITER, "GET", "/v1/accounts"),
        (WRITER, "GET", "/v1/alerts"),
        (WRITER, "GET", "/v1/portfolio"),
    ],
)
async def test_missing_scope_is_403(make_app: AppFactory, key: str, method: str, path: str) -> None:
    async with client_for(make_app(), key) as c:
        resp = await c.request(method, path, json={})

    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "forbidden"


async def test_probes_need_no_key(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as anon:
        codes = [(await anon.get(p)).status_code for p in ("/healthz", "/readyz", "/metrics")]

    assert codes == [200, 200, 200]


def test_lookup_matches_hash_only() -> None:
    keys = {hash_key("s3cret").upper(): ApiKeySpec(name="k", scopes=frozenset({"health:read"}))}

    assert lookup("s3cret", keys) is not None
    assert lookup("s3cret ", keys) is None
    assert lookup(hash_key("s3cret"), keys) is None  # the hash itself is not a key


async def test_body_over_limit_with_content_length_is_413(make_app: AppFactory) -> None:
    async with client_for(make_app(max_body_bytes=100), ADMIN) as c:
        resp = await c.post("/v1/events", content=b"[" + b" " * 200 + b"]")

    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


async def test_body_over_limit_without_content_length_is_413(make_app: AppFactory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 30

    async with client_for(make_app(max_body_bytes=100), ADMIN) as c:
        request = c.build_request("POST", "/v1/events", content=chunks())
        assert "content-length" not in request.headers
        resp = await c.send(request)

    assert resp.status_code == 413


async def test_a_body_that_does_not_arrive_whole_in_time_is_408_and_closes(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b'[{"event_id": "e1", '
        await never.wait()  # a client that stops sending (or sends a byte a second)
        yield b"]"

    async with client_for(make_app(body_timeout_s=0.05), WRITER) as c:
        resp = await c.post("/v1/events", content=stalled(), headers={"Content-Length": "1000000"})

    assert resp.status_code == 408
    assert resp.headers["Connection"] == "close"
    assert resp.json()["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive whole within 0.05 s",
    }
    assert producer.sent == []


async def test_a_body_in_chunks_within_the_timeout_is_read(
    make_app: AppFactory, producer: FakeProducer
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = orjson.dumps(
            [{"event_id": "e1", "account_id": "a", "event": "login", "timestamp": 1741600000000}]
        )
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    async with client_for(make_app(body_timeout_s=5), WRITER) as c:
        resp = await c.post("/v1/events", content=chunks())

    assert resp.status_code == 202
    assert len(producer.sent) == 1


async def test_rate_limit_answers_429_with_retry_after_then_recovers(
    make_app: AppFactory, fake_time: FakeTime
) -> None:
    async with client_for(make_app(rate_limit_per_s=0.5, rate_limit_burst=2)) as c:
        first = [(await c.get("/v1/accounts")).status_code for _ in range(2)]
        limited = await c.get("/v1/accounts")
        fake_time.now += 2.0
        after = await c.get("/v1/accounts")

    assert first == [200, 200]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["code"] == "rate_limited"
    assert after.status_code == 200


async def test_rate_limit_is_per_key(make_app: AppFactory) -> None:
    app = make_app(rate_limit_per_s=0.1, rate_limit_burst=1)
    async with client_for(app, READER) as reader, client_for(app, ADMIN) as admin:
        assert (await reader.get("/v1/accounts")).status_code == 200
        assert (await reader.get("/v1/accounts")).status_code == 429
        assert (await admin.get("/v1/accounts")).status_code == 200


async def test_unexpected_error_is_500_without_trace(make_app: AppFactory) -> None:
    app = make_app()

    async def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    async with client_for(app, None, raise_app_exceptions=False) as c:
        resp = await c.get("/boom")

    assert resp.status_code == 500
    assert resp.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "secret" not in resp.text


async def test_unknown_route_uses_error_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v2/nothing")

    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


async def test_failed_authentication_is_throttled_per_client_address(
    make_app: AppFactory, fake_time: FakeTime
) -> None:
    app = make_app(auth_failure_limit=3, auth_failure_window_s=30)
    async with (
        client_for(app, "wrong", address="10.0.0.1") as guesser,
        client_for(app, READER, address="10.0.0.1") as same_address,
        client_for(app, READER, address="10.0.0.2") as other,
    ):
        failures = [(await guesser.get("/v1/accounts")).status_code for _ in range(3)]
        throttled = await guesser.get("/v1/accounts")
        # A right key from the throttled address is refused too: the answer must not tell guesses apart.
        right_key_same_address = await same_address.get("/v1/accounts")
        other_address = await other.get("/v1/accounts")
        probe = await guesser.get("/healthz")
        fake_time.now += 10.0  # one failure's worth of the window (30 s / 3)
        after_refill = await same_address.get("/v1/accounts")

    assert failures == [401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "10"
    assert throttled.json()["error"]["code"] == "auth_throttled"
    assert right_key_same_address.status_code == 429
    assert other_address.status_code == 200
    assert probe.status_code == 200
    assert after_refill.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic junk"}, {"X-API-Key": "wrong"}],
)
async def test_every_kind_of_401_counts_as_a_failed_authentication(
    make_app: AppFactory, headers: dict[str, str]
) -> None:
    async with client_for(make_app(auth_failure_limit=2), None) as anon:
        codes = [(await anon.get("/v1/portfolio", headers=headers)).status_code for _ in range(3)]

    assert codes == [401, 401, 429]


async def test_successful_and_forbidden_requests_do_not_count_as_failures(make_app: AppFactory) -> None:
    async with client_for(make_app(auth_failure_limit=1), WRITER) as writer:
        codes = [(await writer.get("/v1/accounts")).status_code for _ in range(5)]

    assert codes == [403] * 5


def test_failure_throttle_forgets_the_least_recently_failed_address_beyond_its_bound() -> None:
    throttle = FailureThrottle(limit=1, window_s=60.0, max_clients=2)
    for address in ("a", "b", "c"):
        throttle.failed(address, 0.0)

    assert list(throttle.buckets) == ["b", "c"]
    assert throttle.retry_after("a", 0.0) == 0
    assert throttle.retry_after("c", 0.0) == 60
    assert throttle.retry_after("c", 59.5) == 1
    assert throttle.retry_after("c", 60.0) == 0


@pytest.mark.parametrize(
    ("key", "path", "status"),
    [
        (READER, "/v1/accounts", 200),
        (READER, "/v1/accounts/nope/health", 404),
        (None, "/v1/accounts", 401),
        (WRITER, "/v1/portfolio", 403),
        (None, "/healthz", 200),
        (None, "/metrics", 200),
        (None, "/openapi.json", 200),
    ],
)
async def test_every_response_is_nosniff_and_no_store(
    make_app: AppFactory, key: str | None, path: str, status: int
) -> None:
    async with client_for(make_app(), key) as c:
        resp = await c.get(path)

    assert resp.status_code == status
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_an_unexpected_error_is_nosniff_and_no_store_too(make_app: AppFactory) -> None:
    app = make_app()

    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    async with client_for(app, None, raise_app_exceptions=False) as c:
        resp = await c.get("/boom")

    assert resp.status_code == 500
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/fragments/at-risk",
        "/dashboard/fragments/portfolio",
        "/dashboard/fragments/alerts",
        "/dashboard/fragments/accounts/acme",
    ],
)
async def test_html_fragments_may_not_be_framed_or_run_anything(
    make_app: AppFactory, model: StoreModel, path: str
) -> None:
    model.apply_health("acme", snapshot("acme"))
    async with client_for(make_app()) as c:
        resp = await c.get(path)

    assert resp.status_code == 200
    csp = [part.strip() for part in resp.headers["Content-Security-Policy"].split(";")]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_docs_keep_working_and_cannot_be_framed(make_app: AppFactory) -> None:
    async with client_for(make_app(), None) as c:
        docs = await c.get("/docs")

    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    # Only framing is forbidden: the Swagger UI page runs an inline script (its files: test_docs.py).
    assert docs.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert docs.headers["X-Frame-Options"] == "DENY"


async def test_the_dashboard_page_keeps_its_own_policy_and_static_files_stay_cacheable(
    make_app: AppFactory,
) -> None:
    async with client_for(make_app(), None) as c:
        page = await c.get("/dashboard")
        script = await c.get("/dashboard/static/dashboard.js")

    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
    assert page.headers["Cache-Control"] == "no-cache"
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "Cache-Control" not in script.headers
