"""Checking snapshots as the loader reads them, and doing it in other processes while a store fills.

Every record of ``account-health`` is decoded and held to the contract the API answers with
(:class:`~streamer.wire.documents.SnapshotDocument`) before it is stored (:func:`check_snapshot`); one
that fails is skipped with a warning (:class:`Rejected`). Filling an empty store reads every snapshot
once, and that work, with building the rows of each, took more of the API process's CPU than writing
them: while a SQL store fills, the loader hands the raw records to a pool of processes
(:class:`FillPool`, ``CHURNWATCH_FILL_PROCESSES``) that run the same check and return the rows
(:mod:`api.store.rows`), and only writes them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import orjson
from pydantic import ValidationError

from api.precheck import Precheck
from api.readmodel import Doc
from api.store.rows import SnapshotRows, snapshot_rows
from streamer.gctuning import tune_gc
from streamer.wire.documents import SnapshotDocument


class Rejected(NamedTuple):
    """Why a record is skipped: not decodable (``where`` None), or not a churnwatch document (the
    first error's field path and message)."""

    where: str | None = None
    problem: str = ""


def rejection(err: ValidationError) -> Rejected:
    """The :class:`Rejected` of a document the contract refused."""
    first = err.errors()[0]
    return Rejected(".".join(map(str, first["loc"])), first["msg"])


_SNAPSHOT = Precheck(SnapshotDocument)


def check_snapshot(key: bytes, value: bytes | None) -> tuple[str, Doc | None, str | None]:
    """The account id, snapshot and text of an ``account-health`` record (no snapshot and no text for a
    tombstone). Raises :class:`orjson.JSONDecodeError` or :class:`UnicodeDecodeError` for a record that
    is not decodable, :class:`~pydantic.ValidationError` for one that is not a snapshot."""
    snapshot: Doc | None = None
    text = None
    if value is not None:
        snapshot = orjson.loads(value)
        if not _SNAPSHOT.accepts(value):  # pydantic decides what the precheck does not accept
            SnapshotDocument.model_validate(snapshot)
        text = value.decode()
    return key.decode(), snapshot, text


Prepared = tuple[str, SnapshotRows | None] | Rejected


def prepare_snapshots(records: Sequence[tuple[bytes, bytes | None]], *, texts: bool = True) -> list[Prepared]:
    """Each ``(key, value)`` record of ``account-health`` checked as :func:`check_snapshot` does, as
    ``(account id, its rows)`` (None for a tombstone) or why it is skipped; in the order given. Without
    ``texts`` the document rows hold an empty text (the caller has the record's value)."""
    out: list[Prepared] = []
    for key, value in records:
        try:
            account_id, doc, text = check_snapshot(key, value)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            out.append(Rejected())
            continue
        except ValidationError as err:
            out.append(rejection(err))
            continue
        rows = None if doc is None or text is None else snapshot_rows(account_id, doc, text if texts else "")
        out.append((account_id, rows))
    return out


def _start_process() -> None:
    # Ctrl-C reaches the whole process group; the API shuts its pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tune_gc()


def _prepare_in_pool(records: Sequence[tuple[bytes, bytes | None]]) -> list[Prepared]:
    # The snapshots' texts are not sent back: two thirds of what was pickled and sent.
    return prepare_snapshots(records, texts=False)


def _started() -> None:
    """Nothing: submitted once per process to start them all."""


class FillPool:
    """``processes`` processes running :func:`prepare_snapshots` (started, not imported: spawned)."""

    def __init__(self, processes: int) -> None:
        """Start the processes (in the background: the loader connects and fetches meanwhile)."""
        self._processes = processes
        self._executor = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_process
        )
        for _ in range(processes):
            self._executor.submit(_started)  # each submit to a busy pool starts one more process

    async def prepare(self, records: Sequence[tuple[bytes, bytes | None]]) -> list[Prepared]:
        """:func:`prepare_snapshots` of ``records``, split among the processes, in the order given."""
        if not records:
            return []
        loop = asyncio.get_running_loop()
        size = -(-len(records) // self._processes)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, _prepare_in_pool, records[start : start + size])
                for start in range(0, len(records), size)
            )
        )
        out: list[Prepared] = []
        for (_, value), item in zip(records, (item for part in parts for item in part), strict=True):
            if isinstance(item, Rejected) or item[1] is None or value is None:
                out.append(item)
            else:
                out.append((item[0], item[1].with_text(value.decode())))
        return out

    def close(self, *, wait: bool = True) -> None:
        """Stop the processes (waiting for them to exit when ``wait``)."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
