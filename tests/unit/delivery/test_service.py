"""The delivery service with its clients injected: HTTP through MockTransport, Kafka in-process fakes."""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streamer.core.alerts import Alert, AlertKind, Severity, alert_to_dict
from streamer.core.milestones import NOT_ONBOARDING
from streamer.core.policy import Band
from streamer.core.scoring import Health
from streamer.delivery.backoff import backoff_delay
from streamer.delivery.config import DeliveryConfig, load_delivery_config
from streamer.delivery.ledger import disabled_key
from streamer.delivery.service import wait_or_stop
from tests.unit.delivery.fakes import ALERTS, DLQ, LEDGER, FakeBroker, Handler, Harness, harness, until

SECRET = "whsec_" + base64.b64encode(b"unit-test-secret-of-32-bytes!!!!").decode()
URL = "https://crm.example.com/hooks/churn"
GROUP = "churnwatch-delivery"


def webhook_config(url: str = URL, secret: str = SECRET) -> DeliveryConfig:
    return load_delivery_config(
        f'[[destinations]]\nname = "crm"\ntype = "webhook"\nurl = "{url}"\nsecret = "{secret}"\n'
        '[[routes]]\ndestinations = ["crm"]\n'
    )


def alert(i: int) -> dict[str, Any]:
    """An alert document built with the worker's own serialiser (it must hold to the contract)."""
    health = Health(f"acct-{i}", 1_750_000_000_000, 25, Band.POOR, (), 1.0, 20.0, 1, 2, NOT_ONBOARDING)
    return alert_to_dict(
        Alert(
            alert_id=f"a{i:03d}",
            kind=AlertKind.ACCOUNT_QUIET,
            account_id=f"acct-{i}",
            detected_at_ms=1_750_000_000_000 + i,
            severity=Severity.HIGH,
            health=health,
            evidence={"current_weekly": 1.0, "baseline_weekly": 20.0},
        )
    )


def committed(broker: FakeBroker, partition: int = 0) -> int | None:
    return broker.committed.get((GROUP, TopicPartition(ALERTS, partition)))


def ledger(broker: FakeBroker) -> dict[str, str]:
    """The ledger as compaction leaves it: the last status per key."""
    return {
        rec.key.decode(): orjson.loads(rec.value)["status"]
        for rec in broker.records(LEDGER)
        if rec.key is not None and rec.value is not None
    }


def dlq(broker: FakeBroker) -> list[tuple[str, dict[str, str]]]:
    """Alert id and headers of each DLQ record."""
    return [
        (orjson.loads(rec.value or b"")["alert_id"], {k: v.decode() for k, v in rec.headers})
        for rec in broker.records(DLQ)
    ]


Script = Sequence[int | tuple[int, dict[str, str]] | type[httpx.TransportError]]


def scripted(script: Script, seen: list[httpx.Request]) -> Handler:
    """A handler answering attempt n with ``script[n]``: a status, (status, headers) or an error to raise."""

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script[len(seen) - 1]
        if isinstance(step, int):
            return httpx.Response(step)
        if isinstance(step, tuple):
            return httpx.Response(step[0], headers=step[1])
        raise step("boom", request=request)

    return handle


async def deliver_one(script: Script, **settings: Any) -> tuple[Harness, list[httpx.Request]]:
    """Run the service on one alert until its offset is committed; returns the requests made."""
    broker, seen = FakeBroker(), list[httpx.Request]()
    h = harness(broker, webhook_config(), scripted(script, seen), **settings)
    broker.produce_alerts([alert(0)])
    h.start()
    await until(lambda: committed(broker) == 1, "the alert's offset to be committed")
    await h.finish()
    return h, seen


async def test_5xx_and_timeouts_are_retried_with_jittered_backoff() -> None:
    script: Script = [503, httpx.ReadTimeout, 500, httpx.ConnectTimeout, httpx.ConnectError, 200]
    h, seen = await deliver_one(script, delivery_base_delay_s=1.0, delivery_max_delay_s=60.0)
    rng = random.Random(7)  # the service's seed: the same full-jitter schedule
    assert h.delays == [backoff_delay(n, 1.0, 60.0, rng) for n in range(1, 6)]
    assert [r.headers["webhook-id"] for r in seen] == ["a000"] * 6
    assert ledger(h.broker) == {"crm|a000": "delivered"}
    assert dlq(h.broker) == []


async def test_retry_after_is_honoured_and_capped_at_the_largest_delay() -> None:
    script: Script = [(429, {"retry-after": "3"}), (503, {"retry-after": "600"}), (503, {}), 200]
    h, seen = await deliver_one(script, delivery_base_delay_s=1.0, delivery_max_delay_s=60.0)
    # 3 s as asked; 600 s capped at 60 s; no header: full jitter after the third failure.
    assert h.delays == [3.0, 60.0, random.Random(7).uniform(0.0, 4.0)]
    assert len(seen) == 4
    assert ledger(h.broker) == {"crm|a000": "delivered"}


@pytest.mark.parametrize(
    ("script", "attempts", "error"),
    [
        ([503, 503, 503], 3, "HTTP 503 after 3 attempts"),
        ([httpx.ReadTimeout] * 3, 3, "ReadTimeout: boom after 3 attempts"),
        ([400], 1, "HTTP 400: not retryable"),
    ],
)
async def test_a_spent_budget_or_a_permanent_error_dead_letters(
    script: Script, attempts: int, error: str
) -> None:
    h, seen = await deliver_one(script, delivery_max_attempts=3)
    assert len(seen) == attempts
    assert dlq(h.broker) == [("a000", {"churnwatch.destination": "crm", "churnwatch.error": error})]
    assert ledger(h.broker) == {"crm|a000": "dead"}


async def test_gone_disables_the_destination_across_restarts_until_its_config_changes() -> None:
    broker, seen = FakeBroker(), list[httpx.Request]()
    fingerprint = webhook_config().destinations["crm"].fingerprint
    gone = [410] * 10
    disabled = {"churnwatch.destination": "crm", "churnwatch.error": "destination disabled (410)"}

    # First run: the first request answers 410; that alert and the next two go to the DLQ uncalled.
    first = harness(broker, webhook_config(), scripted(gone, seen))
    broker.produce_alerts([alert(i) for i in range(3)])
    first.start()
    await until(lambda: committed(broker) == 3, "three offsets committed")
    await first.finish()
    assert len(seen) == 1
    assert dlq(broker) == [(f"a{i:03d}", disabled) for i in range(3)]
    assert ledger(broker) == {
        **{f"crm|a{i:03d}": "dead" for i in range(3)},
        disabled_key(fingerprint): "disabled",
    }

    # A restart with the same configuration: still disabled, still never called.
    second = harness(broker, webhook_config(), scripted(gone, seen))
    second.start()
    await until(lambda: second.service.senders["crm"].disabled, "the disabled state loaded")
    broker.produce_alerts([alert(3), alert(4)])
    await until(lambda: committed(broker) == 5, "five offsets committed")
    await second.finish()
    assert len(seen) == 1
    assert dlq(broker)[3:] == [("a003", disabled), ("a004", disabled)]

    # A new URL (or secret) is a new destination as far as 410 is concerned: enabled again.
    moved = webhook_config(url="https://crm.example.com/hooks/churn-v2")
    assert moved.destinations["crm"].fingerprint != fingerprint
    third = harness(broker, moved, scripted([200], seen3 := list[httpx.Request]()))
    broker.produce_alerts([alert(5)])
    third.start()
    await until(lambda: committed(broker) == 6, "six offsets committed")
    await third.finish()
    assert [str(r.url) for r in seen3] == ["https://crm.example.com/hooks/churn-v2"]
    assert ledger(broker)["crm|a005"] == "delivered"
    assert not third.service.senders["crm"].disabled


def blocking_first(seen: list[str], entered: asyncio.Event, release: asyncio.Event) -> Handler:
    """Answers 200, but holds the request for ``a000`` until ``release`` is set."""

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["webhook-id"])
        if request.headers["webhook-id"] == "a000":
            entered.set()
            await release.wait()
        return httpx.Response(200)

    return handle


def ok(seen: list[str]) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["webhook-id"])
        return httpx.Response(204)

    return handle


async def test_stop_lets_the_request_in_flight_finish_and_the_rest_resume_after_restart() -> None:
    broker, seen, entered, release = FakeBroker(), list[str](), asyncio.Event(), asyncio.Event()
    first = harness(broker, webhook_config(), blocking_first(seen, entered, release))
    broker.produce_alerts([alert(i) for i in range(3)])
    first.start()
    await entered.wait()
    first.stop.set()
    await until(lambda: first.service.stopping.is_set(), "the service to start stopping")
    release.set()  # the receiver answers only now, after the stop
    await first.finish()
    assert seen == ["a000"]
    assert ledger(broker) == {"crm|a000": "delivered"}
    assert committed(broker) == 1  # a001 and a002 were never attempted: left for the next run
    assert first.http.is_closed

    second = harness(broker, webhook_config(), ok(seen))
    second.start()
    await until(lambda: committed(broker) == 3, "the rest delivered")
    await second.finish()
    assert seen == ["a000", "a001", "a002"]  # each once: nothing lost, nothing repeated
    assert ledger(broker) == {f"crm|a{i:03d}": "delivered" for i in range(3)}


async def test_a_request_outliving_the_grace_is_left_for_redelivery() -> None:
    broker, seen, entered, never = FakeBroker(), list[str](), asyncio.Event(), asyncio.Event()
    first = harness(
        broker, webhook_config(), blocking_first(seen, entered, never), delivery_shutdown_grace_s=0.05
    )
    broker.produce_alerts([alert(i) for i in range(2)])
    first.start()
    await entered.wait()
    await first.finish()
    assert seen == ["a000"]
    assert ledger(broker) == {}
    assert committed(broker) == 0  # the commit point stays at the unfinished alert

    second = harness(broker, webhook_config(), ok(seen))
    second.start()
    await until(lambda: committed(broker) == 2, "both delivered")
    await second.finish()
    # a000 is sent again, with the same webhook-id, so a receiver that did get it drops it.
    assert seen == ["a000", "a000", "a001"]
    assert ledger(broker) == {"crm|a000": "delivered", "crm|a001": "delivered"}


async def test_stop_during_a_backoff_leaves_the_alert_for_the_next_run() -> None:
    broker, seen = FakeBroker(), list[httpx.Request]()
    # The production wait, with a backoff far longer than the test: only the stop can end it.
    first = harness(
        broker,
        webhook_config(),
        scripted([503], seen),
        retry_wait=wait_or_stop,
        delivery_base_delay_s=3600.0,
        delivery_max_delay_s=3600.0,
        delivery_shutdown_grace_s=60.0,
    )
    broker.produce_alerts([alert(0)])
    first.start()
    await until(lambda: len(first.delays) == 1, "the first retry wait")
    await first.finish(timeout_s=5.0)  # well inside both the backoff and the grace
    assert len(seen) == 1 and committed(broker) == 0 and dlq(broker) == []

    second = harness(broker, webhook_config(), scripted([200], seen2 := list[httpx.Request]()))
    second.start()
    await until(lambda: committed(broker) == 1, "the alert delivered")
    await second.finish()
    assert len(seen2) == 1 and ledger(broker) == {"crm|a000": "delivered"}


async def test_signatures_verify_with_the_standard_webhooks_library() -> None:
    received: list[Any] = []
    tampered: list[str] = []

    async def receiver(request: httpx.Request) -> httpx.Response:
        # Exactly what a receiver using the official package does with the raw body and headers.
        hook = Webhook(SECRET)
        received.append(hook.verify(request.content, dict(request.headers)))
        try:
            hook.verify(request.content + b" ", dict(request.headers))
        except WebhookVerificationError as err:
            tampered.append(str(err))
        return httpx.Response(200)

    broker = FakeBroker()
    h = harness(broker, webhook_config(), receiver)
    docs = [alert(i) for i in range(3)]
    broker.produce_alerts(docs)
    h.start()
    await until(lambda: committed(broker) == 3, "three deliveries")
    await h.finish()
    assert received == docs
    assert tampered == ["No matching signature found"] * 3


SLACK_URL = "https://hooks.slack.com/services/T0SECRET/B0SECRET/xyzTokenPart123"


def slack_and_webhook() -> DeliveryConfig:
    return load_delivery_config(
        f'[[destinations]]\nname = "cs"\ntype = "slack"\nurl = "{SLACK_URL}"\n'
        f'[[destinations]]\nname = "crm"\ntype = "webhook"\nurl = "{URL}"\nsecret = "{SECRET}"\n'
        '[[routes]]\ndestinations = ["cs", "crm"]\n'
    )


def test_secrets_never_show_in_the_repr_of_the_config() -> None:
    config = slack_and_webhook()
    for text in (repr(config), str(config), repr(config.destinations["cs"]), repr(config.destinations)):
        assert SLACK_URL not in text
        assert "xyzTokenPart123" not in text
        assert SECRET not in text
        assert SECRET.removeprefix("whsec_") not in text
        assert "**********" in text
    assert config.destinations["cs"].url.get_secret_value() == SLACK_URL


async def test_secrets_never_show_in_log_lines_or_dlq_headers(caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    broker = FakeBroker()
    h = harness(broker, slack_and_webhook(), refuse, delivery_max_attempts=2)
    broker.produce_alerts([alert(0)])
    with caplog.at_level(logging.DEBUG):
        h.start()
        await until(lambda: committed(broker) == 1, "both destinations dead-lettered")
        await h.finish()
    logged = caplog.text + repr([r.args for r in caplog.records])
    errors = [headers["churnwatch.error"] for _, headers in dlq(broker)]
    assert sorted(errors) == ["ConnectError: cannot reach <url> after 2 attempts"] * 2
    for text in (logged, *errors):
        assert "xyzTokenPart123" not in text and SECRET.removeprefix("whsec_") not in text
        assert "crm.example.com" not in text


async def test_a_record_that_is_not_an_alert_document_is_dead_lettered_with_what_is_wrong() -> None:
    broker, seen = FakeBroker(), list[httpx.Request]()
    h = harness(broker, webhook_config(), scripted([200], seen))
    broken = {k: v for k, v in alert(0).items() if k != "kind"}
    broker.produce_alerts([broken, alert(1)])
    h.start()
    await until(lambda: committed(broker) == 2, "both offsets to be committed")
    await h.finish()
    assert [r.headers["webhook-id"] for r in seen] == ["a001"]  # the valid one is still delivered
    assert dlq(broker) == [
        ("a000", {"churnwatch.destination": "-", "churnwatch.error": "invalid alert: kind: Field required"})
    ]
