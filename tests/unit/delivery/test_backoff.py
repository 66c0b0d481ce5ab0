"""Retry decisions, the backoff schedule and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from streamer.delivery.backoff import Action, backoff_ceiling, backoff_delay, decide, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff_ceiling(n, 1.0, 60.0) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_ceiling(500, 1.0, 60.0) == 60.0


def test_full_jitter_stays_within_the_ceiling_and_is_reproducible_with_a_seed() -> None:
    a = [backoff_delay(n, 1.0, 60.0, random.Random(3)) for n in range(1, 12)]
    b = [backoff_delay(n, 1.0, 60.0, random.Random(3)) for n in range(1, 12)]
    assert a == b
    rng = random.Random(5)
    for n in range(1, 12):
        delays = [backoff_delay(n, 1.0, 60.0, rng) for _ in range(200)]
        assert all(0.0 <= d <= backoff_ceiling(n, 1.0, 60.0) for d in delays)
        # Full jitter uses the whole range, not just its upper half.
        assert min(delays) < 0.25 * backoff_ceiling(n, 1.0, 60.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
        ("", None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def _decide(
    status: int | None, attempt: int = 1, retry_after: float | None = None
) -> tuple[Action, float, str]:
    step = decide(status, "ConnectError: refused", attempt, 8, retry_after, 1.0, 60.0, random.Random(1))
    return step.action, step.delay_s, step.reason


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert _decide(status)[0] is Action.DELIVERED


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504])
def test_transient_failures_are_retried_until_the_budget(status: int | None) -> None:
    action, delay, _ = _decide(status, attempt=1)
    assert action is Action.RETRY and 0 <= delay <= 1.0
    action, _, reason = _decide(status, attempt=8)
    assert action is Action.DEAD and "after 8 attempts" in reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_permanent_client_errors_are_dead_at_once(status: int) -> None:
    action, _, reason = _decide(status)
    assert action is Action.DEAD and reason == f"HTTP {status}: not retryable"


def test_gone_disables_the_destination() -> None:
    assert _decide(410)[0] is Action.DISABLE
    assert _decide(410)[2] == "destination disabled (410)"


def test_retry_after_is_honoured_and_capped() -> None:
    assert _decide(429, retry_after=12.0)[:2] == (Action.RETRY, 12.0)
    assert _decide(503, retry_after=3600.0)[:2] == (Action.RETRY, 60.0)
    assert _decide(None)[2] == "ConnectError: refused"
