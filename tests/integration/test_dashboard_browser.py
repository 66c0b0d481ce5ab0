"""The dashboard in headless Chromium against the real stack: Kafka, a worker process and an API process.

The page is opened, logs in with a key, shows the accounts (a malicious account name as text, never
as markup), and an alert raised while the page is open appears in the live feed without a reload.
A screenshot is left in tests/artifacts/dashboard.png. Chromium comes from ``deploy/browser.sh``
(``make test`` runs it); without it this test fails rather than skips.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.async_api import ConsoleMessage, Dialog, async_playwright, expect

from tests.integration.kafkautil import produce
from tests.integration.pipeline import event, make_topics, now_ms, rules_file
from tests.integration.workers import REPO, ApiProcess, WorkerFactory

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
KEY = "dashboard-browser-key"
EVIL = '<img src=x onerror="window.__pwned=1">Evil & Co'
# An id with a slash (sent percent-encoded; the server decodes it before routing) and a space.
TENANT = "tenant/p7 \u00fc"
QUIET_AFTER_S = 4.0
WAIT_MS = 45_000


def facts(account: str, name: str, owner: str) -> bytes:
    props = {"name": name, "seats": 5, "plan": "pro", "segment": "smb", "owner": owner}
    return orjson.dumps(
        {
            "event_id": f"{account}-facts",
            "account_id": account,
            "event": "account_updated",
            "timestamp": now_ms(),
            "properties": props,
        }
    )


@asynccontextmanager
async def api_process(bootstrap: str, topics: dict[str, str], log_path: Path) -> AsyncIterator[str]:
    """``python -m api`` on a free port, the way ``make demo`` runs it; yields its base URL."""
    api = ApiProcess(
        bootstrap, topics, {KEY: {"name": "browser", "scopes": ["health:read", "alerts:read"]}}, log_path
    )
    await api.start()
    try:
        yield api.url
    finally:
        await api.stop()


async def wait_for_accounts(base: str, count: int, log_path: Path) -> None:
    """Until the API lists ``count`` accounts (the worker has scored them and the API read them)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while time.monotonic() < deadline:
            try:
                resp = await client.get("/v1/accounts")
                if resp.status_code == 200 and len(resp.json()["items"]) >= count:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError(f"the API never listed {count} accounts:\n{log_path.read_text()[-3000:]}")


async def test_dashboard_shows_accounts_and_a_new_alert_arrives_live(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/browser.sh (make test does) or set CHROMIUM")
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(
        topics, partitions=2, group=f"g-{unique_id}", rules_file=str(rules_file(tmp_path, QUIET_AFTER_S))
    )
    at = now_ms()
    await produce(
        kafka_bootstrap,
        topics["events"],
        [
            (b"steady", facts("steady", "Steady Industries", "ana@example.com")),
            (b"steady", event("steady", "s1", at, "report_exported")),
            (b"evil", facts("evil", EVIL, "ben@example.com")),
            (b"evil", event("evil", "e1", at, "login")),
            (TENANT.encode(), facts(TENANT, "Tenant P7", "dan@example.com")),
            (TENANT.encode(), event(TENANT, "t1", at, "login")),
        ],
    )

    async with api_process(kafka_bootstrap, topics, tmp_path / "api.log") as base:
        await wait_for_accounts(base, 3, tmp_path / "api.log")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 960})
                problems: list[str] = []
                page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
                page.on("dialog", lambda dialog: _dismiss(dialog, problems))
                page.on("console", lambda msg: _console(msg, problems))

                # First visit: no key yet, so the page asks for one; the page itself holds no data.
                await page.goto(f"{base}/dashboard")
                await expect(page.locator("#login")).to_be_visible()
                await page.fill("#key-input", KEY)
                await page.click("#login-form button[type=submit]")

                await expect(page.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                rows = page.locator("tr.account-row")
                await expect(rows).to_have_count(3, timeout=WAIT_MS)
                await expect(page.locator("tr.account-row[data-account=steady]")).to_contain_text(
                    "Steady Industries"
                )
                # The malicious name is shown as text and its markup never ran.
                evil_name = page.locator("tr.account-row[data-account=evil] .account-name")
                await expect(evil_name).to_have_text(EVIL)
                assert await page.evaluate("window.__pwned") is None
                assert await page.locator("tr.account-row svg.sparkline polyline").count() == 3
                await expect(page.locator("#kpis")).to_contain_text("accounts")

                # The detail of an account whose id holds a slash: the page encodes it into the path.
                await page.locator("tr.account-row", has_text="Tenant P7").click()
                await expect(page.locator("#detail .account-id")).to_contain_text(TENANT, timeout=WAIT_MS)

                # An account that did not exist when the page loaded goes quiet: its alert must arrive
                # through the live stream (the feed is not reloaded otherwise).
                fading = f"fading-{unique_id}"
                assert await page.locator(f'#alert-feed li[data-account="{fading}"]').count() == 0
                await produce(
                    kafka_bootstrap,
                    topics["events"],
                    [
                        (fading.encode(), facts(fading, "Fading Ltd", "chloe@example.com")),
                        (fading.encode(), event(fading, "f1", now_ms(), "login")),
                    ],
                )
                live = page.locator(f'#alert-feed li.new[data-account="{fading}"]')
                await expect(live.first).to_contain_text("account_quiet", timeout=WAIT_MS)
                # The alert also refreshed the table, which now lists the new account.
                await expect(page.locator(f'tr.account-row[data-account="{fading}"]')).to_have_count(
                    1, timeout=WAIT_MS
                )

                # Account detail: the breakdown with explanations and its alert history.
                await page.click(f'tr.account-row[data-account="{fading}"]')
                detail = page.locator("#detail")
                await expect(detail).to_contain_text("Score breakdown", timeout=WAIT_MS)
                await expect(detail.locator("td.explanation").first).not_to_be_empty()
                await expect(detail.locator("ol.history li.alert").first).to_contain_text("account_quiet")

                # A reload keeps the key for this tab and shows the same alert from the recent feed.
                await page.reload()
                await expect(page.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                await expect(page.locator(f'#alert-feed li[data-account="{fading}"]').first).to_be_visible()
                await page.click(f'tr.account-row[data-account="{fading}"]')
                await expect(detail).to_contain_text("Score breakdown", timeout=WAIT_MS)

                # A new tab has no key; one given in the URL fragment is taken and removed from the URL.
                other = await browser.new_page()
                await other.goto(f"{base}/dashboard#key={KEY}")
                await expect(other.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                await expect(other.locator("tr.account-row")).to_have_count(4, timeout=WAIT_MS)
                assert KEY not in other.url
                await other.close()

                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
                assert problems == []
            finally:
                await browser.close()


def _dismiss(dialog: Dialog, problems: list[str]) -> None:
    problems.append(f"dialog: {dialog.message}")
    asyncio.ensure_future(dialog.dismiss())


def _console(msg: ConsoleMessage, problems: list[str]) -> None:
    if msg.type == "error":
        problems.append(f"console error: {msg.text}")
