"""The log that makes a re-sent record count once, however late its second copy comes."""

from __future__ import annotations

import pytest

from streamer.worker.resends import ForwardedIds, ResendLog, read_source, with_source


def test_a_second_copy_of_a_source_position_is_a_duplicate_and_a_replay_of_the_same_input_record_is_not() -> (
    None
):
    log = ResendLog()
    assert log.first((3, 100, 90), offset=7)
    assert not log.first((3, 100, 90), offset=912)  # re-sent again after a crash, read at offset 912
    assert log.first((3, 100, 90), offset=7)  # the same input record read again (this partition's replay)
    assert log.first((2, 100, 90), offset=8)  # the same offset of another source partition


def test_a_position_is_forgotten_once_its_source_never_resends_it_and_no_copy_is_read_again() -> None:
    log = ResendLog()
    for offset in range(10, 20):
        assert log.first((0, offset, 10), offset=offset)
    assert not log.first((0, 12, 10), offset=30)  # a second copy of 12, read here at 30
    # The source committed up to 15 (10..14 are never re-sent again); this partition up to 25.
    assert log.first((0, 20, 15), offset=31)
    log.dirty = False
    assert log.prune(committed=25) == 4  # 10, 11, 13 and 14; 12's second copy may be read again
    assert log.dirty and len(log) == 7
    assert not log.first((0, 12, 10), offset=30)  # that replay: still a duplicate
    assert log.first((0, 12, 10), offset=12)  # the first copy read again is the first copy
    log.dirty = False
    assert log.prune(committed=25) == 0 and not log.dirty  # nothing moved: nothing to do
    assert log.prune(committed=31) == 1 and len(log) == 6
    # A position below the floor not in the log (forgotten) counts as a first copy.
    assert log.first((0, 11, 10), offset=40)


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
    again.dirty = False
    assert again.first((1, 5, 4), offset=40) and not again.first((1, 5, 4), offset=99)
    assert not again.dirty  # a replay changes nothing
    # The form stored before the latest copy's offset was kept reads as a log whose copies came once.
    older = ResendLog.decode(b"[[1, 4, [[5, 40]]]]")
    assert not older.first((1, 5, 4), offset=41) and older.first((1, 5, 4), offset=40)
    with pytest.raises(ValueError, match="unreadable resend log"):
        ResendLog.decode(b'{"not": "a log"}')


def test_the_header_replaces_one_already_there_and_a_malformed_one_reads_as_none() -> None:
    headers = with_source((("trace", b"t"), ("churnwatch.resent-from", b"9:9:9")), 2, 41, 40)
    assert headers == (("trace", b"t"), ("churnwatch.resent-from", b"2:41:40"))
    assert read_source(headers) == (2, 41, 40)
    assert read_source((("trace", b"t"),)) is None
    assert read_source((("churnwatch.resent-from", b"2:x:40"),)) is None
    assert read_source((("churnwatch.resent-from", b"2:40"),)) is None


def test_forwarded_ids_know_a_second_delivery_but_not_a_replay_and_forget_the_oldest() -> None:
    ids = ForwardedIds(limit=3)
    assert ids.first("m1", 10) and ids.first("m2", 11) and ids.first("m3", 12)
    assert not ids.first("m1", 20)  # delivered again, read at 20
    assert ids.first("m1", 10)  # the same record read again
    assert ids.first("m4", 13) and len(ids) == 3  # m1, the oldest, is forgotten
    assert ids.first("m1", 21)
    again = ForwardedIds.decode(ids.encode(), limit=3)
    assert not again.first("m4", 99) and again.first("m4", 13) and not again.dirty
    with pytest.raises(ValueError, match="unreadable forwarded ids"):
        ForwardedIds.decode(b'{"m1": 1}')
