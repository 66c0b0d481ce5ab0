"""Security headers on every response, whichever route (or error handler) produced it.

Routes may set their own (the dashboard page its strict Content-Security-Policy, the fragments
theirs); this only fills in what a response lacks:

* ``X-Content-Type-Options: nosniff`` everywhere, so no JSON or text body is ever sniffed as HTML;
* ``Cache-Control: no-store`` everywhere but the dashboard's static files: the data is per key, and
  a shared cache must not keep it (nor an error that depends on the key);
* on HTML without a policy of its own (``/docs``), ``Content-Security-Policy: frame-ancestors
  'none'`` and ``X-Frame-Options: DENY``, so no page of the API can be framed; nothing more, since
  the Swagger UI page starts itself with an inline script (its files are the API's own, ``api.docs``).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_FRAMING = "frame-ancestors 'none'"


class SecurityHeadersMiddleware:
    """Add the headers above to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, cacheable_prefixes: tuple[str, ...] = ()) -> None:
        """Wrap ``app``; responses under ``cacheable_prefixes`` keep the caching they choose."""
        self.app = app
        self.cacheable_prefixes = cacheable_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = scope["path"].startswith(self.cacheable_prefixes) if self.cacheable_prefixes else False

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", NO_FRAMING)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, with_headers)
