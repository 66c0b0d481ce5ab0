"""The backtest's HTML report in headless Chromium: offline, and its four plots are drawn."""

from __future__ import annotations

import random
from pathlib import Path

from playwright.async_api import async_playwright

from streamer.cli import main
from tests.integration.test_dashboard_browser import ARTIFACTS, CHROMIUM
from tests.unit.backtest.test_replay import RULES, _history, _write


async def test_the_report_renders_its_plots_offline(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    _write(history, _history(random.Random(9), accounts=60, days=120))
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    report = tmp_path / "report.html"
    args = ["backtest", str(history), "--rules", str(rules), "--report", str(report), "--no-progress"]
    assert main(args) == 0
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1400})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(report.as_uri())
            captions = await page.locator("figure figcaption").all_inner_texts()
            assert [c.split(":")[0].split(" (")[0] for c in captions] == [
                "Cumulative gains",
                "Cancellation rate by band",
                "Lead time",
                "Alerts per week by kind",
            ]
            # Each plot is drawn: a curve above the diagonal's two points, bars for bands, leads, weeks.
            assert await page.locator("svg.plot").nth(0).locator("polyline.score").count() == 1
            assert await page.locator("svg.plot").nth(1).locator("rect.bar").count() == 3
            assert await page.locator("svg.plot").nth(2).locator("rect.lead").count() == 9
            assert await page.locator("svg.plot").nth(3).locator("rect.week").count() > 5
            box = await page.locator("svg.plot").nth(3).bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150
            assert requests == [report.as_uri()]  # nothing fetched: self-contained
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "backtest-report.png"), full_page=True)
        finally:
            await browser.close()
