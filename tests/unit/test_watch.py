"""``python -m streamer.watch`` (``make watch``) without a broker: one line, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that is bound but never listens, so a connection to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_watch_without_a_broker_says_so_in_one_line_and_fails(silent_port: int) -> None:
    env = {**os.environ, "CHURNWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{silent_port}"}

    done = subprocess.run(
        [sys.executable, "-m", "streamer.watch"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"python -m streamer.watch: cannot reach Kafka at 127.0.0.1:{silent_port}: no broker answered"
        " — start it with `make kafka-up`, or set CHURNWATCH_KAFKA_BOOTSTRAP to a broker\n"
    )
