"""The throw-away PostgreSQL server of the suite: a fresh database per test, on 127.0.0.1 only."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest

from tests.postgres import PostgresServer

# The URLs the tests of this module were given: no two tests share a database.
_seen_urls: set[str] = set()


def _remember(url: str) -> None:
    assert url not in _seen_urls, f"{url} was given to another test of this module"
    _seen_urls.add(url)


def test_rows_round_trip_on_a_local_only_server(postgres_url: str, postgres_server: PostgresServer) -> None:
    _remember(postgres_url)
    parts = urlsplit(postgres_url)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == (
        "postgresql",
        "churnwatch",
        "127.0.0.1",
        postgres_server.port,
    )
    rows = [(1, "acme", 0.25), (2, "globex", 0.5), (3, "initech", 1.0)]
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE accounts (id integer PRIMARY KEY, name text NOT NULL, score float8)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO accounts (id, name, score) VALUES (%s, %s, %s)", rows)
        conn.commit()
        assert conn.execute("SELECT id, name, score FROM accounts ORDER BY id").fetchall() == rows
        assert conn.execute("SELECT current_database(), current_user").fetchone() == (
            parts.path.lstrip("/"),
            "churnwatch",
        )
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (str(postgres_server.dir),)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)


@pytest.mark.parametrize("which", ["first", "second"])
def test_each_test_gets_its_own_empty_database(postgres_url: str, which: str) -> None:
    _remember(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        assert tables == [], "the database is new and empty"
        conn.execute("CREATE TABLE marker (which text NOT NULL)")
        conn.execute("INSERT INTO marker VALUES (%s)", (which,))
        conn.commit()
        assert conn.execute("SELECT which FROM marker").fetchall() == [(which,)]
