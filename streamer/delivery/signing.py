"""Signing generic webhooks per the Standard Webhooks specification.

Every request carries three headers:

* ``webhook-id``: the alert id. It is the same on every retry and on a re-delivery after a crash,
  so it is the receiver's idempotency key.
* ``webhook-timestamp``: unix seconds when this attempt was signed.
* ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where
  ``key`` is the base64 decoding of the destination secret after its ``whsec_`` prefix and ``body``
  is the exact request body (the alert JSON as it is on the topic).

How a receiver verifies a request:

1. Read the raw body bytes before any JSON parsing (re-serialising changes the bytes).
2. Reject the request when ``webhook-timestamp`` is more than 5 minutes away from the receiver's
   clock, in either direction: a captured request cannot be replayed later.
3. Compute the same HMAC over ``{webhook-id}.{webhook-timestamp}.{body}`` with the decoded secret.
4. Compare it with each space-separated ``v1,<signature>`` entry of ``webhook-signature`` using a
   constant-time comparison (``hmac.compare_digest``), so that timing does not leak the signature.
5. Store ``webhook-id`` and drop any later request with an id already processed: delivery is
   at-least-once and a rare re-delivery always reuses the id.

:func:`verify` below is a reference implementation of exactly these steps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE_S",
    "WebhookVerificationError",
    "decode_secret",
    "sign",
    "signature",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of a secret, not one
TOLERANCE_S = 300


class WebhookVerificationError(ValueError):
    """A webhook request failed verification; the message says why."""


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key of a ``whsec_``-prefixed secret.

    Args:
        secret: ``whsec_`` followed by standard base64.

    Returns:
        The decoded key bytes.

    Raises:
        ValueError: If the prefix is missing, the base64 is invalid or the key is empty.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not valid base64 after the whsec_ prefix") from None
    if not key:
        raise ValueError("secret is empty")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature of one message.

    Args:
        key: The decoded secret.
        msg_id: The ``webhook-id``.
        timestamp: The ``webhook-timestamp`` in unix seconds.
        body: The exact request body.

    Returns:
        The signature entry for the ``webhook-signature`` header.
    """
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the three Standard Webhooks headers for one request.

    Args:
        secret: The destination secret (``whsec_...``).
        msg_id: The message id; churnwatch uses the alert id.
        timestamp: Unix seconds of this attempt.
        body: The exact request body.

    Returns:
        ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.
    """
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(decode_secret(secret), msg_id, timestamp, body),
    }


def verify(
    payload: bytes, headers: Mapping[str, str], secret: str, now: float, tolerance_s: int = TOLERANCE_S
) -> None:
    """Verify a received webhook the way a receiver should.

    Args:
        payload: The raw request body.
        headers: The request headers (names are matched case-insensitively).
        secret: The shared secret (``whsec_...``).
        now: The receiver's current time in unix seconds.
        tolerance_s: Largest accepted distance between ``webhook-timestamp`` and ``now``.

    Raises:
        WebhookVerificationError: When a header is missing or malformed, the timestamp is outside
            the tolerance, or no signature matches.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts_text, sigs = (lower[h] for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    except KeyError as err:
        raise WebhookVerificationError(f"missing header {err.args[0]}") from None
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if now - timestamp > tolerance_s:
        raise WebhookVerificationError("timestamp too old")
    if timestamp - now > tolerance_s:
        raise WebhookVerificationError("timestamp too new")
    try:
        key = decode_secret(secret)
    except ValueError as err:
        raise WebhookVerificationError(str(err)) from None
    expected = signature(key, msg_id, timestamp, payload).encode()
    for candidate in sigs.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("no matching signature")
