"""Retry decisions: what to do after one attempt, and how long to wait before the next.

Pure: the random source and the current time are arguments, so every schedule is reproducible.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

__all__ = ["Action", "Step", "backoff_ceiling", "backoff_delay", "decide", "parse_retry_after"]


class Action(enum.Enum):
    """What the sender does after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class Step:
    """The decision after one attempt: an action, the wait before a retry and a reason."""

    action: Action
    delay_s: float = 0.0
    reason: str = ""


# Statuses worth retrying: the receiver is overloaded, restarting or timed out. Other 4xx mean the
# request itself is wrong and would fail the same way on every attempt.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def backoff_ceiling(attempt: int, base_s: float, cap_s: float) -> float:
    """Upper bound of the wait after failed attempt ``attempt`` (1-based): ``min(cap, base * 2**(n-1))``."""
    return min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter delay: uniform in ``[0, backoff_ceiling(attempt)]``.

    Full jitter spreads the retries of many alerts that failed together, so a recovering receiver
    is not hit by synchronized waves.

    Args:
        attempt: The attempt that just failed, starting at 1.
        base_s: The ceiling after the first failure.
        cap_s: The largest ceiling.
        rng: The random source (seeded in tests).

    Returns:
        Seconds to wait.
    """
    return rng.uniform(0.0, backoff_ceiling(attempt, base_s, cap_s))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or an HTTP date).

    Args:
        value: The header value, or None when absent.
        now: The current time (timezone-aware), for HTTP dates.

    Returns:
        Seconds to wait (never negative), or None when absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def decide(
    status: int | None,
    error: str,
    attempt: int,
    max_attempts: int,
    retry_after_s: float | None,
    base_s: float,
    cap_s: float,
    rng: random.Random,
) -> Step:
    """Decide what follows one attempt.

    Args:
        status: The HTTP status, or None when no response arrived (refused, reset, timeout).
        error: A description of the failure, used when status is None.
        attempt: The attempt just made, starting at 1.
        max_attempts: The attempt budget; after it the alert is dead.
        retry_after_s: The parsed ``Retry-After``, if the response had one.
        base_s: Backoff ceiling after the first failure.
        cap_s: Largest wait, also the most a ``Retry-After`` is honoured for.
        rng: The random source for the jitter.

    Returns:
        The step to take.
    """
    if status is not None and 200 <= status < 300:
        return Step(Action.DELIVERED)
    if status == 410:
        return Step(Action.DISABLE, reason="destination disabled (410)")
    reason = f"HTTP {status}" if status is not None else (error or "no response")
    retryable = status is None or status >= 500 or status in _RETRYABLE_4XX
    if not retryable:
        return Step(Action.DEAD, reason=f"{reason}: not retryable")
    if attempt >= max_attempts:
        return Step(Action.DEAD, reason=f"{reason} after {attempt} attempts")
    if retry_after_s is not None:
        # The receiver said when to come back; capped so one header cannot park a destination for hours.
        return Step(Action.RETRY, min(retry_after_s, cap_s), reason)
    return Step(Action.RETRY, backoff_delay(attempt, base_s, cap_s, rng), reason)
