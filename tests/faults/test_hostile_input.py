"""Hostile input on the shared broker: 10,000+ malformed records interleaved with the simulator's traffic."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from streamer.core.events import InvalidEvent, check_not_future, parse_event
from streamer.worker.processor import DEAD_LETTER_MAX_BYTES
from tests.faults.accounts import make_accounts, usage_event
from tests.faults.extreme import extreme_event, issue_poison
from tests.faults.traffic import produce_fast
from tests.integration.kafkautil import read_all, wait_committed, wait_until
from tests.integration.pipeline import counted_events, make_topics, metric, now_ms, states
from tests.integration.workers import WorkerFactory

TEN_MB = 10 * 1024 * 1024
PARTITIONS = 4


def _valid_doc(i: int, at: int) -> dict[str, Any]:
    return {
        "event_id": f"bad-{i}",
        "account_id": "acct-0000",
        "event": "login",
        "timestamp": at,
        "user_id": "u",
    }


def _malformed(i: int, rng: random.Random, at: int) -> tuple[str, bytes | None, str]:
    """The i-th malformed record: (category, value, a word its DLQ reason must contain)."""
    doc = _valid_doc(i, at)
    kind = i % 25
    if kind == 0:
        return "invalid UTF-8", b"\xff\xfe" + rng.randbytes(20) + str(i).encode() + b"\xc3\x28", "json"
    if kind == 1:
        return "invalid JSON (truncated)", orjson.dumps(doc)[: -rng.randrange(1, 10)], "json"
    if kind == 2:
        return "invalid JSON (garbage)", f"{{event_id: {i}, 'x': NaN}}".encode(), "json"
    if kind == 3:
        return "not an object", orjson.dumps([i, "acct-0000", "login"]), "object"
    if kind == 4:
        return "wrong type: account_id", orjson.dumps({**doc, "account_id": i}), "account_id"
    if kind == 5:
        return "wrong type: event_id", orjson.dumps({**doc, "event_id": [i]}), "event_id"
    if kind == 6:
        return "wrong type: timestamp", orjson.dumps({**doc, "timestamp": at + 0.5}), "timestamp"
    if kind == 7:
        return "wrong type: properties", orjson.dumps({**doc, "properties": "x"}), "properties"
    if kind == 8:
        return "wrong type: active", orjson.dumps({**doc, "active": "yes"}), "active"
    if kind == 9:
        field = ("event_id", "account_id", "event", "timestamp")[(i // 25) % 4]
        return f"missing field: {field}", orjson.dumps({k: v for k, v in doc.items() if k != field}), field
    if kind == 10:
        return (
            "oversized field: account_id",
            orjson.dumps({**doc, "account_id": "a" * (129 + i % 50)}),
            "account_id",
        )
    if kind == 11:
        return "oversized field: user_id", orjson.dumps({**doc, "user_id": "u" * 5000}), "user_id"
    if kind == 12:
        return "timestamp in 1970", orjson.dumps({**doc, "timestamp": (i * 7919) % 10**9}), "timestamp"
    if kind == 13:
        return (
            "timestamp in 1970 (RFC 3339)",
            orjson.dumps({**doc, "timestamp": "1970-01-01T00:00:00Z"}),
            "timestamp",
        )
    if kind == 14:
        return (
            "timestamp in 3000",
            orjson.dumps({**doc, "timestamp": "3000-01-01T00:00:00+00:00"}),
            "timestamp",
        )
    if kind == 15:
        return (
            "timestamp in 3000 (epoch ms)",
            orjson.dumps({**doc, "timestamp": 32_503_680_000_000 + i}),
            "timestamp",
        )
    if kind == 16:
        return "unknown event kind", orjson.dumps({**doc, "kind": f"teleported-{i}"}), "kind"
    if kind == 17:
        segment = {"type": f"shout-{i % 5}", "messageId": f"m{i}", "timestamp": "2026-01-01T00:00:00Z"}
        return "unknown Segment type", orjson.dumps(segment), "type"
    if kind == 18:
        segment = {
            "type": "track",
            "messageId": f"m{i}",
            "event": "x",
            "userId": "u",
            "timestamp": "2026-01-01T00:00:00Z",
        }
        return "Segment without a group id", orjson.dumps(segment), "groupid"
    if kind == 19:
        return (
            "reserved event with a bad value",
            orjson.dumps({**doc, "event": "nps_response", "properties": {"score": 11 + i % 5}}),
            "score",
        )
    if kind == 20:
        return "deeply nested JSON", b"[" * 5000 + str(i).encode() + b"]" * 5000, "json"
    if kind == 21:
        return "empty value", b" " * (i % 3), "json"
    if kind == 22:
        return "null value", None, "empty"
    if kind == 23:
        untyped: dict[str, Any] = {
            "type": [] if i % 2 else {"track": i},
            "messageId": f"m{i}",
            "timestamp": "2026-01-01T00:00:00Z",
        }
        return "Segment type not a string", orjson.dumps(untyped), "type"
    return "JSON null / scalar", orjson.dumps(None if i % 2 else i), "object"


def _huge(n: int) -> list[tuple[str, bytes, str]]:
    junk = bytes(range(256)) * (TEN_MB // 256)
    # Rejected by size before they are parsed: the reason names the size rule.
    return [
        ("10 MB of binary", junk[:-1] + bytes([n]), "larger than"),
        (
            "10 MB account_id",
            orjson.dumps({**_valid_doc(-1, now_ms()), "account_id": "a" * TEN_MB}),
            "larger than",
        ),
        ("10 MB invalid JSON", b'{"event_id": "' + b"x" * TEN_MB, "larger than"),
    ]


@pytest.mark.timeout(900)
async def test_malformed_records_go_to_the_dlq_and_valid_ones_count_once(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    figures: dict[str, Any],
) -> None:
    """Hostile input: 12,000 malformed records among 6,000 valid events

    12,000 malformed records of 25 kinds (invalid UTF-8 and JSON, non-objects, wrong types, missing
    and oversized fields, timestamps in 1970 and in 3000, unknown event kinds and Segment types,
    Segment messages without a group id or with a list as type, invalid reserved events, 5,000-deep
    nesting, empty and null values), three 10 MB values, and 300 re-sent valid events (repeated
    event ids, each shortly after its original) are interleaved at random with 6,000 valid events
    of 50 simulated accounts. Held means: the worker process never
    exits or restarts and catches up (no stall), every malformed record is in the DLQ (at least
    once: a record re-read after a rebalance is dead-lettered again, with the same source) with a
    `churnwatch.error` reason naming the broken field or rule, and every valid event is
    counted exactly once (repeated ids dropped as duplicates).
    Note: an unknown *native* event name is not malformed; any name counts as product activity.
    """
    rng = random.Random(88)
    at = now_ms() - 3_600_000
    accounts = make_accounts(50, rng)
    valid: list[tuple[bytes | None, bytes | None]] = []
    want: Counter[str] = Counter()
    for n in range(6000):
        account = accounts[n % len(accounts)]
        valid.append((account.account_id.encode(), usage_event(account, n, at + n * 500, rng)))
        want[account.account_id] += 1
    # Re-sends follow their original closely, as a retrying producer sends them: dedup remembers an
    # account's last 64 event ids (the documented bound), so a re-send far behind would be counted.
    resent_at = set(rng.sample(range(len(valid)), 300))
    good: list[tuple[bytes | None, bytes | None]] = []
    resent = []
    for j, item in enumerate(valid):
        good.append(item)
        if j in resent_at:
            resent.append(item)
            good.insert(len(good) - rng.randrange(0, 5), item)
    bad: list[tuple[str, bytes | None, str]] = [_malformed(i, rng, at) for i in range(12_000)]
    bad += _huge(0)
    for _category, value, _ in bad:
        if value is not None:
            with pytest.raises(InvalidEvent):
                parse_event(value)
    keys: list[bytes | None] = [None, b"acct-0001", rng.randbytes(8)]
    # A record needs a key or a value: null values go out keyed.
    bad_records = [(rng.choice(keys) if value is not None else b"acct-0001", value) for _, value, _ in bad]
    # Bad records at random places among the valid ones, which keep their order.
    shuffled = rng.sample(bad_records, len(bad_records))
    slots = sorted(rng.random() for _ in shuffled)
    stream: list[tuple[bytes | None, bytes | None]] = []
    b = 0
    for j, item in enumerate(good):
        while b < len(slots) and slots[b] * len(good) <= j:
            stream.append(shuffled[b])
            b += 1
        stream.append(item)
    stream += shuffled[b:]
    figures["valid events"] = len(valid)
    figures["re-sent valid events (repeated ids)"] = len(resent)
    figures["malformed records"] = len(bad)
    figures["malformed records by kind"] = dict(sorted(Counter(c for c, _, _ in bad).items()))

    topics = await make_topics(topic_factory, PARTITIONS)
    group = f"hostile-{unique_id}"
    worker = worker_factory.create(topics, PARTITIONS, group)
    await worker.start()
    await worker.wait_ready()
    started = time.monotonic()
    await produce_fast(kafka_bootstrap, topics["events"], stream, max_request_size=16 * 1024 * 1024)
    figures["produce seconds"] = round(time.monotonic() - started, 1)

    async def processed() -> bool:
        if worker.proc is not None and worker.proc.returncode is not None:
            raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log_text()[-3000:]}")
        return metric(worker, "churnwatch_events_total") >= len(stream)

    try:
        await wait_until(processed, 600, "the worker to process every record")
    finally:
        figures["seconds to process everything"] = round(time.monotonic() - started, 1)
        figures["worker starts"] = worker.starts
        figures["worker still running"] = worker.proc is not None and worker.proc.returncode is None
        for outcome in ("counted", "duplicate", "invalid", "fact"):
            figures[f"outcome {outcome}"] = metric(worker, "churnwatch_events_total", outcome=outcome)
    assert worker.starts == 1 and worker.proc is not None and worker.proc.returncode is None

    dead = await read_all(kafka_bootstrap, topics["dlq"])
    figures["DLQ records"] = len(dead)
    reasons: dict[bytes | None, list[str]] = {}
    truncated: dict[bytes | None, str] = {}
    for rec in dead:
        headers = dict(rec.headers)
        reasons.setdefault(rec.value, []).append(headers["churnwatch.error"].decode())
        assert headers["churnwatch.source"].decode().startswith(topics["events"] + "/")
        if "churnwatch.truncated" in headers:
            truncated[rec.value] = headers["churnwatch.truncated"].decode()

    def as_dead(value: bytes | None) -> bytes | None:
        # Dead letters over 512 KiB are cut to 512 KiB, their original size in a header.
        return value[:DEAD_LETTER_MAX_BYTES] if value is not None else None

    missing = [c for c, v, _ in bad if as_dead(v) not in reasons]
    figures["malformed records missing from the DLQ"] = len(missing)
    wrong = [
        (c, reasons[as_dead(v)][0])
        for c, v, word in bad
        if as_dead(v) in reasons and word not in reasons[as_dead(v)][0].lower()
    ]
    figures["DLQ reasons not naming the field/rule"] = len(wrong)
    figures["10 MB values dead-lettered cut to 512 KiB"] = len(truncated)
    by_field: dict[str, str] = {}
    for rs in reasons.values():
        for r in rs:
            by_field.setdefault(r.split(":", 1)[0], r[:120])
    figures["one DLQ reason per field"] = dict(sorted(by_field.items()))
    # The DLQ is at least once: a record read again after a rebalance is dead-lettered again, with
    # the same source. Once per source, it must hold exactly the malformed records.
    by_source: dict[bytes, list[bytes | None]] = {}
    for rec in dead:
        by_source.setdefault(dict(rec.headers)["churnwatch.source"], []).append(rec.value)
    figures["DLQ records written again for a re-read record (same source)"] = len(dead) - len(by_source)
    assert all(len(set(values)) == 1 for values in by_source.values())
    assert Counter(values[0] for values in by_source.values()) == Counter(as_dead(v) for _, v, _ in bad)
    assert sorted(truncated.values()) == sorted(
        f"key={len(k) if k is not None else 0},value={len(v)}"
        for (k, v), (_, _, _) in zip(bad_records[-3:], bad[-3:], strict=True)
        if v is not None
    )
    assert not missing, Counter(missing)
    assert not wrong, wrong[:10]
    assert len(by_source) == len(bad)
    assert metric(worker, "churnwatch_events_total", outcome="invalid") == len(dead)
    assert metric(worker, "churnwatch_events_total", outcome="duplicate") == len(resent)

    # Processed is not yet stored: states are flushed every few seconds. Once every record is
    # committed, the stored states must count exactly.
    await wait_committed(kafka_bootstrap, group, topics["events"], len(stream), 120)
    stored = await states(kafka_bootstrap, group)
    got = {a: counted_events(s) for a, s in stored.items() if a in want}
    figures["valid events counted (from stored state)"] = sum(got.values())
    assert got == dict(want)


@pytest.mark.timeout(900)
async def test_extreme_schema_valid_values_never_stop_the_worker(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    unique_id: str,
    figures: dict[str, Any],
) -> None:
    """Extreme values: 10,000 schema-valid events at the edges, and the issue's poison record

    The poison record that crash-looped the worker (an `account_updated` with `seats` = 2^63,
    accepted by the schema of the time) goes first; then 10,000 events that keep to the schema or
    miss a bound by one, with values at the edges (integers past 64 bits, huge and tiny floats,
    long and unusual Unicode, nesting at the 32-level limit and one past it, repeated ids,
    timestamps at the 2000/2100 bounds, reserved events with extreme facts, native and Segment
    shapes), interleaved with 4,000 valid events of 40 simulated accounts. Held means: the worker
    never exits (0 crashes, one start) and processes every record; nothing is isolated as poison
    (`churnwatch_poison_total` stays 0: the schema rejects every value the state cannot hold); the
    DLQ holds exactly the records the parser rejects (once per source), each with the schema's
    reason, the poison record with `properties.seats: must be an integer 0..10000000`; and every
    valid event of the simulated accounts is counted exactly once.
    """
    rng = random.Random(1033)
    at = now_ms()
    accounts = make_accounts(40, rng)
    valid: list[tuple[bytes | None, bytes | None]] = []
    want: Counter[str] = Counter()
    for n in range(4000):
        account = accounts[n % len(accounts)]
        valid.append((account.account_id.encode(), usage_event(account, n, at - 3_600_000 + n * 500, rng)))
        want[account.account_id] += 1
    extreme = [extreme_event(i, rng, at) for i in range(10_000)]
    poison = issue_poison(at)
    expected_rejects: Counter[tuple[bytes, str]] = Counter()
    for value in [poison, *extreme]:
        try:
            check_not_future(parse_event(value), at, 300_000)
        except InvalidEvent as err:
            expected_rejects[(value, str(err))] += 1
    assert expected_rejects[(poison, "properties.seats: must be an integer 0..10000000")] == 1
    stream: list[tuple[bytes | None, bytes | None]] = [(b"poison-acct", poison)]
    slots = sorted(rng.randrange(len(valid)) for _ in extreme)
    e = 0
    for j, item in enumerate(valid):
        while e < len(extreme) and slots[e] <= j:
            stream.append((None, extreme[e]))
            e += 1
        stream.append(item)
    figures["valid events"] = len(valid)
    figures["extreme events"] = len(extreme)
    figures["extreme events the schema rejects (by field)"] = dict(
        sorted(Counter(r.split(":")[0].split(".")[0] for _, r in expected_rejects.elements()).items())
    )
    figures["extreme events accepted"] = len(extreme) + 1 - expected_rejects.total()

    topics = await make_topics(topic_factory, PARTITIONS)
    group = f"extreme-{unique_id}"
    worker = worker_factory.create(topics, PARTITIONS, group)
    await worker.start()
    await worker.wait_ready()
    started = time.monotonic()
    await produce_fast(kafka_bootstrap, topics["events"], stream)

    async def processed() -> bool:
        if worker.proc is not None and worker.proc.returncode is not None:
            raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log_text()[-3000:]}")
        return metric(worker, "churnwatch_events_total") >= len(stream)

    try:
        await wait_until(processed, 600, "the worker to process every record")
    finally:
        figures["seconds to process everything"] = round(time.monotonic() - started, 1)
        figures["worker starts"] = worker.starts
        figures["worker still running"] = worker.proc is not None and worker.proc.returncode is None
        figures["poison isolated (churnwatch_poison_total)"] = metric(worker, "churnwatch_poison_total")
    assert worker.starts == 1 and worker.proc is not None and worker.proc.returncode is None
    assert metric(worker, "churnwatch_poison_total") == 0

    dead = await read_all(kafka_bootstrap, topics["dlq"])
    by_source: dict[bytes, tuple[bytes | None, str]] = {}
    for rec in dead:  # at least once: a record re-read after a rebalance is dead-lettered again
        headers = dict(rec.headers)
        by_source[headers["churnwatch.source"]] = (rec.value, headers["churnwatch.error"].decode())
    figures["DLQ records"] = len(dead)
    figures["DLQ records written again for a re-read record (same source)"] = len(dead) - len(by_source)
    got = Counter((value, reason) for value, reason in by_source.values() if value is not None)
    assert got == expected_rejects

    await wait_committed(kafka_bootstrap, group, topics["events"], len(stream), 120)
    stored = await states(kafka_bootstrap, group)
    counted = {a: counted_events(s) for a, s in stored.items() if a in want}
    figures["valid events counted (from stored state)"] = sum(counted.values())
    assert counted == dict(want)
