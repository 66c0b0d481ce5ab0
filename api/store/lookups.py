"""The health lookup on PostgreSQL: libpq connections driven from the event loop.

Through psycopg's blocking cursor a lookup held the event loop for its whole round trip to the server,
and cost the API 151 µs of CPU (measured in process, 100,000 accounts), a quarter of all a request
costs at 1,000 lookups a second, most of it the cursor's own layers run per query. On a machine busy
enough that the server's process waits to be scheduled, requests queued behind each other: p50 17 ms at
a million accounts, where SQLite, read in process, answered in 0.5 ms. Here a lookup is one prepared
statement sent on a libpq connection (:mod:`psycopg.pq`, psycopg's own binding) and its answer awaited
as the socket becomes readable: 64 µs of CPU for the whole lookup (decoding the document included),
and the event loop serves other requests meanwhile, lookups running side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

SIZE = 8  # connections at most: more lookups at once than the server has cores to answer them wait
_STATEMENT = b"churnwatch_lookup"

Rows = list[tuple[bytes | None, ...]]


class AsyncLookups:
    """At most :data:`SIZE` autocommit connections to ``conninfo`` that each prepare ``sql`` (one
    parameter, ``$1``) once, opened as lookups need them.

    Connections belong to the event loop they were opened on: on another (a test's ``asyncio.run``
    after another's) those of the old loop are closed and new ones opened."""

    def __init__(self, conninfo: str, sql: str, size: int = SIZE) -> None:
        """Prepare (but do not open) connections to ``conninfo``."""
        self._conninfo = make_conninfo(conninfo, client_encoding="UTF8").encode()
        self._sql = sql.encode()
        self._size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[pq.abc.PGconn] = []
        self._free = asyncio.Semaphore(size)

    async def fetch(self, param: str) -> Rows:
        """The rows (text columns, as bytes) of the statement for ``param``. A connection that failed,
        or whose lookup was cancelled mid-query, is closed; the next lookup opens another. Raises
        :class:`psycopg.Error`."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.close()
            self._loop = loop
            self._free = asyncio.Semaphore(self._size)
        async with self._free:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None:
                    conn = self._open()
                rows = await _query(loop, conn, param.encode())
            except BaseException:
                if conn is not None:
                    conn.finish()
                raise
            self._idle.append(conn)
            return rows

    def _open(self) -> pq.abc.PGconn:
        # Blocking, once per connection (at most SIZE per loop): a few milliseconds on a local server.
        conn = pq.PGconn.connect(self._conninfo)
        if conn.status != pq.ConnStatus.OK:
            message = conn.get_error_message()
            conn.finish()
            raise psycopg.OperationalError(message)
        _check(conn.prepare(_STATEMENT, self._sql))
        conn.nonblocking = 1
        return conn

    def close(self) -> None:
        """Close the idle connections (one in use is closed if its lookup fails)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.finish()


async def _query(loop: asyncio.AbstractEventLoop, conn: pq.abc.PGconn, param: bytes) -> Rows:
    conn.send_query_prepared(_STATEMENT, [param])
    while conn.flush():
        await _ready(loop, conn.socket, loop.add_writer, loop.remove_writer)
    while True:
        conn.consume_input()
        if not conn.is_busy():
            break
        await _ready(loop, conn.socket, loop.add_reader, loop.remove_reader)
    result = conn.get_result()
    while conn.get_result() is not None:  # the end of the answer (one statement, one result)
        pass
    if result is None:
        raise psycopg.OperationalError(conn.get_error_message())
    _check(result)
    return [
        tuple(result.get_value(row, col) for col in range(result.nfields)) for row in range(result.ntuples)
    ]


async def _ready(
    loop: asyncio.AbstractEventLoop,
    fd: int,
    add: Callable[..., None],
    remove: Callable[[int], object],
) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():  # the socket may be reported ready again before it is removed
            ready.set_result(None)

    add(fd, wake)
    try:
        await ready
    finally:
        remove(fd)


def _check(result: pq.abc.PGresult) -> None:
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        raise psycopg.OperationalError(result.get_error_message())
