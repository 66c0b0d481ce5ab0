"""Standard Webhooks signing and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from streamer.delivery.signing import WebhookVerificationError, decode_secret, sign, verify

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"alert_id":"a1","kind":"account_quiet"}'
TS = 1_750_000_000


def test_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    headers = sign(SECRET, "a1", TS, BODY)
    expected = hmac.new(KEY, b"a1.1750000000." + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "a1",
        "webhook-timestamp": "1750000000",
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the specification's published example
    body = b'{"test": 2432232314}'
    headers = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _tamper(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


GOOD = sign(SECRET, "a1", TS, BODY)
SIG = GOOD["webhook-signature"]


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now", "error"),
    [
        (BODY, GOOD, SECRET, TS, None),
        (BODY, {k.upper(): v for k, v in GOOD.items()}, SECRET, TS, None),
        (BODY, GOOD, SECRET, TS + 300, None),
        (BODY, GOOD, SECRET, TS - 300, None),
        (
            BODY,
            _tamper(GOOD, **{"webhook-signature": "v1,bogus " + GOOD["webhook-signature"]}),
            SECRET,
            TS,
            None,
        ),
        (BODY, GOOD, SECRET, TS + 301, "too old"),
        (BODY, GOOD, SECRET, TS - 301, "too new"),
        (BODY + b" ", GOOD, SECRET, TS, "no matching signature"),
        (BODY, _tamper(GOOD, **{"webhook-id": "a2"}), SECRET, TS, "no matching signature"),
        (BODY, GOOD, "whsec_" + base64.b64encode(b"other").decode(), TS, "no matching signature"),
        (
            BODY,
            _tamper(GOOD, **{"webhook-signature": "v2," + GOOD["webhook-signature"][3:]}),
            SECRET,
            TS,
            "no matching",
        ),
        (BODY, _tamper(GOOD, **{"webhook-timestamp": "soon"}), SECRET, TS, "not an integer"),
        (BODY, {"webhook-id": "a1"}, SECRET, TS, "missing header"),
        (BODY, GOOD, "not-a-secret", TS, "whsec_"),
    ],
)
def test_verify_table(body: bytes, headers: dict[str, str], secret: str, now: int, error: str | None) -> None:
    if error is None:
        verify(body, headers, secret, now)
    else:
        with pytest.raises(WebhookVerificationError, match=error):
            verify(body, headers, secret, now)


@pytest.mark.parametrize("bad", ["", "whsec_", "whsec_***", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
def test_bad_secrets_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        decode_secret(bad)


def test_the_official_standard_webhooks_package_agrees() -> None:
    # The receiver side as the Standard Webhooks project ships it (standardwebhooks on PyPI).
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError as StandardWebhooksError

    hook = Webhook(SECRET)
    assert hook.sign("a1", datetime.fromtimestamp(TS, UTC), BODY.decode()) == SIG
    now = int(time.time())  # the package checks the timestamp against the real clock
    headers = sign(SECRET, "a1", now, BODY)
    assert hook.verify(BODY, headers) == {"alert_id": "a1", "kind": "account_quiet"}
    with pytest.raises(StandardWebhooksError, match="No matching signature"):
        hook.verify(BODY + b" ", headers)
    with pytest.raises(StandardWebhooksError, match="too old"):
        hook.verify(BODY, sign(SECRET, "a1", now - 301, BODY))
