"""The SQL read store: its schema is the migrations', it answers every query as the in-memory model does,
and applying records twice, late or in one batch changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from api.portfolio import instant_ms
from api.query import AccountFilters, AccountSort
from api.readmodel import Batch, InMemoryReadModel
from api.restrictions import EVERY_ACCOUNT, AccountScope
from api.store import sql as sql_module
from api.store.schema import metadata
from api.store.sql import SqlReadModel, StoreError, engine_for, migrate
from streamer.core.alerts import ms_to_rfc3339
from tests.unit.api.conftest import alert, snapshot

T0 = 1_741_996_800_000  # 2025-03-15T00:00:00Z
NOW = datetime(2025, 3, 20, tzinfo=UTC)
ACCOUNTS = [f"acct-{i}" for i in range(8)]
SCOPES = [
    EVERY_ACCOUNT,
    AccountScope(owner="ann"),
    AccountScope(segment="ent"),
    AccountScope(owner="ann", segment="ent"),
]
FILTERS = [
    AccountFilters(),
    AccountFilters(band="poor"),
    AccountFilters(segment="smb"),
    AccountFilters(plan="pro"),
    AccountFilters(owner="bob"),
    AccountFilters(min_score=30, max_score=70),
    AccountFilters(quiet_since=datetime(2025, 3, 10, 12, tzinfo=UTC)),
    AccountFilters(lifecycle="dormant"),
    AccountFilters(lifecycle="returning", min_active_days_7=3),
    AccountFilters(min_active_days_28=10),
    AccountFilters(max_active_days_28=10),
    AccountFilters(min_active_days_7=2, max_active_days_7=5),
    AccountFilters(onboarding_status="behind"),
    AccountFilters(onboarding_status="stuck", onboarding_active=True),
    AccountFilters(onboarding_active=True),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlReadModel]:
    model = SqlReadModel(url)
    yield model
    model.close()


def test_the_migrations_create_exactly_the_tables_the_store_uses(url: str) -> None:
    engine = engine_for(url)
    try:
        migrate(engine)
        migrate(engine)  # a second start finds it done
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert differences == []


def _store_at_revision(url: str, revision: str, insert: str, params: dict[str, Any]) -> None:
    """Migrate a new store up to ``revision`` only and run ``insert`` on it: rows an older API wrote."""
    engine = engine_for(url)
    try:
        config = Config()
        config.set_main_option("script_location", str(Path(sql_module.__file__).with_name("migrations")))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.execute(text(insert), params)
    finally:
        engine.dispose()


def test_rows_stored_before_the_lifecycle_migration_have_none_until_their_next_snapshot(url: str) -> None:
    _store_at_revision(
        url,
        "0004",
        "INSERT INTO accounts (account_id, at_ms, score, band, last_activity, poor, doc)"
        " VALUES ('old', 1, 50, 'average', '', false, :doc)",
        {"doc": orjson.dumps(snapshot("old", at="2025-03-01T00:00:00.000Z")).decode()},
    )
    store = SqlReadModel(url)  # migrates to the newest revision
    try:
        returning = AccountFilters(lifecycle="returning")
        assert _listed(store, AccountFilters(min_active_days_7=0), AccountSort.SCORE, EVERY_ACCOUNT) == [[]]
        later = {"status": "returning", "active_days_7": 2, "active_days_28": 2}
        store.apply_health("old", snapshot("old", at="2025-03-02T00:00:00.000Z", lifecycle=later))
        assert _listed(store, returning, AccountSort.SCORE, EVERY_ACCOUNT) == [["old"]]
    finally:
        store.close()


def test_rows_stored_before_the_onboarding_migration_have_none_until_their_next_snapshot(url: str) -> None:
    _store_at_revision(
        url,
        "0005",
        "INSERT INTO accounts (account_id, at_ms, score, band, last_activity, poor, doc)"
        " VALUES ('old', 1, 50, 'average', '', false, :doc)",
        {"doc": orjson.dumps(snapshot("old", at="2025-03-01T00:00:00.000Z", onboarding=True)).decode()},
    )
    store = SqlReadModel(url)  # migrates to the newest revision
    try:
        onboarding = AccountFilters(onboarding_active=True)
        stuck = AccountFilters(onboarding_status="stuck")
        assert _listed(store, onboarding, AccountSort.ONBOARDING_OVERDUE_DESC, EVERY_ACCOUNT) == [[]]
        later = {
            "active": True,
            "status": "stuck",
            "missing": [{"name": "invite", "due_at": "2025-03-01T00:00:00.000Z", "overdue_days": 3}],
            "done": 0,
            "total": 2,
        }
        store.apply_health("old", snapshot("old", at="2025-03-02T00:00:00.000Z", onboarding=later))
        assert _listed(store, stuck, AccountSort.ONBOARDING_OVERDUE_DESC, EVERY_ACCOUNT) == [["old"]]
        assert _listed(store, onboarding, AccountSort.SCORE, EVERY_ACCOUNT) == [["old"]]
        assert store.portfolio(NOW, scope=EVERY_ACCOUNT)["onboarding"]["by_status"] == {
            "on_track": 0,
            "behind": 0,
            "stuck": 1,
            "complete": 0,
        }
    finally:
        store.close()


def test_snapshots_stored_before_the_documents_migration_are_served_and_replaced_as_before(url: str) -> None:
    old = snapshot("old", at="2025-03-01T00:00:00.000Z")
    _store_at_revision(
        url,
        "0007",
        "INSERT INTO accounts (account_id, at_ms, score, band, last_activity, poor, doc)"
        " VALUES ('old', :at, 50, 'average', '', false, :doc)",
        {"at": instant_ms(old["at"]), "doc": orjson.dumps(old).decode()},
    )
    store = SqlReadModel(url)  # migrates to the newest revision: the document moves
    served = old | {"open_alerts": []}
    try:
        assert asyncio.run(store.get_account("old", scope=EVERY_ACCOUNT)) == served
        assert _listed(store, AccountFilters(), AccountSort.SCORE, EVERY_ACCOUNT) == [["old"]]
        with store._engine.connect() as conn:
            assert "doc" not in {c["name"] for c in inspect(conn).get_columns("accounts")}
        # An older snapshot leaves it, a newer one replaces it.
        store.apply_health("old", snapshot("old", score=10, at="2025-02-01T00:00:00.000Z"))
        assert asyncio.run(store.get_account("old", scope=EVERY_ACCOUNT)) == served
        newer = snapshot("old", score=10, at="2025-03-02T00:00:00.000Z")
        store.apply_health("old", newer)
        assert asyncio.run(store.get_account("old", scope=EVERY_ACCOUNT)) == newer | {"open_alerts": []}
        store.apply_health("old", None)
        assert asyncio.run(store.get_account("old", scope=EVERY_ACCOUNT)) is None
        assert store.counts()["account_documents"] == 0
    finally:
        store.close()


def test_accounts_stored_before_the_days_migration_are_counted_on_their_snapshots_day(url: str) -> None:
    _store_at_revision(
        url,
        "0006",
        "INSERT INTO accounts (account_id, at_ms, score, band, owner, last_activity, poor, doc)"
        " VALUES ('old', :at, 20, 'poor', 'ann', '', false, :doc)",
        {"at": T0 - 7 * 86_400_000, "doc": orjson.dumps(snapshot("old")).decode()},
    )
    store = SqlReadModel(url)  # migrates to the newest revision and counts the days
    try:
        weeks = store.portfolio_history(4, NOW, scope=AccountScope(owner="ann"))
        # Stored on Saturday 2025-03-08: in the weeks from 03-03 on, not before.
        assert [(str(w["week"]), w["by_band"]["poor"]) for w in weeks] == [
            ("2025-02-24", 0),
            ("2025-03-03", 1),
            ("2025-03-10", 1),
            ("2025-03-17", 1),
        ]
        store.apply_health("old", snapshot("old", band="good", at="2025-03-11T00:00:00.000Z"))
        assert store.portfolio_history(1, NOW, scope=EVERY_ACCOUNT)[0]["by_band"] == {
            "good": 1,
            "average": 0,
            "poor": 0,
        }
    finally:
        store.close()
    reopened = SqlReadModel(url)  # counted once: a second start changes nothing
    try:
        assert reopened.portfolio_history(1, NOW, scope=EVERY_ACCOUNT)[0]["accounts"] == 1
    finally:
        reopened.close()


def _at(i: int) -> str:
    return ms_to_rfc3339(T0 + i * 1000)


def test_a_snapshot_older_than_the_stored_one_changes_nothing_and_records_read_twice_count_once(
    store: SqlReadModel,
) -> None:
    newer = snapshot("acme", score=80, band="good", at=_at(10))
    older = snapshot("acme", score=10, band="poor", at=_at(5))
    quiet = alert("q1", "acme", detected_at=_at(9))
    for _ in range(2):
        asyncio.run(store.apply_batch(Batch(snapshots=[("acme", newer)], alerts=[quiet])))
    store.apply_health("acme", older)

    doc = asyncio.run(store.get_account("acme", scope=EVERY_ACCOUNT))
    assert doc is not None and doc["score"] == 80
    assert store.portfolio(NOW, scope=EVERY_ACCOUNT)["by_band"] == {"good": 1, "average": 0, "poor": 0}
    assert [a["alert_id"] for a in store.alerts(None, None, None, None, 10, scope=EVERY_ACCOUNT)[0]] == ["q1"]
    # Counted once: "accounts" and its band, over all accounts, its owner's, segment's and both's.
    assert store.counts()["accounts"] == 1 and store.counts()["portfolio_counts"] == 2 * 4


def test_in_one_batch_the_newest_snapshot_of_an_account_wins_and_a_tombstone_forgets_it(
    store: SqlReadModel,
) -> None:
    batch = Batch(
        snapshots=[
            ("a", snapshot("a", score=20, at=_at(2))),
            ("a", snapshot("a", score=90, at=_at(3))),
            ("a", snapshot("a", score=50, at=_at(1))),
            ("b", snapshot("b", score=40, at=_at(1))),
            ("b", None),
        ],
        positions={("health", 0): 5},
    )
    asyncio.run(store.apply_batch(batch))

    listed, _ = store.list_accounts(AccountFilters(), AccountSort.SCORE, None, 10, scope=EVERY_ACCOUNT)
    assert [(d["account_id"], d["score"]) for d in listed] == [("a", 90)]
    assert store.portfolio(NOW, scope=EVERY_ACCOUNT)["accounts"] == 1
    assert store.positions() == {("health", 0): 5}


def test_a_snapshot_after_a_tombstone_in_one_batch_is_stored_however_old_as_one_by_one(
    store: SqlReadModel,
) -> None:
    asyncio.run(store.apply_batch(Batch(snapshots=[("a", snapshot("a", score=80, band="good", at=_at(10)))])))
    # Forgotten, then back with an older snapshot: the in-memory model applies them one by one.
    again = snapshot("a", score=10, band="poor", at=_at(5))
    asyncio.run(store.apply_batch(Batch(snapshots=[("a", None), ("a", again)])))
    memory = InMemoryReadModel()
    for account_id, doc in [
        ("a", snapshot("a", score=80, band="good", at=_at(10))),
        ("a", None),
        ("a", again),
    ]:
        memory.apply_health(account_id, doc)

    for model in (store, memory):
        doc = asyncio.run(model.get_account("a", scope=EVERY_ACCOUNT))
        assert doc is not None and doc["score"] == 10
        assert model.portfolio(NOW, scope=EVERY_ACCOUNT)["by_band"] == {"good": 0, "average": 0, "poor": 1}
    assert [(d["day"], d["score"]) for d in store.history("a", 30, NOW, scope=EVERY_ACCOUNT) or []] == [
        (_at(5)[:10], 10)
    ]


def test_history_keeps_each_days_latest_score_for_history_days(url: str) -> None:
    store = SqlReadModel(url, history_days=3)
    try:
        day = 86_400_000
        for d in range(6):
            for hour, score in ((1, 10 * d), (2, 10 * d + 5)):
                at = ms_to_rfc3339(T0 + d * day + hour * 3_600_000)
                store.apply_health("acme", snapshot("acme", score=score, at=at))
        store.apply_health("acme", snapshot("acme", score=99, at=ms_to_rfc3339(T0 + 5 * day)))  # older
        rows = store.history("acme", 30, NOW, scope=EVERY_ACCOUNT)
        outside = store.history("acme", 30, NOW, scope=AccountScope(owner="bob"))
    finally:
        store.close()
    assert rows is not None
    assert [(r["day"], r["score"]) for r in rows] == [
        ("2025-03-18", 35),
        ("2025-03-19", 45),
        ("2025-03-20", 55),
    ]
    assert rows[0]["components"][0]["name"] == "recency"
    assert outside is None


def test_a_batch_keeps_each_day_it_holds_and_a_window_is_led_by_the_day_before_it(
    store: SqlReadModel,
) -> None:
    day, hour = 86_400_000, 3_600_000

    def at(ms: int) -> str:
        return ms_to_rfc3339(T0 + ms)

    memory = InMemoryReadModel()
    for model in (store, memory):
        model.apply_health("bob", snapshot("bob", score=20, at=at(-day)))
        batch = Batch(
            snapshots=[
                ("acme", snapshot("acme", score=70, at=at(hour))),
                ("acme", snapshot("acme", score=60, at=at(day + hour))),
                ("acme", snapshot("acme", score=55, at=at(day + 5 * hour))),  # the day's latest
                ("acme", snapshot("acme", score=40, at=at(3 * day + hour))),
                ("acme", snapshot("acme", score=99, at=at(2 * day))),  # older than acme's newest: a replay
                ("bob", snapshot("bob", score=25, at=at(2 * day))),
                ("bob", None),  # forgets bob's days, stored and in this batch
            ]
        )
        asyncio.run(model.apply_batch(batch))
        model.apply_health("bob", snapshot("bob", score=30, at=at(4 * day)))

    for model in (store, memory):
        whole = model.history("acme", 30, NOW, scope=EVERY_ACCOUNT)
        # The 4 days ending 2025-03-20 start on the 17th: the 16th's row is what the 17th showed.
        window = model.history("acme", 4, NOW, scope=EVERY_ACCOUNT)
        bob = model.history("bob", 30, NOW, scope=EVERY_ACCOUNT)
        assert whole is not None and window is not None and bob is not None
        assert [(r["day"], r["score"]) for r in whole] == [
            ("2025-03-15", 70),
            ("2025-03-16", 55),
            ("2025-03-18", 40),
        ]
        assert [(r["day"], r["at_ms"], r["band"]) for r in window] == [
            ("2025-03-16", T0 + day + 5 * hour, "average"),
            ("2025-03-18", T0 + 3 * day + hour, "average"),
        ]
        assert [(r["day"], r["score"]) for r in bob] == [("2025-03-19", 30)]
        assert model.history("nobody", 30, NOW, scope=EVERY_ACCOUNT) is None


def test_a_store_claimed_for_another_source_is_emptied(store: SqlReadModel) -> None:
    assert not store.claim("cluster-a")
    asyncio.run(store.apply_batch(Batch(snapshots=[("a", snapshot("a"))], positions={("h", 0): 1})))
    assert not store.claim("cluster-a")
    assert store.counts()["accounts"] == 1
    assert store.claim("cluster-b")
    assert store.counts() | {"meta": 0} == dict.fromkeys(store.counts(), 0)
    assert store.positions() == {}


def _index_names(store: SqlReadModel) -> set[str]:
    with store._engine.connect() as conn:
        return {
            str(i["name"])
            for table in metadata.sorted_tables
            for i in inspect(conn).get_indexes(table.name)
            if not i.get("duplicates_constraint")  # PostgreSQL's index of a unique constraint
        }


def test_a_fill_builds_the_accounts_indexes_and_counts_once_at_the_end_and_a_store_in_use_keeps_them(
    store: SqlReadModel,
) -> None:
    every = {str(i.name) for table in metadata.sorted_tables for i in table.indexes}
    of_accounts = {str(i.name) for i in metadata.tables["accounts"].indexes}
    assert _index_names(store) == every

    assert store.begin_fill()
    assert _index_names(store) == every - of_accounts
    docs = [snapshot(f"a{i}", score=90 - i, band="good" if i < 3 else "poor") for i in range(6)]
    asyncio.run(store.apply_batch(Batch(snapshots=[(d["account_id"], d) for d in docs])))
    # Without its indexes the store answers the same, by scanning; the portfolio is counted at the end.
    page, _ = store.list_accounts(
        AccountFilters(band="poor"), AccountSort.SCORE, None, 2, scope=EVERY_ACCOUNT
    )
    assert [d["account_id"] for d in page] == ["a5", "a4"]
    assert store.counts()["portfolio_counts"] == 0

    assert sorted(store.finish_fill()) == sorted(of_accounts)
    assert _index_names(store) == every
    assert store.portfolio(NOW, scope=EVERY_ACCOUNT)["by_band"] == {"good": 3, "average": 0, "poor": 3}
    # The days too, each account on its snapshot's day.
    assert store.portfolio_history(1, NOW, scope=EVERY_ACCOUNT)[0]["by_band"] == {
        "good": 3,
        "average": 0,
        "poor": 3,
    }
    assert store.finish_fill() == []
    # A store holding accounts is not one to fill: its indexes stay, and it counts as it goes.
    assert not store.begin_fill()
    assert _index_names(store) == every
    asyncio.run(store.apply_batch(Batch(snapshots=[("a0", {**docs[0], "band": "poor", "at": _at(9)})])))
    assert store.portfolio(NOW, scope=EVERY_ACCOUNT)["by_band"] == {"good": 2, "average": 0, "poor": 4}


def test_a_fill_cut_short_is_finished_by_the_next_start_counting_what_the_first_wrote(url: str) -> None:
    docs = [snapshot(f"a{i}", score=10 * i, band="poor" if i < 4 else "good") for i in range(8)]
    first = SqlReadModel(url)
    assert first.begin_fill()
    asyncio.run(first.apply_batch(Batch(snapshots=[(d["account_id"], d) for d in docs[:5]])))
    first.close()  # stopped before it caught up: no counts, no indexes

    second = SqlReadModel(url)
    try:
        assert second.begin_fill()  # not empty, but its fill was not finished
        asyncio.run(second.apply_batch(Batch(snapshots=[(d["account_id"], d) for d in docs[5:]])))
        assert len(second.finish_fill()) == len(metadata.tables["accounts"].indexes)
        assert second.portfolio(NOW, scope=EVERY_ACCOUNT)["by_band"] == {"good": 4, "average": 0, "poor": 4}
        assert not second.begin_fill()
    finally:
        second.close()


def test_the_days_of_the_portfolio_keep_53_weeks_and_answer_as_the_in_memory_model(
    store: SqlReadModel,
) -> None:
    memory = InMemoryReadModel()
    # Two accounts moving between bands every week for 70 weeks, applied a week per batch.
    for week in range(70):
        at = ms_to_rfc3339(T0 + week * 7 * 86_400_000)
        batch = Batch()
        for i, owner in enumerate(["ann", "bob"]):
            band = ("good", "average", "poor")[(week + i) % 3]
            doc = snapshot(f"w{i}", band=band, at=at, facts={"owner": owner, "segment": "smb", "arr": 100.0})
            memory.apply_health(f"w{i}", doc)
            batch.snapshots.append((f"w{i}", doc))
        asyncio.run(store.apply_batch(batch))
    now = datetime.fromtimestamp((T0 + 69 * 7 * 86_400_000) / 1000, UTC)

    for scope in SCOPES:
        assert store.portfolio_history(52, now, scope=scope) == memory.portfolio_history(52, now, scope=scope)
    weeks = store.portfolio_history(52, now, scope=EVERY_ACCOUNT)
    assert all(w["accounts"] == 2 for w in weeks)
    assert weeks[-1]["by_band"] == {"good": 1, "average": 1, "poor": 0}  # week 69: w0 good, w1 average
    assert weeks[-2]["by_band"] == {"good": 1, "average": 0, "poor": 1}  # week 68: w0 poor, w1 good
    assert weeks[0]["by_band"] == weeks[-1]["by_band"]  # week 18, from the rows folded before week 17
    # Each account changes 2 band rows and 2 ARR rows a week in 4 scopes: 53 weeks of them and one folded
    # row per value before, never 70 weeks.
    assert store.counts()["portfolio_days"] <= 53 * 2 * 2 * 2 * 4 + 3 * 2 * 4


def _revenue(account_id: str, band: str, at: str, **facts: Any) -> dict[str, Any]:
    return snapshot(account_id, band=band, at=at, facts={"owner": "ann", "segment": "ent", **facts})


def test_arr_sums_follow_each_snapshot_and_lists_sort_by_arr_and_renewal(store: SqlReadModel) -> None:
    memory = InMemoryReadModel()
    records = [
        ("a", _revenue("a", "poor", _at(1), arr=5000, currency="EUR", renewal_at="2025-06-01T00:00:00.000Z")),
        ("b", _revenue("b", "average", _at(2), arr=7000, currency="EUR")),
        ("c", _revenue("c", "poor", _at(3), renewal_at="2025-04-01T00:00:00.000Z")),
        ("b", _revenue("b", "poor", _at(4), arr=9000, currency="EUR")),  # moves band and ARR
        ("a", None),  # forgotten
        ("d", _revenue("d", "good", _at(5), arr=9000, currency="USD", renewal_at="2025-05-01T00:00:00.000Z")),
    ]
    for account_id, doc in records:
        store.apply_health(account_id, doc)
        memory.apply_health(account_id, doc)

    for model in (store, memory):
        arr = model.portfolio(NOW, scope=AccountScope(owner="ann"))["arr"]
        assert arr["at_risk"] == {"EUR": 9000}
        assert arr["by_band"] == {"good": {"USD": 9000}, "average": {}, "poor": {"EUR": 9000}}
        # Equal ARR: by account id, descending like the ARR; without ARR last.
        assert _listed(model, AccountFilters(), AccountSort.ARR_DESC, EVERY_ACCOUNT) == [["d", "b", "c"]]
        # Soonest renewal first; without one last.
        assert _listed(model, AccountFilters(), AccountSort.RENEWAL, EVERY_ACCOUNT) == [["c", "d", "b"]]


# -- the same answers as the in-memory model ---------------------------------------------------------

_owners = st.sampled_from(["ann", "bob", None])
_segments = st.sampled_from(["smb", "ent", None])
_days = st.one_of(st.none(), st.integers(1, 28).map(lambda d: f"2025-03-{d:02d}T08:00:00.000Z"))
_months = st.one_of(
    st.none(), st.integers(1, 14).map(lambda m: f"{2024 + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}-05T10:00:00Z")
)

# No block (a snapshot written before lifecycles), or one with or without a status and a 28-day count.
_lifecycles: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "lifecycle": st.fixed_dictionaries(
                {
                    "status": st.sampled_from([None, "new", "returning", "resurrecting", "dormant"]),
                    "active_days_7": st.integers(0, 7),
                    "active_days_28": st.one_of(st.none(), st.integers(0, 28)),
                }
            )
        }
    ),
)

_milestone_missing = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["invite", "report"]),
        "due_at": st.just("2025-03-01T00:00:00.000Z"),
        "overdue_days": st.integers(0, 40),
    }
)
# The boolean of snapshots written before milestones, or the object with or without a status and missing
# milestones.
_onboardings: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"onboarding": st.booleans()}),
    st.fixed_dictionaries(
        {
            "onboarding": st.fixed_dictionaries(
                {
                    "active": st.booleans(),
                    "status": st.sampled_from([None, "on_track", "behind", "stuck", "complete"]),
                    "reached": st.just([]),
                    "missing": st.lists(_milestone_missing, max_size=2),
                    "next": st.none(),
                    "done": st.integers(0, 3),
                    "total": st.just(3),
                }
            )
        }
    ),
)


@st.composite
def _snapshot(draw: st.DrawFn, account_id: str) -> dict[str, Any]:
    score = draw(st.integers(0, 100))
    return snapshot(
        account_id,
        score=score,
        band="poor" if score < 40 else "average" if score < 70 else "good",
        last_activity_at=draw(_days),
        facts={
            "name": account_id,
            "owner": draw(_owners),
            "segment": draw(_segments),
            "plan": draw(st.sampled_from(["pro", "free"])),
            # Halves round to even: the same whole units in memory and in SQL.
            "arr": draw(st.one_of(st.none(), st.integers(0, 3).map(lambda n: n * 1000.5), st.just(0))),
            "currency": draw(st.sampled_from([None, "EUR", "USD"])),
            "renewal_at": draw(_days),
        },
        episodes={"quiet_since": draw(_days), "drop_since": draw(_days), "poor": draw(st.booleans())},
        subscription={"status": None, "started_at": draw(_months), "cancelled_at": draw(_months)},
        nps={"score": draw(st.one_of(st.none(), st.integers(0, 10))), "at": None},
        **draw(_lifecycles),
        **draw(_onboardings),
    )


@st.composite
def _records(draw: st.DrawFn) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for n in range(draw(st.integers(1, 40))):
        account = draw(st.sampled_from(ACCOUNTS))
        what = draw(st.sampled_from(["snapshot", "snapshot", "snapshot", "tombstone", "alert", "gap"]))
        if what == "snapshot":
            out.append(("health", (account, {**draw(_snapshot(account)), "at": _at(n)})))
        elif what == "tombstone":
            out.append(("health", (account, None)))
        else:
            kind = draw(st.sampled_from(["account_quiet", "usage_drop", "health_degraded"]))
            since = draw(_days)
            doc = alert(
                f"al-{draw(st.integers(0, 30))}",
                account,
                kind if what == "alert" else "data_gap",
                detected_at=_at(n),
                evidence={"episode_started_at": since},
                account={"owner": draw(_owners), "segment": draw(_segments)},
            )
            if what == "gap":  # an operations alert: no account
                doc["account_id"] = None
            out.append(("alerts", doc))
    return out


def _pages(fetch: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        items, cursor = fetch(cursor)
        pages.append([d.get("alert_id") or d["account_id"] for d in items])
        if cursor is None:
            return pages


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(records=_records(), fill=st.booleans(), split=st.integers(0, 40))
def test_every_query_answers_as_the_in_memory_model(
    records: list[tuple[str, Any]], fill: bool, split: int, store: SqlReadModel
) -> None:
    store.clear()
    memory = InMemoryReadModel()
    batches = [Batch(), Batch()]
    for n, (topic, item) in enumerate(records):
        batch = batches[n >= split]
        if topic == "health":
            memory.apply_health(*item)
            batch.snapshots.append(item)
        else:
            memory.apply_alert(item)
            batch.alerts.append(item)
    # One record at a time into memory, two batches (snapshots first in each) into the store, as it
    # goes or as a fill from empty: the same result.
    if fill:
        assert store.begin_fill()
    for batch in batches:
        asyncio.run(store.apply_batch(batch))
    store.finish_fill()

    for scope in SCOPES:
        for sort in AccountSort:
            for filters in FILTERS:
                assert _listed(store, filters, sort, scope) == _listed(memory, filters, sort, scope), (
                    scope,
                    sort,
                    filters,
                )
        assert store.portfolio(NOW, scope=scope) == memory.portfolio(NOW, scope=scope)
        assert store.portfolio_history(2, NOW, scope=scope) == memory.portfolio_history(2, NOW, scope=scope)
        assert store.owners(scope=scope) == memory.owners(scope=scope)
        for kind, account in ((None, None), ("account_quiet", None), (None, ACCOUNTS[0])):
            assert _feed(store, kind, account, scope) == _feed(memory, kind, account, scope)
        for account_id in ACCOUNTS:
            assert asyncio.run(store.get_account(account_id, scope=scope)) == asyncio.run(
                memory.get_account(account_id, scope=scope)
            )
            assert store.history(account_id, 30, NOW, scope=scope) == memory.history(
                account_id, 30, NOW, scope=scope
            )


def _listed(model: Any, filters: AccountFilters, sort: AccountSort, scope: AccountScope) -> list[list[str]]:
    return _pages(lambda c: model.list_accounts(filters, sort, c, 3, scope=scope))


def _feed(model: Any, kind: str | None, account: str | None, scope: AccountScope) -> list[list[str]]:
    return _pages(lambda c: model.alerts(None, kind, account, c, 2, scope=scope))


def test_a_store_that_cannot_be_opened_says_where_and_why_but_never_its_password() -> None:
    with pytest.raises(StoreError) as refused:
        SqlReadModel("postgresql://churnwatch:hunter2@127.0.0.1:1/churnwatch")
    with pytest.raises(StoreError) as unknown:
        SqlReadModel("mysql://db/churnwatch")

    assert str(refused.value).startswith(
        "cannot open the read store at postgresql://churnwatch:***@127.0.0.1:1/churnwatch: "
    )
    assert "Connection refused" in str(refused.value) and "hunter2" not in str(refused.value)
    assert str(unknown.value) == (
        "cannot open the read store at mysql://db/churnwatch: "
        "use sqlite:///<path> or postgresql://<user>:<password>@<host>:<port>/<database>"
    )


def test_postgresql_compresses_the_documents_with_lz4(postgres_url: str) -> None:
    store = SqlReadModel(postgres_url)
    try:
        with store._engine.connect() as conn:
            methods = conn.exec_driver_sql(
                "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute"
                " WHERE attname IN ('doc', 'components') AND attrelid::regclass::text IN"
                " ('account_documents', 'history', 'alerts', 'latest_alerts') ORDER BY 1"
            ).all()
    finally:
        store.close()
    assert [tuple(m) for m in methods] == [
        ("account_documents", "doc", "l"),
        ("alerts", "doc", "l"),
        ("history", "components", "l"),
        ("latest_alerts", "doc", "l"),
    ]


def test_lookups_run_side_by_side_and_on_the_next_event_loop_too(store: SqlReadModel) -> None:
    for i, account_id in enumerate(ACCOUNTS):
        store.apply_health(account_id, snapshot(account_id, score=10 + i))

    async def look_up_all() -> list[int | None]:
        docs = await asyncio.gather(
            *(store.get_account(a, scope=EVERY_ACCOUNT) for a in [*ACCOUNTS, "nobody"] * 3)
        )
        return [None if d is None else d["score"] for d in docs]

    expected = [*range(10, 10 + len(ACCOUNTS)), None] * 3
    assert asyncio.run(look_up_all()) == expected
    # Connections opened on the first loop are not used on the next one.
    assert asyncio.run(look_up_all()) == expected


def test_an_id_with_a_nul_character_finds_no_account(store: SqlReadModel) -> None:
    store.apply_health("acme", snapshot("acme"))

    assert asyncio.run(store.get_account("acme\x00", scope=EVERY_ACCOUNT)) is None


def test_a_lookup_on_a_connection_the_server_closed_raises_the_error_the_api_answers_503_for(
    postgres_url: str,
) -> None:
    store = SqlReadModel(postgres_url)

    def close_the_other_connections() -> None:
        with store._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    async def look_up() -> list[str]:
        outcomes = []
        for _ in range(3):
            try:
                doc = await store.get_account("acme", scope=EVERY_ACCOUNT)
                outcomes.append("found" if doc is not None else "none")
            except OperationalError:
                outcomes.append("refused")
            if len(outcomes) == 1:
                close_the_other_connections()
        return outcomes

    try:
        store.apply_health("acme", snapshot("acme"))
        # The connection closed fails its lookup; the next one opens another.
        assert asyncio.run(look_up()) == ["found", "refused", "found"]
    finally:
        store.close()
