"""Per-key token buckets.

The bucket takes the current time as an argument instead of reading a clock, so its arithmetic
is a pure function of its inputs and can be tested without sleeping.
"""

from __future__ import annotations

import math
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

    def take(self, now: float, cost: float = 1.0) -> float:
        """Try to take ``cost`` tokens at time ``now`` (seconds, monotonic).

        Args:
            now: Current time in seconds from any monotonic origin.
            cost: Tokens the request costs.

        Returns:
            0.0 when the tokens were taken, else the seconds until enough tokens will be there.
        """
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


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
        wait = bucket.take(now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
