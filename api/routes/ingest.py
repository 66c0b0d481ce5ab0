"""Event ingest: validate each item with the worker's own parser, produce the valid ones."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request

from api.deps import ClockDep, EventWriter, ProducerDep, SettingsDep
from api.errors import AUTH_ERRORS, ErrorBody, api_error, bounded
from api.models import IngestError, IngestResult
from api.producer import EventProducer
from api.restrictions import AccountPrefix
from api.settings import ApiSettings
from streamer.core.events import (
    InvalidEvent,
    Unattributed,
    check_encoded_size,
    check_not_future,
    check_time_not_future,
    encode_event,
    parse_event,
)

router = APIRouter(prefix="/v1", tags=["ingest"])
log = logging.getLogger("churnwatch.api.ingest")
_NOT_STORED = "events could not be stored; retry later"

_NATIVE = {
    "event_id": "evt-0001",
    "account_id": "acme",
    "event": "report_exported",
    "timestamp": "2025-03-08T09:30:00Z",
    "user_id": "u-42",
    "properties": {"format": "csv"},
}
_SEGMENT = {
    "type": "track",
    "messageId": "msg-0001",
    "event": "report_exported",
    "userId": "u-42",
    "timestamp": "2025-03-08T09:30:00Z",
    "context": {"groupId": "acme"},
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorBody, "description": "The body is not JSON, or more than one credential."},
    408: {"model": ErrorBody, "description": "The body did not arrive whole in the configured time."},
    413: {"model": ErrorBody, "description": "Body larger than the configured limit."},
    422: {
        "model": ErrorBody,
        "description": "Not a JSON event or array, more events than allowed, or no event accepted: code"
        " `events_rejected`, with the 202 answer's counts and per-event `errors` as `details`.",
    },
    503: {
        "model": ErrorBody,
        "description": "Kafka is unreachable or did not acknowledge the events in time; see Retry-After.",
    },
}


def _body_schema(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


def epoch_ms(at: datetime) -> int:
    """``at`` in epoch milliseconds (the ingest routes' clock reading)."""
    return int(at.timestamp() * 1000)


def json_body(raw: bytes) -> Any:
    """A request body decoded as JSON.

    Raises:
        HTTPException: 400 ``invalid_json`` with the parser's reason.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise api_error(400, f"body is not valid JSON: {bounded(str(err))}", code="invalid_json") from None


async def _json(request: Request) -> Any:
    return json_body(await request.body())


def _account_field(item: object) -> str:
    """Where an item names its account: ``account_id``, a CloudEvent's attribute or a Segment group id."""
    if isinstance(item, Mapping) and "specversion" in item:  # a CloudEvent, as parse_event tells them apart
        return next((k for k in ("accountid", "subject") if item.get(k) is not None), "data.account_id")
    if isinstance(item, Mapping) and "type" in item:  # the Segment shape
        context = item.get("context")
        return "context.groupId" if isinstance(context, Mapping) and context.get("groupId") else "groupId"
    return "account_id"


async def ingest(
    items: list[Any], settings: ApiSettings, producer: EventProducer, now_ms: int, writes: AccountPrefix
) -> IngestResult:
    """Validate every item, produce the valid ones keyed by account id and wait for delivery.

    Every rule the worker applies is applied here, with the API's clock for the bound on future
    timestamps, so that nothing accepted is dead-lettered later; each item stands on its own.

    Args:
        items: Decoded event documents (native or Segment shape).
        settings: For the topic, the batch limit and the future bound.
        producer: Where valid events go.
        now_ms: The API's clock, epoch milliseconds.
        writes: The accounts the key may write for; events of others are rejected item by item.

    Returns:
        Counts and one error per rejected item.

    Raises:
        HTTPException: 422 when there are too many items (the documented maximum of the array), 503
            with Retry-After when Kafka is unreachable, does not acknowledge in time, or fails.
    """
    if len(items) > settings.max_batch_items:
        raise api_error(
            422,
            f"{len(items)} events in one request; at most {settings.max_batch_items} are accepted",
            code="batch_too_large",
        )
    records: list[tuple[bytes, bytes]] = []
    errors: list[IngestError] = []
    pending = 0
    for index, item in enumerate(items):
        try:
            try:
                event = parse_event(item)
            except Unattributed as unattributed:
                records.append(_by_user(unattributed, settings, now_ms, writes))
                pending += 1
                continue
            if not writes.permits(event.account_id):
                raise InvalidEvent(_account_field(item), writes.refusal)
            check_not_future(event, now_ms, settings.max_future_ms)
            # The encoding is what the worker reads, so its size is the one the worker checks.
            value = encode_event(event)
        except InvalidEvent as err:
            errors.append(IngestError(index=index, field=err.field, rule=err.rule))
            continue
        records.append((event.account_id.encode(), value))
    if records:
        await _store(records, settings, producer)
    return IngestResult(accepted=len(records) - pending, rejected=len(errors), pending=pending, errors=errors)


def _by_user(
    message: Unattributed, settings: ApiSettings, now_ms: int, writes: AccountPrefix
) -> tuple[bytes, bytes]:
    """A message naming only its user, as stored for the worker to attribute: keyed by the user.

    Raises:
        InvalidEvent: When the key may write only some accounts (the account is not known here), the
            timestamp is too far ahead, or the message is too large.
    """
    if writes.prefix is not None:
        raise InvalidEvent(
            "context.groupId", f"required with a key restricted to accounts (prefix {writes.prefix!r})"
        )
    check_time_not_future(message.occurred_at_ms, now_ms, settings.max_future_ms)
    return message.users[0].encode(), check_encoded_size(orjson.dumps(message.message))


def accepted_or_refused(result: IngestResult) -> IngestResult:
    """``result`` when some event was accepted (or kept pending), or there were none.

    Raises:
        HTTPException: 422 ``events_rejected`` when every event was rejected, with ``result`` (each
            event's error) as its details: a 202 would read as success to a sender that checks only
            the status.
    """
    if not result.rejected or result.accepted or result.pending:
        return result
    first = result.errors[0]
    which = "the event was" if result.rejected == 1 else f"all {result.rejected} events were"
    raise api_error(
        422,
        f"{which} rejected; index {first.index}: {bounded(first.field)}: {bounded(first.rule)}",
        code="events_rejected",
        details=result.model_dump(),
    )


async def _store(records: list[tuple[bytes, bytes]], settings: ApiSettings, producer: EventProducer) -> None:
    """Produce ``records`` and return once Kafka acknowledged all of them, within the ingest timeout.

    Raises:
        HTTPException: 503 with Retry-After when the broker is known to be unreachable (at once), does
            not acknowledge within ``ingest_timeout_s``, or fails. Events of a request answered 503
            may still be written later (a batch already handed to the producer is not taken back); a
            retry is safe, since the worker drops a repeated ``event_id``.
    """
    retry_after = {"Retry-After": str(max(1, math.ceil(settings.ingest_timeout_s)))}
    unreachable = producer.unreachable
    if unreachable is not None:
        log.warning("ingest refused, nothing produced: %s", unreachable)
        raise api_error(503, _NOT_STORED, code="ingest_unavailable", headers=retry_after)
    try:
        async with asyncio.timeout(settings.ingest_timeout_s):
            await producer.send_batch(settings.events_topic, records)
    except TimeoutError:
        log.warning(
            "Kafka did not acknowledge %d events within %g s", len(records), settings.ingest_timeout_s
        )
        raise api_error(503, _NOT_STORED, code="ingest_unavailable", headers=retry_after) from None
    except Exception as err:  # any broker failure means "not stored"
        log.warning("Kafka refused %d events: %s", len(records), type(err).__name__)
        raise api_error(503, _NOT_STORED, code="ingest_unavailable", headers=retry_after) from err


@router.post(
    "/events",
    summary="Ingest one event or a JSON array of events.",
    status_code=202,
    response_model=IngestResult,
    responses=_RESPONSES,
    openapi_extra=_body_schema(
        {
            "oneOf": [
                {"type": "object"},
                # Any item is accepted into the array; each one that is not a valid event is reported.
                {"type": "array", "items": {}, "maxItems": 1000},
            ]
        },
        [_NATIVE],
    ),
)
async def post_events(
    request: Request, settings: SettingsDep, producer: ProducerDep, clock: ClockDep, writer: EventWriter
) -> IngestResult:
    """Native or Segment-shaped events; each is accepted or rejected on its own (422 when none is)."""
    body = await _json(request)
    if not isinstance(body, dict | list):
        raise api_error(422, "the body must be a JSON object (one event) or an array of events")
    items = body if isinstance(body, list) else [body]
    return accepted_or_refused(await ingest(items, settings, producer, epoch_ms(clock()), writer.writes))


@router.post(
    "/segment/batch",
    summary='Ingest a Segment batch ({"batch": [...]}).',
    status_code=202,
    response_model=IngestResult,
    responses=_RESPONSES,
    openapi_extra=_body_schema(
        {
            "type": "object",
            "required": ["batch"],
            "properties": {"batch": {"type": "array", "items": {}, "maxItems": 1000}},
        },
        {"batch": [_SEGMENT]},
    ),
)
async def post_segment_batch(
    request: Request, settings: SettingsDep, producer: ProducerDep, clock: ClockDep, writer: EventWriter
) -> IngestResult:
    """The Segment HTTP tracking API batch shape; each message is accepted or rejected on its own.

    Answered like ``POST /v1/events``: 422 when every message is rejected. The SDK routes
    (:mod:`api.routes.segment`) answer 200 then, as Segment's API does.
    """
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise api_error(422, 'body must be an object with a "batch" array', code="invalid_request")
    return accepted_or_refused(
        await ingest(body["batch"], settings, producer, epoch_ms(clock()), writer.writes)
    )
