"""The alert feed: recent alerts by page, and new ones live as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import AlertReader, ReadModelDep, SettingsDep
from api.errors import AUTH_ERRORS, PAGED_ERRORS, api_error
from api.models import AlertPage
from api.query import InvalidCursor, Rfc3339
from api.readmodel import ReadModel
from api.restrictions import AccountScope
from streamer.core.alerts import AlertKind

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get(
    "",
    summary="Recent alerts, newest first, one page at a time.",
    response_model=AlertPage,
    responses=PAGED_ERRORS,
)
async def list_alerts(
    model: ReadModelDep,
    reader: AlertReader,
    since: Annotated[
        Rfc3339 | None,
        Query(description="RFC 3339; detected at or after.", examples=["2025-03-01T00:00:00Z"]),
    ] = None,
    kind: Annotated[AlertKind | None, Query(examples=["account_quiet"])] = None,
    account: Annotated[str | None, Query(examples=["acme"])] = None,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page; empty or absent for the first page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlertPage:
    """Alerts kept in memory (the most recent ones) of the accounts the key may read, filtered."""
    if since is not None and since.tzinfo is None:
        raise api_error(422, "since needs a UTC offset (RFC 3339)")
    try:
        items, nxt = model.alerts(since, kind, account, cursor or None, limit, scope=reader.reads)
    except InvalidCursor as err:
        raise api_error(400, str(err), code="invalid_cursor") from None
    return AlertPage(items=items, next_cursor=nxt)


async def sse_events(model: ReadModel, keepalive_s: float, scope: AccountScope) -> AsyncIterator[bytes]:
    """Encode new alerts as SSE ``alert`` events, with a comment whenever ``keepalive_s`` passes idle.

    Args:
        model: Where alerts come from.
        keepalive_s: Longest silence before a keep-alive comment (keeps proxies from closing).
        scope: The accounts whose alerts are sent.

    Yields:
        Encoded SSE frames.
    """
    alerts = model.subscribe(scope=scope)
    pending: asyncio.Task[dict[str, Any]] | None = None
    try:
        yield b": connected\n\n"
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(alerts))
            # wait() rather than wait_for(): a timeout must not cancel the pending read and lose an alert.
            done, _ = await asyncio.wait({pending}, timeout=keepalive_s)
            if not done:
                yield b": keep-alive\n\n"
                continue
            alert, pending = pending.result(), None
            yield b"event: alert\ndata: " + orjson.dumps(alert) + b"\n\n"
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await alerts.aclose()


@router.get(
    "/stream",
    summary="New alerts as Server-Sent Events.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"example": 'event: alert\ndata: {"alert_id":"5f0c..."}\n\n'}},
            "description": "One `alert` event per new alert of an account the key may read; "
            "a `: keep-alive` comment when idle.",
        },
        **AUTH_ERRORS,
    },
)
async def stream_alerts(model: ReadModelDep, settings: SettingsDep, reader: AlertReader) -> StreamingResponse:
    """Stream alerts as they are applied to the read model, until the client disconnects."""
    return StreamingResponse(
        sse_events(model, settings.sse_keepalive_s, reader.reads),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
