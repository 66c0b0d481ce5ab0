"""History reading, replay and the backtest command on small histories."""

from __future__ import annotations

import csv
import gzip
import itertools
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.backtest.history import read_history
from streamer.backtest.replay import replay
from streamer.backtest.run import evaluation_dates
from streamer.cli import main
from streamer.core.events import parse_event_time
from streamer.core.policy import DAY_MS, load_policy
from streamer.kafka.partitioner import kafka_partitioner
from streamer.worker.processor import PartitionProcessor, Record
from tests.unit.worker.test_processor import Store

T0 = 1_767_571_200_000  # 2026-01-05T00:00Z, a Monday
RULES = "[alerts]\nquiet_after_days = 2\n[onboarding]\ndays = 3\n"


def _event(account: str, i: int, at: int, name: str = "login", user: str = "u1") -> dict[str, object]:
    return {
        "event_id": f"{account}-{i}",
        "account_id": account,
        "event": name,
        "timestamp": at,
        "user_id": user,
    }


def _write(path: Path, docs: list[dict[str, object]], gz: bool = False) -> None:
    data = b"".join(orjson.dumps(d) + b"\n" for d in docs)
    path.write_bytes(gzip.compress(data) if gz else data)


def test_a_history_is_validated_and_sorted_in_runs_whatever_its_order(tmp_path: Path) -> None:
    docs = [_event("a", i, T0 + ((i * 7919) % 50) * 60_000) for i in range(50)]
    docs.insert(10, {"event_id": "x", "account_id": "a", "event": "login", "timestamp": "yesterday"})
    docs.append({**_event("a", 99, T0), "event": "subscription_cancelled"})
    path = tmp_path / "h.jsonl.gz"
    _write(path, docs, gz=True)
    (tmp_path / "blank").write_text("")
    history = read_history(path, run_lines=7)  # 8 runs spilled to disk, then merged
    try:
        assert (history.lines, history.valid, dict(history.invalid)) == (52, 51, {"timestamp": 1})
        assert not history.was_sorted
        times = [at for at, _ in history.events()]
        assert times == sorted(times) and len(times) == 51
        # Ties keep file order: the cancellation (last in the file) comes after the login at T0.
        at_t0 = [orjson.loads(line)["event"] for at, line in history.events() if at == T0]
        assert at_t0 == ["login", "subscription_cancelled"]
        assert history.cancellations == {"a": [T0]}
    finally:
        history.close()


def test_evaluation_dates_are_month_or_week_starts_after_the_warm_up() -> None:
    first, last = T0 + 3_600_000, T0 + 120 * DAY_MS
    months = evaluation_dates(first, last, "month", warmup_days=35)
    assert [m // DAY_MS - T0 // DAY_MS for m in months] == [55, 86, 116]  # Mar 1, Apr 1, May 1
    weeks = evaluation_dates(first, T0 + 60 * DAY_MS, "week", warmup_days=35)
    assert [w // DAY_MS - T0 // DAY_MS for w in weeks] == [42, 49, 56]


def _history(rng: random.Random, accounts: int, days: int) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = []
    for a in range(accounts):
        account = f"acct-{a}"
        stop = rng.randrange(days // 2, days + 5)  # some go quiet
        docs.append({**_event(account, -1, T0), "event": "subscription_started"})
        for d in range(stop):
            for i in range(rng.randrange(0, 6)):
                at = T0 + d * DAY_MS + rng.randrange(DAY_MS)
                docs.append(_event(account, d * 10 + i, at, user=f"u{rng.randrange(4)}"))
        if stop < days and rng.random() < 0.5:
            docs.append(
                {**_event(account, 9999, T0 + (stop + 5) * DAY_MS), "event": "subscription_cancelled"}
            )
    docs.sort(key=lambda d: int(d["timestamp"]))  # type: ignore[call-overload]
    return docs


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10_000), partitions=st.integers(1, 4), cuts=st.lists(st.integers(1, 400), min_size=1)
)
def test_the_backtest_raises_exactly_the_alerts_of_a_worker_reading_the_same_history_in_any_batches(
    seed: int, partitions: int, cuts: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The worker in event-time mode: each partition's records in order, cut into arbitrary batches."""
    docs = _history(random.Random(seed), accounts=6, days=20)
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    _write(path, docs)
    policies = load_policy(RULES)
    history = read_history(path)
    try:
        expected = replay(history, policies, [], partitions=partitions)
    finally:
        history.close()

    partition_for = kafka_partitioner(partitions)
    by_partition: dict[int, list[Record]] = {}
    for doc in docs:
        p = partition_for(str(doc["account_id"]))
        records = by_partition.setdefault(p, [])
        records.append(Record(p, len(records), None, orjson.dumps(doc)))
    got = []
    wall = T0 + 400 * DAY_MS  # the worker's wall clock: after the history, never ticked into it
    for p, records in by_partition.items():
        proc = PartitionProcessor(
            p, policies, partition_for, allowed_lateness_ms=30_000, max_future_ms=300_000
        )
        store = Store()
        i = 0
        for n, cut in enumerate(itertools.cycle(cuts)):
            if i >= len(records):
                break
            out = proc.process(records[i : i + cut], store, wall, backlog=n % 2 == 0)
            got += [value for _, value in out.encoded_alerts]
            if n % 3 == 0:
                store.data.update(proc.flush(wall))
            i += cut
    assert sorted(got) == sorted(value for _, value in expected.alerts)


def test_backtest_command_writes_scores_alerts_figures_and_report(tmp_path: Path) -> None:
    docs = _history(random.Random(3), accounts=40, days=100)
    history = tmp_path / "h.jsonl"
    _write(history, docs)
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    out = {name: tmp_path / name for name in ("scores.csv", "alerts.jsonl", "figures.json", "report.html")}
    code = main(
        [
            "backtest",
            str(history),
            "--rules",
            str(rules),
            "--every",
            "week",
            "--scores-out",
            str(out["scores.csv"]),
            "--alerts-out",
            str(out["alerts.jsonl"]),
            "--json",
            str(out["figures.json"]),
            "--report",
            str(out["report.html"]),
            "--no-progress",
        ]
    )
    assert code == 0
    with out["scores.csv"].open() as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header[:4] == ["account_id", "at", "score", "band"] and header[-1] == "cancelled_at"
    assert {"activity", "recency", "breadth", "sentiment"} <= set(header)
    figures = orjson.loads(out["figures.json"].read_bytes())
    assert figures["history"]["events"] == len(docs)
    assert figures["ranking"]["pooled"]["rows"] > 0
    alerts = [orjson.loads(line) for line in out["alerts.jsonl"].read_bytes().splitlines()]
    first, last = (parse_event_time(figures["history"][k]) for k in ("first_event", "last_event"))
    # The figures count the account alerts within the history's span of activity.
    counted = [a for a in alerts if a["account_id"] and first <= parse_event_time(a["detected_at"]) <= last]
    assert sum(figures["alerts"]["counts"].values()) == len(counted) > 0
    assert {"alert_id", "kind", "account_id", "detected_at", "health", "evidence"} <= set(alerts[0])
    assert out["report.html"].read_text().startswith("<!doctype html>")


def test_backtest_command_says_what_is_wrong_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts]\nquiet_after = 3\n")
    empty = tmp_path / "h.jsonl"
    empty.write_text("{}\n")
    assert main(["backtest", str(empty), "--rules", str(bad), "--no-progress"]) == 2
    assert "alerts.quiet_after: unknown key" in capsys.readouterr().err
    assert main(["backtest", str(empty), "--no-progress"]) == 2
    assert "no valid event" in capsys.readouterr().err
