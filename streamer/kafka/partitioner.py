"""Kafka's default partitioner, the one every keyed producer uses and the worker relies on.

An account's events, state, health and alerts all live in the partition its id hashes to
(murmur2 of the UTF-8 key, as the Java client and aiokafka compute it), so whoever produces
events, replays them (backtest, backfill) or checks ownership must agree on it.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

_native_partition_of: Callable[[int, str], int] | None
try:  # the compiled murmur2 (native/, built by `make install`); the Python one below is its reference
    from churnwatch_native import partition_of_str as _native_partition_of
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _native_partition_of = None

__all__ = ["kafka_partitioner", "murmur2", "partition_of"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``), as an unsigned int.

    The same function as aiokafka's ``murmur2``, which the tests compare it with, read a 32-bit word at
    a time instead of a byte at a time: every record the worker reads is routed through it.
    """
    length = len(data)
    h = _SEED ^ length
    whole = length & ~3
    for (k,) in _WORDS.iter_unpack(data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def kafka_partitioner(partitions: int) -> Callable[[str], int]:
    """``account_id -> partition`` for a topic of ``partitions`` partitions (compiled where installed)."""
    if partitions < 1:
        raise ValueError("partitions must be positive")
    if _native_partition_of is not None:
        return functools.partial(_native_partition_of, partitions)

    def partition_for(account_id: str) -> int:
        return partition_of(account_id.encode(), partitions)

    return partition_for
