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
the input offsets the first and the latest copy came in at. A second record with the same source
position is a duplicate; the same input record read again after the receiver's own crash is not (the
account's applied offset handles that). A position is forgotten once it can matter no more: its source
will not re-send it (below the source's newest floor) and this partition will not read any of its copies
again (each below the partition's own committed offset). A duplicate the receiver's replay reads again
is then still known as one. The log holds a few seconds of re-sends.
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
    """The source positions a partition applied, per source partition, until they can matter no more."""

    __slots__ = ("_floors", "_pruned", "_seen", "dirty")

    def __init__(self) -> None:
        self._floors: dict[int, int] = {}
        # source partition → {source offset: (input offset of its first copy, of its latest copy)}
        self._seen: dict[int, dict[int, tuple[int, int]]] = {}
        # The committed offset and floors the last prune saw (nothing to forget until one moves).
        self._pruned: tuple[int, dict[int, int]] = (-1, {})
        self.dirty = False

    def __len__(self) -> int:
        return sum(len(seen) for seen in self._seen.values())

    def first(self, source: tuple[int, int, int], offset: int) -> bool:
        """Whether the record at input ``offset``, re-sent from ``source``, is the first copy to arrive.

        The same input record read again (a replay of this partition) is still the first copy.
        """
        partition, source_offset, floor = source
        if floor > self._floors.get(partition, -1):
            self._floors[partition] = floor
            self.dirty = True
        seen = self._seen.setdefault(partition, {})
        known = seen.get(source_offset)
        if known is None:
            seen[source_offset] = (offset, offset)
            self.dirty = True
            return True
        at, latest = known
        if offset == at:
            return True
        if offset > latest:
            # Remembered until this copy too is below the committed offset: a replay reads it again.
            seen[source_offset] = (at, offset)
            self.dirty = True
        return False

    def prune(self, committed: int) -> int:
        """Forget the positions no copy of which can come again, given this partition's ``committed``
        offset: below their source's floor, and every copy read here below ``committed``. Returns how
        many were forgotten."""
        if self._pruned == (committed, self._floors):
            return 0
        forgotten = 0
        for partition, seen in self._seen.items():
            floor = self._floors.get(partition, -1)
            old = [o for o, (_, latest) in seen.items() if o < floor and latest < committed]
            for o in old:
                del seen[o]
            forgotten += len(old)
        self._pruned = (committed, dict(self._floors))
        if forgotten:
            self.dirty = True
        return forgotten

    def encode(self) -> bytes:
        """The log as stored with the partition's states."""
        return orjson.dumps(
            [
                [p, self._floors.get(p, -1), [[o, at, latest] for o, (at, latest) in seen.items()]]
                for p, seen in self._seen.items()
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> ResendLog:
        """Read what :meth:`encode` wrote (or its earlier form without the latest copy's offset);
        ValueError if it cannot be read."""
        log = cls()
        try:
            for partition, floor, entries in orjson.loads(raw):
                log._floors[int(partition)] = int(floor)
                seen = log._seen[int(partition)] = {}
                for o, at, *latest in entries:
                    seen[int(o)] = (int(at), int(latest[0]) if latest else int(at))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"unreadable resend log: {exc}") from exc
        return log


class ForwardedIds:
    """The ids of the last records a partition re-sent elsewhere, and the offset each was read at.

    A producer's second delivery of a message (the same id) that this partition re-sends is normally
    caught where its account lives, among the account's recent event ids. But re-sent records reach
    the account later than its own records: one copy re-sent before a crash and the other after it
    arrive there hundreds of the account's events apart, beyond those ids. Here, in the partition's
    own order, the two are as close as they were sent: the second is dropped before it is re-sent.
    The same record read again (a replay) is not a second delivery. Bounded to ``limit`` ids, oldest
    forgotten first; stored with the partition's states.
    """

    __slots__ = ("_ids", "dirty", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self._ids: dict[str, int] = {}
        self.limit = limit
        self.dirty = False

    def __len__(self) -> int:
        return len(self._ids)

    def first(self, record_id: str, offset: int) -> bool:
        """Whether the record at ``offset`` with ``record_id`` is the first delivery of that id."""
        known = self._ids.get(record_id)
        if known is not None:
            return known == offset
        self._ids[record_id] = offset
        if len(self._ids) > self.limit:
            del self._ids[next(iter(self._ids))]
        self.dirty = True
        return True

    def encode(self) -> bytes:
        """The ids as stored with the partition's states, oldest first."""
        return orjson.dumps(list(self._ids.items()))

    @classmethod
    def decode(cls, raw: bytes, limit: int = 4096) -> ForwardedIds:
        """Read what :meth:`encode` wrote; ValueError if it cannot be read."""
        ids = cls(limit)
        try:
            pairs = orjson.loads(raw)
            if not isinstance(pairs, list):
                raise TypeError(f"a list of [id, offset] pairs, not {type(pairs).__name__}")
            for record_id, offset in pairs:
                ids._ids[str(record_id)] = int(offset)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"unreadable forwarded ids: {exc}") from exc
        return ids
