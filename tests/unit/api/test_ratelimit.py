"""The token bucket, with time passed in."""

from __future__ import annotations

import pytest

from api.ratelimit import RateLimiter, TokenBucket


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)

    taken = [bucket.take(10.0) for _ in range(3)]
    refused = bucket.take(10.0)
    after_half_second = bucket.take(10.5)

    assert taken == [0.0, 0.0, 0.0]
    assert refused == pytest.approx(0.5)
    assert after_half_second == 0.0
    assert bucket.take(10.5) == pytest.approx(0.5)


def test_bucket_never_exceeds_burst_after_long_idle() -> None:
    bucket = TokenBucket(rate=100.0, burst=2)
    bucket.take(0.0)

    results = [bucket.take(1000.0) for _ in range(3)]

    assert results[:2] == [0.0, 0.0]
    assert results[2] > 0


def test_time_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    bucket.take(50.0)

    assert bucket.take(40.0) > 0
    assert bucket.take(50.5) == pytest.approx(0.5)


def test_limiter_rounds_retry_after_up_to_whole_seconds_per_key() -> None:
    limiter = RateLimiter(rate=0.4, burst=1)

    assert limiter.check("a", 0.0) == 0
    assert limiter.check("a", 0.0) == 3  # 1 token at 0.4/s = 2.5 s
    assert limiter.check("b", 0.0) == 0
