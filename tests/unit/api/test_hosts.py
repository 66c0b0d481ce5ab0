"""The Host header: trusted names only, and trailing-slash redirects that never carry it."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from api.hosts import RelativeSlashRedirect, host_allowed, host_name
from api.settings import ApiSettings
from tests.unit.api.conftest import AppFactory, StoreModel, client_for, snapshot


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/v1/accounts/", "/v1/accounts"),
        ("/v1/accounts/?band=poor&limit=5", "/v1/accounts?band=poor&limit=5"),
        ("/v1/portfolio/", "/v1/portfolio"),
        # The client's encoding is kept: an id's %2F must not become a "/".
        ("/v1/accounts/tenant%2Fp7/health/", "/v1/accounts/tenant%2Fp7/health"),
    ],
)
async def test_trailing_slash_redirect_is_relative_whatever_the_host(
    make_app: AppFactory, path: str, location: str
) -> None:
    async with client_for(make_app(trusted_hosts=("*",))) as c:
        resp = await c.get(path, headers={"Host": "evil.example"})

    assert resp.status_code == 307
    assert resp.headers["location"] == location


async def test_redirect_is_followed_to_the_route(make_app: AppFactory, model: StoreModel) -> None:
    model.apply_health("tenant/p7", snapshot("tenant/p7"))
    async with client_for(make_app(), follow_redirects=True) as c:
        resp = await c.get("/v1/accounts/tenant%2Fp7/health/")

    assert resp.status_code == 200
    assert resp.json()["account_id"] == "tenant/p7"


async def test_a_path_no_route_matches_either_way_is_404_without_location(make_app: AppFactory) -> None:
    async with client_for(make_app()) as c:
        resp = await c.get("/nothing/")

    assert resp.status_code == 404
    assert "location" not in resp.headers


@pytest.mark.parametrize("raw_path", [b"//evil.example/", b"/\\evil.example/"])
async def test_never_a_redirect_that_a_browser_reads_as_another_host(raw_path: bytes) -> None:
    # A catch-all route matches the path without its slash: only the guard stands in the way.
    async def endpoint(_: Request) -> Response:
        return Response()

    fallback_calls: list[str] = []

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        fallback_calls.append(scope["path"])

    redirect = RelativeSlashRedirect([Route("/{rest:path}", endpoint)], fallback)
    path = raw_path.decode()
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": raw_path, "query_string": b""}

    async def no_receive() -> Message:
        raise AssertionError("not read")

    async def no_send(message: Message) -> None:
        raise AssertionError(f"nothing may be sent: {message}")

    await redirect(scope, no_receive, no_send)

    assert fallback_calls == [path]


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.2", "localhost.evil.example", "[::2]:8000"]
)
async def test_a_host_header_outside_the_trusted_hosts_is_400(make_app: AppFactory, host: str) -> None:
    async with client_for(make_app()) as c:
        resp = await c.get("/v1/accounts", headers={"Host": host})
        redirect = await c.get("/v1/accounts/", headers={"Host": host})

    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_host"
    assert host not in resp.text
    assert redirect.status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:8000", "[::1]:8000", "::1"])
async def test_the_default_trusted_hosts_are_the_local_names(make_app: AppFactory, host: str) -> None:
    async with client_for(make_app()) as c:
        resp = await c.get("/v1/accounts", headers={"Host": host})

    assert resp.status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_operational_routes_answer_any_host(make_app: AppFactory, path: str) -> None:
    # Probes and scrapers use a pod IP or a service name that the trusted hosts need not list.
    async with client_for(make_app(), None) as c:
        resp = await c.get(path, headers={"Host": "10.1.2.3:8000"})

    assert resp.status_code == 200


@pytest.mark.parametrize(
    ("name", "patterns", "allowed"),
    [
        ("api.example.com", ["api.example.com"], True),  # exact
        ("a.b.example.com", ["*.example.com"], True),  # any subdomain
        ("example.com", ["*.example.com"], False),  # not the domain itself
        ("badexample.com", ["*.example.com"], False),  # not a name that merely ends alike
        ("anything", ["*"], True),
        ("", ["localhost"], False),  # no Host header at all
    ],
)
def test_host_patterns(name: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(name, patterns) is allowed


@pytest.mark.parametrize(
    ("header", "name"),
    [("Example.COM:443", "example.com"), ("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("h", "h")],
)
def test_host_name_drops_the_port_and_case(header: str, name: str) -> None:
    assert host_name(header) == name


def test_trusted_hosts_are_read_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_TRUSTED_HOSTS", "api.example.com, *.svc.cluster.local,localhost")

    assert ApiSettings().trusted_hosts == ("api.example.com", "*.svc.cluster.local", "localhost")
