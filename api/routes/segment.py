"""The Segment HTTP tracking API, as Segment's and RudderStack's SDKs call it.

Point an SDK's host (``analytics.host``, ``dataPlaneUrl``) at the API and use a churnwatch key with
the ``events:write`` scope as its write key. The SDKs send it as HTTP Basic (the key as user name,
an empty password) and as ``writeKey`` in the body; bodies may be gzip-encoded.

The answers are the ones the SDKs' retry logic expects, as Segment's own API gives them: 200 once the
valid messages are stored, each rejected message reported in the body (a 4xx would make the SDKs drop
the whole batch, the good messages with the bad); 503 with ``Retry-After`` while Kafka cannot take
them (the SDKs retry); 4xx only for a request that is not a batch or call at all, or not authorised.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import Field

from api.auth import (
    Principal,
    UnsupportedScheme,
    check_throttle,
    presented_key,
    principal_for,
    unauthorized,
)
from api.deps import ClockDep, ProducerDep, SettingsDep
from api.errors import AUTH_ERRORS, ErrorBody, api_error, bounded
from api.models import IngestError, IngestResult
from api.routes.ingest import epoch_ms, ingest, json_body
from api.settings import ApiSettings

router = APIRouter(prefix="/v1", tags=["segment"])

# Segment's documented limits of its tracking API (the SDKs cut their batches to fit them).
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
CALLS = ("track", "identify", "group", "page", "screen", "alias")
_SCOPE = "events:write"


class SegmentResult(IngestResult):
    """Segment's ``{"success": true}``, with what churnwatch did with each message."""

    success: bool = Field(True, examples=[True])
    ignored: int = Field(0, examples=[0], description="alias calls: understood, nothing to keep")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorBody, "description": "The body is not JSON (after gzip), or two credential headers."},
    401: {"model": ErrorBody, "description": "Missing or unknown key, or a writeKey unlike the header's."},
    408: {"model": ErrorBody, "description": "The body did not arrive whole in the configured time."},
    413: {"model": ErrorBody, "description": "Body (or the batch once decompressed) over the limits."},
    415: {"model": ErrorBody, "description": "A Content-Encoding other than gzip."},
    422: {
        "model": ErrorBody,
        "description": "Not a call (an object) or a batch (an object with a batch array).",
    },
    503: {"model": ErrorBody, "description": "Kafka cannot take the messages now; retry after Retry-After."},
}


def _body(request: Request, settings: ApiSettings, raw: bytes) -> Any:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        limit = max(settings.max_body_bytes, MAX_BATCH_BYTES)
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, limit + 1)
        except zlib.error as err:
            raise api_error(
                400, f"body is not valid gzip: {bounded(str(err))}", code="invalid_gzip"
            ) from None
        if len(raw) > limit or inflater.unconsumed_tail:
            raise api_error(413, f"decompressed body larger than {limit} bytes", code="body_too_large")
    elif encoding not in ("identity", ""):
        raise api_error(415, f"unsupported Content-Encoding {bounded(encoding)!r}; send gzip or none")
    return json_body(raw)


async def segment_request(request: Request, settings: SettingsDep) -> tuple[Principal, Any]:
    """Authenticate a Segment call (header first, else ``writeKey``) and decode its body.

    A key in a header is checked before the body is read; ``writeKey`` in the body is used only when
    no header names a key, and one that differs from the header's is refused.
    """
    check_throttle(request)
    try:
        key = presented_key(request, basic=True)
    except UnsupportedScheme:
        raise unauthorized(
            request, "unsupported Authorization header: send Basic <write key>: or Bearer <key>"
        ) from None
    principal = principal_for(request, key) if key else None
    body = _body(request, settings, await request.body())
    body_key = body.get("writeKey") if isinstance(body, dict) else None
    if principal is None:
        if not isinstance(body_key, str) or not body_key:
            raise unauthorized(request, "missing write key: send it as the Basic user name or as writeKey")
        principal = principal_for(request, body_key)
    elif isinstance(body_key, str) and body_key and body_key != key:
        raise unauthorized(request, "writeKey differs from the key in the Authorization header")
    if _SCOPE not in principal.scopes:
        raise api_error(403, f"API key {principal.name!r} lacks scope {_SCOPE!r}")
    return principal, body


SegmentRequest = Annotated[tuple[Principal, Any], Depends(segment_request)]


def _merged(message: Any, shared_context: Any, call: str | None) -> Any:
    """One message as the event parser reads it: its call type, the batch's context under its own."""
    if type(message) is not dict and not isinstance(message, Mapping):
        return message
    if shared_context is None and (call is None or "type" in message):
        return message  # as it is (the SDKs put the context in each message): no copy
    out = dict(message)
    if call is not None and "type" not in out:
        out["type"] = call
    if isinstance(shared_context, Mapping) and isinstance(out.get("context", {}), Mapping):
        out["context"] = {**shared_context, **out.get("context", {})}
    return out


async def _accept(
    messages: list[Any], principal: Principal, settings: ApiSettings, producer: Any, now_ms: int
) -> SegmentResult:
    """Store the messages that can be (through :func:`api.routes.ingest.ingest`), report the others.

    ``alias`` calls are counted as ``ignored``: churnwatch attributes users to accounts by ``group``
    calls and ``context.groupId``, so an alias changes nothing it keeps.
    """
    errors: list[IngestError] = []
    kept: list[int] = []
    ignored = 0
    for index, message in enumerate(messages):
        if (type(message) is dict or isinstance(message, Mapping)) and message.get("type") == "alias":
            ignored += 1
        elif len(orjson.dumps(message)) > MAX_MESSAGE_BYTES:
            errors.append(IngestError(index=index, field="$", rule=f"larger than {MAX_MESSAGE_BYTES} bytes"))
        else:
            kept.append(index)
    result = await ingest([messages[i] for i in kept], settings, producer, now_ms, principal.writes)
    errors += [e.model_copy(update={"index": kept[e.index]}) for e in result.errors]
    errors.sort(key=lambda e: e.index)
    return SegmentResult(
        accepted=result.accepted, rejected=len(errors), pending=result.pending, ignored=ignored, errors=errors
    )


@router.post(
    "/batch",
    summary='Segment tracking API: a batch of calls ({"batch": [...]}), as the SDKs send them.',
    response_model=SegmentResult,
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["batch"],
                        "properties": {
                            "batch": {"type": "array", "items": {}, "maxItems": 1000},
                            "context": {"type": "object"},
                            "writeKey": {"type": "string"},
                            "sentAt": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def post_batch(
    segment: SegmentRequest, settings: SettingsDep, producer: ProducerDep, clock: ClockDep
) -> SegmentResult:
    """Every call of the batch is accepted or rejected on its own; the batch's context applies to each."""
    principal, body = segment
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise api_error(422, 'body must be an object with a "batch" array', code="invalid_request")
    for name, kind, expected in (
        ("context", dict, "an object"),
        ("writeKey", str, "a string"),
        ("sentAt", str, "a string"),
    ):
        if name in body and not isinstance(body[name], kind):
            raise api_error(422, f"{name} must be {expected}", code="invalid_request")
    messages = [_merged(m, body.get("context"), None) for m in body["batch"]]
    return await _accept(messages, principal, settings, producer, epoch_ms(clock()))


def _single(call: str) -> Any:
    async def post_call(
        segment: SegmentRequest, settings: SettingsDep, producer: ProducerDep, clock: ClockDep
    ) -> SegmentResult:
        principal, body = segment
        if not isinstance(body, dict):
            raise api_error(422, f"body must be one {call} call (a JSON object)", code="invalid_request")
        if body.get("type", call) != call:
            raise api_error(422, f"a {body.get('type')!r} call sent to /v1/{call}", code="invalid_request")
        return await _accept([_merged(body, None, call)], principal, settings, producer, epoch_ms(clock()))

    post_call.__name__ = f"post_{call}"
    post_call.__doc__ = f"One Segment {call} call, as the SDKs' single-call methods send it."
    return post_call


for _call in CALLS:
    router.post(
        f"/{_call}",
        summary=f"Segment tracking API: one {_call} call.",
        response_model=SegmentResult,
        responses=_RESPONSES,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        },
    )(_single(_call))
