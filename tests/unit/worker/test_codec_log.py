"""The worker says at start which state codec it runs on."""

from __future__ import annotations

import logging

import pytest

from streamer.worker.__main__ import say_which_codec


def test_a_worker_without_the_compiled_codec_warns_how_to_build_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="churnwatch.worker"):
        say_which_codec(native=True)
        say_which_codec(native=False)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "state codec: compiled (churnwatch_native)"),
        (
            "WARNING",
            "state codec: Python, churnwatch_native is not installed (`make install` builds it with cargo);"
            " the worker is slower on accounts that leave its cache",
        ),
    ]
