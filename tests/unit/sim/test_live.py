"""The simulator: seeded stories, rhythm, reserved events, pacing against a clock, and the JSONL CLI."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.core.events import EventKind, parse_event, parse_event_time
from streamer.sim.live import JsonlSink, pump, simulated_now
from streamer.sim.seeded import DAY_MS, HOUR_MS, Simulation, activity_factor, make_accounts

REPO = Path(__file__).resolve().parents[3]
# A Monday at midnight UTC.
START = parse_event_time("2026-10-05T00:00:00Z")
HORIZON = 28 * DAY_MS


def simulate(n: int = 30, seed: int = 7, days: int = 35) -> tuple[Simulation, list[dict[str, Any]]]:
    sim = Simulation(make_accounts(n, seed, START, HORIZON), seed, START)
    return sim, list(sim.until(START + days * DAY_MS))


def at(event: dict[str, Any]) -> int:
    return parse_event_time(event["timestamp"])


def test_same_seed_same_events_and_another_seed_others() -> None:
    _, first = simulate(seed=3, days=10)
    _, again = simulate(seed=3, days=10)
    _, other = simulate(seed=4, days=10)

    assert first == again
    assert first != other


def test_output_does_not_depend_on_how_time_is_advanced() -> None:
    _, at_once = simulate(n=10, days=7)
    sim = Simulation(make_accounts(10, 7, START, HORIZON), 7, START)
    stepped: list[dict[str, Any]] = []
    for minute in range(0, 7 * 24 * 60 + 1, 7):
        stepped.extend(sim.until(START + minute * 60_000))
    stepped.extend(sim.until(START + 7 * DAY_MS))

    assert stepped == at_once


def test_events_are_in_time_order_and_never_past_the_bound() -> None:
    sim = Simulation(make_accounts(20, 1, START, HORIZON), 1, START)
    bound = START + 3 * DAY_MS + 12_345
    events = list(sim.until(bound))
    times = [at(e) for e in events]

    assert times == sorted(times)
    assert max(times) <= bound
    assert list(sim.until(bound)) == []  # nothing is returned twice
    assert all(at(e) > bound for e in sim.until(bound + DAY_MS))


def test_every_event_is_valid_and_uses_the_reserved_names() -> None:
    _, events = simulate()
    kinds = Counter(parse_event(orjson.dumps(e)).kind for e in events)
    ids = [e["event_id"] for e in events]

    assert len(set(ids)) == len(ids)
    assert set(kinds) == set(EventKind)
    assert kinds[EventKind.ACCOUNT_UPDATED] == 30
    assert kinds[EventKind.SUBSCRIPTION_STARTED] == 30
    assert kinds[EventKind.ACTIVITY] > 10 * kinds[EventKind.SUPPORT_TICKET_OPENED]
    assert all(0 <= e["properties"]["score"] <= 10 for e in events if e["event"] == "nps_response")


def test_weekends_and_nights_are_quieter() -> None:
    _, events = simulate(n=40, days=28)
    usage = [datetime.fromtimestamp(at(e) / 1000, UTC) for e in events if "user_id" in e]
    weekday = sum(1 for t in usage if t.weekday() < 5) / 20
    weekend = sum(1 for t in usage if t.weekday() >= 5) / 8
    office = sum(1 for t in usage if 9 <= t.hour < 17)
    night = sum(1 for t in usage if t.hour < 5 or t.hour >= 22)

    assert weekend < 0.4 * weekday
    assert night < 0.1 * office
    # The rhythm averages to one weekday's volume per weekday.
    assert sum(activity_factor(START + h * HOUR_MS) for h in range(24)) == pytest.approx(24, rel=1e-9)


def test_each_behaviour_shows_in_the_events() -> None:
    sim, events = simulate(n=60, days=35)
    usage: dict[str, list[int]] = {}
    for e in events:
        if "user_id" in e and e["event"] not in ("nps_response", "support_ticket_opened"):
            usage.setdefault(e["account_id"], []).append(at(e))
    by_kind = Counter(a.behaviour for a in sim.accounts)
    assert all(by_kind[b] > 0 for b in ("steady", "decaying", "stops", "returns"))

    for account in sim.accounts:
        times = usage.get(account.account_id, [])
        if account.behaviour == "stops":
            assert all(t < account.change_at_ms for t in times), account
        elif account.behaviour == "returns":
            assert not any(account.change_at_ms <= t < account.return_at_ms for t in times), account
            if account.return_at_ms + 2 * DAY_MS < START + 35 * DAY_MS:
                assert any(t >= account.return_at_ms for t in times), account
        elif account.behaviour == "decaying" and account.change_at_ms + 14 * DAY_MS < START + 35 * DAY_MS:
            before = sum(account.change_at_ms - 7 * DAY_MS <= t < account.change_at_ms for t in times)
            late = sum(
                account.change_at_ms + 7 * DAY_MS <= t < account.change_at_ms + 14 * DAY_MS for t in times
            )
            assert late < 0.7 * before, account


def test_cancelled_accounts_send_nothing_after_cancelling() -> None:
    _, events = simulate(n=60, days=35)
    cancelled = {e["account_id"]: at(e) for e in events if e["event"] == "subscription_cancelled"}
    assert cancelled

    after = [e for e in events if e["account_id"] in cancelled and at(e) > cancelled[e["account_id"]]]
    assert all(e["event"] == "support_ticket_closed" for e in after)


@pytest.mark.parametrize(
    ("speed", "elapsed_s", "wall_ms", "expected"),
    [
        (60.0, 10.0, 10**12, 1_000_000 + 600_000),  # sped up
        (60.0, 10.0, 1_300_000, 1_300_000),  # ... but never past the wall clock
        (0.0, 0.0, 5_000_000, 5_000_000),  # as fast as possible: straight to the wall clock
        (1.0, 3.0, 900_000, 1_000_000),  # a start in the future waits there
    ],
)
def test_simulated_time_is_sped_up_but_capped_by_the_wall_clock(
    speed: float, elapsed_s: float, wall_ms: int, expected: int
) -> None:
    assert simulated_now(1_000_000, speed, elapsed_s, wall_ms) == expected


class FakeClocks:
    """A wall clock and a monotonic clock that advance by one tick whenever they are read twice."""

    def __init__(self, wall_ms: int) -> None:
        self.wall = wall_ms
        self.mono = 0.0

    def wall_ms(self) -> int:
        self.wall += 250
        self.mono += 0.25
        return self.wall

    def monotonic(self) -> float:
        return self.mono


async def test_pump_at_speed_never_stamps_an_event_after_the_wall_clock() -> None:
    wall0 = START + 10 * HOUR_MS
    clocks = FakeClocks(wall0)
    sim = Simulation(make_accounts(20, 7, START, HORIZON), 7, START)
    out = io.BytesIO()
    stamped: list[tuple[int, int]] = []

    class Recording(JsonlSink):
        async def write(self, event: dict[str, Any]) -> None:
            stamped.append((at(event), clocks.wall))
            await super().write(event)

    written = await pump(
        sim,
        Recording(out),
        speed=3600.0,
        end_ms=wall0 + HOUR_MS,
        max_events=None,
        stop=asyncio.Event(),
        wall_ms=clocks.wall_ms,
        monotonic=clocks.monotonic,
        tick_s=0,
    )

    assert written == len(stamped) == out.getvalue().count(b"\n") > 0
    assert all(event_ms <= wall for event_ms, wall in stamped)
    # It caught up with the (fake) wall clock and went on in real time up to the end.
    assert max(e for e, _ in stamped) > wall0


async def test_pump_stops_after_the_requested_number_of_events() -> None:
    sim = Simulation(make_accounts(5, 7, START, HORIZON), 7, START)
    out = io.BytesIO()
    progress: list[tuple[int, int]] = []

    written = await pump(
        sim,
        JsonlSink(out),
        speed=0,
        end_ms=None,
        max_events=123,
        stop=asyncio.Event(),
        wall_ms=lambda: START + 30 * DAY_MS,
        on_progress=lambda n, sim_ms: progress.append((n, sim_ms)),
    )

    assert written == 123 == out.getvalue().count(b"\n")
    assert progress[-1][0] == 123


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.simulate", *args], cwd=REPO, capture_output=True, timeout=120
    )


def test_cli_writes_the_same_jsonl_byte_for_byte_for_the_same_seed(tmp_path: Path) -> None:
    common = ("--accounts", "15", "--start", "2026-09-01T00:00:00Z", "--duration", str(10 * 86400))
    first = run_cli(*common, "--speed", "0", "--jsonl", "-")
    second = run_cli(*common, "--speed", "0", "--jsonl", str(tmp_path / "out.jsonl"))
    other_seed = run_cli(*common, "--speed", "0", "--seed", "8", "--jsonl", "-")

    assert first.returncode == 0, first.stderr.decode()
    assert second.returncode == 0, second.stderr.decode()
    assert first.stdout == (tmp_path / "out.jsonl").read_bytes()
    assert first.stdout.count(b"\n") > 1000
    assert other_seed.stdout != first.stdout
    # Not a terminal: log lines only, no progress bar drawing.
    assert b"\x1b[" not in first.stderr
    assert b"\xe2\x94\x81" not in first.stderr  # the bar's glyph


def test_cli_draws_a_progress_bar_when_asked_and_stops_after_n_events() -> None:
    result = run_cli(
        "--accounts", "3", "--start-days-ago", "3", "--speed", "0", "--events", "50", "--jsonl", "-"
    )
    forced = run_cli(
        "--accounts",
        "3",
        "--start-days-ago",
        "3",
        "--speed",
        "0",
        "--events",
        "50",
        "--progress",
        "--jsonl",
        "-",
    )

    assert result.returncode == 0 and forced.returncode == 0, forced.stderr.decode()
    assert b"done: 50 events" in result.stderr
    assert b"simulating" in forced.stderr and b"50/50" in forced.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--speed", "-1"), b"--speed must be >= 0"),
        (("--accounts", "0"), b"--accounts must be at least 1"),
        (("--start", "yesterday"), b"--start: must be RFC 3339"),
    ],
)
def test_cli_rejects_bad_options_with_a_message(args: tuple[str, ...], message: bytes) -> None:
    result = run_cli(*args, "--jsonl", "-")

    assert result.returncode == 2
    assert message in result.stderr
