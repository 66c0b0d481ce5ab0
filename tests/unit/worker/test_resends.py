"""The log that makes a re-sent record count once, however late its second copy comes."""

from __future__ import annotations

import pytest

from streamer.worker.resends import ResendLog, read_source, with_source


def test_a_second_copy_of_a_source_position_is_a_duplicate_and_a_replay_of_the_same_input_record_is_not() -> (
    None
):
    log = ResendLog()
    assert log.first((3, 100, 90), offset=7)
    assert not log.first((3, 100, 90), offset=912)  # re-sent again after a crash, read at offset 912
    assert log.first((3, 100, 90), offset=7)  # the same input record read again (this partition's replay)
    assert log.first((2, 100, 90), offset=8)  # the same offset of another source partition


def test_positions_below_the_newest_floor_are_forgotten_and_never_taken_for_duplicates() -> None:
    log = ResendLog()
    for offset in range(10, 20):
        assert log.first((0, offset, 10), offset=offset)
    assert len(log) == 10
    # The source committed up to 15: 10..14 can never be re-sent again.
    assert log.first((0, 20, 15), offset=20)
    assert len(log) == 6
    # A copy of 12 arriving now (produced before that commit, delivered late) is applied once.
    assert log.first((0, 12, 10), offset=21)
    assert len(log) == 6
    assert not log.first((0, 17, 10), offset=22)  # 17 is above the floor: still known


def test_the_log_survives_encoding_and_says_when_it_has_changed() -> None:
    log = ResendLog()
    assert not log.dirty
    log.first((1, 5, 4), offset=40)
    log.first((0, 9, 0), offset=41)
    assert log.dirty
    again = ResendLog.decode(log.encode())
    assert not again.dirty and len(again) == 2
    assert not again.first((1, 5, 4), offset=99) and not again.first((0, 9, 0), offset=98)
    assert again.first((1, 5, 4), offset=40)
    assert not again.dirty  # a replay changes nothing
    with pytest.raises(ValueError, match="unreadable resend log"):
        ResendLog.decode(b'{"not": "a log"}')


def test_the_header_replaces_one_already_there_and_a_malformed_one_reads_as_none() -> None:
    headers = with_source((("trace", b"t"), ("churnwatch.resent-from", b"9:9:9")), 2, 41, 40)
    assert headers == (("trace", b"t"), ("churnwatch.resent-from", b"2:41:40"))
    assert read_source(headers) == (2, 41, 40)
    assert read_source((("trace", b"t"),)) is None
    assert read_source((("churnwatch.resent-from", b"2:x:40"),)) is None
    assert read_source((("churnwatch.resent-from", b"2:40"),)) is None
