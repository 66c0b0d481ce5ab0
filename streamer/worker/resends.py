"""Exactly-once for records a worker re-sends to another partition of its own input.

A record keyed by something other than its account (re-keyed), or a Segment message that named only
its user (attributed), is applied where its account's state lives: the worker that read it re-sends it
to that partition. The re-send is produced before the source offset is committed, so a crash between
the two makes the next owner of the source partition read the record again and re-send it: the same
record arrives twice, possibly far apart. An account's recent event ids catch a copy that comes soon
after; this catches every copy.

Each re-send carries a ``churnwatch.resent-from`` header: the source partition and offset, and the source's
committed offset at the time (its *floor*: the source never reads, so never re-sends, anything below
it again). The receiving partition keeps, per source partition, the source offsets it has applied and
the input offset each came in at. A second record with the same source position is a duplicate; the
same input record read again after the receiver's own crash is not (the account's applied offset
handles that). Positions below the newest floor seen are dropped: the log holds only what the sources
have not committed yet, a few seconds of re-sends.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

SOURCE_HEADER = "churnwatch.resent-from"


def source_header(partition: int, offset: int, floor: int) -> tuple[str, bytes]:
    """The header a re-sent record carries: where it was read, and the source's committed offset."""
    return SOURCE_HEADER, f"{partition}:{offset}:{floor}".encode()


def with_source(
    headers: Iterable[tuple[str, bytes]], partition: int, offset: int, floor: int
) -> tuple[tuple[str, bytes], ...]:
    """``headers`` with the source header set (replacing one a record may already carry)."""
    kept = tuple(h for h in headers if h[0] != SOURCE_HEADER)
    return (*kept, source_header(partition, offset, floor))


def read_source(headers: Iterable[tuple[str, bytes]]) -> tuple[int, int, int] | None:
    """(source partition, source offset, floor) of a re-sent record; None for any other record or a
    header that does not parse (the record is then applied as it is)."""
    for name, value in headers:
        if name == SOURCE_HEADER:
            try:
                partition, offset, floor = (int(part) for part in value.split(b":"))
            except ValueError:
                return None
            return partition, offset, floor
    return None


class ResendLog:
    """The source positions a partition applied, per source partition, above each source's floor."""

    __slots__ = ("_floors", "_seen", "dirty")

    def __init__(self) -> None:
        self._floors: dict[int, int] = {}
        # source partition → {source offset: input offset it was applied at}
        self._seen: dict[int, dict[int, int]] = {}
        self.dirty = False

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._seen.values())

    def first(self, source: tuple[int, int, int], offset: int) -> bool:
        """Whether the record at input ``offset``, re-sent from ``source``, is the first copy to arrive.

        The same input record read again (a replay of this partition) is still the first copy.
        """
        partition, source_offset, floor = source
        seen = self._seen.setdefault(partition, {})
        if floor > self._floors.get(partition, -1):
            self._floors[partition] = floor
            for old in [o for o in seen if o < floor]:
                del seen[old]
            self.dirty = True
        known = seen.get(source_offset)
        if known is not None:
            return known == offset
        if source_offset < self._floors[partition]:
            return True  # committed at its source before it came: never re-sent again
        seen[source_offset] = offset
        self.dirty = True
        return True

    def encode(self) -> bytes:
        """The log as stored with the partition's states."""
        return orjson.dumps(
            [
                [p, self._floors.get(p, -1), [[o, at] for o, at in seen.items()]]
                for p, seen in self._seen.items()
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> ResendLog:
        """Read what :meth:`encode` wrote; ValueError if it cannot be read."""
        log = cls()
        try:
            for partition, floor, pairs in orjson.loads(raw):
                log._floors[int(partition)] = int(floor)
                log._seen[int(partition)] = {int(o): int(at) for o, at in pairs}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"unreadable resend log: {exc}") from exc
        return log
