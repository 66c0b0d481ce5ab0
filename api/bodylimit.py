"""A pure ASGI middleware that bounds request bodies in size (413) and in time (408).

It counts the bytes actually received, so a chunked upload without ``Content-Length`` is held
to the same limit as one that declares its size. The whole body must arrive within ``timeout_s``
of the request head: a client with a valid key that sends ``Content-Length: 1000000`` at a byte a
second would otherwise hold its connection (and a request in flight) for days. The server's head
timeout (:mod:`api.server`) covers connections without a request in progress, this the body.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response


class BodyTooLarge(Exception):
    """Raised out of ``receive`` once the limit is crossed."""


class BodyTimedOut(Exception):
    """Raised out of ``receive`` once the body has not arrived whole in time."""


class BodyLimitMiddleware:
    """Answer 413 when a request body exceeds ``max_bytes``, 408 when it takes over ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        body_done = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, body_done
            if body_done:
                # Past the body, receive() only waits for the disconnect (streaming responses listen
                # for it for as long as they run): no deadline there.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimedOut from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)
        except BodyTimedOut:
            if started:
                raise
            message = f"the request body did not arrive whole within {self.timeout_s:g} s"
            # Connection: close, so the server drops the connection instead of reading the rest.
            response = error_response(
                408, {"code": "request_timeout", "message": message}, {"Connection": "close"}
            )
            await response(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
        response = error_response(413, {"code": "payload_too_large", "message": message})
        await response(scope, receive, send)
