"""API key authentication, scopes and the per-key rate limit.

Keys are configured only as SHA-256 hex digests (``CHURNWATCH_API_KEYS``), so the settings never
hold a usable secret. A presented key is hashed and compared with every configured digest using
:func:`hmac.compare_digest`, so the time taken does not reveal how much of a digest matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.errors import api_error
from api.restrictions import EVERY_ACCOUNT, AccountPrefix, AccountScope
from api.settings import ApiKeySpec

SCOPES = ("events:write", "health:read", "alerts:read")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# Declared with auto_error=False: they only document both schemes in OpenAPI, the checks are ours.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: <key>`")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a valid API key, with the accounts its key restricts it to."""

    name: str
    scopes: frozenset[str]
    reads: AccountScope = EVERY_ACCOUNT
    writes: AccountPrefix = AccountPrefix()


def hash_key(key: str) -> str:
    """SHA-256 hex digest of a key, as configured in ``CHURNWATCH_API_KEYS``."""
    return hashlib.sha256(key.encode()).hexdigest()


def lookup(key: str, keys: Mapping[str, ApiKeySpec]) -> Principal | None:
    """Find the principal for a presented key.

    Args:
        key: The key as sent by the client.
        keys: Configured specs by SHA-256 hex digest.

    Returns:
        The principal, or None when no configured digest matches.
    """
    digest = hash_key(key).encode()
    found: ApiKeySpec | None = None
    # Compare against every digest without stopping early, so timing does not tell which one matched.
    for configured, spec in keys.items():
        if hmac.compare_digest(digest, configured.lower().encode()):
            found = spec
    return None if found is None else Principal(found.name, found.scopes, found.reads, found.writes)


class UnsupportedScheme(Exception):
    """An ``Authorization`` header that is not ``Bearer <key>``."""


def presented_key(request: Request, basic: bool = False) -> str | None:
    """The one credential of a request: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Two ``Authorization`` headers, two ``X-API-Key`` headers, or one of each are refused rather than
    resolved by "the first wins": a proxy or gateway in front that picks another one of them would
    judge the request by a different credential than the API does.

    With ``basic`` (the Segment routes), ``Authorization: Basic <base64 of key:>`` is read too, the
    key as the user name, as Segment's and RudderStack's SDKs send their write key.

    Returns:
        The key, or None when the request carries no credential.

    Raises:
        HTTPException: 400 for more than one credential.
        UnsupportedScheme: For an ``Authorization`` header that is not ``Bearer <key>`` (nor Basic
            with a user name, when allowed).
    """
    authorization = request.headers.getlist("authorization")
    api_key = request.headers.getlist("x-api-key")
    if len(authorization) + len(api_key) > 1:
        if len(authorization) > 1:
            found = f"{len(authorization)} Authorization headers"
        elif len(api_key) > 1:
            found = f"{len(api_key)} X-API-Key headers"
        else:
            found = "both Authorization and X-API-Key"
        raise api_error(
            400,
            f"send exactly one credential (Authorization: Bearer <key> or X-API-Key), got {found}",
            code="ambiguous_credentials",
        )
    if api_key:
        return api_key[0] or None
    if authorization:
        scheme, _, key = authorization[0].partition(" ")
        if basic and scheme.lower() == "basic":
            return _basic_user(key.strip())
        if scheme.lower() != "bearer" or not key.strip():
            raise UnsupportedScheme
        return key.strip()
    return None


def _basic_user(token: str) -> str:
    try:
        user, _, _password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise UnsupportedScheme from None
    if not user:
        raise UnsupportedScheme
    return user


def client_address(request: Request) -> str:
    """The address failed authentications are counted against (the proxy's, unless it forwards)."""
    return request.client.host if request.client is not None else "unknown"


def unauthorized(request: Request, message: str) -> Exception:
    """A 401, counted against the client's address in the failed-authentication throttle."""
    request.app.state.auth_throttle.failed(client_address(request), request.app.state.monotonic())
    return api_error(401, message, headers=_CHALLENGE)


async def authenticate(
    request: Request,
    # Declared only so that OpenAPI documents both schemes; presented_key reads the headers itself.
    _bearer_doc: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _header_doc: Annotated[str | None, Depends(_header)],
) -> Principal:
    """Resolve the caller from its one credential and charge its rate limit.

    Raises:
        HTTPException: 429 when the client's address failed to authenticate too often (checked
            first, so a right guess is refused like a wrong one), 400 for more than one credential,
            401 when the key is missing or unknown, 429 when the key is over its limit.
    """
    check_throttle(request)
    try:
        key = presented_key(request)
    except UnsupportedScheme:
        raise unauthorized(
            request, "unsupported Authorization header: send Authorization: Bearer <key>"
        ) from None
    if not key:
        raise unauthorized(request, "missing API key: send Authorization: Bearer <key> or X-API-Key")
    return principal_for(request, key)


def check_throttle(request: Request) -> None:
    """Refuse a client address that failed to authenticate too often (429 with Retry-After)."""
    wait = request.app.state.auth_throttle.retry_after(client_address(request), request.app.state.monotonic())
    if wait:
        raise api_error(
            429,
            "too many failed authentications from this address; retry later",
            code="auth_throttled",
            headers={"Retry-After": str(wait)},
        )


def principal_for(request: Request, key: str) -> Principal:
    """The principal of a presented key, its rate limit charged (401 when unknown, 429 when over)."""
    principal = lookup(key, request.app.state.settings.api_keys)
    if principal is None:
        raise unauthorized(request, "unknown API key")
    retry_after = request.app.state.limiter.check(principal.name, request.app.state.monotonic())
    if retry_after:
        raise api_error(
            429, f"rate limit exceeded for key {principal.name!r}", headers={"Retry-After": str(retry_after)}
        )
    return principal


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates and then demands ``scope``.

    Args:
        scope: One of :data:`SCOPES`.

    Returns:
        The dependency callable.
    """

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise api_error(403, f"API key {principal.name!r} lacks scope {scope!r}")
        return principal

    return check
