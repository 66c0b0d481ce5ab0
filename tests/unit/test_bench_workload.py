"""The benchmark's seeded states are stored as a worker stores them, due point included."""

from __future__ import annotations

from bench import workload
from streamer.core.policy import DAY_MS
from streamer.core.state import decode_state, peek_state

NOW = 1_796_448_575_293  # 2026-12-05T05:29:35.293Z


def test_seeded_states_carry_their_next_due_point() -> None:
    # A restarted worker schedules an account from the due point in its stored header: a state stored
    # without one would be left out of the schedule, and the memory and restart figures with it.
    seeded = list(workload.encoded_states(3, NOW))
    assert [a for a, _ in seeded] == ["acct-0000000", "acct-0000001", "acct-0000002"]
    for _, raw in seeded:
        # Active every day of its window, so nothing is due before the next UTC midnight.
        assert peek_state(raw) == (NOW // DAY_MS * DAY_MS + DAY_MS, "good", False)
        assert decode_state(raw).due_ms == NOW // DAY_MS * DAY_MS + DAY_MS
