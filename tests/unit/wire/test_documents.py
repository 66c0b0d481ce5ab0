"""The worker's documents hold to the typed contract field for field, both ways."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from streamer.core.partition import GapChange
from streamer.core.policy import DAY_MS
from streamer.wire.documents import AccountHealth, AlertDocument, SnapshotDocument
from streamer.worker.processor import BatchOutput, Record
from tests.unit.worker.test_processor import QUIET_RULES, T0, Store, event, processor


def _round_trip(model: type[BaseModel], doc: dict[str, Any]) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_validate(doc).model_dump(mode="json", by_alias=True)
    return dumped


def _worker_output() -> BatchOutput:
    proc, store = processor(QUIET_RULES), Store()
    out = proc.process([Record(0, i, b"acme", event("acme", f"e{i}", T0 + i)) for i in range(3)], store, T0)
    out.extend(proc.tick(T0 + DAY_MS + 1, store, T0 + DAY_MS + 1))
    out.extend(
        proc.process([Record(0, 3, b"acme", event("acme", "back", T0 + DAY_MS + 2))], store, T0 + DAY_MS + 2)
    )
    gap = GapChange(True, T0, judged_ms=T0 + 3_600_000, episode_ms=T0, expected=50.0, observed=0)
    out.encoded_alerts.append(proc._gap_alert(gap))
    return out


def test_every_alert_the_worker_writes_is_an_alert_document_field_for_field() -> None:
    docs = [orjson.loads(value) for _, value in _worker_output().encoded_alerts]
    assert [d["kind"] for d in docs] == ["account_quiet", "account_recovered", "data_gap"]
    for doc in docs:
        assert _round_trip(AlertDocument, doc) == doc


def test_every_snapshot_the_worker_writes_is_a_snapshot_document_field_for_field() -> None:
    docs = [orjson.loads(value) for _, value in _worker_output().health]
    assert docs
    for doc in docs:
        assert _round_trip(SnapshotDocument, doc) == doc


def test_a_document_of_a_newer_worker_is_read_and_one_of_an_older_worker_gets_defaults() -> None:
    (doc, *_) = [orjson.loads(value) for _, value in _worker_output().health]
    newer = {**doc, "churn_probability": 0.3}
    assert "churn_probability" not in _round_trip(SnapshotDocument, newer)
    older = {
        k: v
        for k, v in doc.items()
        if k not in {"user_days_week", "user_days_usual", "missed_active_days", "lifecycle", "what_changed"}
    }
    read = SnapshotDocument.model_validate(older)
    assert (read.user_days_week, read.user_days_usual, read.missed_active_days) == (0.0, None, 0.0)
    assert read.lifecycle is None and read.what_changed is None


def test_the_worker_s_snapshots_carry_the_lifecycle_of_their_day() -> None:
    docs = [orjson.loads(value) for _, value in _worker_output().health]
    # acme: active on its first day (new), quiet the next day until an event comes back (returning)
    assert [(d["at"], d["lifecycle"]) for d in docs] == [
        ("2026-03-02T09:00:00.002Z", {"status": "new", "active_days_7": 1, "active_days_28": 1}),
        ("2026-03-03T09:00:00.001Z", {"status": "dormant", "active_days_7": 1, "active_days_28": 1}),
        ("2026-03-03T09:00:00.002Z", {"status": "returning", "active_days_7": 2, "active_days_28": 2}),
    ]


def test_snapshots_and_alerts_say_what_changed_once_the_worker_has_kept_a_day_s_score() -> None:
    out = _worker_output()
    # acme's first snapshot comes before any evaluation; its first midnight keeps a score of the day.
    kept = {
        "since": "2026-03-03",
        "score_change": 0,
        "moved": [],
        "top_detractor": {
            "name": "sentiment",
            "value": 70.0,
            "points": 4.4,
            "explanation": "no NPS response, 0 open support tickets",
        },
    }
    assert [orjson.loads(value)["what_changed"] for _, value in out.health] == [None, kept, kept]
    # The operations alert (data_gap) is of no account.
    assert [orjson.loads(value)["what_changed"] for _, value in out.encoded_alerts] == [kept, kept, None]


def test_the_api_answer_is_the_snapshot_plus_its_open_alerts() -> None:
    out = _worker_output()
    snapshot = orjson.loads(out.health[0][1])
    alert = orjson.loads(out.encoded_alerts[0][1])
    answer = {**snapshot, "open_alerts": [alert]}
    assert _round_trip(AccountHealth, answer) == answer
