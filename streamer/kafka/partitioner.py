"""Kafka's default partitioner, the one every keyed producer uses and the worker relies on.

An account's events, state, health and alerts all live in the partition its id hashes to
(murmur2 of the UTF-8 key, as the Java client and aiokafka compute it), so whoever produces
events, replays them (backtest, backfill) or checks ownership must agree on it.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.partitioner import murmur2

__all__ = ["kafka_partitioner", "partition_of"]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def kafka_partitioner(partitions: int) -> Callable[[str], int]:
    """``account_id -> partition`` for a topic of ``partitions`` partitions."""

    def partition_for(account_id: str) -> int:
        return partition_of(account_id.encode(), partitions)

    return partition_for
