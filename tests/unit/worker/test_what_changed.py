"""What changed, through the worker: one batch or an event at a time, a restart between, alike."""

from __future__ import annotations

from typing import Any

import orjson

from streamer.core.policy import DAY_MS
from streamer.core.state import decode_state
from streamer.worker.processor import BatchOutput, PartitionProcessor, Record
from tests.unit.worker.test_processor import HOUR, T0, Store, apply, event, processor

RULES = "[alerts]\nquiet_after_days = 3\n"


def _records() -> list[Record]:
    # Three users every day for three weeks, then one user every other day for nine days.
    out: list[Record] = []
    for day in range(21):
        for u in range(3):
            out.append(
                Record(
                    0, len(out), b"acme", event("acme", f"e{day}-{u}", T0 + day * DAY_MS + u * HOUR, f"u{u}")
                )
            )
    for day in range(21, 30, 2):
        out.append(Record(0, len(out), b"acme", event("acme", f"e{day}", T0 + day * DAY_MS, "u0")))
    return out


END = T0 + 34 * DAY_MS


def _documents(outs: list[BatchOutput]) -> tuple[list[Any], list[Any]]:
    alerts = [orjson.loads(value) for out in outs for _, value in out.encoded_alerts]
    snapshots = [orjson.loads(value) for out in outs for _, value in out.health]
    return [(a["alert_id"], a["what_changed"]) for a in alerts], snapshots


def _one_batch() -> tuple[list[Any], list[Any], Store]:
    proc, store = processor(RULES), Store()
    outs = [apply(proc, store, _records(), END), proc.tick(END, store, END)]
    store.data.update(proc.flush(END))
    return (*_documents(outs), store)


def _one_by_one() -> tuple[list[Any], list[Any], Store]:
    proc: PartitionProcessor = processor(RULES)
    store = Store()
    outs = []
    for i, rec in enumerate(_records()):
        if i == 40:
            proc = processor(RULES)  # a restart: what it kept is in the stored state
        at = orjson.loads(rec.value or b"{}")["timestamp"]
        outs.append(apply(proc, store, [rec], at))
        outs.append(proc.tick(at + HOUR, store, at + HOUR))
    outs.append(proc.tick(END, store, END))
    store.data.update(proc.flush(END))
    return (*_documents(outs), store)


def test_alerts_and_the_latest_snapshot_say_the_same_whether_replayed_at_once_or_live() -> None:
    batch_alerts, batch_snapshots, batch_store = _one_batch()
    live_alerts, live_snapshots, live_store = _one_by_one()

    assert batch_alerts == live_alerts
    # The quiet alert (3 days after the last activity, on day 32) compares with day 25.
    [(_, quiet)] = batch_alerts
    assert quiet == {
        "since": "2026-03-27",
        "score_change": -25,
        "moved": [
            {"name": "activity", "before": 54.4, "after": 20.3, "change": -34.1, "points": -20.7},
            {"name": "recency", "before": 100.0, "after": 75.3, "change": -24.7, "points": -4.1},
            {"name": "sentiment", "before": 70.0, "after": 70.0, "change": 0.0, "points": 0.4},
        ],
        "top_detractor": {
            "name": "activity",
            "value": 20.3,
            "points": 37.9,
            "explanation": "3 user-days in the last 7 days vs 18.7 usually (16%)",
        },
    }
    # The latest snapshot of each run is of the same instant, so it says the same.
    assert batch_snapshots[-1]["at"] == live_snapshots[-1]["at"] == "2026-04-05T09:00:00.000Z"
    assert batch_snapshots[-1]["what_changed"] == live_snapshots[-1]["what_changed"]
    assert batch_snapshots[-1]["what_changed"]["since"] == "2026-03-29"
    assert decode_state(batch_store.data["acme"]).scored == decode_state(live_store.data["acme"]).scored
