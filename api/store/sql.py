"""The read model in a database: SQLite on disk (the default) or PostgreSQL (shared by replicas).

Every list, filter and sort the API offers is an indexed read (see :mod:`api.store.schema`), so a page
does not cost more as the portfolio grows, and the process holds no account in memory.

Writes come in batches from the loader (:class:`api.kafka_readmodel.KafkaReadModel`), each in one
transaction with the offsets it was read up to: a restart resumes after the last batch written, and
a crash between a write and its offsets cannot happen. Applying a batch twice changes nothing: a
snapshot replaces an account's only if it is as new or newer (snapshot time), an alert is kept once by
its id. Several writers (API replicas on one PostgreSQL) may apply the same records.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, DropIndex

from api.errors import first_line
from api.portfolio import (
    PortfolioKey,
    currency_of,
    figures_from_marginals,
    instant_ms,
    nps_class,
)
from api.portfolio_history import (
    Counted,
    DayKey,
    counted_of,
    day_deltas,
    day_of_ms,
    fold_before,
    kept_from,
    scope_of,
    scopes_of,
    weekly_figures,
)
from api.query import (
    AccountFilters,
    AccountSort,
    InvalidCursor,
    alert_position,
    alerts_cursor,
    encode_cursor,
    sort_cursor,
    sort_key,
)
from api.readmodel import (
    AlertSubscribers,
    Batch,
    Doc,
    LoadProgress,
    Page,
    detected_ms,
    history_row,
    history_window,
    open_alerts,
)
from api.restrictions import AccountScope
from api.store import schema as t
from api.store.lookups import AsyncLookups
from api.store.rows import (
    HISTORY_DAY,
    SnapshotRows,
    account_params,
    account_row,
    document_params,
    dumps,
    facts_of,
    history_params,
    text_of,
)

log = logging.getLogger("churnwatch.api.store")

_CHUNK = 500  # ids per IN (...) list
_SOURCE = "source"  # the meta key naming the cluster and topics the store was filled from
_FILLING = "filling"  # the meta key of a fill from empty not yet finished (see begin_fill)
# The meta key migration 0006 leaves: the days of the portfolio are to be counted from the accounts stored.
_COUNT_DAYS = "count_portfolio_days"
_DAY_MS = 86_400_000
_BUILD_MMAP_BYTES = 1 << 40  # as much of the file as SQLite maps (its limit is lower)
_CHECKPOINT_PAGES = 20_000  # SQLite's WAL is checkpointed at this many pages (160 MB of 8 KiB)
_SEEN_BITS = 1 << 26  # the filter of the accounts a fill has written (8 MiB), see _first_seen
_BUILD_MEMORY = "256MB"  # PostgreSQL's work_mem and maintenance_work_mem while a fill is finished
_MIGRATION_LOCK = 0x636877  # PostgreSQL advisory lock: one replica migrates at a time

# A count of the stored accounts: the portfolio counts and their ARR sums, the days and theirs.
_Recount = tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]], Counter[DayKey], Counter[DayKey]]


@contextmanager
def _mapped(conn: Connection) -> Iterator[None]:
    """A SQLite connection that reads the whole table (an index build, a count) with the file mapped:
    its pages are not copied into SQLite's cache one by one (a third less time). Unmapped after."""
    conn.exec_driver_sql(f"PRAGMA mmap_size={_BUILD_MMAP_BYTES}")
    try:
        yield
    finally:
        conn.exec_driver_sql("PRAGMA mmap_size=0")


class StoreError(RuntimeError):
    """The store cannot be opened: not a store URL, unreachable, refused, or not migratable."""


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by the "begin" listener (pysqlite's own would defer them oddly).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        # A new store's pages (a no-op on an existing file): a snapshot of about 2.5 KB fills a 4 KB
        # page alone, three share an 8 KB one. At 1,000,000 accounts: 4.9 GB instead of 6.5 GB.
        "page_size=8192",
        "journal_mode=WAL",
        "synchronous=NORMAL",
        # The WAL is copied into the file (and both synced) every 160 MB written rather than every
        # 8 MB: a fill of 1,000,000 accounts loaded in 73 s instead of 86 s.
        f"wal_autocheckpoint={_CHECKPOINT_PAGES}",
        "busy_timeout=30000",
        "cache_size=-32768",  # 32 MiB of pages per connection
        "temp_store=MEMORY",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock at BEGIN, so two writers queue (busy_timeout) instead of failing.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def engine_for(url: str) -> Engine:
    """An engine for a ``sqlite:///path`` or ``postgresql://…`` URL (psycopg 3 as the driver)."""
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": dumps, "json_deserializer": orjson.loads}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError(
                f"store_url {url!r}: SQLite needs a file path, e.g. sqlite:///.local/api/store.db"
            )
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, **options)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, **options)
    raise ValueError("use sqlite:///<path> or postgresql://<user>:<password>@<host>:<port>/<database>")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic; a no-op when it is there already)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _floor_ms(at: datetime) -> int:
    return math.floor(at.timestamp() * 1000)


def _ceil_ms(at: datetime) -> int:
    return math.ceil(at.timestamp() * 1000)


_COUNTED = (
    "owner",
    "segment",
    "band",
    "started_month",
    "cancelled_month",
    "nps_score",
    "lifecycle",
    "onboarding_status",
    "onboarding_active",
    "quiet_since",
)
_COUNTED_ALSO = ("drop_since", "poor", "arr", "currency")


def _portfolio_key(row: Mapping[Any, Any]) -> PortfolioKey:
    return PortfolioKey(
        band=row["band"],
        started_month=row["started_month"],
        cancelled_month=row["cancelled_month"],
        nps_class=nps_class(row["nps_score"]),
        quiet=bool(row["quiet_since"]),
        dropping=bool(row["drop_since"]),
        poor=bool(row["poor"]),
        arr=None if row["arr"] < 0 else row["arr"],
        currency=currency_of(row["currency"]),
        lifecycle=row["lifecycle"],
        onboarding_status=row["onboarding_status"],
        onboarding_active=bool(row["onboarding_active"]),
    )


def _scopes(owner: str | None, segment: str | None) -> tuple[tuple[Any, ...], ...]:
    """The scopes an account of ``owner`` and ``segment`` counts in: all accounts, its owner's, its
    segment's and both's."""
    return (
        (False, None, False, None),
        (True, owner, False, None),
        (False, None, True, segment),
        (True, owner, True, segment),
    )


def _count(
    counts: Counter[tuple[Any, ...]],
    sums: Counter[tuple[Any, ...]],
    row: Mapping[str, Any],
    sign: int,
) -> None:
    """Add (``sign`` 1) or take away (-1) what an ``accounts`` row counts under ``portfolio_counts``: each
    of its marginals (:meth:`PortfolioKey.marginals`) in each of its scopes, and its ARR to their sums."""
    key = _portfolio_key(row)
    for scope in _scopes(row["owner"], row["segment"]):
        for dim, value in key.marginals():
            counts[*scope, dim, value] += sign
            sums[*scope, dim, value] += sign * key.arr_of(dim)


def _count_row(key: tuple[Any, ...], delta: int, arr: int) -> dict[str, Any]:
    by_owner, owner, by_segment, segment, dimension, value = key
    return {
        "key": dumps(list(key)),
        "by_owner": by_owner,
        "owner": owner,
        "by_segment": by_segment,
        "segment": segment,
        "dimension": dimension,
        "value": value,
        "accounts": delta,
        "arr": arr,
    }


def _day_row(key: DayKey, delta: int, arr: int) -> tuple[Any, ...]:
    """The ``portfolio_days`` row (parameters in column order) of a change."""
    return (dumps(list(key)), *key, delta, arr)


def _counted(row: Mapping[Any, Any]) -> Counted:
    """How a stored ``accounts`` row counts in ``portfolio_days``."""
    return Counted(int(row["at_ms"]), row["owner"], row["segment"], _portfolio_key(row))


def _kept_days(
    snapshots: Iterable[tuple[str, tuple[int, str, tuple[Any, ...]] | None]], stored_ms: Mapping[str, int]
) -> tuple[list[tuple[Any, ...]], set[str]]:
    """The ``history`` rows to write of a batch's snapshots, each given as its account and its time,
    UTC day and row (None: a tombstone), read in order: each snapshot not older than its account's
    newest (stored, or earlier in the batch), the latest of each day, every day of the batch kept (a
    backlog read in one batch holds several days of an account); and the accounts a tombstone forgot,
    whose stored days go. As :class:`~api.readmodel.InMemoryReadModel` applies them one by one."""
    newest = dict(stored_ms)
    days: dict[str, dict[str, tuple[Any, ...]]] = {}
    forgotten: set[str] = set()
    for account_id, snapshot in snapshots:
        if snapshot is None:
            forgotten.add(account_id)
            newest.pop(account_id, None)
            days.pop(account_id, None)
            continue
        at_ms, day, row = snapshot
        if at_ms < newest.get(account_id, -1):
            continue
        newest[account_id] = at_ms
        days.setdefault(account_id, {})[day] = row
    return [row for held in days.values() for row in held.values()], forgotten


def _history_days(
    snapshots: Sequence[tuple[str, Doc | None]], stored_ms: Mapping[str, int]
) -> tuple[list[tuple[Any, ...]], set[str]]:
    """:func:`_kept_days` of a batch's snapshots, with the times of the accounts' stored snapshots."""

    def day_of(account_id: str, doc: Doc) -> tuple[int, str, tuple[Any, ...]]:
        at_ms = instant_ms(doc.get("at")) or 0
        row = history_row(doc, at_ms)
        return at_ms, row["day"], history_params({**row, "account_id": account_id})

    return _kept_days(((i, None if d is None else day_of(i, d)) for i, d in snapshots), stored_ms)


def _history_of_rows(
    snapshots: Sequence[tuple[str, SnapshotRows | None]],
) -> tuple[list[tuple[Any, ...]], set[str]]:
    """:func:`_kept_days` of snapshots turned into rows beforehand, in a fill (nothing stored to be
    newer)."""
    return _kept_days(((i, None if r is None else (r.at_ms, r.day, r.history)) for i, r in snapshots), {})


def _seen_bit(account_id: str) -> tuple[int, int]:
    """The byte and the bit mask of ``account_id`` in a fill's filter (see SqlReadModel._first_seen)."""
    bit = hash(account_id) % _SEEN_BITS
    return bit >> 3, 1 << (bit & 7)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class Upsert:
    """An INSERT of all of a table's columns (rows as parameters in column order) that, on a row with
    the same conflict columns, sets every other column to its new value (or as ``update`` says), where
    ``where`` holds. The rows of one call must differ in the conflict columns (PostgreSQL's rule for one
    statement).

    On SQLite the driver's ``executemany`` (a call within the process per row). On PostgreSQL the rows
    are copied (``COPY``) into a temporary table of the session and moved from there by one statement:
    no parse, plan and executor set-up on the server per row, and psycopg formats the rows in C (binary
    ``COPY``: the server parses no text either). A fill of 1,000,000 accounts took 140 s instead of
    173 s with ``executemany``. The move reads the temporary table and a ``DELETE`` empties it after:
    moving the rows through ``DELETE … RETURNING`` held a batch's documents (about 12 MB) in a tuple
    store, written to a temporary file past ``work_mem``.

    :meth:`insert` copies rows that have no row in the table straight into it."""

    def __init__(
        self,
        table: Table,
        conflict: Sequence[str],
        dialect: Dialect,
        *,
        update: Mapping[str, str] | None = None,
        where: str | None = None,
    ) -> None:
        """The upsert into ``table`` for the ``dialect`` (SQLite's or PostgreSQL's)."""
        names = [c.name for c in table.c]
        sets = update or {n: f'excluded."{n}"' for n in names if n not in conflict}

        def quoted(items: Iterable[str]) -> str:
            return ", ".join(f'"{n}"' for n in items)

        columns = quoted(names)
        self._copied = dialect.name == "postgresql"
        if self._copied:
            incoming = f'"{table.name}_incoming"'
            # JSON arrives as text, stored as it is (no check, and no compression of rows up to the
            # most a page holds) until the move checks and compresses it once, into the table.
            types = ["text" if isinstance(c.type, JSON) else c.type.compile(dialect=dialect) for c in table.c]
            definitions = ", ".join(f'"{n}" {t}' for n, t in zip(names, types, strict=True))
            self._create = (
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {incoming} ({definitions})"
                " WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS"
            )
            self._copy = f"COPY {incoming} ({columns}) FROM STDIN (FORMAT BINARY)"
            self._copy_in = f'COPY "{table.name}" ({columns}) FROM STDIN (FORMAT BINARY)'
            self._types = [t.split(" COLLATE ")[0].lower() for t in types]
            moved = ", ".join(
                f'"{n}"::json' if isinstance(c.type, JSON) else f'"{n}"'
                for n, c in zip(names, table.c, strict=True)
            )
            rows = f"SELECT {moved} FROM {incoming}"  # noqa: S608 - no input
            self._empty = f"DELETE FROM {incoming}"  # noqa: S608 - no input
        else:
            rows = f"VALUES ({', '.join(['?'] * len(names))})"
        assignments = ", ".join(f'"{n}" = {v}' for n, v in sets.items())
        self.text = (
            f'INSERT INTO "{table.name}" ({columns}) {rows}'  # noqa: S608 - no input
            f" ON CONFLICT ({quoted(conflict)}) DO UPDATE SET {assignments}"
        )
        if where:
            self.text += f" WHERE {where}"

    def __call__(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write ``rows`` through ``conn``."""
        if not rows:
            return
        if not self._copied:
            conn.exec_driver_sql(self.text, list(rows))
            return
        driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
        with driver.cursor() as cursor:
            # Every time: a transaction that created it and rolled back took it along. It is emptied
            # after the move (a second call in the transaction finds it empty), and a commit does too.
            cursor.execute(self._create)
            self._copy_rows(cursor, self._copy, rows)
            cursor.execute(self.text)
            cursor.execute(self._empty)

    def insert(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write ``rows``, none of which has a row in the table (PostgreSQL: one ``COPY`` into it, which
        fails with :class:`psycopg.errors.UniqueViolation` on a row that does; SQLite: upserted)."""
        if not rows:
            return
        if not self._copied:
            self(conn, rows)
            return
        driver = cast("psycopg.Connection[Any]", conn.connection.driver_connection)
        with driver.cursor() as cursor:
            self._copy_rows(cursor, self._copy_in, rows)

    def _copy_rows(
        self, cursor: psycopg.Cursor[Any], statement: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Send ``rows`` through the binary ``COPY … FROM STDIN`` ``statement``."""
        with cursor.copy(statement) as copy:
            copy.set_types(self._types)
            for row in rows:
                copy.write_row(row)


class SqlReadModel(LoadProgress):
    """The :class:`~api.readmodel.ReadModel` over the read store at ``url``."""

    def __init__(
        self, url: str, *, alert_buffer: int = 10_000, history_days: int = 120, ready: bool = True
    ) -> None:
        """Open (and migrate) the store at ``url``, keeping ``alert_buffer`` alerts for the feed and
        ``history_days`` days of daily scores."""
        try:
            self._engine = engine_for(url)
            migrate(self._engine)
        except (SQLAlchemyError, ValueError, OSError) as exc:
            try:
                where = make_url(url).render_as_string(hide_password=True)
            except ArgumentError:
                where = "the URL given"
            raise StoreError(f"cannot open the read store at {where}: {first_line(exc)}") from exc
        self.dialect = self._engine.dialect.name
        # The latest snapshot and the newest alert of each kind, as JSON text.
        cast, mark = ("::text", "%s") if self.dialect == "postgresql" else ("", "?")
        self._lookup_sql = (
            f"SELECT d.doc{cast}, l.doc{cast} FROM account_documents d LEFT JOIN latest_alerts l"  # noqa: S608 - no input
            f" ON l.account_id = d.account_id WHERE d.account_id = {mark}"
        )
        # An older snapshot read again (a replay, or a replica behind) leaves the newer one.
        self._upsert_account = Upsert(
            t.accounts, ["account_id"], self._engine.dialect, where='excluded."at_ms" >= "accounts"."at_ms"'
        )
        self._upsert_document = Upsert(
            t.account_documents,
            ["account_id"],
            self._engine.dialect,
            where='excluded."at_ms" >= "account_documents"."at_ms"',
        )
        self._upsert_history = Upsert(
            t.history,
            ["account_id", "day"],
            self._engine.dialect,
            where='excluded."at_ms" >= "history"."at_ms"',
        )
        self._add_counts = Upsert(
            t.portfolio_counts,
            ["key"],
            self._engine.dialect,
            update={
                "accounts": '"portfolio_counts"."accounts" + excluded."accounts"',
                "arr": '"portfolio_counts"."arr" + excluded."arr"',
            },
        )
        self._add_days = Upsert(
            t.portfolio_days,
            ["key"],
            self._engine.dialect,
            update={
                "accounts": '"portfolio_days"."accounts" + excluded."accounts"',
                "arr": '"portfolio_days"."arr" + excluded."arr"',
            },
        )
        self._days_from = ""  # the first day kept apart in portfolio_days (see kept_from)
        self._local = threading.local()
        self._lookups: list[Any] = []
        self._remote: AsyncLookups | None = None
        if self.dialect == "postgresql":
            # Each lookup its own snapshot (autocommit), none held open.
            conninfo = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._remote = AsyncLookups(conninfo, self._lookup_sql.replace("%s", "$1"))
        self.alert_buffer = alert_buffer
        self.history_days = history_days
        self._history_cutoff = ""
        self._filling = False
        # While this process fills an empty PostgreSQL store: the accounts it may have written (see
        # _first_seen).
        self._seen: bytearray | None = None
        self._subscribers = AlertSubscribers()
        super().__init__(ready)
        self._count_days_after_migration()

    def _count_days_after_migration(self) -> None:
        m = t.meta.c
        with self._writing() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            if conn.execute(select(m.value).where(m.key == _COUNT_DAYS)).first() is None:
                return
            if conn.execute(select(m.value).where(m.key == _FILLING)).first() is None:
                self._recount(conn)  # a fill cut short counts both when it is finished
            conn.execute(delete(t.meta).where(m.key == _COUNT_DAYS))

    # -- ReadModel: lifecycle ------------------------------------------------------------------------

    async def stop(self) -> None:  # see ReadModel
        self.close()

    def close(self) -> None:
        """Close the store's connections."""
        for conn in self._lookups:
            conn.close()
        self._lookups.clear()
        self._local = threading.local()
        if self._remote is not None:
            self._remote.close()
        self._engine.dispose()

    @property
    def subscribers(self) -> int:
        """Live alert subscriptions."""
        return len(self._subscribers)

    # -- writes ------------------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    def _insert(self, table: Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each topic partition, as stored with what was read before it."""
        o = t.offsets.c
        with self._engine.connect() as conn:
            return {
                (r.topic, r.partition): r.next_offset
                for r in conn.execute(select(o.topic, o.partition, o.next_offset))
            }

    def claim(self, source: str) -> bool:
        """Make the store the projection of ``source`` (the cluster and topics a loader reads): one
        filled from another is emptied first. Returns whether it was."""
        m = t.meta.c
        with self._writing() as conn:
            known = conn.execute(select(m.value).where(m.key == _SOURCE)).scalar_one_or_none()
            if known == source:
                return False
            if known is not None:
                for table in t.DATA_TABLES:
                    conn.execute(delete(table))
                self._days_from = ""
            upsert = self._insert(t.meta)
            conn.execute(
                upsert.on_conflict_do_update(index_elements=["key"], set_={"value": upsert.excluded.value}),
                {"key": _SOURCE, "value": source},
            )
            return known is not None

    def clear(self) -> None:
        """Empty the store (its topics were re-created: what it holds is of records gone)."""
        with self._writing() as conn:
            for table in t.DATA_TABLES:
                conn.execute(delete(table))
        self._days_from = ""

    def begin_fill(self) -> bool:
        """Before filling an empty store (or going on with a fill cut short): drop the accounts'
        secondary indexes and stop counting the portfolio row by row; :meth:`finish_fill` builds both
        once the fill has caught up. Building an index over a million rows costs a fraction of keeping
        twenty of them up to date row by row (random inserts that miss the cache), and one count over
        the finished table a fraction of a count per snapshot. A store in use is left as it is.
        Returns whether the store is filling."""
        a, m = t.accounts.c, t.meta.c
        with self._writing() as conn:
            marked = conn.execute(select(m.value).where(m.key == _FILLING)).first() is not None
            if not marked:
                if conn.execute(select(a.account_id).limit(1)).first() is not None:
                    return False
                conn.execute(self._insert(t.meta).values(key=_FILLING, value="1"))
                if self.dialect == "postgresql":
                    self._seen = bytearray(-(-_SEEN_BITS // 8))
            for index in t.accounts.indexes:
                conn.execute(DropIndex(index, if_exists=True))
        self._filling = True
        return True

    def finish_fill(self) -> list[str]:
        """Finish a fill: count the portfolio over the accounts stored (if this store was filling, or
        another replica's fill was cut short), then create every index of the schema that is missing
        (after a fill, or one cut short by a crash). Returns the names of the indexes it created.
        Replicas sharing a PostgreSQL store take turns."""
        created: list[str] = []
        m = t.meta.c
        with self._writing() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                # The count's groups (about one per account) and each index's sort in memory, not in
                # temporary files: at 100,000 accounts the count's query took half the time with 64 MB
                # than with the default 4 MB. For this transaction only.
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{_BUILD_MEMORY}'")
                conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{_BUILD_MEMORY}'")
            marked = conn.execute(select(m.value).where(m.key == _FILLING)).first() is not None
            # The count reads the accounts (committed, as the fill wrote them) through a connection of
            # its own in another thread while this one builds the indexes: its grouping is Python, an
            # index build is the database's (finishing a fill of 1,000,000 accounts, one after the
            # other: 31 s counting, 95 s building).
            with ThreadPoolExecutor(1, thread_name_prefix="churnwatch-store-count") as counter:
                counting = counter.submit(self._count_apart) if self._filling or marked else None
                present = {
                    index["name"]
                    for table in t.metadata.sorted_tables
                    for index in inspect(conn).get_indexes(table.name)
                }
                missing = [
                    i for table in t.metadata.sorted_tables for i in table.indexes if i.name not in present
                ]
                with _mapped(conn) if missing and self.dialect == "sqlite" else nullcontext():
                    for index in missing:
                        conn.execute(CreateIndex(index))
                        created.append(str(index.name))
            if counting is not None:
                self._write_recount(conn, counting.result())
                conn.execute(delete(t.meta).where(m.key == _FILLING))
        if created and self.dialect == "postgresql":
            # After a bulk load: statistics for the planner and the visibility map for index-only
            # scans now, rather than an autovacuum of every row while the API answers.
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE) accounts, account_documents, history")
        if created or self._filling:
            # The fill's connections go, and with them what they cached of it (SQLite keeps up to
            # 32 MiB of pages per connection): the next reads open new ones.
            self._engine.dispose()
        self._filling = False
        self._seen = None
        return created

    def _count_apart(self) -> _Recount:
        """:meth:`_count_stored` through a connection of its own."""
        with self._engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{_BUILD_MEMORY}'")
                return self._count_stored(conn)
            with _mapped(conn):
                return self._count_stored(conn)

    def _recount(self, conn: Connection) -> None:
        """Replace the portfolio counts and days by a count of the accounts stored (:meth:`_count_stored`)."""
        self._write_recount(conn, self._count_stored(conn))

    def _write_recount(self, conn: Connection, recount: _Recount) -> None:
        """Replace the portfolio counts and days by ``recount``."""
        counts, sums, days, day_sums = recount
        conn.execute(delete(t.portfolio_counts))
        self._write_counts(conn, counts, sums)
        conn.execute(delete(t.portfolio_days))
        self._days_from = ""
        self._write_days(conn, days, day_sums, fresh=True)

    def _count_stored(self, conn: Connection) -> _Recount:
        """The portfolio counts and days of the accounts stored, read through ``conn``: one pass over
        the table for each, grouped by what they depend on (an episode by whether it is open; for the
        days, a snapshot's time by its UTC day), each group counted once (:func:`_count`); each account
        enters the days on its snapshot's day."""
        a = t.accounts.c
        columns = [
            *(a[name] for name in _COUNTED if name != "quiet_since"),
            a.quiet_since.is_not(None).label("quiet_since"),
            a.drop_since.is_not(None).label("drop_since"),
            a.poor,
            a.currency,
            (a.arr >= 0).label("has_arr"),
        ]
        arr = func.sum(case((a.arr >= 0, a.arr), else_=0))
        groups = select(*columns, func.count().label("n"), arr.label("arr")).group_by(*columns)
        # Most accounts are a group of their own (64,000 groups at 100,000 accounts): each group is
        # counted under its owner and segment only, and those few sums under the four scopes after
        # (half the CPU of counting each group in each scope).
        counts: Counter[tuple[Any, ...]] = Counter()
        sums: Counter[tuple[Any, ...]] = Counter()
        for row in conn.execute(groups):
            group = dict(row._mapping)
            # The group's key carries the sum of its ARR: what its accounts add together.
            key = _portfolio_key(group | {"arr": int(group["arr"] or 0) if group["has_arr"] else -1})
            n, owner, segment = group["n"], group["owner"], group["segment"]
            for dim, value in key.marginals():
                counts[owner, segment, dim, value] += n
                sums[owner, segment, dim, value] += key.arr_of(dim)
        scoped: Counter[tuple[Any, ...]] = Counter()
        scoped_sums: Counter[tuple[Any, ...]] = Counter()
        for (owner, segment, dim, value), n in counts.items():
            for scope in _scopes(owner, segment):
                scoped[*scope, dim, value] += n
                scoped_sums[*scope, dim, value] += sums[owner, segment, dim, value]
        return (scoped, scoped_sums, *self._count_days(conn))

    def _count_days(self, conn: Connection) -> tuple[Counter[DayKey], Counter[DayKey]]:
        # Grouped by what the days count alone (a group per account would cost a PortfolioKey each),
        # counted as PortfolioKey.marginals does for those dimensions; the equivalence test holds them.
        a = t.accounts.c
        columns = [
            (a.at_ms // _DAY_MS).label("epoch_day"),
            a.owner,
            a.segment,
            a.band,
            a.lifecycle,
            a.currency,
            (a.arr >= 0).label("has_arr"),
        ]
        arr = func.sum(case((a.arr >= 0, a.arr), else_=0))
        groups = select(*columns, func.count().label("n"), arr.label("arr")).group_by(*columns)
        days: Counter[DayKey] = Counter()
        sums: Counter[DayKey] = Counter()
        names: dict[int, str] = {}
        rows: list[tuple[Any, ...]] = [tuple(row) for row in conn.execute(groups)]
        for epoch_day, owner, segment, band, lifecycle, currency, has_arr, n, amount in rows:
            day = names.get(epoch_day) or names.setdefault(epoch_day, day_of_ms(int(epoch_day) * _DAY_MS))
            arr_value = f"{band}|{currency_of(currency)}"
            for scope in scopes_of(owner, segment):
                days[*scope, day, "band", band] += n
                if lifecycle is not None:
                    days[*scope, day, "lifecycle", lifecycle] += n
                if has_arr:
                    key: DayKey = (*scope, day, "arr_band", arr_value)
                    days[key] += n
                    sums[key] += int(amount or 0)
        return days, sums

    def apply_health(self, account_id: str, doc: Doc | None) -> None:
        """Store one snapshot (None forgets the account)."""
        self._write(Batch(snapshots=[(account_id, doc)]))

    def apply_alert(self, doc: Doc) -> None:
        """Store one alert and hand it to live subscribers."""
        for alert in self._write(Batch(alerts=[doc])):
            self._subscribers.publish(alert, self._sees_alert)

    async def apply_batch(self, batch: Batch) -> None:
        """Write a batch (in a thread: the API keeps answering), then hand its new alerts to subscribers."""
        for alert in await asyncio.to_thread(self._write, batch):
            self._subscribers.publish(alert, self._sees_alert)

    def _write(self, batch: Batch) -> list[Doc]:
        if batch.rows and (batch.snapshots or not self._filling):
            # Rows are neither counted nor compared with the stored ones: only a fill writes them.
            raise ValueError("a batch of snapshots as rows is written only while filling, and alone")
        # The newest snapshot of each account in the batch (by snapshot time; the later record on a
        # tie), with the text it was read as.
        latest: dict[str, tuple[Doc | None, str | None]] = {}
        for i, (account_id, doc) in enumerate(batch.snapshots):
            held = latest.get(account_id)
            if (
                doc is not None
                and held is not None
                and held[0] is not None
                and (instant_ms(held[0].get("at")) or 0) > (instant_ms(doc.get("at")) or 0)
            ):
                continue
            latest[account_id] = (doc, batch.texts.get(i))
        try:
            with self._writing() as conn:
                inserted = self._write_alerts(conn, batch.alerts)
                self._write_snapshots(conn, latest, batch.snapshots)
                self._write_rows(conn, batch.rows)
                self._write_positions(conn, batch.positions)
        except psycopg.errors.UniqueViolation:
            if self._seen is None:
                raise
            # Rows inserted as the first of their account were there: another replica fills this store
            # too. Nothing of the batch was written; it is written again, every row upserted.
            log.warning("another process fills the read store too: its rows are upserted from now on")
            self._seen = None
            return self._write(batch)
        return inserted

    def _write_rows(self, conn: Connection, snapshots: Sequence[tuple[str, SnapshotRows | None]]) -> None:
        """Write a fill's snapshots turned into rows beforehand (:mod:`api.fill`), as
        :meth:`_write_snapshots` writes them while filling: the newest of each account, the later record
        on a tie; a tombstone deletes."""
        if not snapshots:
            return
        latest: dict[str, SnapshotRows | None] = {}
        for account_id, rows in snapshots:
            held = latest.get(account_id)
            if rows is not None and held is not None and held.at_ms > rows.at_ms:
                continue
            latest[account_id] = rows
        days, forgotten = _history_of_rows(snapshots)
        fresh = self._first_seen([a for a, rows in latest.items() if rows is not None and a not in forgotten])
        # A tombstone in the batch forgets the account's stored rows: whatever follows it is new.
        self._forget(conn, sorted(forgotten))
        self._mark_seen(latest)
        new: list[SnapshotRows] = []
        written: list[SnapshotRows] = []
        for account_id, rows in latest.items():
            if rows is not None:
                (new if account_id in fresh else written).append(rows)
        if new:
            self._upsert_account.insert(conn, [rows.account for rows in new])
            self._upsert_document.insert(conn, [rows.document for rows in new])
        if written:
            self._upsert_account(conn, [rows.account for rows in written])
            self._upsert_document(conn, [rows.document for rows in written])
        self._write_history(conn, days, forgotten, fresh)

    def _first_seen(self, account_ids: Iterable[str]) -> set[str]:
        """Which of ``account_ids`` this fill has certainly not written yet: their rows are inserted
        (``COPY`` on PostgreSQL) rather than upserted through a temporary table. In a fill of 1,000,000
        accounts that is almost every row, and the server's CPU while loading fell by about a third.

        A filter of :data:`_SEEN_BITS` bits, one set for each account written (a hash of its id): an
        account whose bit is clear was not written by this fill, which began on an empty store; one
        whose bit is set (written, or another's with the same bit: 1.5 % at 1,000,000 accounts) is
        upserted. Another replica filling the same store at the same time is caught by the primary
        key (:meth:`_write`)."""
        seen = self._seen
        if seen is None:
            return set()
        fresh: set[str] = set()
        for account_id in account_ids:
            byte, mask = _seen_bit(account_id)
            if not seen[byte] & mask:
                fresh.add(account_id)
        return fresh

    def _mark_seen(self, account_ids: Iterable[str]) -> None:
        """Note that this fill writes (or forgets) ``account_ids`` (see :meth:`_first_seen`)."""
        seen = self._seen
        if seen is None:
            return
        for account_id in account_ids:
            byte, mask = _seen_bit(account_id)
            seen[byte] |= mask

    def _forget(self, conn: Connection, account_ids: Sequence[str]) -> None:
        """Delete the accounts' rows and snapshots (their history is forgotten with it, by the caller)."""
        for ids in _chunks(account_ids):
            conn.execute(delete(t.accounts).where(t.accounts.c.account_id.in_(ids)))
            conn.execute(delete(t.account_documents).where(t.account_documents.c.account_id.in_(ids)))

    def _write_snapshots(
        self,
        conn: Connection,
        latest: Mapping[str, tuple[Doc | None, str | None]],
        snapshots: Sequence[tuple[str, Doc | None]],
    ) -> None:
        if not latest:
            return
        a = t.accounts.c
        stored: dict[str, Any] = {}
        if not self._filling:
            # What the stored rows counted under, to move their counts (a fill counts at its end).
            columns = [a.account_id, a.at_ms, *(a[name] for name in _COUNTED + _COUNTED_ALSO)]
            for ids in _chunks(list(latest)):
                query = select(*columns).where(a.account_id.in_(ids))
                if self.dialect == "postgresql":
                    query = query.with_for_update()  # replicas applying the same accounts take turns
                stored.update((row.account_id, row._mapping) for row in conn.execute(query))
        rows: list[dict[str, Any]] = []
        texts: list[str] = []
        counts: Counter[tuple[Any, ...]] = Counter()
        sums: Counter[tuple[Any, ...]] = Counter()
        kept, forgotten = _history_days(snapshots, {i: r["at_ms"] for i, r in stored.items()})
        # A tombstone in the batch forgets the account's stored snapshot: whatever follows it is new.
        for account_id, (doc, text_) in latest.items():
            before = stored.get(account_id)
            if before is not None and account_id in forgotten:
                _count(counts, sums, before, -1)
                before = None
            if doc is None:
                continue
            row = account_row(account_id, doc)
            if before is not None:
                if before["at_ms"] > row["at_ms"]:
                    continue  # an older snapshot read again (a replay, or a replica behind)
                _count(counts, sums, before, -1)
            if not self._filling:
                _count(counts, sums, row, 1)
            rows.append(row)
            texts.append(text_ if text_ is not None else dumps(doc))
        self._forget(conn, sorted(forgotten))
        self._mark_seen(latest)
        if rows:
            self._upsert_account(conn, [account_params(row) for row in rows])
            self._upsert_document(
                conn, [document_params(row, text_) for row, text_ in zip(rows, texts, strict=True)]
            )
        self._write_history(conn, kept, forgotten)
        self._write_counts(conn, counts, sums)
        if not self._filling:  # a fill counts the days at its end, as the counts
            runs = [
                (i, None if d is None else counted_of(d, instant_ms(d.get("at")) or 0)) for i, d in snapshots
            ]
            days, day_sums, _ = day_deltas(runs, {i: _counted(r) for i, r in stored.items()})
            self._write_days(conn, days, day_sums)

    def _write_days(
        self, conn: Connection, days: Counter[DayKey], sums: Counter[DayKey], *, fresh: bool = False
    ) -> None:
        """Add changes to ``portfolio_days``, drop the rows they bring to nothing (none when the table
        was ``fresh``ly emptied), and sum the days before the weeks kept
        (:func:`~api.portfolio_history.kept_from`) into one row each."""
        changed = [key for key in days.keys() | sums.keys() if days[key] or sums[key]]
        if not changed:
            return
        pd = t.portfolio_days.c
        rows = [_day_row(key, days[key], sums[key]) for key in changed]
        self._add_days(conn, rows)
        if not fresh:
            # Only a row that lost accounts or ARR can have come to nothing.
            fell = [row[0] for row, key in zip(rows, changed, strict=True) if days[key] < 0 or sums[key] < 0]
            for keys in _chunks(fell):
                conn.execute(delete(t.portfolio_days).where(pd.key.in_(keys), pd.accounts == 0, pd.arr == 0))
        first = kept_from(datetime.fromisoformat(max(key[4] for key in changed)).date())
        if first.isoformat() <= self._days_from:
            return
        self._days_from = first.isoformat()
        key_columns = [pd.by_owner, pd.owner, pd.by_segment, pd.segment, pd.day, pd.dimension, pd.value]
        query = select(pd.key, *key_columns, pd.accounts, pd.arr).where(pd.day < self._days_from)
        if self.dialect == "postgresql":
            query = query.with_for_update()  # a replica adding to these rows meanwhile waits for the fold
        old = conn.execute(query).all()
        if not old:
            return
        # Only the rows read: one another replica inserts meanwhile is folded at the next new week.
        for keys in _chunks([r.key for r in old]):
            conn.execute(delete(t.portfolio_days).where(pd.key.in_(keys)))
        # SQLite answers booleans as 0 and 1: the keys are rebuilt as they were written.
        held: list[tuple[DayKey, int, int]] = [
            (
                (bool(r.by_owner), r.owner, bool(r.by_segment), r.segment, r.day, r.dimension, r.value),
                int(r.accounts),
                int(r.arr),
            )
            for r in old
        ]
        folded = fold_before(held, first)
        rows = [_day_row(key, n, arr) for key, (n, arr) in folded.items() if n or arr]
        if rows:
            self._add_days(conn, rows)

    def _write_counts(
        self, conn: Connection, counts: Counter[tuple[Any, ...]], sums: Counter[tuple[Any, ...]]
    ) -> None:
        deltas = [_count_row(key, n, sums[key]) for key, n in counts.items() if n or sums[key]]
        if not deltas:
            return
        names = [c.name for c in t.portfolio_counts.c]
        self._add_counts(conn, [tuple(d[n] for n in names) for d in deltas])
        emptied = [d["key"] for d in deltas if d["accounts"] < 0]
        pc = t.portfolio_counts.c
        for keys in _chunks(emptied):
            conn.execute(delete(t.portfolio_counts).where(pc.key.in_(keys), pc.accounts <= 0))

    def _write_history(
        self,
        conn: Connection,
        days: Sequence[tuple[Any, ...]],
        forgotten: set[str],
        fresh: AbstractSet[str] = frozenset(),
    ) -> None:
        """Write the ``history`` rows ``days`` after forgetting the history of the accounts
        ``forgotten``; those of ``fresh`` accounts (:meth:`_first_seen`) are inserted."""
        h = t.history.c
        for ids in _chunks(sorted(forgotten)):
            conn.execute(delete(t.history).where(h.account_id.in_(ids)))
        if not days:
            return
        if fresh:
            self._upsert_history.insert(conn, [d for d in days if d[0] in fresh])
            self._upsert_history(conn, [d for d in days if d[0] not in fresh])
        else:
            self._upsert_history(conn, days)
        newest = max(d[HISTORY_DAY] for d in days)
        cutoff = (datetime.fromisoformat(newest) - timedelta(days=self.history_days)).date().isoformat()
        if cutoff > self._history_cutoff:
            conn.execute(delete(t.history).where(h.day <= cutoff))
            self._history_cutoff = cutoff

    def _write_alerts(self, conn: Connection, docs: Sequence[Doc]) -> list[Doc]:
        if not docs:
            return []
        al = t.alerts.c
        known: set[str] = set()
        ids = list({str(d.get("alert_id")) for d in docs})
        for chunk in _chunks(ids):
            known.update(conn.execute(select(al.alert_id).where(al.alert_id.in_(chunk))).scalars())
        new: list[Doc] = []
        rows: list[dict[str, Any]] = []
        for doc in docs:
            alert_id = str(doc.get("alert_id"))
            if alert_id in known:
                continue
            known.add(alert_id)
            facts = facts_of(doc, "account")
            rows.append(
                {
                    "alert_id": alert_id,
                    "kind": str(doc.get("kind")),
                    "account_id": text_of(doc.get("account_id")),
                    "detected_ms": detected_ms(doc),
                    "owner": text_of(facts.get("owner")),
                    "segment": text_of(facts.get("segment")),
                    "doc": doc,
                }
            )
            new.append(doc)
        if not rows:
            return []
        conn.execute(self._insert(t.alerts).on_conflict_do_nothing(index_elements=["alert_id"]), rows)
        # The feed keeps the ``alert_buffer`` most recently detected alerts.
        oldest_kept = conn.execute(
            select(al.detected_ms, al.seq)
            .order_by(al.detected_ms.desc(), al.seq.desc())
            .offset(self.alert_buffer - 1)
            .limit(1)
        ).first()
        if oldest_kept is not None:
            conn.execute(delete(t.alerts).where(tuple_(al.detected_ms, al.seq) < tuple(oldest_kept)))
        latest = [
            {
                "account_id": r["account_id"],
                "kind": r["kind"],
                "detected_ms": r["detected_ms"],
                "doc": r["doc"],
            }
            for r in rows
            if r["account_id"] is not None
        ]
        if latest:
            la = t.latest_alerts.c
            upsert = self._insert(t.latest_alerts)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["account_id", "kind"],
                    set_={"detected_ms": upsert.excluded.detected_ms, "doc": upsert.excluded.doc},
                    where=upsert.excluded.detected_ms >= la.detected_ms,
                ),
                latest,
            )
        return new

    def _write_positions(self, conn: Connection, positions: Mapping[tuple[str, int], int]) -> None:
        if not positions:
            return
        o = t.offsets.c
        upsert = self._insert(t.offsets)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["topic", "partition"],
                set_={"next_offset": upsert.excluded.next_offset},
                where=upsert.excluded.next_offset > o.next_offset,
            ),
            [{"topic": topic, "partition": p, "next_offset": n} for (topic, p), n in positions.items()],
        )

    # -- ReadModel: reads --------------------------------------------------------------------------

    def _sees_alert(self, scope: AccountScope, doc: Doc) -> bool:
        if scope.unrestricted:
            return True
        account_id = doc.get("account_id")
        if not isinstance(account_id, str):
            return False
        a = t.accounts.c
        with self._engine.connect() as conn:
            row = conn.execute(select(a.owner, a.segment).where(a.account_id == account_id)).first()
        facts = {"owner": row.owner, "segment": row.segment} if row is not None else doc.get("account")
        return scope.permits(facts)

    async def get_account(self, account_id: str, *, scope: AccountScope) -> Doc | None:  # see ReadModel
        # The API's busiest read: one query without SQLAlchemy's layers. SQLite answers in process (a
        # tenth of a millisecond, less than handing the query to a thread); PostgreSQL on connections
        # that leave the event loop free while the server answers (see api.store.lookups).
        try:
            if self._remote is None:
                rows = self._lookup_here(account_id)
            elif "\x00" in account_id:
                rows = []  # PostgreSQL's text holds no NUL: no account has such an id
            else:
                rows = await self._remote.fetch(account_id)
        except (psycopg.Error, self._engine.dialect.loaded_dbapi.Error) as exc:
            raise OperationalError(self._lookup_sql, (account_id,), exc) from exc
        if not rows:
            return None
        doc = orjson.loads(rows[0][0])
        # Outside the scope is answered like unknown, so a key cannot tell which accounts exist.
        if not scope.permits(doc.get("facts")):
            return None
        latest = [orjson.loads(alert) for _, alert in rows if alert is not None]
        return {**doc, "open_alerts": open_alerts(doc, latest)}

    def _lookup_here(self, account_id: str) -> list[Any]:
        conn = self._lookup_connection()
        try:
            cursor = conn.cursor()
            try:
                cursor.execute(self._lookup_sql, (account_id,))
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except self._engine.dialect.loaded_dbapi.Error:
            self._drop_lookup_connection()
            raise

    def _lookup_connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.raw_connection()
            self._local.conn = conn
            self._lookups.append(conn)
        return conn

    def _drop_lookup_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self._lookups.remove(conn)
            conn.invalidate()

    @staticmethod
    def _scoped(scope: AccountScope) -> list[ColumnElement[bool]]:
        a = t.accounts.c
        out: list[ColumnElement[bool]] = []
        if scope.owner is not None:
            out.append(a.owner == scope.owner)
        if scope.segment is not None:
            out.append(a.segment == scope.segment)
        return out

    def list_accounts(  # see ReadModel
        self,
        filters: AccountFilters,
        sort: AccountSort,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        a = t.accounts.c
        where = self._scoped(scope)
        for name in (
            "band",
            "segment",
            "plan",
            "owner",
            "lifecycle",
            "onboarding_status",
            "onboarding_active",
        ):
            value = getattr(filters, name)
            if value is not None:
                where.append(a[name] == value)
        for days, low, high in filters.active_days_bounds():
            column = a[f"active_days_{days}"]
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
        if filters.min_score is not None:
            where.append(a.score >= filters.min_score)
        if filters.max_score is not None:
            where.append(a.score <= filters.max_score)
        if filters.quiet_since is not None:
            where.append(a.last_activity_ms <= _floor_ms(filters.quiet_since))
        types: tuple[type, ...]
        if sort in (AccountSort.SCORE, AccountSort.SCORE_DESC):
            columns, types = [a.score, a.account_id], (int, str)
        elif sort in (AccountSort.LAST_ACTIVITY, AccountSort.LAST_ACTIVITY_DESC):
            columns, types = [a.last_activity, a.account_id], (str, str)
        elif sort is AccountSort.ARR_DESC:
            columns, types = [a.arr, a.account_id], (int, str)
        elif sort is AccountSort.RENEWAL:
            columns, types = [a.renewal_ms, a.account_id], (int, str)
        elif sort is AccountSort.ONBOARDING_OVERDUE_DESC:
            columns, types = [a.onboarding_overdue_days, a.account_id], (int, str)
        else:
            columns, types = [a.account_id], (str,)
        desc = sort.value.startswith("-")
        if cursor is not None:
            after = sort_cursor(cursor, sort)
            if len(after) != len(types) or not all(type(v) is k for v, k in zip(after, types, strict=True)):
                raise InvalidCursor("malformed cursor")
            if len(columns) == 1:
                where.append(columns[0] < after[0] if desc else columns[0] > after[0])
            else:
                row, bound = tuple_(*columns), tuple_(*after)
                where.append(row < bound if desc else row > bound)
        d = t.account_documents.c
        query = (
            select(d.doc)
            .select_from(t.accounts.join(t.account_documents, d.account_id == a.account_id))
            .where(*where)
            .order_by(*(c.desc() if desc else c.asc() for c in columns))
            .limit(limit + 1)
        )
        with self._engine.connect() as conn:
            docs = list(conn.execute(query).scalars())
        page = docs[:limit]
        more = len(docs) > limit
        return page, encode_cursor([sort.value, sort_key(page[-1], sort)]) if more and page else None

    def portfolio(self, now: datetime, *, scope: AccountScope) -> Doc:  # see ReadModel
        pc = t.portfolio_counts.c
        where: list[ColumnElement[bool]] = [
            pc.by_owner == (scope.owner is not None),
            pc.by_segment == (scope.segment is not None),
            pc.accounts > 0,
        ]
        if scope.owner is not None:
            where.append(pc.owner == scope.owner)
        if scope.segment is not None:
            where.append(pc.segment == scope.segment)
        query = select(pc.dimension, pc.value, pc.accounts, pc.arr).where(*where)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return figures_from_marginals(
            ((r.dimension, r.value, int(r.accounts), int(r.arr)) for r in rows), now
        )

    def portfolio_history(
        self, weeks: int, now: datetime, *, scope: AccountScope
    ) -> list[Doc]:  # see ReadModel
        pd = t.portfolio_days.c
        by_owner, owner, by_segment, segment = scope_of(scope)
        today = now.astimezone(UTC).date()
        where: list[ColumnElement[bool]] = [
            pd.by_owner == by_owner,
            pd.by_segment == by_segment,
            pd.day <= today.isoformat(),
        ]
        if owner is not None:
            where.append(pd.owner == owner)
        if segment is not None:
            where.append(pd.segment == segment)
        query = select(pd.day, pd.dimension, pd.value, pd.accounts, pd.arr).where(*where)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return weekly_figures(
            ((r.day, r.dimension, r.value, int(r.accounts), int(r.arr)) for r in rows), weeks, today
        )

    def owners(self, *, scope: AccountScope) -> list[str]:  # see ReadModel
        # The owners' own counts of accounts: a read of as many rows as there are owners.
        pc = t.portfolio_counts.c
        where: list[ColumnElement[bool]] = [
            pc.by_owner.is_(True),
            pc.by_segment == (scope.segment is not None),
            pc.dimension == "accounts",
            pc.accounts > 0,
            pc.owner.is_not(None),
        ]
        if scope.owner is not None:
            where.append(pc.owner == scope.owner)
        if scope.segment is not None:
            where.append(pc.segment == scope.segment)
        with self._engine.connect() as conn:
            found = conn.execute(select(pc.owner).where(*where)).scalars()
            return sorted(set(found))

    def alerts(  # see ReadModel
        self,
        since: datetime | None,
        kind: str | None,
        account: str | None,
        cursor: str | None,
        limit: int,
        *,
        scope: AccountScope,
    ) -> Page:
        al = t.alerts.c
        where: list[ColumnElement[bool]] = []
        if cursor is not None:
            where.append(tuple_(al.detected_ms, al.seq) < alerts_cursor(cursor))
        if kind is not None:
            where.append(al.kind == kind)
        if account is not None:
            where.append(al.account_id == account)
        if since is not None:
            where.append(al.detected_ms >= _ceil_ms(since))
        query = select(al.detected_ms, al.seq, al.doc)
        if not scope.unrestricted:
            # Judged by the account's current facts where it has a snapshot, else by the alert's own.
            s = t.accounts.alias("snapshot")
            query = query.outerjoin(s, s.c.account_id == al.account_id)
            where.append(al.account_id.is_not(None))
            for name in ("owner", "segment"):
                value = getattr(scope, name)
                if value is not None:
                    where.append(
                        or_(
                            and_(s.c.account_id.is_not(None), s.c[name] == value),
                            and_(s.c.account_id.is_(None), al[name] == value),
                        )
                    )
        query = query.where(*where).order_by(al.detected_ms.desc(), al.seq.desc()).limit(limit + 1)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        page = rows[:limit]
        nxt = alert_position(page[-1].detected_ms, page[-1].seq) if len(rows) > limit else None
        return [r.doc for r in page], nxt

    def subscribe(self, *, scope: AccountScope) -> AsyncGenerator[Doc, None]:  # see ReadModel
        return self._subscribers.subscribe(scope)

    def history(  # see ReadModel
        self, account_id: str, days: int, now: datetime, *, scope: AccountScope
    ) -> list[Doc] | None:
        a, h = t.accounts.c, t.history.c
        first = history_window(days, now)
        columns = (h.day, h.at_ms, h.score, h.band, h.components)
        with self._engine.connect() as conn:
            known = conn.execute(select(a.owner, a.segment).where(a.account_id == account_id)).first()
            if known is None or not scope.permits({"owner": known.owner, "segment": known.segment}):
                return None
            # Both read the primary key (account, day) in order: a range and one row before it.
            before = conn.execute(
                select(*columns)
                .where(h.account_id == account_id, h.day < first)
                .order_by(h.day.desc())
                .limit(1)
            ).all()
            rows = conn.execute(
                select(*columns).where(h.account_id == account_id, h.day >= first).order_by(h.day)
            ).all()
        return [dict(r._mapping) for r in (*before, *rows)]

    def counts(self) -> dict[str, int]:
        """Rows per table: what an operator (or a test) checks first."""
        with self._engine.connect() as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (*t.DATA_TABLES, t.meta)
            }
