"""Rate-limited logging: a flood of one message becomes a few lines and a count.

During an 8-minute broker outage the worker wrote about 2,500 ERROR lines a second (127 MB), most of
them aiokafka's "Unable connect to node ..." and "Unable to update metadata ..." over and over. A
:class:`RateLimitFilter` on a handler passes at most ``burst`` records per logger and message
template (the format string, before its arguments) in each ``interval_s``; what it holds back is
counted and reported in one line, at the highest level held back, once the interval is over:
``suppressed 4711 similar messages in the last 60 s: Unable connect to node with id %s: %s``. The
summary for a template comes with its next record, or with any record once the interval has passed.

:func:`rate_limit_logging` puts one on every handler of the root logger (and of the ``aiokafka`` and
``kafka`` loggers, should they have their own); records of every logger reach the root's handlers.

:class:`TransientCoordinatorFilter` (installed by :func:`downgrade_transient_kafka_errors`) logs at
INFO the ``GroupCoordinatorNotAvailableError`` that aiokafka logs as an ERROR while a consumer group's
coordinator is being elected: a normal start on a fresh broker (whose ``__consumer_offsets`` is being
created) logged ``[ERROR] Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError``
and then ran fine. A coordinator still unavailable after ``grace_s`` is an ERROR again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.errors import GroupCoordinatorNotAvailableError

__all__ = [
    "COORDINATOR_LOGGER",
    "DEFAULT_BURST",
    "DEFAULT_INTERVAL_S",
    "RateLimitFilter",
    "TransientCoordinatorFilter",
    "downgrade_transient_kafka_errors",
    "rate_limit_logging",
]

DEFAULT_BURST = 20
DEFAULT_INTERVAL_S = 60.0
# Marks the summary records, which the filter passes without counting them.
SUMMARY = "churnwatch_rate_limit_summary"
_OVERFLOW = "<other messages of this logger>"
_TEMPLATE_ECHO = 200


@dataclass(slots=True)
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    level: int = logging.NOTSET


class RateLimitFilter(logging.Filter):
    """Pass at most ``burst`` records per (logger, message template) in each ``interval_s``.

    Args:
        burst: Records passed per logger and template in one interval.
        interval_s: Length of an interval, from the first record of a template.
        emit: Where summary records go, normally ``handler.handle`` of the handler the filter is on
            (the filter passes them through). By default they are handed to the logger they are about,
            which reaches every handler: use that only with the filter on a single handler.
        clock: Seconds from a monotonic origin (tests pass their own).
        max_keys: Templates tracked at once; beyond them, the further templates of a logger share one
            allowance, so a logger that formats values into its messages is limited too.
    """

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        emit: Callable[[logging.LogRecord], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1000,
    ) -> None:
        """Create the filter; see the class docstring for the arguments."""
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._emit = emit if emit is not None else _to_logger
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_sweep: float | None = None
        self._lock = threading.RLock()

    def filter(self, record: logging.LogRecord) -> bool:
        """True when ``record`` is within its allowance; counts it otherwise."""
        if getattr(record, SUMMARY, False):
            return True
        summaries: list[logging.LogRecord] = []
        with self._lock:
            now = self._clock()
            key = self._key(record)
            window = self._windows.get(key)
            if window is not None and now - window.start >= self.interval_s:
                if window.suppressed:
                    summaries.append(self._summary(key, window, now))
                window = None
            if window is None:
                window = self._windows[key] = _Window(now)
            passed = window.passed < self.burst
            if passed:
                window.passed += 1
            else:
                window.suppressed += 1
                window.level = max(window.level, record.levelno)
            summaries += self._sweep(now)
        # Outside the lock: emitting runs the handler, which may log (and filter) again.
        for summary in summaries:
            self._emit(summary)
        return passed

    def _key(self, record: logging.LogRecord) -> tuple[str, str]:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template)
        if key not in self._windows and len(self._windows) >= self.max_keys:
            return (record.name, _OVERFLOW)
        return key

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Summaries of templates whose interval is over, which are then forgotten (once an interval)."""
        if self._next_sweep is None:
            self._next_sweep = now + self.interval_s
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.interval_s
        summaries = []
        for key, window in list(self._windows.items()):
            if now - window.start >= self.interval_s:
                del self._windows[key]
                if window.suppressed:
                    summaries.append(self._summary(key, window, now))
        return summaries

    def _summary(self, key: tuple[str, str], window: _Window, now: float) -> logging.LogRecord:
        name, template = key
        if len(template) > _TEMPLATE_ECHO:
            template = template[:_TEMPLATE_ECHO] + "\u2026"
        record = logging.LogRecord(
            name,
            window.level,
            __file__,
            0,
            "suppressed %d similar messages in the last %.0f s: %s",
            (window.suppressed, now - window.start, template),
            None,
        )
        setattr(record, SUMMARY, True)
        return record


def _to_logger(record: logging.LogRecord) -> None:
    logging.getLogger(record.name).handle(record)


def rate_limit_logging(
    burst: int = DEFAULT_BURST,
    interval_s: float = DEFAULT_INTERVAL_S,
    *,
    loggers: tuple[str, ...] = ("", "aiokafka", "kafka"),
) -> None:
    """Put a :class:`RateLimitFilter` on every handler of ``loggers`` ("" is the root) that has none.

    Call it after the process's handlers are set up (``logging.basicConfig``, or a framework's own
    logging set-up); calling it again adds nothing to a handler that already has one.
    """
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RateLimitFilter) for f in handler.filters):
                handler.addFilter(RateLimitFilter(burst, interval_s, emit=handler.handle))


# Where aiokafka logs "Group Coordinator Request failed: %s" (and retries, every retry_backoff_ms).
COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"


class TransientCoordinatorFilter(logging.Filter):
    """Lower to INFO the ERROR records that carry a :class:`GroupCoordinatorNotAvailableError`.

    The error is retriable and aiokafka retries it: while a group's coordinator is elected (at a
    broker's first start, or when the coordinator moves) it is expected, not a failure. Every other
    record passes unchanged, and so does this one once the coordinator has been unavailable for
    ``grace_s`` without a pause as long: then it is a real outage.

    Args:
        grace_s: How long the error is transient, from the first of a run of them; a pause of
            ``grace_s`` ends the run.
        clock: Seconds from a monotonic origin (tests pass their own).
    """

    def __init__(self, grace_s: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Create the filter; see the class docstring for the arguments."""
        super().__init__()
        self.grace_s = grace_s
        self._clock = clock
        self._since: float | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True; lowers ``record`` to INFO when it is the transient error."""
        if record.levelno < logging.ERROR or not _carries_coordinator_unavailable(record):
            return True
        with self._lock:
            now = self._clock()
            if self._since is None or now - self._last >= self.grace_s:
                self._since = now
            self._last = now
            transient = now - self._since < self.grace_s
        if transient:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def _carries_coordinator_unavailable(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    return any(isinstance(arg, GroupCoordinatorNotAvailableError) for arg in args)


def downgrade_transient_kafka_errors(grace_s: float = 60.0) -> None:
    """Put a :class:`TransientCoordinatorFilter` on aiokafka's group coordinator logger, once.

    On the logger, not on handlers: it runs before any handler sees the record (a handler at WARNING
    then drops it) and stays when a framework replaces the root logger's handlers (Faust does).
    """
    logger = logging.getLogger(COORDINATOR_LOGGER)
    if not any(isinstance(f, TransientCoordinatorFilter) for f in logger.filters):
        logger.addFilter(TransientCoordinatorFilter(grace_s))
