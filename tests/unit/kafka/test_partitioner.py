"""The worker's murmur2 must route every key exactly as Kafka's default partitioner does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

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
