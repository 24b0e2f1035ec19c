"""The iris example shows both outcomes, by hand, as the README tells a user to do it: a real
`modelyard serve` runs the uploaded bentos with real `bentoml serve` processes, open-loop
clients send the iris rows through its gateway, and every rollout is started, watched and
shown with the real `modelyard` CLI (subprocesses) and DEFAULT judge settings (alpha, latency
floors, minimum sample, inconclusive looks: only the steps and the interval are short):

- a shadow of v2 comparing `predictions` reports an agreement of at least 90 % (v2 predicts
  like v1 for 147 of the 150 rows) and changes nothing users see (this one with a 5 ms latency
  allowance: see its docstring);
- v2 uploaded again with its error switch (`serving.env.IRIS_FAULT_ERROR_RATE=0.3`) is rolled
  back at its first step;
- v2 is promoted.

The outcomes are decided on counts (the judge's minimum sample of 100 requests an arm), not on
seconds: the deadlines are generous and only there so that a hang fails. The tests share the
model and run in file order: the promotion comes last."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.traffic import Traffic

pytestmark = pytest.mark.e2e

TOKEN: Final = "example-rollouts-admin-token-0123456789"
FAULT_TAG: Final = "serving.env.IRIS_FAULT_ERROR_RATE=0.3"
DEPLOY_TIMEOUT_S: Final = 300.0  # three `bentoml serve` starting at once on a loaded machine
ROLLOUT_TIMEOUT_S: Final = 600.0  # only a hang gets near it: the judge decides on counts
#: Short steps and looks: 25 % then 50 %, a look every 5 s. At the test's 40 requests a
#: second the 25 % step holds the 100 candidate requests the judge needs after 2 or 3 looks;
#: the default 10 inconclusive looks before a pause leave room for a machine at a fifth of it.
PLAN: Final = ("--steps", "25", "50", "100", "--interval", "5")
RATE: Final = 40.0


Done = subprocess.CompletedProcess[str]


def cli(yard: ModelyardProcess, *argv: str, timeout: float = 60) -> Done:
    """`modelyard ARGV...` as a user runs it: a process of its own, URL and token from the
    environment."""
    env = {**os.environ, "MODELYARD_URL": yard.url, "MODELYARD_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *argv],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def ok(done: Done) -> str:
    assert done.returncode == 0, f"{done.args}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def api(yard: ModelyardProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{yard.url}/api/v1", timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def iris_rows() -> list[dict[str, Any]]:
    """One request a row of the iris data set, in a fixed shuffled order (the data set is
    sorted by class, and the rows v1 and v2 disagree on are next to each other)."""
    from sklearn.datasets import load_iris

    rows = [{"input_series": [[float(x) for x in row]]} for row in load_iris().data]
    random.Random(15).shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    env = {"MODELYARD_GATEWAY_REPORT_S": "0.5", "MODELYARD_ROLLOUT_TICK_S": "0.2"}
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), TOKEN, extra_env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()  # it stops the `bentoml serve` processes it started


@pytest.fixture(scope="module")
def iris(yard: ModelyardProcess, iris_bentos: tuple[Path, Path]) -> str:
    """Model iris by the CLI: v1 in Production, v2, and v3 (v2's bento with its error switch)
    in Staging; returns once the gateway answers with each of them."""
    v1, v2 = (str(path) for path in iris_bentos)
    ok(cli(yard, "models", "create", "iris"))
    ok(cli(yard, "versions", "create", "iris", "--bento", v1, timeout=180))
    ok(cli(yard, "stage", "iris", "1", "Production"))
    ok(cli(yard, "versions", "create", "iris", "--bento", v2, timeout=180))
    ok(cli(yard, "versions", "create", "iris", "--bento", v2, "--tag", FAULT_TAG, timeout=180))
    for version in ("2", "3"):
        ok(cli(yard, "stage", "iris", version, "Staging"))
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    body = iris_rows()[0]
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        for version in ("1", "2", "3"):
            pinned = {"x-modelyard-version": version}
            while client.post("/models/iris/classify", json=body, headers=pinned).status_code in (
                502,
                503,
                504,
            ):
                assert time.monotonic() < deadline, f"v{version} was never served"
                time.sleep(0.2)
            for _ in range(20):  # the first answers of a new server are slower: not judged
                client.post("/models/iris/classify", json=body, headers=pinned)
    return "iris"


def start(yard: ModelyardProcess, *argv: str) -> str:
    """`RO=$(modelyard rollouts start iris ... --quiet)`: the new rollout's id alone."""
    out = ok(cli(yard, "rollouts", "start", "iris", *argv, "--quiet"))
    assert re.fullmatch(r"ro-[0-9a-f]+\n", out), out
    return out.strip()


def watch(yard: ModelyardProcess, rollout_id: str) -> Done:
    """`modelyard rollouts watch ID` until the rollout ends (exit 0: Succeeded, 3: not)."""
    timeout = str(ROLLOUT_TIMEOUT_S)
    return cli(
        yard,
        "rollouts",
        "watch",
        rollout_id,
        "--poll",
        "0.5",
        "--timeout",
        timeout,
        timeout=ROLLOUT_TIMEOUT_S + 60,
    )


def view(yard: ModelyardProcess, rollout_id: str) -> dict[str, Any]:
    """`modelyard rollouts show ID --json`."""
    shown: dict[str, Any] = json.loads(ok(cli(yard, "rollouts", "show", rollout_id, "--json")))
    return shown


def stages(yard: ModelyardProcess) -> dict[int, str]:
    with api(yard) as c:
        items = c.get("/models/iris/versions").json()["items"]
    return {v["version"]: v["stage"] for v in items}


def settled(yard: ModelyardProcess, traffic: Traffic, count: int = 40) -> list[str]:
    """The versions that answered the first `count` requests sent once the gateway serves
    the routes of now (the rollout's last change included)."""
    with api(yard) as c:
        revision = c.get("/routes").json()["revision"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{yard.url}/v2/health/ready").json().get("revision", -1) < revision:
        assert time.monotonic() < deadline, "the gateway never took the rollout's last routes"
        time.sleep(0.05)
    served_from = time.monotonic()
    while len(later := traffic.after(served_from)) < count:
        assert time.monotonic() < deadline + 60, f"only {len(later)} answers after the end"
        time.sleep(0.05)
    return [version for _, _, version in later[:count]]


@pytest.fixture
def traffic(yard: ModelyardProcess, iris: str) -> Iterator[Traffic]:
    with Traffic(f"{yard.url}/models/{iris}/classify", iris_rows(), RATE) as clients:
        yield clients


@pytest.fixture(autouse=True)
def no_rollout_left(yard: ModelyardProcess) -> Iterator[None]:
    """A test that fails mid-rollout aborts it, so the next one can start its own."""
    yield
    with api(yard) as c:
        listed = c.get("/models/iris/rollouts")
        for rollout in listed.json() if listed.status_code == 200 else []:
            if rollout["phase"] in ("Pending", "Progressing", "Paused", "Promoting"):
                c.post(f"/rollouts/{rollout['id']}/abort")


def test_a_shadow_of_v2_agrees_on_the_predictions(yard: ModelyardProcess, traffic: Traffic) -> None:
    """The judge's defaults, but for a 5 ms latency allowance: the copies are timed on another
    path than the answers users get (sent after the primary answer, from the gateway's shadow
    workers), and on this shared 2-core machine their medians came out 0.72x to 1.22x the
    primaries' for the same v2, which a 10 % floor alone sometimes fails."""
    shadow = ("--shadow", "--compare-field", "predictions", "--min-agreement", "0.9")
    rollout_id = start(
        yard, "--candidate", "2", *shadow, "--interval", "5", "--latency-floor-ms", "5"
    )
    watched = watch(yard, rollout_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    found = re.search(r"\| agreement (\d+\.\d)% \((\d+)/(\d+)\)\n", watched.stdout)
    assert found, watched.stdout
    shown = ok(cli(yard, "rollouts", "show", rollout_id))
    assert f"rollout {rollout_id} of iris: Succeeded" in shown
    assert "compares the field 'predictions'; min agreement 90.0%" in shown
    agreement = re.search(
        r"^agreement: (\d+\.\d)% \((\d+) of (\d+) compared answers agreed", shown, re.M
    )
    assert agreement, shown
    look = view(yard, rollout_id)["looks"][-1]
    assert look["verdict"]["outcome"] == "pass"
    assert look["compared"] >= 100 and look["agreement"] >= 0.9, look
    assert (int(agreement.group(2)), int(agreement.group(3))) == (look["agreed"], look["compared"])
    assert float(agreement.group(1)) == round(100 * look["agreement"], 1)
    assert {(status, version) for _, status, version in traffic.answers} == {(200, "1")}
    assert stages(yard) == {1: "Production", 2: "Staging", 3: "Staging"}


def test_v2_with_its_error_switch_is_rolled_back(yard: ModelyardProcess, traffic: Traffic) -> None:
    rollout_id = start(yard, "--candidate", "3", *PLAN)
    watched = watch(yard, rollout_id)
    assert watched.returncode == 3, watched.stdout + watched.stderr
    assert f"rollout {rollout_id}: RolledBack" in watched.stdout
    shown = view(yard, rollout_id)
    rollout, looks = shown["rollout"], shown["looks"]
    assert rollout["phase"] == "RolledBack" and rollout["weight"] == 0
    assert {look["weight"] for look in looks} == {25.0}  # it never reached the next step
    failed = looks[-1]["verdict"]
    assert failed["outcome"] == "fail" and failed["candidate"]["errors"] > 0
    assert "errors" in {c["name"] for c in failed["checks"] if c["outcome"] == "fail"}, failed
    assert set(settled(yard, traffic)) == {"1"}
    served = Counter(version for _, _, version in traffic.answers)
    assert served["3"] < served["1"], served  # v3 only ever had its 25 %
    assert stages(yard) == {1: "Production", 2: "Staging", 3: "Staging"}


def test_v2_is_promoted_with_the_default_judge(yard: ModelyardProcess, traffic: Traffic) -> None:
    rollout_id = start(yard, "--candidate", "2", *PLAN)
    watched = watch(yard, rollout_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"rollout {rollout_id}: Succeeded" in watched.stdout
    shown = view(yard, rollout_id)
    spec = shown["rollout"]["spec"]
    assert (spec["alpha"], spec["latency_floor_ms"], spec["min_sample_per_arm"]) == (0.01, 1, 100)
    outcomes = [look["verdict"]["outcome"] for look in shown["looks"]]
    assert outcomes.count("pass") == 2 and "fail" not in outcomes, shown["looks"]
    assert stages(yard) == {1: "Archived", 2: "Production", 3: "Staging"}
    assert set(settled(yard, traffic)) == {"2"}
    assert {status for _, status, _ in traffic.answers} == {200}
