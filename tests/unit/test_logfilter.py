"""The rate-limiting log filter, with an injected clock."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
)

from streamer.logfilter import (
    COORDINATOR_LOGGER,
    RateLimitFilter,
    TransientCoordinatorFilter,
    downgrade_transient_kafka_errors,
    rate_limit_logging,
)


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class Collected(logging.Handler):
    """A handler that keeps (level, logger, message) of what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.name, record.getMessage()))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def out(clock: Clock) -> Iterator[Collected]:
    handler = Collected()
    handler.addFilter(RateLimitFilter(3, 10.0, emit=handler.handle, clock=clock))
    yield handler


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_template_passes_burst_times_per_interval_then_one_summary(out: Collected, clock: Clock) -> None:
    for node in range(10):  # the same template with other arguments is the same message
        out.handle(record("aiokafka", "Unable connect to node with id %s", node))
    clock.now += 10.0
    out.handle(record("aiokafka", "Unable connect to node with id %s", 99))

    assert out.lines == [
        (logging.ERROR, "aiokafka", "Unable connect to node with id 0"),
        (logging.ERROR, "aiokafka", "Unable connect to node with id 1"),
        (logging.ERROR, "aiokafka", "Unable connect to node with id 2"),
        (
            logging.ERROR,
            "aiokafka",
            "suppressed 7 similar messages in the last 10 s: Unable connect to node with id %s",
        ),
        (logging.ERROR, "aiokafka", "Unable connect to node with id 99"),
    ]


def test_templates_and_loggers_have_allowances_of_their_own(out: Collected) -> None:
    for _ in range(5):
        out.handle(record("aiokafka", "a %s", 1))
        out.handle(record("aiokafka", "b %s", 1))
        out.handle(record("churnwatch", "a %s", 1))

    assert len(out.lines) == 9
    assert {(name, msg) for _, name, msg in out.lines} == {
        ("aiokafka", "a 1"),
        ("aiokafka", "b 1"),
        ("churnwatch", "a 1"),
    }


def test_within_the_interval_nothing_more_passes(out: Collected, clock: Clock) -> None:
    for _ in range(3):
        out.handle(record("x", "m"))
    clock.now += 9.9
    out.handle(record("x", "m"))

    assert len(out.lines) == 3


def test_a_flood_that_stops_is_summed_up_with_the_next_record_of_any_logger(
    out: Collected, clock: Clock
) -> None:
    for _ in range(3 + 4):
        out.handle(record("aiokafka", "Unable to update metadata from %s", [1], level=logging.WARNING))
    clock.now += 10.0
    out.handle(record("churnwatch.worker", "something else", level=logging.INFO))

    assert out.lines[3:] == [
        (
            logging.WARNING,
            "aiokafka",
            "suppressed 4 similar messages in the last 10 s: Unable to update metadata from %s",
        ),
        (logging.INFO, "churnwatch.worker", "something else"),
    ]


def test_the_summary_has_the_highest_level_held_back(out: Collected, clock: Clock) -> None:
    for level in (logging.INFO, logging.INFO, logging.INFO, logging.WARNING, logging.ERROR, logging.INFO):
        out.handle(record("x", "m", level=level))
    clock.now += 10.0
    out.handle(record("x", "m", level=logging.INFO))

    assert out.lines[3] == (logging.ERROR, "x", "suppressed 3 similar messages in the last 10 s: m")


def test_nothing_held_back_no_summary(out: Collected, clock: Clock) -> None:
    out.handle(record("x", "m"))
    clock.now += 60.0
    out.handle(record("x", "m"))

    assert [msg for _, _, msg in out.lines] == ["m", "m"]


def test_past_max_keys_a_loggers_further_templates_share_one_allowance(clock: Clock) -> None:
    handler = Collected()
    handler.addFilter(RateLimitFilter(2, 10.0, emit=handler.handle, clock=clock, max_keys=1))
    handler.handle(record("x", "known"))
    for i in range(10):  # a message formatted before logging: a new template each time
        handler.handle(record("x", f"value {i}"))

    assert [msg for _, _, msg in handler.lines] == ["known", "value 0", "value 1"]


def test_default_emit_hands_summaries_to_their_logger(clock: Clock) -> None:
    handler = Collected()
    handler.addFilter(RateLimitFilter(1, 10.0, clock=clock))
    logger = logging.getLogger("churnwatch.test.logfilter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("boom %s", 1)
        logger.error("boom %s", 2)
        clock.now += 10.0
        logger.error("boom %s", 3)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    assert [msg for _, _, msg in handler.lines] == [
        "boom 1",
        "suppressed 1 similar messages in the last 10 s: boom %s",
        "boom 3",
    ]


def test_rate_limit_logging_puts_one_filter_on_each_root_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)

    rate_limit_logging(burst=2)
    rate_limit_logging(burst=2)  # a second call adds no second filter
    for i in range(5):
        logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s", i)

    assert sum(isinstance(f, RateLimitFilter) for f in handler.filters) == 1
    assert stream.getvalue().splitlines() == [
        "aiokafka.conn Unable connect to node with id 0",
        "aiokafka.conn Unable connect to node with id 1",
    ]


@pytest.fixture
def coordinator(clock: Clock) -> Iterator[tuple[logging.Logger, Collected]]:
    """aiokafka's coordinator logger with the filter and a handler that keeps what reaches it."""
    logger = logging.getLogger(COORDINATOR_LOGGER)
    handler = Collected()
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.addFilter(guard := TransientCoordinatorFilter(60.0, clock=clock))
    try:
        yield logger, handler
    finally:
        logger.removeFilter(guard)
        logger.removeHandler(handler)


# What aiokafka 0.14 logs while it looks for the coordinator (consumer/group_coordinator.py).
LOOKUP_FAILED = "Group Coordinator Request failed: %s"


def test_the_coordinator_election_at_a_start_is_logged_at_info(
    coordinator: tuple[logging.Logger, Collected], clock: Clock
) -> None:
    logger, out = coordinator

    for _ in range(6):  # every 100 ms (retry_backoff_ms) until the coordinator is elected
        logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
        clock.now += 0.1

    logged = (
        logging.INFO,
        COORDINATOR_LOGGER,
        LOOKUP_FAILED % "[Error 15] GroupCoordinatorNotAvailableError",
    )
    assert out.lines == [logged] * 6


def test_other_coordinator_errors_stay_errors(coordinator: tuple[logging.Logger, Collected]) -> None:
    logger, out = coordinator

    logger.error(LOOKUP_FAILED, GroupAuthorizationFailedError("cw"))
    logger.error(LOOKUP_FAILED, KafkaConnectionError("no route"))
    logger.error("Heartbeat session expired - marking coordinator dead")

    assert [level for level, _, _ in out.lines] == [logging.ERROR] * 3


def test_a_coordinator_unavailable_for_a_minute_is_an_error_again(
    coordinator: tuple[logging.Logger, Collected], clock: Clock
) -> None:
    logger, out = coordinator

    for _ in range(61):  # once a second for a minute, then once more
        logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())
        clock.now += 1.0
    clock.now += 60.0  # a pause as long as the grace ends the run: the next one is a new election
    logger.error(LOOKUP_FAILED, GroupCoordinatorNotAvailableError())

    assert [level for level, _, _ in out.lines] == [logging.INFO] * 60 + [logging.ERROR, logging.INFO]


def test_downgrading_is_installed_once_on_the_coordinator_logger() -> None:
    logger = logging.getLogger(COORDINATOR_LOGGER)
    before = list(logger.filters)
    try:
        downgrade_transient_kafka_errors()
        downgrade_transient_kafka_errors()
        added = [f for f in logger.filters if f not in before]
    finally:
        logger.filters[:] = before

    assert len(added) == 1 and isinstance(added[0], TransientCoordinatorFilter)
