"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright)
against a real `modelyard serve` process: log in, promote a version, start a rollout, watch its
chart fill in as traffic windows arrive (no reload), and a reader who sees no buttons and is
refused when it forges a post. The rollout page's screenshot goes to tests/artifacts/."""

from __future__ import annotations

import os
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from adapters.net import free_port
from modelyard.processes import ModelyardProcess

pytestmark = pytest.mark.e2e

ADMIN = "console-e2e-admin-token-0123456789"
CHROMIUM = os.environ.get("MODELYARD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "console-rollout.png"
PLAN = {"steps": "10 50 100", "interval_s": "2", "min_sample_per_arm": "20"}


def api(server: ModelyardProcess, token: str = ADMIN) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Debian's package, never a downloaded build; a missing browser fails the run (CI installs it).
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: run make system-deps (make test does)")
    opened = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield opened
    opened.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ModelyardProcess]:
    """`modelyard serve` (registry and gateway in one process) on SQLite, with model iris:
    two versions served by outside endpoints (nothing listens there: no request is sent)."""
    proc = ModelyardProcess("serve", tmp_path / "data", ADMIN)
    proc.start()
    try:
        with api(proc) as c:
            assert c.post("/api/v1/models", json={"name": "iris"}).status_code == 201
            for i in (1, 2):
                version = {
                    "endpoint": f"http://127.0.0.1:{free_port()}",
                    "metrics": {"acc": 0.9 + i / 100},
                }
                assert c.post("/api/v1/models/iris/versions", json=version).status_code == 201
        yield proc
    finally:
        proc.stop()


def token(server: ModelyardProcess, role: str) -> str:
    with api(server) as c:
        r = c.post("/api/v1/tokens", json={"name": f"{role}-console", "role": role})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


def log_in(page: Page, server: ModelyardProcess, secret: str) -> None:
    page.goto(f"{server.url}/ui")
    expect(page).to_have_url(f"{server.url}/ui/login?next=%2Fui")
    page.focus("#token")  # by keyboard: type the token, Enter submits
    page.keyboard.type(secret)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Models")


class Traffic:
    """Posts a gateway's windows (stable v1, canary v2), as the REST test does: one batch on
    `post_once`, then a batch every 0.25 s once `flow` is called. Held, the rollout cannot move
    past its current step (its looks find too little traffic), so what the page shows is not a
    race against a rollout that might already be over."""

    def __init__(self, server: ModelyardProcess) -> None:
        self.server = server
        self.rng = random.Random(7)
        self.flowing = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.failures: list[str] = []

    def post_once(self) -> None:
        """One batch: 30 requests an arm, enough for one look (min_sample_per_arm 20)."""
        with api(self.server) as c:
            self._post(c)

    def _post(self, c: httpx.Client) -> None:
        windows = [
            {
                "model": "iris",
                "version": version,
                "variant": variant,
                "requests": 30,
                "errors": 0,
                "latencies_ms": [20 * self.rng.lognormvariate(0, 0.3) for _ in range(30)],
            }
            for version, variant in ((1, "stable"), (2, "canary"))
        ]
        r = c.post("/api/v1/windows", json={"source": "console-e2e", "windows": windows})
        if r.status_code != 204:
            self.failures.append(r.text)

    def flow(self) -> None:
        self.flowing.set()

    def _run(self) -> None:
        self.flowing.wait()
        with api(self.server) as c:  # one connection for the whole flow
            while not self.stop.is_set():
                self._post(c)
                self.stop.wait(0.25)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.flowing.set()
        self.thread.join(10)


def points(page: Page) -> int:
    return int(page.locator("#latency-chart svg").get_attribute("data-points") or 0)


def wait_for(check: Any, what: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"never saw {what}")


def test_log_in_promote_start_a_rollout_and_watch_it(
    browser: Browser, server: ModelyardProcess
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda d: d.accept())
    log_in(page, server, ADMIN)
    # no token anywhere the page's scripts can read: only an HttpOnly session cookie
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["modelyard_console"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    assert ADMIN not in cookies[0]["value"] and page.evaluate("document.cookie") == ""

    page.get_by_role("link", name="iris").click()
    expect(page.locator("h1")).to_have_text("Model iris")
    page.select_option("#stage-version", "1")
    page.select_option("#stage-stage", "Production")
    page.fill("#stage-reason", "beat the baseline")
    page.get_by_role("button", name="Move").click()
    expect(page.locator(".flash")).to_contain_text("Version 1 of iris is now in Production")
    expect(page.locator('tr[data-version="1"] [data-stage]')).to_have_text("Production")
    expect(page.locator("#audit")).to_contain_text("beat the baseline")

    page.select_option("#ro-candidate", "2")
    for field, value in PLAN.items():
        page.fill(f"[name={field}]", value)
    page.get_by_role("button", name="Start rollout").click()
    expect(page.locator("h1")).to_contain_text("Rollout ro-")
    expect(page.locator("#rollout-status")).to_have_attribute("data-phase", "Progressing")
    assert points(page) == 0
    page.evaluate("window.__sameDocument = true")  # gone if the page were reloaded

    with Traffic(server) as traffic:
        traffic.post_once()  # enough for the look at 10 %: then the rollout waits at 50 %
        wait_for(lambda: points(page) > 0, "the first look on the chart")
        expect(page.locator("#rollout-status")).to_have_attribute("data-weight", "50.0")
        first = page.locator("tr.look").count()
        traffic.flow()
        wait_for(lambda: page.locator("tr.look").count() > first, "more verdicts")
        expect(page.locator("#rollout-status")).to_have_attribute(
            "data-phase", "Succeeded", timeout=30_000
        )
    assert not traffic.failures, traffic.failures
    expect(page.locator("#steer-form")).to_be_hidden()  # nothing left to steer
    assert page.evaluate("window.__sameDocument") is True
    passed = page.locator('tr.look[data-outcome="pass"]').count()
    assert passed >= 2  # at 10 % and at 50 %
    assert points(page) >= 4 * passed  # four lines for each look that had its sample
    markers = int(page.locator("#latency-chart svg").get_attribute("data-markers") or 0)
    assert markers >= 3  # 10 %, 50 %, 100 %
    expect(page.locator("tr.look").first).to_have_attribute("data-outcome", "pass")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000

    page.get_by_role("link", name="Gateway").click()
    expect(page.locator("#route-revision")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#routes")).to_contain_text("iris")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{server.url}/ui/login")
    page.goto(f"{server.url}/ui/models/iris")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    page.close()


def test_a_reader_sees_no_buttons_and_a_forged_post_is_refused(
    browser: Browser, server: ModelyardProcess
) -> None:
    with api(server) as c:
        c.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
        started = c.post("/api/v1/models/iris/rollouts", json={"candidate": 2, "interval_s": 60})
        assert started.status_code == 201, started.text
        rollout = started.json()["id"]
        wait_for(
            lambda: (
                c.get(f"/api/v1/rollouts/{rollout}").json()["rollout"]["phase"] == "Progressing"
            ),
            "the rollout's first step",
        )
        before = c.get("/api/v1/models/iris/audit").json()["items"]
        stage_before = c.get("/api/v1/models/iris/versions/2").json()["stage"]
    page = browser.new_page()
    log_in(page, server, token(server, "reader"))
    for path in ("/ui", "/ui/models/iris", f"/ui/rollouts/{rollout}", "/ui/gateway"):
        page.goto(server.url + path)
        expect(page.locator("main")).to_be_visible()
        # no action buttons: the models page keeps its Search button (a GET form), no more
        assert page.locator("main form:not([role=search]) button").count() == 0, path
        assert page.locator("main form[method=post]").count() == 0, path
    csrf = page.locator("header input[name=csrf_token]").get_attribute("value")
    forged = page.evaluate(
        """async ([csrf, rollout]) => {
            const post = (url, body) =>
                fetch(url, {method: "POST", body: new URLSearchParams({csrf_token: csrf, ...body})})
                .then(r => r.status);
            return [
                await post("/ui/models/iris/stage",
                           {version: "2", stage: "Production", archive_existing: "on"}),
                await post("/ui/models/iris/alias", {alias: "champion", version: "2"}),
                await post(`/ui/rollouts/${rollout}/abort`, {}),
            ];
        }""",
        [csrf, rollout],
    )
    assert forged == [403, 403, 403]
    with api(server) as c:
        assert c.get("/api/v1/models/iris/versions/2").json()["stage"] == stage_before
        assert c.get(f"/api/v1/rollouts/{rollout}").json()["rollout"]["phase"] == "Progressing"
        assert c.get("/api/v1/models/iris").json()["aliases"] == {}
        assert c.get("/api/v1/models/iris/audit").json()["items"] == before
    page.close()


def test_pages_fit_a_narrow_window(browser: Browser, server: ModelyardProcess) -> None:
    with api(server) as c:
        c.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
        rollout = c.post("/api/v1/models/iris/rollouts", json={"candidate": 2}).json()["id"]
    page = browser.new_page(viewport={"width": 480, "height": 800})
    log_in(page, server, ADMIN)
    for path in ("/ui", "/ui/models/iris", f"/ui/rollouts/{rollout}", "/ui/gateway"):
        page.goto(server.url + path)
        width = page.evaluate(
            "[document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
        )
        assert width[0] <= width[1], (path, width)
    page.close()
