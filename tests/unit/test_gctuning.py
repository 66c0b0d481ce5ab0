"""The collector settings a batch job runs under, and the collector as it was afterwards."""

from __future__ import annotations

import gc

from streamer.gctuning import collected_rarely


def test_a_batch_job_runs_with_rare_collections_and_leaves_the_collector_as_it_was() -> None:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        kept = [object() for _ in range(10)]
        with collected_rarely():
            assert gc.get_threshold() == (50_000, 20, 100)
            assert gc.get_freeze_count() >= len(kept)  # what existed before is out of collection
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_the_collector_is_restored_when_the_job_fails() -> None:
    before = gc.get_threshold()
    try:
        with collected_rarely():
            raise RuntimeError("the replay failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
