"""Canary rollouts against real BentoML servers of the example: a healthy v2 is promoted on
its own; a v2 started with its fault switch (errors, or latency) is rolled back on its own,
fast, and few client requests ever reach it."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from modelyard.processes import ModelyardProcess
from registry.experiments import stats as experiments
from registry.experiments.stats import Experiment
from tests.e2e.bento import V1, V2, BentoServer, make_bento_home, serve_many
from tests.e2e.traffic import Traffic

pytestmark = pytest.mark.e2e

TOKEN = "rollout-e2e-admin-token-0123456789"
ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2]]}
APIS = [{"name": "classify", "inputs": ["input_series"]}]
#: The fast test plan: 10 % then 50 %, a look every 2 s, judged from 40 requests per arm (at
#: 20, a candidate failing 30 % of requests still passes a look with 2 errors in 20 now and
#: then, and its next step sends it half the traffic). v2 serves at v1's cost (the healthy
#: test keeps its server as busy as v1's: `EvenLoad`), so the latency floors are the judge's
#: defaults.
FAST_PLAN = {
    "steps": [10, 50, 100],
    "interval_s": 2,
    "min_sample_per_arm": 40,
    "max_inconclusive": 30,
}
RATE = 40.0  # client requests per second (the issue asks for at least 20)
ENDED = {"Succeeded", "RolledBack", "Aborted", "Paused"}


@pytest.fixture(scope="module")
def servers(
    iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, BentoServer]]:
    home = make_bento_home(iris_bentos, tmp_path_factory.mktemp("home"))
    logs = tmp_path_factory.mktemp("logs")
    specs = [
        (V1, {}),
        (V2, {}),
        (V2, {"IRIS_FAULT_ERROR_RATE": "0.3"}),
        (V2, {"IRIS_FAULT_LATENCY_MS": "150"}),
    ]
    with serve_many(home, logs, specs) as (v1, v2, erring, slow):
        yield {"v1": v1, "v2": v2, "erring": erring, "slow": slow}


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    env = {"MODELYARD_GATEWAY_REPORT_S": "0.5", "MODELYARD_ROLLOUT_TICK_S": "0.2"}
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), TOKEN, extra_env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def api(proc: ModelyardProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{proc.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


def model(proc: ModelyardProcess, name: str, baseline: str, candidate: str) -> None:
    """`name` with v1 = `baseline` in Production and v2 = `candidate`, served by the gateway."""
    with api(proc) as c:
        assert c.post("/models", json={"name": name}).status_code == 201
        for url in (baseline, candidate):
            body = {"endpoint": url, "apis": APIS}
            assert c.post(f"/models/{name}/versions", json=body).status_code == 201
        r = c.post(f"/models/{name}/versions/1/stage", json={"stage": "Production"})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while httpx.post(f"{proc.url}/models/{name}/classify", json=ROWS).status_code != 200:
        assert time.monotonic() < deadline, f"the gateway never served {name}"
        time.sleep(0.05)


def clients(proc: ModelyardProcess, name: str) -> Traffic:
    """Open-loop clients at RATE requests a second on `name`'s classify API."""
    return Traffic(f"{proc.url}/models/{name}/classify", [ROWS], RATE)


class EvenLoad:
    """Requests straight to the candidate's server, so that it answers as many a second as the
    baseline's at every step: `rate` x (1 - 2w) while the candidate has w < 1/2 of the traffic
    (`follow` is told each view of the rollout), at random moments (Poisson), answers unread.

    Why: on a busy machine a server taking a tenth of the traffic runs colder than one taking
    nine tenths, and the judge rightly sees it slower. Two identical BentoML servers behind the
    gateway, 10 % / 90 % of 40 requests a second, one CPU taken by a busy loop: the 10 % arm's
    median 1.01-1.14x the other's (+0.05 to +0.51 ms); in the suite under the same load, 1.28x
    and 1.66x (+1.0 and +1.4 ms, over the default floors: rolled back, one run in six of this
    test). Straight to the two servers, the same: 1.00-1.17x; with the 10 % arm's server given
    32 requests a second more on the side, 0.96-1.05x. The default 1 ms floor is sized for that
    effect on a quiet machine (registry/rollouts/state.py); this test is of a same-cost
    candidate, so it keeps the candidate's server as warm as the baseline's."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.rate, self.weight = url, rate, 0.0
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def follow(self, view: dict[str, Any]) -> None:
        self.weight = view["rollout"]["weight"] / 100

    def __enter__(self) -> EvenLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                rate = self.rate * (1 - 2 * self.weight)
                if rate <= 0:
                    self._stop.wait(0.05)
                    continue
                self._stop.wait(rng.expovariate(rate))
                try:
                    self.statuses[client.post(self.url, json=ROWS).status_code] += 1
                except httpx.TransportError:
                    self.statuses[0] += 1


def run_rollout(
    proc: ModelyardProcess,
    name: str,
    within_s: float,
    follow: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], float]:
    with api(proc) as c:
        r = c.post(f"/models/{name}/rollouts", json={"candidate": 2, **FAST_PLAN})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            view = c.get(f"/rollouts/{rid}").json()
            if follow is not None:
                follow(view)
            if view["rollout"]["phase"] in ENDED:
                return view, time.monotonic() - started
            time.sleep(0.1)
    pytest.fail(f"rollout {rid} still {view['rollout']['phase']} after {within_s} s: {view}")


def stages(proc: ModelyardProcess, name: str) -> dict[int, str]:
    with api(proc) as c:
        items = c.get(f"/models/{name}/versions").json()["items"]
    return {v["version"]: v["stage"] for v in items}


def test_a_healthy_candidate_is_promoted(yard: ModelyardProcess, servers: dict[str, Any]) -> None:
    model(yard, "healthy", servers["v1"].url, servers["v2"].url)
    even = EvenLoad(f"{servers['v2'].url}/classify", RATE)
    with clients(yard, "healthy") as traffic, even:
        view, _ = run_rollout(yard, "healthy", within_s=90, follow=even.follow)
        assert view["rollout"]["phase"] == "Succeeded", (
            f"{view['rollout']['reason']}: {view['looks'][-1]['verdict']}"
        )
        ended = time.monotonic()
        while not [a for a in traffic.answers if a[0] > ended + 1.5]:  # the gateway catches up
            time.sleep(0.05)
    assert stages(yard, "healthy") == {1: "Archived", 2: "Production"}
    outcomes = [look["verdict"]["outcome"] for look in view["looks"]]
    assert outcomes.count("pass") == 2 and "fail" not in outcomes
    assert {s for _, s, _ in traffic.answers} == {200}
    assert {v for t, _, v in traffic.answers if t > ended + 1.5} == {"2"}
    assert set(even.statuses) == {200} and even.statuses[200] >= 40  # the first step's look


@pytest.mark.parametrize("fault", ["erring", "slow"])
def test_a_faulty_candidate_is_rolled_back_fast(
    yard: ModelyardProcess, servers: dict[str, Any], fault: str
) -> None:
    name = f"faulty-{fault}"
    model(yard, name, servers["v1"].url, servers[fault].url)
    with clients(yard, name) as traffic:
        view, took_s = run_rollout(yard, name, within_s=60)
        rolled_back = time.monotonic()
        while not [a for a in traffic.answers if a[0] > rolled_back + 1.5]:
            time.sleep(0.05)
    rollout = view["rollout"]
    assert rollout["phase"] == "RolledBack", rollout
    assert rollout["weight"] == 0 and rollout["reason"]
    assert took_s < 30, f"the bad canary reached 0 % after {took_s:.1f} s"
    assert stages(yard, name) == {1: "Production", 2: "Staging"}
    served = Counter(v for _, _, v in traffic.answers)
    share = served["2"] / sum(served.values())
    assert share < FAST_PLAN["steps"][0] / 100, f"{share:.1%} of requests reached the bad version"
    late = [v for t, _, v in traffic.answers if t > rolled_back + 1.5]
    assert late and set(late) == {"1"}
    assert traffic.rate_seen() >= 20
    last = view["looks"][-1]["verdict"]
    assert last["outcome"] == "fail"
    failed = {c["name"] for c in last["checks"] if c["outcome"] == "fail"}
    assert failed & ({"errors"} if fault == "erring" else {"latency", "tail"}), last


@pytest.mark.parametrize(("candidate", "ends"), [("v2", "Succeeded"), ("erring", "RolledBack")])
def test_a_shadow_candidate_is_judged_on_copies_and_never_seen(
    yard: ModelyardProcess, servers: dict[str, Any], candidate: str, ends: str
) -> None:
    name = f"shadow-{candidate}"
    model(yard, name, servers["v1"].url, servers[candidate].url)
    with clients(yard, name) as traffic, api(yard) as c:
        # copies are timed on the shadow workers' path, primaries on the request path: on a
        # busy machine their medians differ by up to ~20 % for the same server, so a shadow gets
        # the same 5 ms allowance as in test_example_rollouts (the canaries above get none)
        spec = {"candidate": 2, "mode": "shadow", **FAST_PLAN, "latency_floor_ms": 5}
        r = c.post(f"/models/{name}/rollouts", json=spec)
        assert r.status_code == 201, r.text
        rid, started = r.json()["id"], time.monotonic()
        while (view := c.get(f"/rollouts/{rid}").json())["rollout"]["phase"] not in ENDED:
            assert time.monotonic() - started < 60, view["rollout"]
            time.sleep(0.1)
        policy = c.get(f"/models/{name}/traffic").json()
    rollout = view["rollout"]
    assert rollout["phase"] == ends, rollout
    assert "shadow" not in policy  # the copies stop when the rollout ends
    assert {(s, v) for _, s, v in traffic.answers} == {(200, "1")}  # users only ever saw v1
    assert stages(yard, name) == {1: "Production", 2: "Staging"}  # validated, not promoted
    judged = [look for look in view["looks"] if look["verdict"]["outcome"] != "inconclusive"]
    assert (
        judged and judged[-1]["verdict"]["candidate"]["requests"] >= FAST_PLAN["min_sample_per_arm"]
    )
    if ends == "RolledBack":
        failed = {c["name"] for c in judged[-1]["verdict"]["checks"] if c["outcome"] == "fail"}
        assert "errors" in failed, judged[-1]


def test_an_experiment_keeps_users_on_their_arm_and_promotes_the_winner(
    yard: ModelyardProcess, servers: dict[str, Any]
) -> None:
    model(yard, "ab", servers["v1"].url, servers["v2"].url)
    spec = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": {"header": "x-user"},
        "min_sample_per_arm": 100,
    }
    with api(yard) as c:
        r = c.post("/models/ab/experiments", json=spec)
        assert r.status_code == 201, r.text
        found = msgspec.convert(r.json(), Experiment)
        revision = c.get("/routes").json()["revision"]
    deadline = time.monotonic() + 10  # until the gateway serves the experiment's policy
    while httpx.get(f"{yard.url}/v2/health/ready").json()["revision"] < revision:
        assert time.monotonic() < deadline, "the gateway never followed the experiment"
        time.sleep(0.02)
    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=yard.url, timeout=10) as client:
        for i in range(300):
            key = f"user-{i % 150}"  # every user twice
            r = client.post("/models/ab/classify", json=ROWS, headers={"x-user": key})
            assert r.status_code == 200
            seen.setdefault(key, set()).add(r.headers["x-modelyard-version"])
    assert all(len(v) == 1 for v in seen.values())  # no user ever changed arm
    assert all(v == {str(experiments.assign(found, 1, k))} for k, v in seen.items())
    rng = random.Random(3)
    outcomes = [
        {"key": k, "value": int(rng.random() < (0.6 if v == {"2"} else 0.2))}
        for k, v in seen.items()
        for _ in range(4)
    ]
    with api(yard) as c:
        r = c.post(f"/experiments/{found.id}/feedback", json={"outcomes": outcomes})
        assert r.status_code == 202, r.text
        results = c.get(f"/experiments/{found.id}").json()["results"]
        assert results["verdict"] == "winner" and results["winner"] == 2, results
        r = c.post(f"/experiments/{found.id}/stop", json={"promote": 2})
        assert r.status_code == 200, r.text
    assert stages(yard, "ab") == {1: "Archived", 2: "Production"}
