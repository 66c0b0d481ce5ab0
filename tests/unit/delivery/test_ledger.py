"""Ledger and offset bookkeeping."""

from __future__ import annotations

import orjson

from streamer.delivery.ledger import Ledger, OffsetTracker, ledger_key, ledger_value


def test_ledger_keys_values_and_tombstones() -> None:
    assert ledger_key("crm", "abc") == "crm|abc"
    assert orjson.loads(ledger_value("delivered", 0)) == {
        "status": "delivered",
        "at": "1970-01-01T00:00:00.000Z",
    }
    ledger = Ledger()
    ledger.apply(b"crm|abc", ledger_value("dead", 1))
    assert ledger.finished("crm", "abc") and not ledger.finished("slack", "abc")
    ledger.apply(b"crm|abc", None)
    assert not ledger.finished("crm", "abc")
    ledger.record("slack", "abc")
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
