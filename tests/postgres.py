"""A throw-away PostgreSQL server for tests, run by ``deploy/postgres/postgres.sh``.

``postgres_server`` starts one server for the whole session (127.0.0.1 on a free port, trust
authentication, no durability) and stops it at the end; ``postgres_url`` gives each test a fresh,
empty database on it and drops it afterwards. tests/conftest.py registers both for every test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from tests.integration.workers import REPO, free_port

POSTGRES_SH = REPO / "deploy" / "postgres" / "postgres.sh"
USER = "churnwatch"
# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes).
MAX_NAME = 63


def _run(*args: str) -> str:
    """Run the script; its messages are returned, or raised with the reason when it fails."""
    result = subprocess.run(
        [str(POSTGRES_SH), *args], capture_output=True, text=True, timeout=180, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"postgres.sh {' '.join(args)} exited with {result.returncode}:\n{output}")
    return output


@dataclass(frozen=True)
class PostgresServer:
    """A running server: superuser ``churnwatch`` without a password on 127.0.0.1:``port``."""

    port: int
    dir: Path

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database called ``name``, empty or a copy of ``template``, and return its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(query)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop the database ``name``, closing the connections still open to it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """Stop the server at once; nothing happens when it is already down."""
        _run("stop", str(self.dir))


def start_postgres(tmp_dir: Path) -> PostgresServer:
    """Start a server in ``tmp_dir`` (its cluster, log and socket) on a free port of 127.0.0.1.

    ``tmp_dir`` is created when missing. Under root the server runs as a system user of its own,
    which must be able to reach ``tmp_dir``: make it under the system temp directory (pytest's
    ``tmp_path`` is private to root).
    """
    server = PostgresServer(port=free_port(), dir=tmp_dir.resolve())
    try:
        _run("start", str(server.dir), str(server.port))
    except BaseException:
        # A start that timed out or was interrupted may have left a server running.
        subprocess.run([str(POSTGRES_SH), "stop", str(server.dir)], capture_output=True, check=False)
        raise
    return server


def database_name(node_id: str) -> str:
    """A database name for a test: its node id in lower-case letters, digits and _, and a random suffix."""
    suffix = uuid.uuid4().hex[:8]
    base = re.sub(r"[^a-z0-9]+", "_", node_id.lower()).strip("_")
    # Keep the end of the node id, the test's own name, when it is too long.
    base = base[-(MAX_NAME - len(suffix) - 1) :].lstrip("_")
    return f"{base}_{suffix}" if base else f"test_{suffix}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, in a temporary directory removed at the end."""
    tmp_dir = Path(tempfile.mkdtemp(prefix="churnwatch-pg-"))
    try:
        server = start_postgres(tmp_dir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database for this test, dropped after it."""
    name = database_name(request.node.nodeid)
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)
