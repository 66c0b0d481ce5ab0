"""The worker's murmur2 must route every key exactly as Kafka's default partitioner does."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from streamer.kafka import partitioner
from streamer.kafka.partitioner import kafka_partitioner, murmur2, partition_of


@given(st.binary(max_size=300))
def test_murmur2_equals_aiokafka_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.text(min_size=1, max_size=128), st.integers(1, 64))
def test_partition_of_equals_the_producers_default_partitioner(account_id: str, partitions: int) -> None:
    key = account_id.encode()
    expected = DefaultPartitioner()(key, list(range(partitions)), list(range(partitions)))
    assert partition_of(key, partitions) == expected
    assert kafka_partitioner(partitions)(account_id) == expected


@given(st.binary(max_size=300))
def test_the_compiled_murmur2_equals_the_python_one(data: bytes) -> None:
    import churnwatch_native  # here: the other tests also run without it (test_python_fallback.py)

    assert churnwatch_native.murmur2(data) == murmur2(data)


def test_the_worker_routes_with_the_compiled_partitioner_and_python_is_the_same_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import churnwatch_native

    compiled = kafka_partitioner(12)
    assert compiled.func is churnwatch_native.partition_of_str  # type: ignore[attr-defined]
    monkeypatch.setattr(partitioner, "_native_partition_of", None)
    python = kafka_partitioner(12)
    ids = [f"acct-{i}" for i in range(2000)] + ["", "é", "\U0001f600" * 40]
    assert [compiled(a) for a in ids] == [python(a) for a in ids]
    with pytest.raises(ValueError, match="partitions must be positive"):
        kafka_partitioner(0)


def test_known_values_of_the_java_client() -> None:
    # Utils.murmur2 in the Java client (its unit test vectors), as signed ints there.
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, signed in vectors.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key
