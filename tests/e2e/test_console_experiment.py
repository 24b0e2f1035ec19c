"""The experiment page in a real headless Chromium against a real `modelyard serve`: an
experiment started over the API, outcomes fed back while the page is open (the verdict turns
from needs_data to winner without a reload), the intervals drawn, the means with their
confidence sequences and the shares drawn over time as the registry records reads, the
fixed-horizon view labelled, and a deployer promoting the winner from the page. Its screenshot
is saved in the test's tmp folder, and the path printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from adapters.net import free_port
from modelyard.processes import ModelyardProcess
from tests.e2e.test_console import ADMIN, api, browser, log_in, playwright, wait_for

__all__ = ["browser", "playwright"]  # the fixtures, used by name

SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
    "min_sample_per_arm": 100,
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ModelyardProcess]:
    """`modelyard serve` on SQLite recording experiment reads every half second, with model
    iris: two versions served by outside endpoints (nothing listens: no request is sent)."""
    env = {"MODELYARD_EXPERIMENT_READ_S": "0.5"}
    proc = ModelyardProcess("serve", tmp_path / "data", ADMIN, extra_env=env)
    proc.start()
    try:
        with api(proc) as c:
            assert c.post("/api/v1/models", json={"name": "iris"}).status_code == 201
            for _ in (1, 2):
                version = {"endpoint": f"http://127.0.0.1:{free_port()}"}
                assert c.post("/api/v1/models/iris/versions", json=version).status_code == 201
        yield proc
    finally:
        proc.stop()


def points(page: Page, chart: str) -> int:
    return int(page.locator(f"#{chart} svg").get_attribute("data-points") or 0)


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
        wait_for(lambda: points(page, "means-over-time") >= 2, "the first read drawn")
        feed(c, ex, {1: 0.10, 2: 0.40}, 240)  # 300 each: v2 far ahead
        expect(status).to_have_attribute("data-verdict", "winner", timeout=30_000)
        wait_for(lambda: points(page, "means-over-time") >= 4, "the second read drawn")
        assert points(page, "weights-over-time") >= 4
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
