"""Per-key token buckets, and a throttle on failed authentication per client address.

The bucket takes the current time as an argument instead of reading a clock, so its arithmetic
is a pure function of its inputs and can be tested without sleeping.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """A token bucket holding up to ``burst`` tokens, refilled at ``rate`` tokens per second."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until ``cost`` tokens are there (0.0 when they are), taking none."""
        self._refill(now)
        return 0.0 if self.tokens >= cost else (cost - self.tokens) / self.rate

    def take(self, now: float, cost: float = 1.0) -> float:
        """Try to take ``cost`` tokens at time ``now`` (seconds, monotonic).

        Args:
            now: Current time in seconds from any monotonic origin.
            cost: Tokens the request costs.

        Returns:
            0.0 when the tokens were taken, else the seconds until enough tokens will be there.
        """
        wait = self.wait(now, cost)
        if wait == 0.0:
            self.tokens -= cost
        return wait


@dataclass
class RateLimiter:
    """One bucket per key name, created on first use."""

    rate: float
    burst: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def check(self, key: str, now: float) -> int:
        """Take one token for ``key`` at ``now``.

        Args:
            key: Who is asking (the API key's name).
            now: Current time in seconds from a monotonic origin.

        Returns:
            0 when allowed, else the whole seconds a client should wait (for ``Retry-After``).
        """
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return _whole_seconds(bucket.take(now))


def _whole_seconds(wait: float) -> int:
    return 0 if wait == 0 else max(1, math.ceil(wait))


@dataclass
class FailureThrottle:
    """Failed authentications per client address: ``limit`` at once, then ``limit`` per ``window_s``.

    Each address has a bucket of ``limit`` tokens refilled over ``window_s``; every failed
    authentication takes one. An address with an empty bucket is refused before its key is even
    looked at, so guessing keys costs time whether the guess is right or wrong. At most
    ``max_clients`` addresses are remembered (the least recently failed are forgotten first), so
    a flood of addresses cannot grow memory without bound.
    """

    limit: int
    window_s: float
    max_clients: int = 10_000
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def retry_after(self, client: str, now: float) -> int:
        """0 when ``client`` may authenticate at ``now``, else the whole seconds it should wait."""
        bucket = self.buckets.get(client)
        return 0 if bucket is None else _whole_seconds(bucket.wait(now))

    def failed(self, client: str, now: float) -> None:
        """Record a failed authentication of ``client`` at ``now``."""
        bucket = self.buckets.pop(client, None) or TokenBucket(self.limit / self.window_s, self.limit)
        bucket.take(now)
        self.buckets[client] = bucket
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
