"""uvicorn's HTTP/1.1 protocol (httptools, its C parser) with a deadline for the request head.

uvicorn times out a keep-alive connection only after a response; a connection that never sends a
complete request head (opened and left idle, or sending its headers a byte at a time) was kept
open for ever, so idle connections could pile up without bound. With this protocol a connection
that has no request in progress is closed once ``head_timeout_s`` has passed without a complete
request head: after the connection is made and after each response.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadTimeout:
    """Mixin for uvicorn's protocols: close connections which do not send a complete request head in time."""

    head_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timeout)

    def _head_timeout(self) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()


class HeadTimeoutProtocol(HeadTimeout, HttpToolsProtocol):  # type: ignore[misc]  # narrowed transport, as in the base
    """uvicorn's httptools protocol (its C parser) with the head timeout."""


def http_protocol(head_timeout_s: float) -> type[HeadTimeoutProtocol]:
    """The protocol class for uvicorn's ``http`` option, with this head timeout."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout_s": head_timeout_s})
