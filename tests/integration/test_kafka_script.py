"""deploy/kafka/kafka.sh: idempotent start, honest status, stop only what it started."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.kafkautil import broker_answers
from tests.integration.workers import free_port_pair

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "kafka" / "kafka.sh"


def run(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=180)


def test_second_broker_starts_idempotently_reports_status_and_stops(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port_pair()  # the controller listens on the next port
    env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
    env |= {"KAFKA_PORT": str(port), "KAFKA_HOME": str(tmp_path / "kafka"), "KAFKA_HEAP": "256m"}

    assert run("status", env).returncode != 0, "status must fail before start"
    first = run("start", env)
    assert first.returncode == 0, first.stderr
    pid = (tmp_path / "kafka" / f"broker-{port}.pid").read_text().strip()
    try:
        assert run("status", env).returncode == 0
        second = run("start", env)
        assert second.returncode == 0 and "already running" in second.stderr
        assert (tmp_path / "kafka" / f"broker-{port}.pid").read_text().strip() == pid
        log = (tmp_path / "kafka" / f"broker-{port}.log").read_text()
        assert "Kafka version: 4.3" in log, "the broker log names the Apache Kafka version"
    finally:
        stopped = run("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert run("status", env).returncode != 0
    assert not Path(f"/proc/{pid}").exists(), "the broker process is gone"
    assert asyncio.run(broker_answers(kafka_bootstrap, timeout_s=10)), "the session's broker was not touched"


def test_existing_cluster_means_nothing_is_started(tmp_path: Path) -> None:
    env = {**os.environ, "CHURNWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1", "KAFKA_HOME": str(tmp_path / "k")}
    result = run("start", env)
    assert result.returncode == 0
    assert "existing cluster" in result.stderr
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("held", ["client", "controller"])
def test_start_refuses_a_port_another_process_holds(held: str, tmp_path: Path) -> None:
    # Whatever listens there (another checkout's broker, a system one) is not this home's broker:
    # start must not report it as its own, nor start a JVM that cannot bind.
    port = free_port_pair()
    taken = port if held == "client" else port + 1
    env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
    env |= {"KAFKA_PORT": str(port), "KAFKA_HOME": str(tmp_path / "other")}
    with socket.create_server(("127.0.0.1", taken)):
        try:
            result = run("start", env)
        finally:
            stopped = run("stop", env)
    assert result.returncode != 0
    assert f"127.0.0.1:{taken} is already in use" in result.stderr
    assert f"CHURNWATCH_KAFKA_BOOTSTRAP=127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "other" / f"broker-{port}.pid").exists()
    assert stopped.returncode == 0 and "not running" in stopped.stderr
