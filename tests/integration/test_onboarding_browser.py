"""The dashboard's onboarding view in headless Chromium against Kafka and an API process.

Snapshots of the milestones shape are produced to the health topic as the worker publishes them (one
account stuck, one on track, and one settled account of the older, boolean shape); the page lists the
stuck account first with its missing milestone, then the one on track, and opens an account's detail
with its onboarding status and progress. A screenshot is left next to the dashboard's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import async_playwright, expect

from tests.integration.kafkautil import produce
from tests.integration.pipeline import make_topics
from tests.integration.test_dashboard_browser import (
    CHROMIUM,
    KEY,
    WAIT_MS,
    _console,
    _dismiss,
    _save,
    api_process,
    detail_in_view,
    wait_for_accounts,
)
from tests.unit.api.conftest import snapshot


def _milestones(status: str, done: int, missing: list[dict[str, Any]], due: str) -> dict[str, Any]:
    return {
        "active": True,
        "status": status,
        "reached": [{"name": "signed_up", "at": "2025-03-01T09:00:00.000Z"}],
        "missing": missing,
        "next": {"name": "first_report", "due_at": due},
        "done": done,
        "total": 4,
    }


def _record(account: str, name: str, **extra: Any) -> tuple[bytes, bytes]:
    doc = snapshot(account, facts={"name": name, "seats": 3, "plan": "pro", "segment": "smb", "owner": "ana"})
    return account.encode(), orjson.dumps({**doc, **extra})


async def test_the_onboarding_view_lists_a_stuck_account_before_one_on_track(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/browser.sh (make test does) or set CHROMIUM")
    topics = await make_topics(topic_factory, partitions=1)
    missed = [{"name": "invite_team", "due_at": "2025-03-03T00:00:00.000Z", "overdue_days": 12}]
    await produce(
        kafka_bootstrap,
        topics["health"],
        [
            _record(
                "ontrack-co",
                "On Track Co",
                onboarding=_milestones("on_track", 2, [], "2025-03-25T00:00:00.000Z"),
            ),
            _record(
                "stuck-co", "Stuck Co", onboarding=_milestones("stuck", 1, missed, "2025-03-10T00:00:00.000Z")
            ),
            _record("settled-co", "Settled Co", onboarding=False),
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
                await page.goto(f"{base}/dashboard#key={KEY}")

                rows = page.locator("#onboarding-body tr.onboarding-row")
                await expect(rows).to_have_count(2, timeout=WAIT_MS)
                stuck, on_track = rows.nth(0), rows.nth(1)
                await expect(stuck).to_have_attribute("data-account", "stuck-co")
                await expect(stuck.locator(".onboarding-status")).to_have_text("Stuck")
                await expect(stuck.locator(".progress")).to_have_text("1 of 4")
                await expect(stuck.locator(".next")).to_have_text("first_report due 2025-03-10")
                await expect(stuck.locator(".missing")).to_have_text("invite_team 12 d overdue")
                await expect(on_track).to_have_attribute("data-account", "ontrack-co")
                await expect(on_track.locator(".onboarding-status")).to_have_text("On track")
                await expect(on_track.locator(".progress")).to_have_text("2 of 4")
                await expect(on_track.locator(".missing")).to_have_text("none")
                await _save(page, "dashboard-onboarding.png")

                # A row opens the account's detail, with its onboarding status and progress.
                await stuck.click()
                await detail_in_view(page, "stuck-co")
                onboarding = page.locator("#detail .onboarding-detail")
                await expect(onboarding).to_contain_text("Stuck 1 of 4 milestones reached.")
                await expect(onboarding.locator("li.milestone-missing")).to_have_text(
                    "Missing: invite_team, due 2025-03-03, 12 d overdue"
                )
                await expect(onboarding.locator("li.next")).to_have_text("Next: first_report, due 2025-03-10")

                assert problems == []
            finally:
                await browser.close()
