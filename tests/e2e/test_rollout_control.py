"""The rollout controller as a process: a registry killed mid-rollout resumes it where it was,
and of several replicas on one store exactly one drives the rollouts (a PostgreSQL advisory
lock, or a file lock for SQLite), another taking over when it dies."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e

PLAN = {"candidate": 2, "steps": [10, 50, 100], "interval_s": 0.5, "min_sample_per_arm": 50}


def client(proc: ModelyardProcess, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=10)


def setup_model(c: httpx.Client) -> str:
    assert c.post("/models", json={"name": "iris"}).status_code == 201
    for port in (9001, 9002):  # the registry role serves nothing: any endpoint will do
        body = {"endpoint": f"http://127.0.0.1:{port}"}
        assert c.post("/models/iris/versions", json=body).status_code == 201
    assert c.post("/models/iris/versions/1/stage", json={"stage": "Production"}).is_success
    r = c.post("/models/iris/rollouts", json=PLAN)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def healthy_windows(c: httpx.Client) -> None:
    rng = random.Random(0)
    windows = [
        {
            "model": "iris",
            "version": version,
            "variant": variant,
            "requests": 100,
            "errors": 0,
            "latencies_ms": [20 * rng.lognormvariate(0, 0.3) for _ in range(100)],
        }
        for version, variant in ((1, "stable"), (2, "canary"))
    ]
    assert c.post("/windows", json={"source": "gw", "windows": windows}).status_code == 204


def drive(c: httpx.Client, rollout_id: str, phases: set[str], within_s: float = 30) -> Any:
    """Post healthy windows until the rollout reaches one of `phases`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        view = c.get(f"/rollouts/{rollout_id}").json()
        if view["rollout"]["phase"] in phases:
            return view
        healthy_windows(c)
        time.sleep(0.1)
    pytest.fail(f"rollout {rollout_id} never reached {phases}: {view['rollout']}")


def leading(proc: ModelyardProcess) -> bool:
    return httpx.get(f"{proc.url}/readyz", timeout=5).json().get("rollouts") == "leading"


def test_a_killed_registry_resumes_its_rollout(server: Factory, admin_token: str) -> None:
    first = server()
    first.start()
    with client(first, admin_token) as c:
        rid = setup_model(c)
        before = drive(c, rid, {"Progressing"})
        while c.get(f"/rollouts/{rid}").json()["rollout"]["weight"] < 50:
            healthy_windows(c)
            time.sleep(0.1)
    assert before["rollout"]["weight"] in (10, 50)
    first.kill9()
    second = server()
    second.start()
    with client(second, admin_token) as c:
        resumed = c.get(f"/rollouts/{rid}").json()
        assert resumed["rollout"]["phase"] in ("Progressing", "Promoting")
        assert resumed["rollout"]["weight"] >= 50  # where it was, not from the start
        done = drive(c, rid, {"Succeeded"})
        stages = {v["version"]: v["stage"] for v in c.get("/models/iris/versions").json()["items"]}
    seqs = [look["seq"] for look in done["looks"]]
    assert seqs == list(range(1, len(seqs) + 1))  # no look lost or repeated across the kill
    assert stages == {1: "Archived", 2: "Production"}


def test_one_replica_drives_the_rollouts_and_another_takes_over(
    server: Factory, admin_token: str
) -> None:
    replicas = [server(), server()]
    for proc in replicas:
        proc.start()
    deadline = time.monotonic() + 15
    while not any(leading(p) for p in replicas):
        assert time.monotonic() < deadline, "no replica took the lead"
        time.sleep(0.1)
    time.sleep(1.5)  # three ticks: had both taken the lead, both would say so by now
    leaders = [p for p in replicas if leading(p)]
    assert len(leaders) == 1
    leader = leaders[0]
    standby = next(p for p in replicas if p is not leader)
    with client(standby, admin_token) as c:
        rid = setup_model(c)
        drive(c, rid, {"Progressing"})  # the leader moved it, through the shared store
    leader.kill9()
    deadline = time.monotonic() + 20
    while not leading(standby):
        assert time.monotonic() < deadline, "the standby never took over"
        time.sleep(0.1)
    with client(standby, admin_token) as c:
        done = drive(c, rid, {"Succeeded"})
    assert done["rollout"]["phase"] == "Succeeded"
