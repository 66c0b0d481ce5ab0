"""The compiled parts of churnwatch's worker (see streamer/core/state.py for the format they follow)."""

from collections.abc import Collection
from typing import Any

STATE_VERSION: int

class Codec:
    """The account state's binary codec, bound to the classes of ``streamer.core.state``."""

    def __init__(
        self,
        state: type,
        day_bucket: type,
        top_user: type,
        scored: type,
        milestone: type,
        bands: list[Any],
        components: list[str],
        fields: list[str],
    ) -> None: ...
    def clone_state(self, s: Any) -> Any:
        """An independent copy of a state, as ``streamer.core.state.clone_state`` makes it."""
    def check(self, s: Any) -> None:
        """Raise ValueError as ``streamer.core.state.check_encodable`` does (the same message)."""
    def decode(self, b: bytes) -> Any:
        """Decode a current-version state; ValueError on any other, or on truncated or corrupt input."""
    def encode(self, s: Any) -> bytes:
        """Encode a state: the same bytes as ``streamer.core.state.python_encode_state``."""
    def touch_user(self, users: list[Any], user: int, day: int, top: int) -> bool:
        """``streamer.core.engine.python_touch_user`` on the list ``users``; False (unchanged) if declined."""

class EventParser:
    """The common usage event's parser (``streamer.core.events.parse_event``)."""

    def __init__(
        self,
        usage_event: type,
        activity: Any,
        reserved: list[str],
        max_len: int,
        max_bytes: int,
        min_ms: int,
        max_ms: int,
    ) -> None: ...
    def parse(self, raw: bytes) -> Any:
        """The event ``python_parse_event`` reads from ``raw``, or None where this declines."""

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, as an unsigned int (``streamer.kafka.partitioner.murmur2``)."""

def partition_of_str(partitions: int, key: str) -> int:
    """The partition Kafka's default partitioner gives the UTF-8 of ``key`` among ``partitions``."""

def rfc3339_ms(value: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 timestamp with an offset, or None when ``value`` is not one."""

def blake64(text: str) -> int:
    """The unsigned 64-bit BLAKE2b (digest size 8, little endian) of ``text``'s UTF-8."""

def newest_day(days: dict[int, Any]) -> int:
    """``max(days)``: the newest of an account's days."""

def gamma_q(a: float, x: float) -> float | None:
    """``streamer.core.rhythm.python_gamma_q`` to the last bit; None where it declines (the reference answers)."""

def rhythm_parts(
    u: dict[int, float], first: int, last: int, excluded: Collection[int], since: int
) -> tuple[int, int, tuple[float, ...], tuple[float, ...], float, float]:
    """The fields of ``streamer.core.rhythm.rhythm``'s Rhythm, computed alike (the same floats)."""
