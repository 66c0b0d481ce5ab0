"""The ``churnwatch`` command: every part behind one command, each with a real ``--help``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.cliutil import settings_epilog
from streamer.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["worker", "api", "delivery", "simulate", "keys", "watch", "backtest", "backfill"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "CHURNWATCH_METRICS_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listed = re.findall(r"^    (\w+) ", capsys.readouterr().out, flags=re.MULTILINE)
    assert listed == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help_and_runs_nothing(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: churnwatch {command} ")
    assert len(out.splitlines()) > 3


def test_a_process_help_lists_every_setting_with_its_variable_and_default() -> None:
    epilog = settings_epilog(WorkerSettings)
    for name in WorkerSettings.model_fields:
        assert f"  CHURNWATCH_{name.upper()} (default: " in epilog
    assert "  CHURNWATCH_PARTITIONS (default: 8)\n" in epilog
    assert "  CHURNWATCH_RULES_FILE (default: unset)\n" in epilog


def test_python_m_streamer_help_prints_help_instead_of_starting_a_worker() -> None:
    done = _run("-m", "streamer", "--help", CHURNWATCH_KAFKA_BOOTSTRAP=f"127.0.0.1:{_free_port()}")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m streamer ")
    assert done.stderr == ""


def test_a_worker_without_a_broker_exits_with_one_line_and_no_traceback() -> None:
    bootstrap = f"127.0.0.1:{_free_port()}"
    done = _run("-m", "streamer.cli", "worker", CHURNWATCH_KAFKA_BOOTSTRAP=bootstrap)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"churnwatch worker: cannot reach Kafka at {bootstrap} (KafkaConnectionError")


def test_a_worker_with_a_missing_rules_file_exits_with_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    done = _run("-m", "streamer", CHURNWATCH_RULES_FILE=str(rules))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"churnwatch worker: rules file {rules}: [Errno 2] No such file or directory: '{rules}'"
    ]


def test_a_backfill_without_a_broker_says_so_before_reading_the_history(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text("not json\n")
    bootstrap = f"127.0.0.1:{_free_port()}"
    done = _run("-m", "streamer.cli", "backfill", "--bootstrap", bootstrap, str(history))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"backfill: Kafka at {bootstrap} did not take the events: KafkaConnectionError"
    )


def test_delivery_without_a_broker_ends_with_one_line_and_no_traceback() -> None:
    bootstrap = f"127.0.0.1:{_free_port()}"
    done = _run(
        "-m",
        "streamer.cli",
        "delivery",
        CHURNWATCH_KAFKA_BOOTSTRAP=bootstrap,
        CHURNWATCH_DELIVERY_FILE=str(ROOT / "deploy" / "delivery.example.toml"),
        CHURNWATCH_DELIVERY_METRICS_PORT="0",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Unclosed" not in done.stderr  # every client it built is closed
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"churnwatch delivery: cannot reach Kafka at {bootstrap} (KafkaConnectionError")
