"""The experiment page in a real headless Chromium against a real `modelyard serve`: an
experiment started over the API, outcomes fed back while the page is open (the verdict turns
from needs_data to winner without a reload), the intervals drawn, the fixed-horizon view
labelled, and a deployer promoting the winner from the page. Its screenshot is saved in the
test's tmp folder, and the path printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, expect

from modelyard.processes import ModelyardProcess
from tests.e2e.test_console import ADMIN, api, browser, log_in, playwright, server, wait_for

__all__ = ["browser", "playwright", "server"]  # the fixtures, used by name

SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
    "min_sample_per_arm": 100,
}


def feed(c: httpx.Client, ex: str, rates: dict[int, float], n: int) -> None:
    outcomes: list[dict[str, Any]] = []
    for version, rate in rates.items():
        wins = round(n * rate)
        outcomes += [{"version": version, "value": int(i < wins)} for i in range(n)]
    r = c.post(f"/api/v1/experiments/{ex}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202, r.text


def test_the_experiment_page_fills_in_and_promotes_the_winner(
    browser: Browser, server: ModelyardProcess, tmp_path: Path
) -> None:
    with api(server) as c:
        r = c.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
        assert r.status_code == 200, r.text
        r = c.post("/api/v1/models/iris/experiments", json=SPEC)
        assert r.status_code == 201, r.text
        ex = r.json()["id"]

        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("dialog", lambda d: d.accept())
        log_in(page, server, ADMIN)
        page.get_by_role("link", name="iris").click()
        page.get_by_role("link", name=ex).click()
        expect(page.locator("h1")).to_have_text(f"Experiment {ex}")
        status = page.locator("#experiment-status")
        expect(status).to_have_attribute("data-verdict", "needs_data")
        page.evaluate("window.__sameDocument = true")  # gone if the page were reloaded

        feed(c, ex, {1: 0.10, 2: 0.10}, 60)  # still short of the minimum sample
        wait_for(lambda: page.locator('tr.arm[data-n="60"]').count() == 2, "the first outcomes")
        expect(status).to_have_attribute("data-verdict", "needs_data")
        feed(c, ex, {1: 0.10, 2: 0.40}, 240)  # 300 each: v2 far ahead
        expect(status).to_have_attribute("data-verdict", "winner", timeout=30_000)
        assert page.evaluate("window.__sameDocument") is True
        expect(status).to_contain_text("v2")
        expect(page.locator("#means-chart svg")).to_have_attribute("data-bars", "2")
        expect(page.locator("#diffs-chart svg")).to_have_attribute("data-bars", "1")
        expect(page.locator("#fixed-verdict")).to_have_text("winner")
        expect(page.get_by_text("for comparison only").first).to_be_visible()

        shot = tmp_path / "console-experiment.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"\nexperiment page screenshot: {shot}")

        page.select_option("#decide-promote", "2")
        page.fill("#decide-reason", "v2 converts better")
        page.get_by_role("button", name="Stop the experiment").click()
        expect(page.locator(".flash")).to_contain_text(f"Experiment {ex} stopped; version 2")
        expect(status).to_have_attribute("data-phase", "Stopped")
        expect(page.locator("#decide-form")).to_have_count(0)
        version = c.get("/api/v1/models/iris/versions/2").json()
        assert version["stage"] == "Production"
        page.close()
