"""deploy/kafka/kafka.sh: idempotent start, honest status, stop only what it started."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

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


def test_start_refuses_a_port_another_broker_holds(kafka_bootstrap: str, tmp_path: Path) -> None:
    # The session's broker is not this home's: start must not report it as its own.
    port = kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if k != "CHURNWATCH_KAFKA_BOOTSTRAP"}
    env |= {"KAFKA_PORT": port, "KAFKA_HOME": str(tmp_path / "other")}
    result = run("start", env)
    assert result.returncode != 0
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert f"CHURNWATCH_KAFKA_BOOTSTRAP=127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "other" / f"broker-{port}.pid").exists()
    assert run("stop", env).returncode == 0  # nothing of ours to stop; the session's broker stays
    assert asyncio.run(broker_answers(kafka_bootstrap, timeout_s=10))
