"""Ledger and offset bookkeeping."""

from __future__ import annotations

import tracemalloc

import orjson

from streamer.delivery.ledger import (
    Ledger,
    OffsetTracker,
    disabled_key,
    disabled_value,
    ledger_key,
    ledger_value,
)


def test_ledger_keys_values_and_tombstones() -> None:
    assert ledger_key("crm", "abc") == "crm|abc"
    assert orjson.loads(ledger_value("delivered", 0)) == {
        "status": "delivered",
        "at": "1970-01-01T00:00:00.000Z",
    }
    ledger = Ledger()
    ledger.apply(b"crm|abc", ledger_value("dead", 1), 1, 1)
    assert ledger.finished("crm", "abc") and not ledger.finished("slack", "abc")
    ledger.apply(b"crm|abc", None, 2, 2)
    assert not ledger.finished("crm", "abc")
    ledger.record("slack", "abc", 3)
    assert ledger.finished("slack", "abc")


def test_commit_point_is_the_lowest_unfinished_offset() -> None:
    t = OffsetTracker()
    epoch = t.assign(0)
    t.add(0, 10, 2)  # two destinations
    t.add(0, 11, 1)
    t.add(0, 12, 0)  # routed nowhere / all skipped
    assert t.committable() == {0: 10}
    t.finish(0, 11, epoch)
    assert t.committable() == {0: 10}
    t.finish(0, 10, epoch)
    assert t.committable() == {0: 10}  # one destination of offset 10 is still pending
    t.finish(0, 10, epoch)
    assert t.committable() == {0: 13}
    t.committed({0: 13})
    assert t.committable() == {}
    assert t.in_flight() == 0


def test_finishes_from_an_older_assignment_are_ignored() -> None:
    t = OffsetTracker()
    old = t.assign(1)
    t.add(1, 5, 1)
    t.revoke(1)
    new = t.assign(1)
    assert new != old
    t.add(1, 5, 1)
    t.finish(1, 5, old)
    assert t.committable() == {1: 5}
    t.finish(1, 5, new)
    assert t.committable() == {1: 6}


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    e0, e1 = t.assign(0), t.assign(1)
    t.add(0, 0, 1)
    t.add(1, 0, 1)
    t.finish(1, 0, e1)
    assert t.committable() == {0: 0, 1: 1}
    assert t.in_flight() == 1
    t.finish(0, 0, e0)
    assert t.committable() == {0: 1, 1: 1}


DAY_MS = 86_400_000


def test_the_ledger_forgets_the_oldest_pairs_beyond_its_count() -> None:
    ledger = Ledger(max_entries=3, max_age_ms=DAY_MS)
    for i in range(5):
        ledger.record("crm", f"a{i}", 1_000 + i)
    assert len(ledger) == 3
    assert [ledger.finished("crm", f"a{i}") for i in range(5)] == [False, False, True, True, True]
    ledger.record("crm", "a2", 2_000)  # finished again: now the newest
    ledger.record("crm", "a5", 2_001)
    # a3 was the oldest left once a2 moved to the end.
    assert [ledger.finished("crm", f"a{i}") for i in range(6)] == [False, False, True, False, True, True]


def test_the_ledger_forgets_pairs_older_than_its_age() -> None:
    ledger = Ledger(max_entries=100, max_age_ms=DAY_MS)
    ledger.record("crm", "old", 0)
    ledger.record("crm", "mid", DAY_MS // 2)
    ledger.record("crm", "new", DAY_MS + 1)  # "old" is now more than a day older than the newest
    assert (ledger.finished("crm", "old"), ledger.finished("crm", "mid"), len(ledger)) == (False, True, 2)
    # Records read from the topic that are already too old at start are not remembered at all.
    ledger.apply(b"crm|ancient", ledger_value("delivered", 0), 0, 3 * DAY_MS)
    assert not ledger.finished("crm", "ancient")
    ledger.apply(b"crm|recent", ledger_value("delivered", 0), 2 * DAY_MS + 1, 3 * DAY_MS)
    assert ledger.finished("crm", "recent") and not ledger.finished("crm", "mid")


def test_disabled_destinations_are_kept_apart_and_never_evicted() -> None:
    ledger = Ledger(max_entries=1, max_age_ms=1)
    key = disabled_key("f" * 64).encode()
    assert b"|" not in key  # never collides with a delivery key, whatever the destination's name
    ledger.apply(key, disabled_value("crm", 0), 0, 0)
    for i in range(10):
        ledger.record("crm", f"a{i}", 10 * DAY_MS + i)
    assert ledger.disabled == {"f" * 64} and len(ledger) == 1
    ledger.apply(key, None, 0, 0)  # a tombstone enables the destination again
    assert ledger.disabled == set()


def test_memory_stays_flat_over_a_million_alerts() -> None:
    bound = 20_000
    ledger = Ledger(max_entries=bound, max_age_ms=30 * DAY_MS)
    t0 = 1_750_000_000_000
    samples: list[tuple[int, int]] = []  # (length, traced bytes) every 100,000 alerts
    tracemalloc.start()
    try:
        for i in range(1_000_000):
            ledger.record("crm", f"{i:032x}", t0 + i)
            if i % 100_000 == 99_999:
                samples.append((len(ledger), tracemalloc.get_traced_memory()[0]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [n for n, _ in samples] == [bound] * 10
    sizes = [b for _, b in samples]
    # From the first 100,000 alerts to the millionth, the footprint does not grow.
    assert max(sizes) - min(sizes) < 500_000, sizes
    assert peak < 10_000_000, peak
    assert ledger.finished("crm", f"{999_999:032x}") and not ledger.finished("crm", f"{979_999:032x}")
