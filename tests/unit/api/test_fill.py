"""A fill whose snapshots other processes decode, check and turn into rows (api.fill): the store holds
exactly the rows of a fill decoded by the loader itself (which test_store holds to the in-memory model),
with the same records skipped and warned about, and the same offsets; a batch of rows is written
whole, with its offsets, or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from api.fill import FillPool, Rejected, prepare_snapshots
from api.kafka_readmodel import KafkaReadModel
from api.readmodel import Batch, InMemoryReadModel
from api.restrictions import EVERY_ACCOUNT
from api.store import schema as t
from api.store import sql as sql_store
from api.store.sql import SqlReadModel
from tests.postgres import PostgresServer, database_name
from tests.unit.api import conftest
from tests.unit.api.conftest import alert, snapshot
from tests.unit.api.test_store import _snapshot

HEALTH, ALERTS = "account-health", "churn-alerts"
ACCOUNTS = [f"acct-{i}" for i in range(6)]
# Several days, and the same instant twice (the later record wins a tie).
_ats = st.sampled_from(
    [
        "2025-03-13T09:00:00.000Z",
        "2025-03-14T08:00:00.000Z",
        "2025-03-14T08:00:00.000Z",
        "2025-03-14T17:30:00.000Z",
        "2025-03-15T00:00:00.000Z",
    ]
)
_NO_BAND = {k: v for k, v in snapshot("acct-2").items() if k != "band"}
# What the loader skips, and why: each warned about the same way on both paths.
BAD: dict[str, tuple[bytes | None, bytes | None]] = {
    "not JSON": (b"acct-0", b'{"account_id": '),
    "not UTF-8": (b"acct-0", b'"\xff\xfe"'),
    "a key not UTF-8": (b"\xffacct", orjson.dumps(snapshot("acct-0"))),
    "a score out of range": (b"acct-1", orjson.dumps(snapshot("acct-1", score=200))),
    "a field missing": (b"acct-2", orjson.dumps(_NO_BAND)),
    "not an object": (b"acct-3", b"[1, 2]"),
    "no key (ignored, no warning)": (None, orjson.dumps(snapshot("acct-4"))),
}


@dataclass(frozen=True)
class Record:
    """A fetched record as the loader reads it."""

    key: bytes | None
    value: bytes | None
    offset: int


@pytest.fixture(scope="module")
def pool() -> Iterator[FillPool]:
    # Two processes: a batch is split between them and must come back in the order read.
    fill_pool = FillPool(2)
    yield fill_pool
    fill_pool.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def two_urls(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, str]]:
    """Two empty stores of one kind: one filled each way."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/by-loader.db", f"sqlite:///{tmp_path}/by-pool.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    names = [database_name(request.node.nodeid) for _ in range(2)]
    urls = [server.create_database(name) for name in names]
    yield urls[0], urls[1]
    for name in names:
        server.drop_database(name)


@st.composite
def _records(draw: st.DrawFn) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, value) in the order produced: snapshots, tombstones, alerts and records to skip."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for _ in range(draw(st.integers(1, 30))):
        account = draw(st.sampled_from(ACCOUNTS))
        what = draw(st.sampled_from(["snapshot", "snapshot", "snapshot", "tombstone", "alert", "bad"]))
        if what == "snapshot":
            doc = {**draw(_snapshot(account)), "at": draw(_ats)}
            out.append((HEALTH, account.encode(), orjson.dumps(doc)))
        elif what == "tombstone":
            out.append((HEALTH, account.encode(), None))
        elif what == "alert":
            out.append((ALERTS, account.encode(), orjson.dumps(alert(f"al-{account}", account))))
        else:
            out.append((HEALTH, *BAD[draw(st.sampled_from(sorted(BAD)))]))
    return out


def _fetches(
    records: list[tuple[str, bytes | None, bytes | None]], split: int
) -> list[dict[TopicPartition, list[Record]]]:
    """The records as two fetches (split at ``split``), an account's always on the same partition."""
    offsets: Counter[TopicPartition] = Counter()
    fetches: list[dict[TopicPartition, list[Record]]] = [{}, {}]
    for n, (topic, key, value) in enumerate(records):
        tp = TopicPartition(topic, key[-1] % 2 if key else 0)
        fetches[n >= split].setdefault(tp, []).append(Record(key, value, offsets[tp]))
        offsets[tp] += 1
    return fetches


def _fill(url: str, fetches: list[dict[TopicPartition, list[Record]]], pool: FillPool | None) -> Any:
    """Fill an empty store at ``url`` with ``fetches`` through the loader; every row of every table."""
    store = SqlReadModel(url)
    try:
        store.clear()
        assert store.begin_fill()
        loader = KafkaReadModel(conftest.settings(), store)
        loader._decoding = pool

        async def load() -> None:
            for fetched in fetches:
                batch = await loader._batch(fetched)
                assert not batch.snapshots if pool is not None else not batch.rows
                await loader._apply(batch)

        asyncio.run(load())
        store.finish_fill()
        with store._engine.connect() as conn:
            tables = {
                table.name: conn.execute(select(table).order_by(*table.primary_key.columns)).all()
                for table in t.metadata.sorted_tables
            }
            # The documents' own text too, not only what they parse to.
            text = "doc::text" if store.dialect == "postgresql" else "doc"
            tables["text"] = conn.exec_driver_sql(
                f"SELECT account_id, {text} FROM account_documents ORDER BY account_id"  # noqa: S608 - no input
            ).all()
        return tables
    finally:
        store.close()


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(records=_records(), split=st.integers(0, 30))
def test_a_fill_through_the_pool_stores_exactly_the_rows_of_a_fill_decoded_by_the_loader(
    records: list[tuple[str, bytes | None, bytes | None]],
    split: int,
    two_urls: tuple[str, str],
    pool: FillPool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fetches = _fetches(records, split)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="churnwatch.api.readmodel"):
        by_loader = _fill(two_urls[0], fetches, None)
        warned_by_loader = Counter(caplog.messages)
        caplog.clear()
        by_pool = _fill(two_urls[1], fetches, pool)
        warned_by_pool = Counter(caplog.messages)

    assert by_pool == by_loader
    assert warned_by_pool == warned_by_loader
    # Every record read is behind the stored offsets, the skipped ones too.
    assert sum(row.next_offset for row in by_pool["offsets"]) == len(records)


def _prepared(*docs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The rows of snapshots as a fill process prepares them."""
    rows = prepare_snapshots([(d["account_id"].encode(), orjson.dumps(d)) for d in docs])
    return [r for r in rows if not isinstance(r, Rejected)]


# One fetch after another: first snapshots, an older snapshot of an account written before, a tombstone
# and the account again in one batch, a tombstone of an account never written.
_BATCHES: list[list[tuple[str, str | None, int]]] = [
    [("a", "2025-03-14T08:00:00.000Z", 10), ("b", "2025-03-14T08:00:00.000Z", 20)],
    [("a", "2025-03-13T09:00:00.000Z", 30), ("c", "2025-03-15T00:00:00.000Z", 40), ("b", None, 0)],
    [
        ("c", None, 0),
        ("c", "2025-03-14T17:30:00.000Z", 50),
        ("d", "2025-03-13T09:00:00.000Z", 60),
        ("e", None, 0),
    ],
    [("b", "2025-03-15T00:00:00.000Z", 70), ("f", "2025-03-14T08:00:00.000Z", 80)],
]


@pytest.mark.parametrize("seen_bits", [1, 1 << 26])
def test_a_fill_of_postgresql_inserts_first_rows_and_stores_what_upserts_store(
    seen_bits: int,
    two_urls: tuple[str, str],
    pool: FillPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A filter of one bit: the accounts of the first batch set it, and every account after is upserted.
    monkeypatch.setattr(sql_store, "_SEEN_BITS", seen_bits)
    fresh: list[set[str]] = []
    first_seen = SqlReadModel._first_seen

    def noted(store: SqlReadModel, account_ids: Any) -> set[str]:
        found = first_seen(store, account_ids)
        fresh.append(found)
        return found

    monkeypatch.setattr(SqlReadModel, "_first_seen", noted)
    records: list[tuple[str, bytes | None, bytes | None]] = [
        (
            HEALTH,
            account.encode(),
            None if at is None else orjson.dumps(snapshot(account, score=score, at=at)),
        )
        for batch in _BATCHES
        for account, at, score in batch
    ]
    fetches = _fetches(records, len(_BATCHES[0]) + len(_BATCHES[1]))

    by_loader = _fill(two_urls[0], fetches, None)
    fresh.clear()
    by_pool = _fill(two_urls[1], fetches, pool)

    assert by_pool == by_loader
    assert {row.account_id: row.score for row in by_pool["accounts"]} == {
        "a": 10,
        "b": 70,
        "c": 50,
        "d": 60,
        "f": 80,
    }
    inserted = set().union(*fresh)
    if two_urls[0].startswith("sqlite"):
        assert inserted == set()  # one writer: SQLite upserts all
    elif seen_bits == 1:
        assert inserted == {"a", "c"}
    else:
        # b was written before; c too, and forgotten and written again in one batch; e only forgotten.
        assert inserted == {"a", "c", "d", "f"}


def test_a_fill_upserts_from_the_first_row_another_process_wrote(
    postgres_server: PostgresServer, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    name = database_name(request.node.nodeid)
    url = postgres_server.create_database(name)
    ours, theirs = SqlReadModel(url), SqlReadModel(url)
    try:
        # Both fill the store: the second goes on with the fill the first began, upserting.
        assert ours.begin_fill() and theirs.begin_fill()
        newer = snapshot("a", score=70, at="2025-03-15T00:00:00.000Z")
        older = snapshot("a", score=20, at="2025-03-14T00:00:00.000Z")
        asyncio.run(theirs.apply_batch(Batch(rows=_prepared(newer), positions={(HEALTH, 1): 1})))
        with caplog.at_level(logging.WARNING, logger="churnwatch.api.store"):
            asyncio.run(
                ours.apply_batch(Batch(rows=_prepared(older, snapshot("b")), positions={(HEALTH, 0): 2}))
            )
            # From now on every row is upserted: an older snapshot of another of theirs is no error.
            asyncio.run(
                theirs.apply_batch(Batch(rows=_prepared(snapshot("c", score=90)), positions={(HEALTH, 1): 2}))
            )
            asyncio.run(
                ours.apply_batch(
                    Batch(
                        rows=_prepared(snapshot("c", score=5, at="2025-03-01T00:00:00.000Z")),
                        positions={(HEALTH, 0): 3},
                    )
                )
            )

        assert caplog.messages == [
            "another process fills the read store too: its rows are upserted from now on"
        ]
        with ours._engine.connect() as conn:
            scores = dict(conn.execute(select(t.accounts.c.account_id, t.accounts.c.score)).all())
            history = conn.execute(
                select(t.history.c.account_id, t.history.c.day, t.history.c.score).order_by(
                    t.history.c.account_id, t.history.c.day
                )
            ).all()
        assert scores == {"a": 70, "b": 50, "c": 90}
        assert [tuple(row) for row in history] == [
            ("a", "2025-03-14", 20),
            ("a", "2025-03-15", 70),
            ("b", "2025-03-15", 50),
            ("c", "2025-03-01", 5),
            ("c", "2025-03-15", 90),
        ]
        assert ours.positions() == {(HEALTH, 0): 3, (HEALTH, 1): 2}
    finally:
        ours.close()
        theirs.close()
        postgres_server.drop_database(name)


def test_each_record_skipped_is_warned_about_as_the_loader_does(caplog: pytest.LogCaptureFixture) -> None:
    records = [BAD[why] for why in BAD]
    with caplog.at_level(logging.WARNING, logger="churnwatch.api.readmodel"):
        fetched = {TopicPartition(HEALTH, 0): [Record(k, v, n) for n, (k, v) in enumerate(records)]}
        batch = asyncio.run(KafkaReadModel(conftest.settings(), InMemoryReadModel())._batch(fetched))

    # Checked in this process, as the pool's processes do: why each is skipped, in the order given.
    prepared = prepare_snapshots([(k, v) for k, v in records if k is not None])
    assert prepared == [
        Rejected(),
        Rejected(),
        Rejected(),
        Rejected("score", "Input should be less than or equal to 100"),
        Rejected("band", "Field required"),
        Rejected("", "Input should be a valid dictionary or instance of SnapshotDocument"),
    ]
    assert batch.snapshots == [] and batch.positions == {(HEALTH, 0): len(records)}
    assert caplog.messages == [
        f"skipping undecodable record on {HEALTH}",
        f"skipping undecodable record on {HEALTH}",
        f"skipping undecodable record on {HEALTH}",
        f"skipping a record on {HEALTH} that is not a churnwatch document (score: Input should be less than "
        "or equal to 100)",
        f"skipping a record on {HEALTH} that is not a churnwatch document (band: Field required)",
        f"skipping a record on {HEALTH} that is not a churnwatch document (: Input should be a valid "
        "dictionary or instance of SnapshotDocument)",
    ]


def test_a_batch_of_rows_is_written_with_its_offsets_or_not_at_all(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlReadModel(f"sqlite:///{tmp_path}/store.db")
    try:
        assert store.begin_fill()
        values = [(f"a{i}".encode(), orjson.dumps(snapshot(f"a{i}"))) for i in range(3)]
        rows = prepare_snapshots(values)
        batch = Batch(rows=[r for r in rows if not isinstance(r, Rejected)], positions={(HEALTH, 0): 3})

        def fail(*_: Any) -> None:
            raise RuntimeError("the disk is full")

        with monkeypatch.context() as patched:
            patched.setattr(store, "_write_history", fail)  # after the accounts' upsert
            with pytest.raises(RuntimeError):
                asyncio.run(store.apply_batch(batch))
            assert store.counts()["accounts"] == 0 and store.positions() == {}

        asyncio.run(store.apply_batch(batch))
        assert store.counts()["accounts"] == 3 and store.positions() == {(HEALTH, 0): 3}
    finally:
        store.close()


def test_rows_are_refused_by_a_store_not_filling_and_with_documents(tmp_path: Any) -> None:
    # Rows are neither counted into the portfolio nor compared with the stored rows: a fill's only.
    rows = prepare_snapshots([(b"a", orjson.dumps(snapshot("a")))])
    assert not isinstance(rows[0], Rejected)
    store = SqlReadModel(f"sqlite:///{tmp_path}/store.db")
    try:
        with pytest.raises(ValueError, match="only while filling"):
            asyncio.run(store.apply_batch(Batch(rows=[rows[0]])))
        assert store.begin_fill()
        with pytest.raises(ValueError, match="only while filling, and alone"):
            asyncio.run(store.apply_batch(Batch(rows=[rows[0]], snapshots=[("b", snapshot("b"))])))
    finally:
        store.close()
    with pytest.raises(ValueError, match="needs documents"):
        asyncio.run(InMemoryReadModel().apply_batch(Batch(rows=[rows[0]])))


class FakeConsumer:
    """Hands out the fetches it is given, then nothing; positions as a consumer keeps them."""

    def __init__(self, fetches: list[dict[TopicPartition, list[Record]]]) -> None:
        self.fetches = fetches
        self._positions: Counter[TopicPartition] = Counter()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:  # noqa: ARG002
        await asyncio.sleep(0)
        if not self.fetches:
            return {}
        fetched = self.fetches.pop(0)
        for tp, records in fetched.items():
            self._positions[tp] = records[-1].offset + 1
        return fetched

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]


class DyingPool(FillPool):
    """A pool whose process is killed before its second batch."""

    def __init__(self) -> None:
        super().__init__(1)
        self.calls = 0

    async def prepare(self, records: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            for process in list(self._executor._processes.values()):
                process.kill()
                process.join()
        return await super().prepare(records)


@pytest.mark.parametrize("killed", [False, True])
async def test_the_loader_fills_through_the_pool_and_counts_each_snapshot_once_filled(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, killed: bool
) -> None:
    tp = TopicPartition(HEALTH, 0)
    docs = [snapshot(f"a{i}", score=10 * i, band="poor" if i < 4 else "good") for i in range(9)]
    records = [Record(d["account_id"].encode(), orjson.dumps(d), n) for n, d in enumerate(docs)]
    consumer = FakeConsumer([{tp: records[:3]}, {tp: records[3:6]}, {tp: records[6:]}])
    store = SqlReadModel(f"sqlite:///{tmp_path}/store.db")
    assert store.begin_fill()
    loader = KafkaReadModel(conftest.settings(), store)
    loader._start_ends = {tp: len(records)}
    pool = DyingPool() if killed else FillPool(1)

    def poor() -> int:
        return int(store.portfolio(datetime.now(UTC), scope=EVERY_ACCOUNT)["by_band"]["poor"])

    async def until(holds: Any) -> None:
        while not holds():
            await asyncio.sleep(0.01)

    following = asyncio.create_task(loader._follow(consumer, [tp], pool))
    try:
        await asyncio.wait_for(until(lambda: loader.ready), timeout=60)
        assert poor() == 4
        assert store.counts()["accounts"] == 9 and store.positions() == {(HEALTH, 0): 9}
        # Filled: a snapshot read now is decoded here and counted as it is written.
        later = snapshot("a8", score=5, band="poor", at="2025-03-16T00:00:00.000Z")
        consumer.fetches.append({tp: [Record(b"a8", orjson.dumps(later), 9)]})
        await asyncio.wait_for(until(lambda: poor() == 5), timeout=60)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        pool.close()
        store.close()
    assert ("a fill process ended unexpectedly" in caplog.text) is killed
