"""One error shape for every failure, and the orjson-backed JSON response class.

Clients get ``{"error": {"code", "message", "details"?}}`` whatever went wrong; nothing from a
stack trace ever reaches the body.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from api.metrics import method_label, route_label

log = logging.getLogger("churnwatch.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


ECHO_LIMIT = 128


def bounded(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to ``limit`` characters with "…" when longer, for echoing client input in messages.

    Ids are at most 128 characters, so a valid one is echoed whole; a 100 KB one does not make a
    100 KB error body.
    """
    return text if len(text) <= limit else text[:limit] + "\u2026"


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (fastapi's own ORJSONResponse is deprecated)."""

    def render(self, content: Any) -> bytes:
        """Serialise ``content``; non-string keys are allowed because some maps are keyed by ints."""
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ErrorDetail(BaseModel):
    """The inside of an error body."""

    code: str
    message: str
    details: Any | None = None


class ErrorBody(BaseModel):
    """What every non-2xx answer carries."""

    error: ErrorDetail


# OpenAPI entries shared by every route behind an API key.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "More than one credential (Authorization and X-API-Key)."},
    401: {"model": ErrorBody, "description": "Missing or unknown API key."},
    403: {"model": ErrorBody, "description": "The key lacks the required scope."},
    429: {"model": ErrorBody, "description": "Rate limit exceeded; see Retry-After."},
}

# The paged lists (accounts, alerts): a cursor the server did not issue, plus the auth errors.
PAGED_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorBody, "description": "Malformed cursor, or more than one credential."},
}


def api_error(
    status: int, message: str, code: str | None = None, details: Any = None, **kw: Any
) -> Exception:
    """An HTTPException whose detail already has the public error shape.

    Args:
        status: HTTP status code.
        message: Human readable message.
        code: Machine readable code; derived from the status when omitted.
        details: Optional structured details.
        **kw: Passed to HTTPException (e.g. ``headers``).

    Returns:
        The exception, for the caller to raise.
    """
    body: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message}
    if details is not None:
        body["details"] = details
    return HTTPException(status, detail=body, **kw)


def error_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> OrjsonResponse:
    """Render an error body as a response."""
    return OrjsonResponse({"error": body}, status_code=status, headers=headers)


async def _http_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this type only
    if isinstance(exc.detail, dict):
        body = exc.detail
    else:
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "error"
        body = {"code": _CODES.get(exc.status_code, "error"), "message": str(exc.detail or phrase)}
    return error_response(exc.status_code, body, dict(exc.headers) if exc.headers else None)


async def _validation_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this type only
    # Only location, message and type: "input" may echo secrets and "ctx" may not be JSON-able.
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    return error_response(422, {"code": "invalid_request", "message": _summary(details), "details": details})


_SUMMARISED = 3


def _summary(details: list[dict[str, Any]]) -> str:
    """The validation errors in a sentence: ``band must be one of 'good', 'average' or 'poor'``."""
    parts = []
    for error in details[:_SUMMARISED]:
        # The location without where it came from: "query", "path", "header" or "body".
        name = bounded(".".join(error["loc"][1:]) or ".".join(error["loc"]) or "request")
        message = error["msg"]
        if error["type"] in ("enum", "literal_error") and message.startswith("Input should be "):
            parts.append(f"{name} must be one of {message.removeprefix('Input should be ')}")
        else:
            parts.append(f"{name}: {message}")
    if not parts:
        return "invalid request"
    more = len(details) - _SUMMARISED
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


async def _client_disconnected(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, ClientDisconnect)  # noqa: S101 - registered for this type only
    # Not an error of ours: one line, no traceback, and its own status (499, as nginx counts it) in the
    # metrics rather than 500. Nobody reads the answer; the connection is gone.
    client = request.client.host if request.client is not None else "unknown"
    log.info(
        "client disconnected before sending the whole body: %s %s from %s",
        method_label(request.method),
        route_label(request.scope),
        client,
    )
    return error_response(499, {"code": "client_closed_request", "message": "client closed the request"})


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its type's name when it has none (for one-line logs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _store_unavailable(request: Request, exc: Exception) -> OrjsonResponse:
    # The read store's database does not answer (PostgreSQL restarting, a locked SQLite file): a
    # moment's outage, not a bug; the loader keeps what it reads meanwhile and retries.
    log.warning("read store unavailable on %s %s: %s", request.method, request.url.path, first_line(exc))
    return error_response(
        503,
        {"code": "store_unavailable", "message": "the read store does not answer; retry shortly"},
        {"Retry-After": "5"},
    )


async def _internal_error(request: Request, exc: Exception) -> OrjsonResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    # Answered outside every middleware of the app, so it brings the security headers along itself.
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    return error_response(500, {"code": "internal", "message": "internal error"}, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the public error shape."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(DBAPIError, _store_unavailable)
    app.add_exception_handler(Exception, _internal_error)
