"""A/B experiments end to end through real `bentoml serve` processes: a `modelyard serve`
runs the iris example's bentos (v1 in Production, v2), requests go through its gateway, and
every step is the real `modelyard` CLI (subprocesses):

- an experiment stopped without a promotion gives the model back the traffic policy it had
  before (a header rule and a deadline set by hand), and the gateway serves by it again;
- an experiment started with `experiments start`, fed outcomes by sticky key and by serving
  version (the `x-modelyard-version` answer header) from files, its results read after every
  batch (needs_data, then a winner), and its winner promoted: v2 in Production, serving all.

The tests share the model and run in file order; deadlines are generous (a hang fails), the
assertions are on counts and states."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.test_example_rollouts import DEPLOY_TIMEOUT_S, TOKEN, api, cli, iris_rows, ok

pytestmark = pytest.mark.e2e

ROUTES_TIMEOUT_S: Final = 60.0
MINE: Final = {"rules": [{"header": "x-beta", "value": "1", "version": 2}], "deadline_ms": 2500}


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    env = {"MODELYARD_GATEWAY_REPORT_S": "0.5"}
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), TOKEN, extra_env=env)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()  # it stops the `bentoml serve` processes it started


@pytest.fixture(scope="module")
def iris(yard: ModelyardProcess, iris_bentos: tuple[Path, Path]) -> str:
    """Model iris by the CLI: v1 in Production, v2 in Staging, both answering."""
    v1, v2 = (str(path) for path in iris_bentos)
    ok(cli(yard, "models", "create", "iris"))
    ok(cli(yard, "versions", "create", "iris", "--bento", v1, timeout=180))
    ok(cli(yard, "stage", "iris", "1", "Production"))
    ok(cli(yard, "versions", "create", "iris", "--bento", v2, timeout=180))
    ok(cli(yard, "stage", "iris", "2", "Staging"))
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        for version in ("1", "2"):
            pinned = {"x-modelyard-version": version}
            while classify(client, pinned).status_code in (502, 503, 504):
                assert time.monotonic() < deadline, f"v{version} was never served"
                time.sleep(0.2)
    return "iris"


def classify(client: httpx.Client, headers: dict[str, str], row: int = 0) -> httpx.Response:
    rows = iris_rows()
    return client.post("/models/iris/classify", json=rows[row % len(rows)], headers=headers)


def policy(yard: ModelyardProcess) -> dict[str, Any]:
    with api(yard) as c:
        view = c.get("/models/iris/traffic").json()
    return {k: v for k, v in view.items() if k != "versions"}


def serves(yard: ModelyardProcess, headers: dict[str, str], version: str) -> None:
    """Wait until the gateway answers these headers from `version` (it follows the routes)."""
    deadline = time.monotonic() + ROUTES_TIMEOUT_S
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        while True:
            r = classify(client, headers)
            if r.status_code == 200 and r.headers.get("x-modelyard-version") == version:
                return
            assert time.monotonic() < deadline, f"{headers} never served by v{version}"
            time.sleep(0.1)


def start(yard: ModelyardProcess, *argv: str) -> str:
    out = ok(cli(yard, "experiments", "start", "iris", *argv, "--quiet")).strip()
    assert out.startswith("ex-"), out
    return out


def results(yard: ModelyardProcess, ex: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(cli(yard, "experiments", "show", ex, "--json")))
    text = ok(cli(yard, "experiments", "show", ex))  # and as a person reads it
    assert f"verdict: {shown['results']['verdict']}" in text and "fixed-horizon view" in text
    return shown


def test_stopping_without_a_promotion_gives_back_the_policy_from_before(
    yard: ModelyardProcess, iris: str
) -> None:
    with api(yard) as c:
        r = c.put(f"/models/{iris}/traffic", json=MINE)
        assert r.status_code == 200, r.text
    before = policy(yard)
    serves(yard, {"x-beta": "1"}, "2")
    ex = start(yard, "--arms", "1=50", "2=50", "--sticky-header", "x-user")
    during = policy(yard)
    assert during["steered_by"] == ex and [s["version"] for s in during["splits"]] == [2]
    assert during["rules"] == before["rules"]  # the experiment keeps what it does not steer
    out = ok(cli(yard, "experiments", "stop", ex))
    assert out.strip() == f"experiment {ex}: Stopped"
    assert policy(yard) == before
    serves(yard, {"x-beta": "1"}, "2")  # the rule: v2
    serves(yard, {"x-user": "anyone"}, "1")  # the rest: Production, no split left
    with api(yard) as c:
        r = c.put(f"/models/{iris}/traffic", json={})  # back to plain for the next test
        assert r.status_code == 200, r.text


def test_an_experiment_from_the_cli_to_its_winner_through_bentoml(
    yard: ModelyardProcess, iris: str, tmp_path: Path
) -> None:
    ex = start(yard, "--arms", "1=50", "2=50", "--sticky-header", "x-user", "--min-sample", "100")
    served: dict[str, str] = {}  # key -> the version that answered it
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        deadline = time.monotonic() + ROUTES_TIMEOUT_S
        while len(served) < 600:
            key = f"user-{len(served)}"
            r = classify(client, {"x-user": key}, len(served))
            if r.status_code != 200:  # the gateway may not have the experiment's routes yet
                assert time.monotonic() < deadline, r.text
                time.sleep(0.1)
                continue
            assert r.json(), "an answer from the model"
            served[key] = r.headers["x-modelyard-version"]
            variant = r.headers["x-modelyard-variant"]  # the control: Production, "stable"
            assert variant == ("arm-v2" if served[key] == "2" else "stable"), variant
    counts = Counter(served.values())
    assert set(counts) == {"1", "2"} and min(counts.values()) > 200, counts  # a 50/50 split

    def value(i: int, version: str) -> int:
        """v1 converts 10 %, v2 40 %."""
        return int(i % 10 < (1 if version == "1" else 4))

    keys = list(served)
    steps = [keys[:100], keys[100:300], keys[300:]]
    verdicts = []
    fed: Counter[str] = Counter()
    for step, batch in enumerate(steps):
        if step % 2 == 0:  # by sticky key: the registry finds each key's arm itself
            path = tmp_path / f"by-key-{step}.jsonl"
            lines = [
                json.dumps({"key": k, "value": value(i, served[k])}) for i, k in enumerate(batch)
            ]
        else:  # by the version that served it, as CSV
            path = tmp_path / f"by-version-{step}.csv"
            rows = [f"{served[k]},{value(i, served[k])}" for i, k in enumerate(batch)]
            lines = ["version,value", *rows]
        path.write_text("\n".join(lines) + "\n")
        out = ok(cli(yard, "experiments", "feedback", ex, "--file", str(path)))
        assert f"recorded {len(batch)} outcomes" in out
        fed.update(served[k] for k in batch)
        shown = results(yard, ex)["results"]
        assert {str(a["version"]): a["n"] for a in shown["arms"]} == dict(fed)
        verdicts.append(shown["verdict"])
    assert verdicts[0] == "needs_data"  # about 50 outcomes an arm, short of 100
    assert verdicts[-1] == "winner", verdicts
    final = results(yard, ex)["results"]
    assert final["winner"] == 2 and final["arms"][1]["p_value"] < 0.05
    assert final["fixed_horizon"]["note"].startswith("fixed-horizon")

    out = ok(cli(yard, "experiments", "stop", ex, "--promote", "2"))
    assert "version 2 is Production" in out
    with api(yard) as c:
        stages = {v["version"]: v["stage"] for v in c.get("/models/iris/versions").json()["items"]}
    assert stages[2] == "Production" and stages[1] != "Production"
    assert not policy(yard).get("splits")
    serves(yard, {"x-user": "user-0"}, "2")  # everyone, whatever their arm was
    serves(yard, {"x-user": "someone-new"}, "2")
    listed = json.loads(ok(cli(yard, "experiments", "list", "iris", "--json")))
    newest = listed[0]
    assert (newest["id"], newest["phase"], newest["winner"]) == (ex, "Stopped", 2)
