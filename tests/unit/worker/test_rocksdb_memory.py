"""The worker's RocksDB memory is one budget shared by every partition's database."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import rocksdict

from streamer.worker.__main__ import warn_removed_settings
from streamer.worker.faust_compat import BoundedRocksDBOptions
from streamer.worker.settings import WorkerSettings

MIB = 1024 * 1024


def _fill(db: rocksdict.Rdict, n: int, size: int) -> None:
    for i in range(n):
        db.put(f"account-{i:06d}".encode(), os.urandom(size))


def test_the_databases_of_every_partition_share_one_bounded_cache(tmp_path: Path) -> None:
    options = BoundedRocksDBOptions(memory_bytes=4 * MIB, write_buffer_bytes=1 * MIB, use_rocksdict=True)
    dbs = [options.open(tmp_path / f"p{p}") for p in range(3)]
    try:
        for db in dbs:
            _fill(db, 6_000, 1_000)  # 6 MB each, incompressible: more than the whole budget
            db.flush(True)
        # Memtables are charged to the shared cache: three databases together stay within half of it.
        assert 0 < options.write_buffers.get_usage() <= 2 * MIB
        for db in dbs:
            assert sum(1 for _ in db.values()) == 6_000
            assert db.get(b"account-000123") is not None
        usage = options.cache.get_usage()
        # Each database read its blocks through the shared cache (its own would leave this one empty),
        # and 18 MB read left it within its 4 MiB.
        assert 2 * MIB < usage <= 4 * MIB
    finally:
        for db in dbs:
            db.close()


def test_the_removed_per_partition_cache_setting_is_named_with_what_replaced_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = WorkerSettings(rocksdb_memory_mb=96)
    with caplog.at_level(logging.WARNING, logger="churnwatch.worker"):
        warn_removed_settings(settings, {"CHURNWATCH_ROCKSDB_CACHE_MB": "16"})
        warn_removed_settings(settings, {"CHURNWATCH_ROCKSDB_MEMORY_MB": "96"})
    assert [r.getMessage() for r in caplog.records] == [
        "CHURNWATCH_ROCKSDB_CACHE_MB (a cache per partition) is no longer read: RocksDB's memory is one"
        " budget for the worker, CHURNWATCH_ROCKSDB_MEMORY_MB (now 96 MiB)"
    ]
