"""``churnwatch simulate`` (or ``python -m streamer.simulate``): simulated usage of seeded accounts.

The events come from :mod:`streamer.sim.seeded` (seeded, pure); this module only paces simulated
time against the wall clock and writes the events out. Simulated time starts at ``--start`` (or
``--start-days-ago`` days before now) and advances ``--speed`` times faster than the wall clock
(0: as fast as possible) but never passes the wall clock: once it has caught up it runs in real time,
so no event is ever stamped in the future. Examples::

    churnwatch simulate --accounts 40                      # real time, into Kafka, until Ctrl-C
    churnwatch simulate --start-days-ago 35 --speed 0      # 35 days of history at once, then live
    churnwatch simulate --start-days-ago 1 --speed 60      # one simulated minute per second
    churnwatch simulate --start 2026-01-05T00:00:00Z --duration 604800 --speed 0 --jsonl week.jsonl

The same seed, start, horizon and limits write the same JSONL byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import IO, Any, Protocol

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from streamer.core.alerts import ms_to_rfc3339
from streamer.core.events import InvalidEvent, parse_event_time
from streamer.sim.seeded import BEHAVIOURS, DAY_MS, Simulation, make_accounts

log = logging.getLogger("churnwatch.simulate")

TICK_S = 0.25  # how often a paced run wakes up to emit what became due
CHUNK_MS = 6 * 3_600_000  # an unpaced run emits at most six simulated hours between progress updates
CAUGHT_UP = "caught up with the wall clock"


class Sink(Protocol):
    """Where events go."""

    async def write(self, event: dict[str, Any]) -> None:
        """Write one event."""

    async def close(self) -> None:
        """Flush and release."""


class JsonlSink:
    """One JSON document per line, in the order generated."""

    def __init__(self, out: IO[bytes]) -> None:
        """Write to ``out`` (a binary file or stdout's buffer)."""
        self.out = out

    async def write(self, event: dict[str, Any]) -> None:  # see Sink
        self.out.write(orjson.dumps(event) + b"\n")

    async def close(self) -> None:  # see Sink
        self.out.flush()


class KafkaSink:
    """An idempotent producer keyed by account id."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        """Producer for ``topic``; started by :meth:`start`."""
        from aiokafka import AIOKafkaProducer

        self.topic = topic
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10
        )

    async def start(self) -> None:
        """Connect."""
        await self.producer.start()

    async def write(self, event: dict[str, Any]) -> None:  # see Sink
        await self.producer.send(self.topic, orjson.dumps(event), key=event["account_id"].encode())

    async def close(self) -> None:  # see Sink
        await self.producer.stop()


def simulated_now(start_ms: int, speed: float, elapsed_s: float, wall_ms: int) -> int:
    """Where simulated time is after ``elapsed_s`` wall seconds: sped up, but never past the wall clock.

    Args:
        start_ms: Simulated time at the start of the run.
        speed: Simulated seconds per wall second; 0 means as fast as possible.
        elapsed_s: Wall seconds since the start of the run.
        wall_ms: The wall clock now (epoch ms).
    """
    if speed == 0:
        return max(start_ms, wall_ms)
    return min(max(wall_ms, start_ms), start_ms + int(speed * elapsed_s * 1000))


async def pump(
    sim: Simulation,
    sink: Sink,
    *,
    speed: float,
    end_ms: int | None,
    max_events: int | None,
    stop: asyncio.Event,
    wall_ms: Callable[[], int],
    monotonic: Callable[[], float] = time.monotonic,
    on_progress: Callable[[int, int], None] | None = None,
    tick_s: float = TICK_S,
) -> int:
    """Emit the simulation's events into ``sink`` as simulated time advances.

    Args:
        sim: The simulation, at its start.
        sink: Where events go.
        speed: Simulated seconds per wall second (0: as fast as possible); capped by the wall clock.
        end_ms: Simulated time to stop at (None: no end).
        max_events: Events to stop after (None: no limit).
        stop: Set to stop early (signals).
        wall_ms: The wall clock, epoch ms.
        monotonic: Seconds from a monotonic origin, for pacing.
        on_progress: Called with (events written, simulated ms reached) after each step.
        tick_s: Wall seconds between steps of a paced run.

    Returns:
        Events written.
    """
    started = monotonic()
    written = 0
    caught_up = False
    while not stop.is_set():
        wall = wall_ms()
        target = simulated_now(sim.start_ms, speed, monotonic() - started, wall)
        if speed == 0:
            target = min(target, sim.now_ms + CHUNK_MS)
        if end_ms is not None:
            target = min(target, end_ms)
        for event in sim.until(target):
            await sink.write(event)
            written += 1
            if max_events is not None and written >= max_events:
                break
        if on_progress is not None:
            on_progress(written, target)
        if (max_events is not None and written >= max_events) or (end_ms is not None and target >= end_ms):
            break
        if not caught_up and target >= wall:
            caught_up = True
            log.info("%s at %s after %d events", CAUGHT_UP, ms_to_rfc3339(target), written)
        if caught_up or speed != 0:
            try:
                await asyncio.wait_for(stop.wait(), tick_s)
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(0)  # let the producer's background tasks run
    return written


def _parse_args(argv: Sequence[str] | None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog or "churnwatch simulate",
        description="Simulate SaaS product usage of seeded accounts into Kafka (or a JSONL file).",
    )
    parser.add_argument("--accounts", type=int, default=40, help="number of accounts (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per wall second; 0 = as fast as possible (default 1). "
        "Simulated time never passes the wall clock.",
    )
    parser.add_argument(
        "--start-days-ago",
        type=float,
        default=0.0,
        help="start simulated time this many days ago (default 0)",
    )
    parser.add_argument("--start", help="RFC 3339 start of simulated time; overrides --start-days-ago")
    parser.add_argument(
        "--horizon-days",
        type=float,
        default=None,
        help="days over which the account stories (decays, stops, returns) unfold "
        "(default: --start-days-ago when > 0, else 1)",
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="simulated seconds to run; 0 = no limit (default 0)"
    )
    parser.add_argument("--events", type=int, default=0, help="stop after this many events; 0 = no limit")
    parser.add_argument(
        "--jsonl", metavar="FILE", help="write JSON lines to FILE ('-' for stdout) instead of Kafka"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar for finite runs (default: on when stderr is a terminal)",
    )
    args = parser.parse_args(argv)
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    if args.start_days_ago < 0 or args.duration < 0 or args.events < 0:
        parser.error("--start-days-ago, --duration and --events must be >= 0")
    if args.horizon_days is not None and args.horizon_days <= 0:
        parser.error("--horizon-days must be > 0")
    if args.start is not None:
        try:
            args.start_ms = parse_event_time(args.start, "--start")
        except InvalidEvent as err:
            parser.error(str(err))
    else:
        args.start_ms = None
    return args


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[at]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


async def _run(args: argparse.Namespace, console: Console) -> int:
    now_ms = int(time.time() * 1000)
    start_ms = args.start_ms if args.start_ms is not None else now_ms - int(args.start_days_ago * DAY_MS)
    start_ms -= start_ms % 1000
    horizon_days = args.horizon_days or (args.start_days_ago if args.start_days_ago > 0 else 1.0)
    accounts = make_accounts(args.accounts, args.seed, start_ms, int(horizon_days * DAY_MS))
    sim = Simulation(accounts, args.seed, start_ms)
    end_ms = start_ms + int(args.duration * 1000) if args.duration else None
    max_events = args.events or None

    with ExitStack() as stack:
        sink: Sink
        if args.jsonl is not None:
            out = sys.stdout.buffer if args.jsonl == "-" else stack.enter_context(open(args.jsonl, "wb"))
            sink = JsonlSink(out)
            where = "stdout" if args.jsonl == "-" else args.jsonl
        else:
            from streamer.worker.settings import WorkerSettings

            settings = WorkerSettings()
            kafka = KafkaSink(settings.kafka_bootstrap, settings.events_topic)
            await kafka.start()
            sink = kafka
            where = f"{settings.events_topic} on {settings.kafka_bootstrap}"
        behaviours = {b: sum(a.behaviour == b for a in accounts) for b in sorted(set(BEHAVIOURS))}
        log.info(
            "simulating %d accounts (%s) from %s at speed %s into %s",
            len(accounts),
            ", ".join(f"{k} {v}" for k, v in behaviours.items()),
            ms_to_rfc3339(start_ms),
            args.speed or "max",
            where,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        finite = end_ms is not None or max_events is not None
        enabled = finite and (args.progress if args.progress is not None else console.is_terminal)
        total = max_events if max_events is not None else int(args.duration)
        with _progress(console, enabled) as progress:
            task = progress.add_task("events", total=total, at="")

            def report(written: int, sim_ms: int) -> None:
                done = written if max_events is not None else (sim_ms - start_ms) // 1000
                progress.update(task, completed=done, at=f"{written} events, at {ms_to_rfc3339(sim_ms)}")

            try:
                written = await pump(
                    sim,
                    sink,
                    speed=args.speed,
                    end_ms=end_ms,
                    max_events=max_events,
                    stop=stop,
                    wall_ms=lambda: int(time.time() * 1000),
                    on_progress=report,
                )
            finally:
                await sink.close()
    return written


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> None:
    """Parse arguments and run the simulator."""
    args = _parse_args(argv, prog)
    console = Console(stderr=True)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    written = asyncio.run(_run(args, console))
    log.info("done: %d events", written)


if __name__ == "__main__":
    main()
