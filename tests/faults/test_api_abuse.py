"""Abuse of the running API (`python -m api` on the shared broker).

Keys, scopes, bodies (oversized and slow), idle connections, rate limits, and schemathesis with all
checks.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.logfilter import DEFAULT_BURST, DEFAULT_INTERVAL_S
from tests.faults.procs import API_KEY, INGEST_KEY, KEYS, READ_KEY, KafkaNode
from tests.faults.traffic import produce_fast
from tests.integration.kafkautil import read_all, wait_until
from tests.integration.pipeline import make_topics, now_ms
from tests.integration.workers import REPO, ApiProcess, WorkerFactory

PROTECTED = [
    ("GET", "/v1/accounts"),
    ("GET", "/v1/accounts/acct-0000/health"),
    ("GET", "/v1/portfolio"),
    ("GET", "/v1/alerts"),
    ("POST", "/v1/events"),
    ("POST", "/v1/segment/batch"),
]


async def _stack(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, tmp_path: Path, **api: str
) -> ApiProcess:
    """A worker fed 2,000 simulated events, and an API process over its topics."""
    import random

    from tests.faults.accounts import make_accounts, usage_event

    topics = await make_topics(topic_factory, 2)
    worker = worker_factory.create(topics, 2, f"abuse-{topics['events']}")
    await worker.start()
    rng = random.Random(3)
    accounts = make_accounts(40, rng)
    at = now_ms() - 600_000
    records: list[tuple[bytes | None, bytes | None]] = [
        ((a := accounts[i % 40]).account_id.encode(), usage_event(a, i, at + i * 100, rng))
        for i in range(2000)
    ]
    await produce_fast(kafka_bootstrap, topics["events"], records)
    await worker.wait_ready()
    proc = ApiProcess(kafka_bootstrap, topics, KEYS, tmp_path / f"api-{len(api)}.log", settings=api)
    await proc.start()
    await proc.wait_ready()
    return proc


@pytest.mark.timeout(600)
async def test_schemathesis_all_checks_against_the_running_api(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """Schemathesis, all checks, against the running API

    `schemathesis run --checks all` against `python -m api` serving a worker's real output (2,000
    simulated events of 40 accounts), every operation but the endless SSE stream, all phases
    (examples, coverage, fuzzing, stateful), seeded from `schemathesis.toml`. Held means: no check
    failed (no 5xx, statuses, content types, headers and bodies as documented, auth enforced).
    """
    api = await _stack(
        kafka_bootstrap,
        topic_factory,
        worker_factory,
        tmp_path,
        rate_limit_per_s="1000000",
        rate_limit_burst="1000000",
        auth_failure_limit="1000000",
    )
    try:
        started = time.monotonic()
        result = await asyncio.to_thread(
            subprocess.run,
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{api.url}/openapi.json",
                "--checks",
                "all",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--exclude-path",
                "/v1/alerts/stream",
                "--max-examples",
                "100",
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=500,
        )
        out = result.stdout + result.stderr
        figures["seconds"] = round(time.monotonic() - started, 1)
        (tmp_path / "schemathesis.txt").write_text(out)
        lines = [line.strip() for line in out.splitlines()]
        cases = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line == "Test cases:"]
        tested = [line.removeprefix("Tested:").strip() for line in lines if line.startswith("Tested:")]
        figures["test cases"] = cases[-1] if cases else "not reported"
        figures["operations tested"] = tested[-1] if tested else "not reported"
        figures["phases"] = [
            line.lstrip("✅❌ ")
            for line in lines
            if line.startswith(("✅ ", "❌ ")) and "(in " in line and "specification" not in line
        ]
        assert result.returncode == 0, out[-6000:]
    finally:
        await api.stop()


async def _api_only(kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, **api: str) -> ApiProcess:
    """An API process over empty topics of its own (for abuse that needs no data), ready."""
    topics = await make_topics(topic_factory, 2)
    proc = ApiProcess(kafka_bootstrap, topics, KEYS, tmp_path / f"api-{topics['events']}.log", settings=api)
    await proc.start()
    await proc.wait_ready()
    return proc


def _slow_post(port: int, key: str) -> socket.socket:
    """A connection that has sent the head of a 1 MB ingest and the body's first byte."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        (
            f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n["
        ).encode()
    )
    s.setblocking(False)
    return s


@pytest.mark.timeout(300)
async def test_slow_bodies_with_a_valid_key_are_answered_408_and_closed(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """API abuse: slow bodies from a valid key

    Against `python -m api` with `CHURNWATCH_BODY_TIMEOUT_S=2`: 100 connections with a valid ingest
    key each send the head of `POST /v1/events` with `Content-Length: 1000000` and then one more
    byte of the body every half second for as long as the connection is open. Held means: the server
    answers every one 408 and closes it (waited for up to 60 s), and a normal request still answers
    200 while they are open.
    """
    api = await _api_only(kafka_bootstrap, topic_factory, tmp_path, body_timeout_s="2")
    slow = [_slow_post(api.port, INGEST_KEY) for _ in range(100)]
    try:
        answers = dict.fromkeys(range(len(slow)), b"")
        closed: dict[int, float] = {}
        started = time.monotonic()
        normal = await asyncio.to_thread(_status, "GET", api.url + "/v1/accounts", {"X-API-Key": API_KEY})
        while len(closed) < len(slow) and time.monotonic() - started < 60:
            for i, s in enumerate(slow):
                if i in closed:
                    continue
                try:
                    data = s.recv(65536)
                    if data == b"":
                        closed[i] = time.monotonic() - started
                    answers[i] += data
                except BlockingIOError:
                    try:
                        s.send(b" ")
                    except OSError:
                        closed[i] = time.monotonic() - started
                except OSError:
                    closed[i] = time.monotonic() - started
            await asyncio.sleep(0.5)
        statuses = sorted({a.split(b"\r\n", 1)[0].decode(errors="replace") for a in answers.values()})
        figures["normal request while 100 slow bodies were open"] = normal
        figures["slow connections closed by the server"] = f"{len(closed)} of {len(slow)}"
        figures["their status lines"] = statuses
        figures["seconds until the last was closed (body timeout 2 s)"] = (
            round(max(closed.values()), 1) if closed else None
        )
        assert normal == 200
        assert len(closed) == len(slow)
        assert statuses == ["HTTP/1.1 408 Request Timeout"]
    finally:
        for s in slow:
            s.close()
        await api.stop()


@pytest.mark.timeout(300)
async def test_clients_gone_mid_body_are_one_log_line_each_and_counted_as_499(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """API abuse: clients that disconnect in the middle of a body

    Against `python -m api`: 10 connections with a valid ingest key send the head of
    `POST /v1/events` with `Content-Length: 1000000` and the body's first byte, then close. Held
    means: the API counts each as status 499 (none as 500) and logs each in one line, without a
    traceback.
    """
    api = await _api_only(kafka_bootstrap, topic_factory, tmp_path)
    try:
        for _ in range(10):
            _slow_post(api.port, INGEST_KEY).close()
        metrics = ""
        deadline = time.monotonic() + 30
        while _ingest_requests(metrics, "499") < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            metrics = (await asyncio.to_thread(httpx.get, api.url + "/metrics", timeout=5)).text
    finally:
        await api.stop()
    log = api.log_path.read_text()
    lines = [line for line in log.splitlines() if "client disconnected before sending the whole body" in line]
    figures["counted as 499 / as 500"] = [_ingest_requests(metrics, "499"), _ingest_requests(metrics, "500")]
    figures["log lines about them"] = len(lines)
    figures["tracebacks in the API log"] = log.count("Traceback")
    assert figures["counted as 499 / as 500"] == [10, 0]
    assert len(lines) == 10
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def _ingest_requests(metrics: str, status: str) -> float:
    """``churnwatch_api_requests_total`` of ``POST /v1/events`` with ``status`` in a metrics page."""
    series = f'churnwatch_api_requests_total{{method="POST",route="/v1/events",status="{status}"}} '
    return sum(float(line.removeprefix(series)) for line in metrics.splitlines() if line.startswith(series))


@pytest.mark.timeout(300)
async def test_guessing_keys_is_throttled_per_address(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """API abuse: guessing keys

    Against `python -m api` (defaults: 20 failed authentications per address at once, then one
    every 3 s): 2,000 requests with unknown keys from 127.0.0.1, then one with a valid key from the
    same address and one from 127.0.0.2. Held means: at most 20 + one per 3 s elapsed of the
    guesses are answered 401, all others 429 with Retry-After; the valid key from the guessing
    address is 429 too (a right guess looks like a wrong one), and the other address is served.
    """
    api = await _api_only(kafka_bootstrap, topic_factory, tmp_path)
    try:
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as guesser:
            guesses = [
                await guesser.get("/v1/accounts", headers={"X-API-Key": f"guess-{i}"}) for i in range(2000)
            ]
            elapsed = time.monotonic() - started
            right_key = await guesser.get("/v1/accounts", headers={"X-API-Key": READ_KEY})
        other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=api.url, transport=other_address, timeout=10) as other:
            elsewhere = await other.get("/v1/accounts", headers={"X-API-Key": READ_KEY})
    finally:
        await api.stop()
    unauthorized = sum(r.status_code == 401 for r in guesses)
    throttled = [r for r in guesses if r.status_code == 429]
    figures["2,000 unknown keys from one address: 401 / 429"] = [unauthorized, len(throttled)]
    figures["seconds they took"] = round(elapsed, 1)
    figures["valid key from that address / from another"] = [right_key.status_code, elsewhere.status_code]
    assert unauthorized + len(throttled) == 2000
    assert 20 <= unauthorized <= 20 + elapsed / 3 + 1
    assert all(r.headers.get("retry-after") for r in throttled)
    assert right_key.status_code == 429
    assert elsewhere.status_code == 200


@dataclass
class _Posted:
    phase: str
    status: int
    seconds: float
    retry_after: str | None
    event_ids: list[str]


async def _post_events(client: httpx.AsyncClient, phase: str, n: int) -> _Posted:
    """One ingest request of 10 events; how it was answered and how long that took."""
    ids = [f"{phase}-{n}-{i}" for i in range(10)]
    events = [
        {"event_id": e, "account_id": f"acct-{i % 5}", "event": "login", "timestamp": now_ms()}
        for i, e in enumerate(ids)
    ]
    started = time.monotonic()
    resp = await client.post("/v1/events", json=events)
    return _Posted(phase, resp.status_code, time.monotonic() - started, resp.headers.get("retry-after"), ids)


@pytest.mark.timeout(600)
async def test_ingest_while_the_broker_is_stopped_answers_503_in_bounded_time_and_loses_nothing(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    """API ingest while the broker is stopped

    A single-node broker of the test's own and `python -m api` on it with
    `CHURNWATCH_INGEST_TIMEOUT_S=2`. Requests of 10 events are posted before the broker is stopped
    (SIGTERM), for 15 s while it is down, and after it is started again on the same data directory.
    Held means: every request is answered (the client would wait 60 s); each one while the broker
    is down with 503 and Retry-After; `/readyz` turns 503 with a reason while the broker is down and
    200 again once it is back, when ingest is accepted again; every event answered 202 is on the
    topic afterwards; and aiokafka's connection errors are in the API log at most 20 times a minute
    each.
    """
    node = KafkaNode(tmp_path / "kafka")
    topics = {role: f"outage-{role}" for role in ("events", "alerts", "health")}
    api = ApiProcess(node.address, topics, KEYS, tmp_path / "api.log", settings={"ingest_timeout_s": "2"})
    posted: list[_Posted] = []
    await node.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=node.address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, 2, 1) for name in topics.values()])
        finally:
            await admin.close()
        await api.start()
        api_started = time.monotonic()
        await api.wait_ready()
        async with httpx.AsyncClient(base_url=api.url, headers={"X-API-Key": API_KEY}, timeout=60) as client:
            posted += [await _post_events(client, "before", n) for n in range(5)]
            await node.stop()
            stopped = time.monotonic()
            readyz_down: httpx.Response | None = None
            n = 0
            while time.monotonic() - stopped < 15 or readyz_down is None:
                assert time.monotonic() - stopped < 60, "/readyz never reported the broker away"
                posted.append(await _post_events(client, "down", n))
                n += 1
                ready = await client.get("/readyz")
                if ready.status_code == 503 and readyz_down is None:
                    readyz_down = ready
                    figures["seconds from the stop to /readyz 503"] = round(time.monotonic() - stopped, 1)
                await asyncio.sleep(0.5)
            await node.start()
            up = time.monotonic()

            async def ingest_and_ready_again() -> bool:
                nonlocal n
                n += 1
                attempt = await _post_events(client, "after", n)
                posted.append(attempt)
                return attempt.status == 202 and (await client.get("/readyz")).status_code == 200

            await wait_until(ingest_and_ready_again, 60, "ingest and /readyz to recover after the restart")
            figures["seconds from the broker answering to 202 and /readyz 200"] = round(
                time.monotonic() - up, 1
            )
            posted += [await _post_events(client, "after", n + 1 + k) for k in range(5)]
        on_topic = {orjson.loads(r.value)["event_id"] for r in await read_all(node.address, topics["events"])}
    finally:
        await api.stop()
        await node.stop()
    api_seconds = time.monotonic() - api_started
    log = api.log_path.read_text().splitlines()
    # The log filter passes 20 records of a message template per minute from its first record on.
    allowed = DEFAULT_BURST * (1 + int(api_seconds // DEFAULT_INTERVAL_S))
    floods = {
        m: sum(m in line for line in log) for m in ("Unable connect to node", "Unable to update metadata")
    }
    figures["API log lines (of which the two aiokafka errors that flooded it)"] = [len(log), floods]
    down = [p for p in posted if p.phase == "down"]
    accepted = [e for p in posted if p.status == 202 for e in p.event_ids]
    refused = [e for p in posted if p.status != 202 for e in p.event_ids]
    figures["requests while the broker was down"] = len(down)
    figures["their statuses"] = sorted({p.status for p in down})
    figures["slowest answer while down (s)"] = round(max(p.seconds for p in down), 2)
    figures["Retry-After while down"] = sorted({str(p.retry_after) for p in down})
    assert readyz_down is not None
    figures["/readyz while down"] = readyz_down.json()
    figures["events answered 202 / found on the topic"] = [len(accepted), len(set(accepted) & on_topic)]
    figures["events answered 503 that reached the topic anyway"] = len(set(refused) & on_topic)
    assert [p.status for p in posted if p.phase == "before"] == [202] * 5
    assert {p.status for p in down} == {503}
    assert all(p.retry_after == "2" for p in down)
    assert readyz_down.json()["status"] == "unavailable" and "Kafka" in readyz_down.json()["reason"]
    assert [p.status for p in posted[-5:]] == [202] * 5
    assert set(accepted) <= on_topic
    assert all(0 < count <= allowed for count in floods.values()), (floods, allowed)


def _status(method: str, url: str, headers: dict[str, str]) -> int:
    body: dict[str, Any] = {"json": []} if method == "POST" else {}
    return httpx.request(method, url, headers=headers, timeout=5, **body).status_code


@pytest.mark.timeout(600)
async def test_keys_scopes_bodies_idle_connections_and_rate_limits(
    kafka_bootstrap: str,
    topic_factory: Any,
    worker_factory: WorkerFactory,
    tmp_path: Path,
    figures: dict[str, Any],
) -> None:
    """API abuse: keys, scopes, oversized bodies, idle connections, rate limits

    Against `python -m api` (rate limit 20/s, burst 40 per key): every protected route without a key
    and with a wrong key (401), with a key lacking the scope (403; an ingest-only key trying to
    read), bodies over 1 MiB with and without Content-Length (413), 300 idle TCP connections plus
    100 that sent half a request head (a normal request must still answer within 1 s, and with
    `CHURNWATCH_HEAD_TIMEOUT_S=3` the server must have closed all 400 after 6 s), and 300 requests
    as fast as possible with one key (at most burst + rate × elapsed succeed, the rest 429 with
    Retry-After; another key unaffected).
    """
    api = await _stack(
        kafka_bootstrap,
        topic_factory,
        worker_factory,
        tmp_path,
        rate_limit_per_s="20",
        rate_limit_burst="40",
        head_timeout_s="3",
    )
    try:
        statuses: dict[str, set[int]] = {"no key": set(), "wrong key": set(), "bearer wrong key": set()}
        for method, path in PROTECTED:
            url = api.url + path
            statuses["no key"].add(await asyncio.to_thread(_status, method, url, {}))
            statuses["wrong key"].add(await asyncio.to_thread(_status, method, url, {"X-API-Key": "nope"}))
            statuses["bearer wrong key"].add(
                await asyncio.to_thread(_status, method, url, {"Authorization": "Bearer " + "x" * 5000})
            )
        figures["statuses without a valid key"] = {k: sorted(v) for k, v in statuses.items()}
        assert all(v == {401} for v in statuses.values()), statuses

        ingest_reads = {
            path: await asyncio.to_thread(_status, method, api.url + path, {"X-API-Key": INGEST_KEY})
            for method, path in PROTECTED
            if method == "GET"
        }
        reader_writes = {
            path: await asyncio.to_thread(_status, method, api.url + path, {"X-API-Key": READ_KEY})
            for method, path in PROTECTED
            if method == "POST"
        }
        reader_alerts = await asyncio.to_thread(
            _status, "GET", api.url + "/v1/alerts", {"X-API-Key": READ_KEY}
        )
        figures["ingest-only key reading"] = ingest_reads
        figures["health-only key writing"] = reader_writes
        figures["health-only key reading alerts"] = reader_alerts
        assert set(ingest_reads.values()) == {403} and set(reader_writes.values()) == {403}
        assert reader_alerts == 403

        big = b"[" + b" " * (2 * 1024 * 1024) + b"]"
        headers = {"X-API-Key": INGEST_KEY, "content-type": "application/json"}
        with_length = httpx.post(api.url + "/v1/events", content=big, headers=headers, timeout=10).status_code

        def chunks() -> Any:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        without_length = httpx.post(
            api.url + "/v1/events", content=chunks(), headers=headers, timeout=10
        ).status_code
        figures["2 MiB body with / without Content-Length"] = [with_length, without_length]
        assert with_length == 413 and without_length == 413

        idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(300)]
        half = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(100)]
        for s in half:
            s.sendall(b"GET /v1/accounts HTTP/1.1\r\nHost: x\r\n")
        try:
            latencies = []
            async with httpx.AsyncClient(
                base_url=api.url, headers={"X-API-Key": API_KEY}, timeout=5
            ) as client:
                for _ in range(10):
                    t = time.monotonic()
                    resp = await client.get("/v1/accounts", params={"limit": 50})
                    latencies.append(time.monotonic() - t)
                    assert resp.status_code == 200
                    await asyncio.sleep(0.1)
            figures["request latency with 400 idle connections open (max, s)"] = round(max(latencies), 3)
            assert max(latencies) < 1.0
            await asyncio.sleep(6)
            closed = sum(_closed_by_peer(s) for s in idle)
            closed_half = sum(_closed_by_peer(s) for s in half)
            figures["idle connections closed by the server after 6 s (head timeout 3 s)"] = (
                f"{closed} of {len(idle)}"
            )
            figures["half-sent requests closed by the server after 6 s"] = f"{closed_half} of {len(half)}"
            assert closed == len(idle) and closed_half == len(half)
        finally:
            for s in idle + half:
                s.close()

        async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
            other = await client.get("/v1/accounts", headers={"X-API-Key": READ_KEY})
            assert other.status_code == 200
            t = time.monotonic()
            results = await asyncio.gather(
                *(client.get("/v1/accounts", headers={"X-API-Key": API_KEY}) for _ in range(300))
            )
            elapsed = time.monotonic() - t
            ok = sum(r.status_code == 200 for r in results)
            limited = [r for r in results if r.status_code == 429]
            other_after = await client.get("/v1/accounts", headers={"X-API-Key": READ_KEY})
        figures["300 requests at once: 200 / 429"] = [ok, len(limited)]
        figures["allowed by the limit (burst + rate x elapsed)"] = round(40 + 20 * elapsed, 1)
        assert ok + len(limited) == 300
        assert ok <= 40 + 20 * elapsed + 1
        assert limited and all(r.headers.get("retry-after") for r in limited)
        assert other_after.status_code == 200
    finally:
        await api.stop()


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)
    return data == b"" or data.startswith(b"HTTP/1.1 4")
