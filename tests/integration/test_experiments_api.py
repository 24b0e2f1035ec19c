"""A/B experiments through the REST API in-process, on both real stores: arms as the traffic
policy, one steering at a time, feedback by key or version, results, stop and promote."""

from __future__ import annotations

from typing import Any

import pytest

from registry.experiments import stats as experiments
from registry.experiments.stats import Experiment
from tests.integration.test_api import Client, bearer, error, token
from tests.integration.test_rollouts_api import production

SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
    "min_sample_per_arm": 200,
}


@pytest.fixture
def client(steering_client: Client) -> Client:
    return steering_client


async def start(c: Client, **spec: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/models/iris/experiments", json={**SPEC, **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_arms_become_the_traffic_policy_and_steer_alone(client: Client) -> None:
    await production(client)
    ex = await start(client)
    policy = (await client.get("/api/v1/models/iris/traffic")).json()
    assert policy["splits"] == [{"version": 2, "weight": 50.0, "variant": "arm-v2"}]
    assert policy["sticky"] == {"header": "x-user"} and policy["salt"] == ex["id"]
    rollout = await client.post("/api/v1/models/iris/rollouts", json={"candidate": 2})
    error(rollout, 409, "ROLLOUT_IN_PROGRESS", "model")
    error(
        await client.post("/api/v1/models/iris/experiments", json=SPEC),
        409,
        "ROLLOUT_IN_PROGRESS",
        "experiment",
    )
    error(
        await client.put("/api/v1/models/iris/traffic", json={}),
        409,
        "ROLLOUT_IN_PROGRESS",
        "experiment",
    )


async def test_bad_experiments_name_the_field(client: Client) -> None:
    await production(client)
    half = {**SPEC, "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 40}]}
    error(
        await client.post("/api/v1/models/iris/experiments", json=half),
        400,
        "INVALID_PARAMETER_VALUE",
        "arms",
    )
    ex = await start(client)
    bad = {"outcomes": [{"key": "u1", "value": 1}, {"key": "u2", "value": 3}]}
    error(
        await client.post(f"/api/v1/experiments/{ex['id']}/feedback", json=bad),
        400,
        "INVALID_PARAMETER_VALUE",
        "outcomes[1].value",
    )
    view = (await client.get(f"/api/v1/experiments/{ex['id']}")).json()
    assert all(arm["n"] == 0 for arm in view["results"]["arms"])  # nothing half-written


async def test_feedback_results_stop_and_promote_the_winner(client: Client) -> None:
    await production(client)
    ex = await start(client)
    found = msgspec_experiment(ex)
    # v2 converts 15 %, v1 10 %, exactly (not drawn at random: the experiment's id salts the
    # arms, so random outcomes would differ from run to run, and now and then not differ at all)
    outcomes, seen = [], {1: 0, 2: 0}
    for i in range(3000):
        key = f"user-{i}"
        arm = experiments.assign(found, 1, key)
        rate, k = (0.15 if arm == 2 else 0.10), seen[arm]
        seen[arm] += 1
        outcomes.append({"key": key, "value": int((k + 1) * rate) - int(k * rate)})
    outcomes.append({"version": 2, "value": 1})
    r = await client.post(f"/api/v1/experiments/{ex['id']}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202 and r.json() == {"accepted": 3001}
    view = (await client.get(f"/api/v1/experiments/{ex['id']}")).json()
    res = view["results"]
    assert sum(a["n"] for a in res["arms"]) == 3001
    assert res["verdict"] == "winner" and res["winner"] == 2, res
    two = next(a for a in res["arms"] if a["version"] == 2)
    assert two["ci_low"] < two["mean"] < two["ci_high"] and two["diff_ci_low"] > 0
    stopped = await client.post(f"/api/v1/experiments/{ex['id']}/stop", json={"promote": 2})
    assert stopped.status_code == 200 and stopped.json()["phase"] == "Stopped"
    versions = (await client.get("/api/v1/models/iris/versions")).json()["items"]
    assert {v["version"]: v["stage"] for v in versions} == {1: "Archived", 2: "Production"}
    assert (await client.get("/api/v1/models/iris/traffic")).json().get("splits", []) == []
    again = await client.post(f"/api/v1/experiments/{ex['id']}/stop", json={})
    error(again, 409, "INVALID_STATE", "phase")
    late = await client.post(
        f"/api/v1/experiments/{ex['id']}/feedback", json={"outcomes": [{"version": 2, "value": 1}]}
    )
    error(late, 409, "INVALID_STATE", "phase")
    listed = (await client.get("/api/v1/models/iris/experiments")).json()
    assert [e["id"] for e in listed] == [ex["id"]]


async def test_readers_cannot_start_feed_or_stop(client: Client) -> None:
    await production(client)
    ex = await start(client)
    reader = bearer(await token(client, "reader"))
    calls = [
        ("/api/v1/models/iris/experiments", SPEC),
        (f"/api/v1/experiments/{ex['id']}/feedback", {"outcomes": [{"version": 1, "value": 1}]}),
        (f"/api/v1/experiments/{ex['id']}/stop", {"promote": 2}),
    ]
    for url, body in calls:
        error(await client.post(url, json=body, headers=reader), 403, "PERMISSION_DENIED")
    assert (await client.get(f"/api/v1/experiments/{ex['id']}", headers=reader)).status_code == 200


def msgspec_experiment(raw: dict[str, Any]) -> Experiment:
    import msgspec

    return msgspec.convert(raw, Experiment)
