"""Alert delivery on the real broker, to a real HTTP receiver started by the test.

Each test runs ``python -m streamer.delivery`` as a process, produces alerts to a fresh topic and
watches what an ``http.server`` receiver on 127.0.0.1 gets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streamer.core.alerts import Alert, AlertKind, Severity, alert_id, alert_to_dict
from streamer.core.milestones import NOT_ONBOARDING
from streamer.core.scoring import Band, Health
from streamer.delivery.config import load_delivery_config
from streamer.delivery.signing import WebhookVerificationError, verify
from tests.integration.conftest import TopicFactory
from tests.integration.kafkautil import produce, read_all, wait_committed
from tests.integration.pipeline import scrape
from tests.integration.workers import REPO, free_port

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-32bytes!").decode()
log = logging.getLogger(__name__)


def make_alert(i: int, kind: str = "account_quiet", band: str = "poor") -> dict[str, Any]:
    """A realistic alert document, built with the worker's own serialiser."""
    account = f"acct-{i:04d}"
    health = Health(account, 1_750_000_000_000 + i, 25, Band(band), (), 1.0, 20.0, 1, 2, NOT_ONBOARDING)
    alert = Alert(
        alert_id=alert_id(account, kind, 1_750_000_000_000 + i),
        kind=AlertKind(kind),
        account_id=account,
        detected_at_ms=1_750_000_000_000 + i,
        severity=Severity.HIGH,
        health=health,
        evidence={"last_activity_ms": 1_749_000_000_000, "current_weekly": 1.0, "baseline_weekly": 20.0},
    )
    return alert_to_dict(alert)


@dataclass
class Hit:
    """One request the receiver answered."""

    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """A threaded HTTP receiver; ``respond`` decides each status, every request is recorded."""

    port: int
    respond: Callable[[Hit], int] = lambda _hit: 200
    delay_s: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Listen on 127.0.0.1:port in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
            # Headers and body are separate writes; with Nagle on, each response would wait for a
            # delayed ACK (~40 ms) and the test would measure the receiver, not the sender.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                hit = Hit({k.lower(): v for k, v in self.headers.items()}, body, 0, time.time())
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                hit.status = receiver.respond(hit)
                with receiver.lock:
                    receiver.hits.append(hit)
                self.send_response(hit.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening (connections are then refused)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ok(self) -> list[Hit]:
        """The requests answered with a 2xx."""
        with self.lock:
            return [h for h in self.hits if 200 <= h.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on a free port (not yet listening)."""
    r = Receiver(free_port())
    yield r
    r.stop()


@dataclass(repr=False)
class DeliveryProc:
    """One ``python -m streamer.delivery`` process."""

    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start (again) with the same settings."""
        with self.log_path.open("ab") as out:
            out.write(b"\n===== start =====\n")
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "streamer.delivery", cwd=REPO, env=self.env, stdout=out, stderr=out
            )

    def log_text(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text(errors="replace")

    async def wait_log(self, needle: str, timeout_s: float = 30.0) -> None:
        """Wait until the log of the latest start contains ``needle``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if needle in self.log_text().rsplit("===== start =====", 1)[-1]:
                return
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"delivery exited ({self.proc.returncode}):\n{self.log_text()[-4000:]}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {needle!r} within {timeout_s}s:\n{self.log_text()[-4000:]}")

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL when it does not stop in time. Returns the exit code."""
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()

    def metric(self, name: str, **labels: str) -> float:
        """A sample from the process's Prometheus endpoint (0 when absent)."""
        return scrape(self.env["CHURNWATCH_DELIVERY_METRICS_PORT"], name, **labels)


@dataclass
class Setup:
    """Topics and a process factory for one test."""

    bootstrap: str
    alerts: str
    dlq: str
    ledger: str
    tmp_path: Path
    procs: list[DeliveryProc] = field(default_factory=list)

    async def wait_all_committed(self, alerts: int, timeout_s: float = 25) -> None:
        """Wait until delivery has committed ``alerts`` alert offsets: each is delivered, dead or skipped."""
        await wait_committed(self.bootstrap, f"cw-{self.alerts}-delivery", self.alerts, alerts, timeout_s)

    def process(self, delivery_toml: str, **settings: str) -> DeliveryProc:
        """A delivery process (not yet started) for this test's topics."""
        path = self.tmp_path / "delivery.toml"
        path.write_text(delivery_toml)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CHURNWATCH_")},
            "CHURNWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "CHURNWATCH_APP_ID": f"cw-{self.alerts}",
            "CHURNWATCH_ALERTS_TOPIC": self.alerts,
            "CHURNWATCH_DELIVERY_DLQ_TOPIC": self.dlq,
            "CHURNWATCH_DELIVERY_LEDGER_TOPIC": self.ledger,
            "CHURNWATCH_DELIVERY_FILE": str(path),
            "CHURNWATCH_PUBLIC_URL": "https://churnwatch.example.com",
            "CHURNWATCH_DELIVERY_METRICS_PORT": str(free_port()),
            "CHURNWATCH_DELIVERY_BASE_DELAY_S": "0.1",
            "CHURNWATCH_DELIVERY_MAX_DELAY_S": "0.5",
            "CHURNWATCH_DELIVERY_SEED": "7",
            "CHURNWATCH_DELIVERY_COMMIT_INTERVAL_MS": "100",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({f"CHURNWATCH_{k.upper()}": v for k, v in settings.items()})
        proc = DeliveryProc(env, self.tmp_path / f"delivery{len(self.procs)}.log")
        self.procs.append(proc)
        return proc

    async def stop_all(self) -> None:
        """Stop every delivery process this setup started."""
        for proc in self.procs:
            await proc.stop()

    async def produce_alerts(self, docs: list[dict[str, Any]]) -> None:
        """Produce alerts keyed by account id, as the worker does."""
        await produce(
            self.bootstrap, self.alerts, [(d["account_id"].encode(), orjson.dumps(d)) for d in docs]
        )


S = TypeVar("S", bound=Setup)


async def new_setup(kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path, kind: type[S]) -> S:
    """A ``kind`` of setup with fresh alert, DLQ and ledger topics (shared with the digest test)."""
    return kind(
        kafka_bootstrap,
        await topic_factory("alerts", 3),
        await topic_factory("alerts-dlq", 1),
        await topic_factory("deliveries", 1, {"cleanup.policy": "compact"}),
        tmp_path,
    )


@pytest.fixture
async def setup(kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path) -> Any:
    """Fresh alert, DLQ and ledger topics; every delivery process is stopped afterwards."""
    s = await new_setup(kafka_bootstrap, topic_factory, tmp_path, Setup)
    yield s
    await s.stop_all()


def webhook_toml(port: int, name: str = "crm") -> str:
    """One signed webhook destination that every alert is routed to."""
    return f"""
[[destinations]]
name = "{name}"
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret = "{SECRET}"

[[routes]]
destinations = ["{name}"]
"""


async def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, proc: DeliveryProc | None = None
) -> None:
    """Poll ``predicate`` every 0.1 s; fail with ``what`` when it stays false or ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.proc is not None and proc.proc.returncode is not None:
            raise AssertionError(f"delivery exited ({proc.proc.returncode}):\n{proc.log_text()[-4000:]}")
        await asyncio.sleep(0.1)
    tail = proc.log_text()[-3000:] if proc is not None else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{tail}")


def distinct_ok_ids(receiver: Receiver) -> set[str]:
    """The webhook ids the receiver answered with a 2xx."""
    return {h.headers["webhook-id"] for h in receiver.ok()}


def assert_each_once(receiver: Receiver, ids: set[str]) -> None:
    """Every alert id got exactly one 2xx, and nothing else got one."""
    ok = [h.headers["webhook-id"] for h in receiver.ok()]
    dupes = {i for i in ok if ok.count(i) > 1}
    assert not dupes, f"delivered more than once: {sorted(dupes)[:5]}"
    assert set(ok) == ids


async def test_signed_webhooks_verify_at_the_receiver(setup: Setup, receiver: Receiver) -> None:
    receiver.start()
    docs = [make_alert(i) for i in range(20)]
    await setup.produce_alerts(docs)
    proc = setup.process(webhook_toml(receiver.port))
    await proc.start()
    ids = {d["alert_id"] for d in docs}
    await wait_for(lambda: distinct_ok_ids(receiver) == ids, 25, "all 20 alerts delivered", proc=proc)
    by_id = {d["alert_id"]: d for d in docs}
    for hit in receiver.ok():
        verify(hit.body, hit.headers, SECRET, time.time())
        assert orjson.loads(hit.body) == by_id[hit.headers["webhook-id"]]
        assert hit.headers["content-type"] == "application/json"
    hit = receiver.ok()[0]
    with pytest.raises(WebhookVerificationError):
        verify(hit.body + b" ", hit.headers, SECRET, time.time())
    with pytest.raises(WebhookVerificationError):
        verify(hit.body, hit.headers, SECRET, time.time() + 301)
    assert_each_once(receiver, ids)

    # The receiver records a request before the sender sees the response: wait for the counter.
    def delivered() -> float:
        return proc.metric("churnwatch_deliveries_total", destination="crm", outcome="delivered")

    await wait_for(lambda: delivered() == 20, 10, "the delivered counter", proc=proc)
    assert proc.metric("churnwatch_delivery_latency_seconds_count", destination="crm") == 20


async def test_receiver_down_then_up_delivers_every_alert_exactly_once(
    setup: Setup, receiver: Receiver
) -> None:
    # Phase 1: nothing listens (connection refused); phase 2: it answers 503; phase 3: 200.
    docs = [make_alert(i) for i in range(60)]
    ids = {d["alert_id"] for d in docs}
    # A budget that outlasts the outage: this test is about recovery, not about the DLQ.
    proc = setup.process(webhook_toml(receiver.port), delivery_max_attempts="60")
    await proc.start()
    await proc.wait_log("churnwatch delivery ready")
    await setup.produce_alerts(docs)
    await wait_for(
        lambda: proc.metric("churnwatch_delivery_retries_total") >= 2, 20, "refused retries", proc=proc
    )
    phase = {"503_until": time.monotonic() + 2.0}
    receiver.respond = lambda _hit: 503 if time.monotonic() < phase["503_until"] else 200
    receiver.start()
    await wait_for(
        lambda: distinct_ok_ids(receiver) == ids, 25, "all alerts delivered after recovery", proc=proc
    )
    assert any(h.status == 503 for h in receiver.hits)
    await setup.wait_all_committed(len(docs))  # every alert is done with: nothing more may arrive
    assert_each_once(receiver, ids)
    for hit in receiver.ok():
        verify(hit.body, hit.headers, SECRET, time.time())
    assert await setup_dlq(setup) == []


async def setup_dlq(setup: Setup) -> list[Any]:
    """The DLQ records so far."""
    return await read_all(setup.bootstrap, setup.dlq)


async def test_sigterm_and_restart_mid_stream_never_delivers_twice(setup: Setup, receiver: Receiver) -> None:
    receiver.delay_s = 0.01  # so that the stop lands mid-stream
    receiver.start()
    docs = [make_alert(i) for i in range(300)]
    ids = {d["alert_id"] for d in docs}
    await setup.produce_alerts(docs)
    proc = setup.process(webhook_toml(receiver.port))
    await proc.start()
    await wait_for(lambda: len(receiver.ok()) >= 60, 25, "the first deliveries", proc=proc)
    assert await proc.stop() == 0
    stopped_at = len(receiver.ok())
    assert stopped_at < len(ids), "the stop came too late to test a restart"
    await proc.start()
    await wait_for(lambda: distinct_ok_ids(receiver) == ids, 25, "the rest after the restart", proc=proc)
    await setup.wait_all_committed(len(docs))
    assert_each_once(receiver, ids)
    assert "churnwatch delivery stopped" in proc.log_text()


async def test_gone_disables_destination_and_dead_letters_its_alerts(
    setup: Setup, receiver: Receiver
) -> None:
    receiver.respond = lambda _hit: 410
    receiver.start()
    docs = [make_alert(i) for i in range(10)]
    await setup.produce_alerts(docs)
    toml = webhook_toml(receiver.port, name="legacy")
    proc = setup.process(toml)
    await proc.start()
    await wait_for(
        lambda: proc.metric("churnwatch_delivery_dlq_total", destination="legacy") == 10, 25, "DLQ"
    )
    assert proc.metric("churnwatch_delivery_destinations_disabled", destination="legacy") == 1
    assert "destination legacy disabled" in proc.log_text()
    assert len(receiver.hits) == 1, "a disabled destination is not called again"
    dlq = await setup_dlq(setup)
    assert sorted(r.key.decode() for r in dlq) == sorted(d["account_id"] for d in docs)
    for rec in dlq:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers == {
            "churnwatch.destination": "legacy",
            "churnwatch.error": "destination disabled (410)",
        }
        assert orjson.loads(rec.value)["alert_id"] in {d["alert_id"] for d in docs}
    ledger = {
        r.key.decode(): orjson.loads(r.value)["status"] for r in await read_all(setup.bootstrap, setup.ledger)
    }
    fingerprint = load_delivery_config(toml).destinations["legacy"].fingerprint
    assert ledger == {
        **{f"legacy|{d['alert_id']}": "dead" for d in docs},
        f"disabled:{fingerprint}": "disabled",
    }

    # A restart with the same delivery file: still disabled, the receiver is not called again.
    assert await proc.stop() == 0
    await proc.start()
    await proc.wait_log("destination legacy stays disabled")
    await setup.produce_alerts([make_alert(i) for i in range(10, 15)])
    await wait_for(
        lambda: proc.metric("churnwatch_delivery_dlq_total", destination="legacy") == 5,
        25,
        "the DLQ after the restart",
        proc=proc,
    )
    assert proc.metric("churnwatch_delivery_destinations_disabled", destination="legacy") == 1
    assert len(receiver.hits) == 1


async def test_slack_destination_receives_block_kit(setup: Setup, receiver: Receiver) -> None:
    receiver.start()
    docs = [make_alert(0, band="poor"), make_alert(1, kind="usage_drop", band="average")]
    await setup.produce_alerts(docs)
    toml = f"""
[[destinations]]
name = "cs-slack"
type = "slack"
url = "http://127.0.0.1:{receiver.port}/services/T0/B0/x"

[[routes]]
bands = ["poor"]
destinations = ["cs-slack"]
"""
    proc = setup.process(toml)
    await proc.start()
    await wait_for(lambda: len(receiver.ok()) >= 1, 25, "the Slack message", proc=proc)
    await setup.wait_all_committed(len(docs))  # the unrouted alert is done with, and did not follow
    (hit,) = receiver.ok()
    assert "webhook-signature" not in hit.headers
    message = orjson.loads(hit.body)
    assert isinstance(message["text"], str)
    types = [b["type"] for b in message["blocks"]]
    assert types == ["header", "section", "context", "actions"]
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text" and "acct-0000" in header["text"] and len(header["text"]) <= 150
    button = message["blocks"][3]["elements"][0]
    assert button["url"] == "https://churnwatch.example.com/v1/accounts/acct-0000/health"


@pytest.mark.parametrize("rate", [100, 0], ids=["100-per-s", "burst"])
async def test_latency_of_500_alerts(
    setup: Setup, receiver: Receiver, record_property: Any, rate: int
) -> None:
    """Latency from the alert's Kafka timestamp to the receiver's clock: reported, never asserted.

    At a steady rate it measures the path itself; as one burst it adds the queueing of 500 alerts
    behind one destination's sequential sender.
    """
    receiver.start()
    proc = setup.process(webhook_toml(receiver.port))
    await proc.start()
    await proc.wait_log("churnwatch delivery ready")
    await asyncio.sleep(1.0)  # let the group settle, so the numbers measure delivery, not the join
    docs = [make_alert(i) for i in range(500)]
    producer = AIOKafkaProducer(bootstrap_servers=setup.bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        acks = []
        for doc in docs:
            acks.append(
                await producer.send(setup.alerts, key=doc["account_id"].encode(), value=orjson.dumps(doc))
            )
            if rate:
                await asyncio.sleep(1 / rate)
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    ids = {d["alert_id"] for d in docs}
    await wait_for(lambda: distinct_ok_ids(receiver) == ids, 25, "500 alerts", proc=proc)
    produced = {
        orjson.loads(r.value)["alert_id"]: r.timestamp / 1000
        for r in await read_all(setup.bootstrap, setup.alerts)
    }
    latencies = sorted((h.at - produced[h.headers["webhook-id"]]) * 1000 for h in receiver.ok())
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    record_property("latency_p50_ms", round(p50, 1))
    record_property("latency_p99_ms", round(p99, 1))
    log.warning(
        "latency (%s) over 500 alerts: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
        rate or "burst",
        p50,
        p99,
        latencies[-1],
    )
    assert_each_once(receiver, ids)
