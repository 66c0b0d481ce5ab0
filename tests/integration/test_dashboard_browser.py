"""The dashboard in headless Chromium against the real stack: Kafka, a worker process and an API process.

The page is opened, logs in with a key, lists the accounts at risk and not a healthy one (a
malicious account name as text, never as markup), opens an account's detail (its score history
chart and what changed included) in view and from a link, and an alert raised while the page is
open appears in the live feed without a reload, with the account's name and a label for its kind.
Screenshots (desktop and a 390 px phone) are left in tests/artifacts/, or in the directory
``DASHBOARD_SCREENSHOT_DIR`` names (``docs`` refreshes the committed ones). Chromium comes from
``deploy/browser.sh`` (``make test`` runs it); without it this test fails rather than skips.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from playwright.async_api import ConsoleMessage, Dialog, Page, async_playwright, expect

from tests.integration.kafkautil import produce
from tests.integration.pipeline import event, make_topics, now_ms, rules_file
from tests.integration.workers import REPO, ApiProcess, WorkerFactory

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
SCREENSHOTS = REPO / os.environ.get("DASHBOARD_SCREENSHOT_DIR", "tests/artifacts")
KEY = "dashboard-browser-key"
EVIL = '<img src=x onerror="window.__pwned=1">Evil & Co'
# An id with a slash (sent percent-encoded; the server decodes it before routing) and a space.
TENANT = "tenant/p7 \u00fc"
QUIET_AFTER_S = 4.0
WAIT_MS = 45_000
DAY_MS = 86_400_000
# Onboarding ends after a week, so that accounts first seen ten days ago are scored as settled ones.
RULES = "[onboarding]\ndays = 7\n"


def facts(
    account: str, name: str, owner: str, at_ms: int | None = None, seats: int = 5, arr: float | None = None
) -> bytes:
    props: dict[str, Any] = {"name": name, "seats": seats, "plan": "pro", "segment": "smb", "owner": owner}
    if arr is not None:
        props |= {"arr": arr, "currency": "EUR"}
    return orjson.dumps(
        {
            "event_id": f"{account}-facts",
            "account_id": account,
            "event": "account_updated",
            "timestamp": now_ms() if at_ms is None else at_ms,
            "properties": props,
        }
    )


def thriving(account: str, at_ms: int) -> list[tuple[bytes, bytes]]:
    """A one-seat account whose user worked every day of the last five weeks, using three features."""
    records = [(account.encode(), facts(account, "Thriving Labs", "eve@example.com", at_ms - 35 * DAY_MS, 1))]
    for day in range(34, -1, -1):
        for name in ("login", "report_exported", "dashboard_viewed"):
            records.append(
                (account.encode(), event(account, f"{account}-{day}-{name}", at_ms - day * DAY_MS, name))
            )
    return records


async def detail_in_view(page: Page, account_id: str) -> None:
    """The detail of ``account_id`` is shown, its heading wholly inside the viewport."""
    await expect(page.locator("#detail .account-id")).to_contain_text(account_id, timeout=WAIT_MS)
    await expect(page.locator("#detail .detail-head")).to_be_in_viewport(ratio=1)


async def fits_the_width(page: Page, selector: str) -> bool:
    """Whether the element needs no horizontal scrolling."""
    return bool(await page.eval_on_selector(selector, "el => el.scrollWidth <= el.clientWidth"))


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


async def wait_for_accounts(base: str, count: int, log_path: Path) -> list[dict[str, Any]]:
    """Until the API lists ``count`` accounts (the worker has scored them and the API read them)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while time.monotonic() < deadline:
            try:
                resp = await client.get("/v1/accounts")
                if resp.status_code == 200 and len(resp.json()["items"]) >= count:
                    items: list[dict[str, Any]] = resp.json()["items"]
                    return items
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError(f"the API never listed {count} accounts:\n{log_path.read_text()[-3000:]}")


async def wait_until_good(base: str, account: str, log_path: Path) -> dict[str, Any]:
    """The account's snapshot once the worker has scored its whole history ``good``."""
    deadline = time.monotonic() + 60
    doc: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while time.monotonic() < deadline:
            resp = await client.get(f"/v1/accounts/{quote(account, safe='')}/health")
            if resp.status_code == 200:
                doc = resp.json()
                if doc["band"] == "good":
                    return doc
            await asyncio.sleep(0.25)
    raise AssertionError(f"{account} was never scored good (last: {doc}):\n{log_path.read_text()[-3000:]}")


async def test_dashboard_shows_accounts_and_a_new_alert_arrives_live(
    kafka_bootstrap: str, topic_factory: Any, worker_factory: WorkerFactory, unique_id: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/browser.sh (make test does) or set CHROMIUM")
    topics = await make_topics(topic_factory, partitions=2)
    await worker_factory.ready(
        topics,
        partitions=2,
        group=f"g-{unique_id}",
        rules_file=str(rules_file(tmp_path, QUIET_AFTER_S, RULES)),
    )
    at = now_ms()
    settled = at - 10 * DAY_MS  # past onboarding: these accounts are scored as settled ones
    await produce(kafka_bootstrap, topics["events"], thriving("thriving", at))
    await produce(
        kafka_bootstrap,
        topics["events"],
        [
            (b"steady", facts("steady", "Steady Industries", "ana@example.com", settled, arr=48_000)),
            (b"steady", event("steady", "s1", at, "report_exported")),
            (b"evil", facts("evil", EVIL, "ben@example.com", settled)),
            (b"evil", event("evil", "e1", at, "login")),
            (TENANT.encode(), facts(TENANT, "Tenant P7", "dan@example.com", settled)),
            (TENANT.encode(), event(TENANT, "t1", at, "login")),
        ],
    )

    async with api_process(kafka_bootstrap, topics, tmp_path / "api.log") as base:
        await wait_for_accounts(base, 4, tmp_path / "api.log")
        healthy = await wait_until_good(base, "thriving", tmp_path / "api.log")
        assert healthy["score"] >= 90 and healthy["onboarding"]["active"] is False
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
                # The three poor accounts are at risk; the thriving one (scored 90 or more) is not.
                await expect(rows).to_have_count(3, timeout=WAIT_MS)
                assert await page.locator("tr.account-row[data-account=thriving]").count() == 0
                await expect(page.locator("tr.account-row[data-account=steady]")).to_contain_text(
                    "Steady Industries"
                )
                # The malicious name is shown as text and its markup never ran.
                evil_name = page.locator("tr.account-row[data-account=evil] .account-name")
                await expect(evil_name).to_have_text(EVIL)
                assert await page.evaluate("window.__pwned") is None
                assert await page.locator("tr.account-row svg.sparkline polyline").count() == 3
                await expect(page.locator("#kpis")).to_contain_text("accounts")
                # The portfolio over time: accounts per band and ARR at risk of the last 12 weeks, each
                # bar with its figures as a title, and the current week in words.
                weeks = page.locator("#weeks")
                await expect(weeks.locator("svg.weeks")).to_have_count(2)
                await expect(weeks.locator("svg.weeks g.bar")).to_have_count(24)
                await expect(weeks).to_contain_text(re.compile(r"As of \d{4}-\d\d-\d\d: 4 accounts"))
                await expect(weeks).to_contain_text("At risk as of")
                await expect(weeks).to_contain_text("EUR 48,000")
                last_bar = weeks.locator("svg.weeks").first.locator("g.bar").last
                await expect(last_bar.locator("title")).to_have_text(
                    re.compile(r"^week of \d{4}-\d\d-\d\d: 1 good, \d average, \d poor$")
                )

                # The detail of an account whose id holds a slash (the page encodes it into the path)
                # opens in view, and the URL names it.
                await page.locator("tr.account-row", has_text="Tenant P7").click()
                await detail_in_view(page, TENANT)
                assert page.url == f"{base}/dashboard#account={quote(TENANT, safe='')}"
                # Back closes it again.
                await page.go_back()
                await expect(page.locator("#detail-panel")).to_be_hidden()
                assert page.url == f"{base}/dashboard"

                # An account that did not exist when the page loaded goes quiet: its alert must arrive
                # through the live stream (the feed is not reloaded otherwise).
                fading = f"fading-{unique_id}"
                assert await page.locator(f'#alert-feed li[data-account="{fading}"]').count() == 0
                await produce(
                    kafka_bootstrap,
                    topics["events"],
                    [
                        (
                            fading.encode(),
                            facts(fading, "Fading Ltd", "chloe@example.com", now_ms() - 10 * DAY_MS),
                        ),
                        (fading.encode(), event(fading, "f1", now_ms(), "login")),
                    ],
                )
                live = page.locator(f'#alert-feed li.new[data-account="{fading}"]').first
                # Named and labelled for a person: the account's name, the kind in words.
                await expect(live.locator(".account")).to_have_text("Fading Ltd", timeout=WAIT_MS)
                await expect(live.locator(".kind")).to_have_text("Account went quiet")
                await expect(live).not_to_contain_text("account_quiet")
                # The alert also refreshed the table, which now lists the account.
                await expect(page.locator(f'tr.account-row[data-account="{fading}"]')).to_have_count(
                    1, timeout=WAIT_MS
                )

                # Account detail: the breakdown with explanations and its alert history.
                await page.click(f'tr.account-row[data-account="{fading}"]')
                detail = page.locator("#detail")
                await expect(detail).to_contain_text("Score breakdown", timeout=WAIT_MS)
                await detail_in_view(page, fading)
                await expect(detail.locator("td.explanation").first).not_to_be_empty()
                await expect(detail.locator("ol.history li.alert .kind").first).to_have_text(
                    "Account went quiet"
                )
                # Its score history: a dot per day up to today, the last in the band the header shows,
                # and what changed in words, with the component holding the score down most.
                chart = detail.locator("svg.score-chart")
                await expect(chart).to_be_visible()
                band = await detail.locator(".detail-head .band").inner_text()
                today = chart.locator("circle.dot").last
                await expect(today).to_have_class(f"dot dot-{band}")
                await expect(today.locator("title")).to_have_text(
                    re.compile(rf"^\d{{4}}-\d\d-\d\d: \d+, {band}$")
                )
                await expect(detail.locator(".what-changed li").first).to_have_text(
                    re.compile(
                        r"^Score (\d+; no earlier day|(rose from \d+ to|fell from \d+ to|stayed at) \d+ "
                        r"since)"
                    )
                )
                await expect(detail.locator(".what-changed li.detractor")).to_contain_text(
                    "Holding the score down most: "
                )

                # A reload keeps the key for this tab, opens the account the URL names and shows the
                # same alert from the recent feed, rendered by the server alike.
                await page.reload()
                await expect(page.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                await detail_in_view(page, fading)
                await expect(detail).to_contain_text("Score breakdown")
                recent = page.locator(f'#alert-feed li[data-account="{fading}"]').first
                await expect(recent.locator(".account")).to_have_text("Fading Ltd")
                await expect(recent.locator(".kind")).to_have_text("Account went quiet")
                await _save(page, "dashboard.png")

                # A new tab on a phone, from a link that hands over the key and names an account: the
                # key is taken and removed from the URL, the account stays and its detail opens.
                phone = await browser.new_page(viewport={"width": 390, "height": 844})
                phone.on("pageerror", lambda err: problems.append(f"page error: {err}"))
                phone.on("console", lambda msg: _console(msg, problems))
                await phone.goto(f"{base}/dashboard#key={KEY}&account={quote(fading, safe='')}")
                await expect(phone.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                await detail_in_view(phone, fading)
                assert KEY not in phone.url
                assert phone.url == f"{base}/dashboard#account={quote(fading, safe='')}"
                await expect(phone.locator("tr.account-row")).to_have_count(4, timeout=WAIT_MS)
                assert await fits_the_width(phone, "#detail-panel")
                await _save(phone, "dashboard-phone.png")
                # The weekly charts fit the phone's width: nothing scrolls sideways.
                await expect(phone.locator("#weeks svg.weeks").first).to_be_visible()
                chart_box = await phone.locator("#weeks svg.weeks").first.bounding_box()
                assert chart_box is not None and chart_box["x"] + chart_box["width"] <= 390
                assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
                # Closed, and another account opened from the bottom of the page: in view again.
                await phone.click("#detail-close")
                await expect(phone.locator("#detail-panel")).to_be_hidden()
                assert await fits_the_width(phone, "html")
                await phone.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                await phone.locator("tr.account-row[data-account=steady]").click()
                await detail_in_view(phone, "steady")
                await phone.close()

                # "My accounts": a link naming an owner shows that owner's accounts only, in the rows,
                # the KPIs and the charts; choosing another owner puts it in the URL.
                mine = await browser.new_page(viewport={"width": 1280, "height": 900})
                mine.on("pageerror", lambda err: problems.append(f"page error: {err}"))
                mine.on("console", lambda msg: _console(msg, problems))
                await mine.goto(f"{base}/dashboard?owner={quote('ben@example.com')}#key={KEY}")
                await expect(mine.locator("#live-status")).to_have_text("live", timeout=WAIT_MS)
                await expect(mine.locator("tr.account-row")).to_have_count(1, timeout=WAIT_MS)
                await expect(mine.locator("tr.account-row td.owner")).to_have_text("ben@example.com")
                await expect(mine.locator("#kpi-accounts")).to_have_text("1")
                await expect(mine.locator("#weeks")).to_contain_text(re.compile(r"As of [-\d]+: 1 account,"))
                owners = mine.locator("#owner-select option")
                await expect(owners).to_have_count(6)  # all owners, then the five owners present
                assert await owners.all_inner_texts() == [
                    "All owners",
                    "ana@example.com",
                    "ben@example.com",
                    "chloe@example.com",
                    "dan@example.com",
                    "eve@example.com",
                ]
                await expect(mine.locator("#owner-select")).to_have_value("ben@example.com")
                await mine.select_option("#owner-select", "dan@example.com")
                await mine.wait_for_url(re.compile(r"owner=dan%40example\.com"))
                await expect(mine.locator("tr.account-row")).to_have_count(1, timeout=WAIT_MS)
                await expect(mine.locator("tr.account-row td.owner")).to_have_text("dan@example.com")
                await expect(mine.locator("#owner-select")).to_have_value("dan@example.com")
                await mine.close()

                assert problems == []
            finally:
                await browser.close()


async def _save(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / name))


def _dismiss(dialog: Dialog, problems: list[str]) -> None:
    problems.append(f"dialog: {dialog.message}")
    asyncio.ensure_future(dialog.dismiss())


def _console(msg: ConsoleMessage, problems: list[str]) -> None:
    if msg.type == "error":
        problems.append(f"console error: {msg.text}")
