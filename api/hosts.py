"""The Host header: only trusted names are served, and redirects never carry it.

A client chooses its ``Host`` header freely. Starlette's trailing-slash redirect built an absolute
``Location`` from it (``Host: evil.example`` → ``location: http://evil.example/v1/accounts``), which
a cache or a proxy could serve to others; here that redirect is relative. The trusted-hosts check
refuses names the API is not served under (DNS rebinding against a local API, poisoned links),
except on the operational routes, which probes and scrapers reach by a pod IP or service name.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

# Answered whatever the Host header: they carry no data and generate no links.
OPERATIONAL_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def host_name(host: str) -> str:
    """The name in a Host header, lower-cased, without its port (``[::1]:8000`` → ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches a pattern: ``*`` (any), ``*.example.com`` (subdomains) or a name."""
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class TrustedHostMiddleware:
    """Answer 400 ``invalid_host`` to a request whose Host header matches none of ``allowed``."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        """Wrap ``app``."""
        self.app = app
        self.allowed = tuple(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http" or scope["path"] in OPERATIONAL_PATHS or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        if host_allowed(host_name(Headers(scope=scope).get("host", "")), self.allowed):
            await self.app(scope, receive, send)
            return
        message = "the Host header names no host this API is served under (CHURNWATCH_TRUSTED_HOSTS)"
        response = error_response(400, {"code": "invalid_host", "message": message})
        await response(scope, receive, send)


class RelativeSlashRedirect:
    """A router's fallback: a path that matches a route but for a trailing slash is redirected, relatively.

    Starlette's own redirect (``redirect_slashes``) writes an absolute URL from the Host header; this
    one answers 307 with the path and query only, exactly as the client encoded them. Anything
    else goes on to ``fallback`` (the 404).
    """

    def __init__(self, routes: list[BaseRoute], fallback: ASGIApp) -> None:
        """Redirect to ``routes`` (the router's, read at request time), else call ``fallback``."""
        self.routes = routes
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle a request no route matched."""
        location = self._location(scope) if scope["type"] == "http" else None
        if location is None:
            await self.fallback(scope, receive, send)
            return
        await RedirectResponse(location, status_code=307)(scope, receive, send)

    def _location(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if path == "/":
            return None
        other = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
        if not any(route.matches(other)[0] is not Match.NONE for route in self.routes):
            return None
        # The raw path keeps the client's encoding (an id's %2F stays %2F); some servers append the
        # query string to it, so it is cut off here and added back once.
        raw = bytes(scope.get("raw_path") or path.encode()).split(b"?", 1)[0]
        raw = raw.rstrip(b"/") if raw.endswith(b"/") else raw + b"/"
        location = raw.decode("latin-1")
        # "//host" and "/\host" are read by browsers as another host: never redirect there.
        if not location.startswith("/") or location.startswith(("//", "/\\")):
            return None
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        return f"{location}?{query}" if query else location
