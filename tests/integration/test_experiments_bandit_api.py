"""Experiments on both real stores, what this issue added: stopping gives back the traffic
policy the model had (kept in the experiment's JSON state), results carry the always-valid and
the fixed-horizon figures, and a bandit experiment counts outcomes by enrolled key, moves its
arms through `rebalance_model`, and the traffic policy follows."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from registry.experiments import stats as experiments
from registry.experiments.service import ExperimentService
from registry.experiments.stats import Experiment
from registry.web.state import web_state
from tests.integration.test_api import Client, error
from tests.integration.test_rollouts_api import production

T = TypeVar("T")
TRAFFIC = "/api/v1/models/iris/traffic"
SPEC = {
    "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
    "sticky": {"header": "x-user"},
}


@pytest.fixture
def client(steering_client: Client) -> Client:
    return steering_client


async def start(c: Client, **spec: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/models/iris/experiments", json={**SPEC, **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def policy_now(c: Client) -> dict[str, Any]:
    view = (await c.get(TRAFFIC)).json()
    return {k: v for k, v in view.items() if k != "versions"}


async def test_stopping_gives_back_the_policy_from_before(client: Client) -> None:
    await production(client, versions=3)
    for number in (2, 3):
        r = await client.post(
            f"/api/v1/models/iris/versions/{number}/stage", json={"stage": "Staging"}
        )
        assert r.status_code == 200, r.text
    mine = {
        "splits": [{"version": 3, "weight": 10}],
        "shadow": {"version": 2},
        "rules": [{"header": "x-beta", "value": "1", "version": 3}],
        "deadline_ms": 2500,
    }
    assert (await client.put(TRAFFIC, json=mine)).status_code == 200
    before = await policy_now(client)
    ex = await start(client)
    assert ex["before"]["traffic"]["shadow"] == {"version": 2}
    assert (await policy_now(client))["splits"] == [
        {"version": 2, "weight": 50.0, "variant": "arm-v2"}
    ]
    stopped = await client.post(f"/api/v1/experiments/{ex['id']}/stop", json={})
    assert stopped.status_code == 200, stopped.text
    assert await policy_now(client) == before


async def test_results_carry_both_views(client: Client) -> None:
    await production(client)
    ex = await start(client)
    outcomes = [{"version": 1 + i % 2, "value": int(i % 10 == 0)} for i in range(400)]
    r = await client.post(f"/api/v1/experiments/{ex['id']}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202
    res = (await client.get(f"/api/v1/experiments/{ex['id']}")).json()["results"]
    assert res["inference"].startswith("always-valid") and res["mixture_sd"] > 0
    assert res["fixed_horizon"]["note"].startswith("fixed-horizon")
    assert [a["weight"] for a in res["arms"]] == [50.0, 50.0]
    assert res["regret"] >= 0


async def test_a_bandit_counts_enrolled_keys_and_moves_its_arms(client: Client) -> None:
    await production(client)
    ex = await start(client, mode="bandit")
    assert ex["spec"]["mode"] == "bandit" and len(ex["allocation"]["arms"]) == 2
    found = msgspec_experiment(ex)
    by_version = {"outcomes": [{"version": 2, "value": 1}]}
    error(
        await client.post(f"/api/v1/experiments/{ex['id']}/feedback", json=by_version),
        400,
        "INVALID_PARAMETER_VALUE",
        "outcomes[0].version",
    )
    outcomes, counted = [], {1: 0, 2: 0}
    for i in range(6000):  # v2 converts 20 %, v1 5 %
        key = f"user-{i}"
        served = experiments.assign(found, 1, key)
        arm = experiments.arm_of(found, 1, key)
        if arm is not None:
            counted[arm] += 1
        outcomes.append({"key": key, "value": int(i % 20 < (4 if served == 2 else 1))})
    r = await client.post(f"/api/v1/experiments/{ex['id']}/feedback", json={"outcomes": outcomes})
    assert r.status_code == 202, r.text
    view = (await client.get(f"/api/v1/experiments/{ex['id']}")).json()
    assert {a["version"]: a["n"] for a in view["results"]["arms"]} == counted
    service: ExperimentService = web_state(client.app.state).experiments
    assert await in_app(client, service.rebalance_model, "iris") is None  # not due yet
    moved = await in_app(client, functools.partial(service.rebalance_model, every_s=0), "iris")
    assert moved is not None and moved.allocation is not None
    assert moved.allocation.updates == 1
    splits = (await policy_now(client))["splits"]
    assert splits[0]["version"] == 2 and splits[0]["weight"] == 60.0  # one step of 10 points
    shown = (await client.get(f"/api/v1/experiments/{ex['id']}")).json()
    assert [a["weight"] for a in shown["results"]["arms"]] == [40.0, 60.0]
    audit = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    assert "experiment.rebalance" in [e["action"] for e in audit]


async def in_app(client: Client, call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await `call` on the app's own event loop (the store's connections live there)."""
    return await asyncio.to_thread(client.blocking_portal.call, call, *args)


def msgspec_experiment(raw: dict[str, Any]) -> Experiment:
    import msgspec

    return msgspec.convert(raw, Experiment)
