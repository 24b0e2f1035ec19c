"""Rollouts through the REST API in-process, on both real stores: start, one active per model,
roles, pause/resume/abort/promote, and the controller judging windows posted as a gateway
would post them."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import msgspec
import pytest

from contract.routes import RouteTable
from tests.integration.test_api import Client, bearer, error, model_with_versions, token

FAST = {"candidate": 2, "steps": [10, 50, 100], "interval_s": 0.3, "min_sample_per_arm": 50}


@pytest.fixture
def client(steering_client: Client) -> Client:
    return steering_client


async def production(client: Client, versions: int = 2) -> None:
    await model_with_versions(client, versions)
    r = await client.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
    assert r.status_code == 200, r.text


async def start(client: Client, **spec: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/models/iris/rollouts", json={**FAST, **spec})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def show(client: Client, rollout_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/rollouts/{rollout_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def until(
    client: Client, rollout_id: str, phases: set[str], within_s: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        view = await show(client, rollout_id)
        if view["rollout"]["phase"] in phases:
            return view
        await asyncio.sleep(0.05)
    pytest.fail(f"rollout {rollout_id} never reached {phases}: {view['rollout']}")


async def traffic(client: Client) -> dict[str, Any]:
    return dict((await client.get("/api/v1/models/iris/traffic")).json())


async def report(
    client: Client, version: int, variant: str, n: int, errors: int, ms: float, **shadow: int
) -> None:
    rng = random.Random(version * 1000 + n)
    latencies = [ms * rng.lognormvariate(0, 0.3) for _ in range(n - errors)]
    window = {
        "model": "iris",
        "version": version,
        "variant": variant,
        "requests": n,
        "errors": errors,
        "latencies_ms": latencies,
        **shadow,
    }
    r = await client.post("/api/v1/windows", json={"source": "test-gw", "windows": [window]})
    assert r.status_code == 204, r.text


async def test_start_sets_the_first_weight_and_one_rollout_at_a_time(client: Client) -> None:
    await production(client)
    rollout = await start(client)
    assert rollout["baseline"] == 1 and rollout["spec"]["candidate"] == 2
    view = await until(client, rollout["id"], {"Progressing"})
    assert view["rollout"]["weight"] == 10
    splits = (await traffic(client)).get("splits")
    assert splits == [{"version": 2, "weight": 10.0, "variant": "canary"}]
    second = await client.post("/api/v1/models/iris/rollouts", json=FAST)
    error(second, 409, "ROLLOUT_IN_PROGRESS", "model")
    by_hand = await client.put("/api/v1/models/iris/traffic", json={"splits": []})
    error(by_hand, 409, "ROLLOUT_IN_PROGRESS", "rollout")
    listed = (await client.get("/api/v1/models/iris/rollouts")).json()
    assert [r["id"] for r in listed] == [rollout["id"]]


async def test_bad_starts_name_the_field(client: Client) -> None:
    await model_with_versions(client, 2)
    no_production = await client.post("/api/v1/models/iris/rollouts", json=FAST)
    error(no_production, 400, "INVALID_PARAMETER_VALUE", "candidate")
    await client.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
    error(
        await client.post("/api/v1/models/iris/rollouts", json={**FAST, "steps": [50, 10]}),
        400,
        "INVALID_PARAMETER_VALUE",
        "steps",
    )
    error(
        await client.post("/api/v1/models/iris/rollouts", json={**FAST, "candidate": 9}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "version",
    )
    unknown = await client.post("/api/v1/models/iris/rollouts", json={**FAST, "speed": "max"})
    assert unknown.status_code == 400 and "speed" in unknown.text
    assert (await client.get("/api/v1/models/iris/rollouts")).json() == []


async def test_readers_cannot_steer_rollouts(client: Client) -> None:
    await production(client)
    reader = bearer(await token(client, "reader"))
    refused = await client.post("/api/v1/models/iris/rollouts", json=FAST, headers=reader)
    error(refused, 403, "PERMISSION_DENIED")
    rollout = await start(client)
    for verb in ("pause", "resume", "abort", "promote"):
        r = await client.post(f"/api/v1/rollouts/{rollout['id']}/{verb}", headers=reader)
        error(r, 403, "PERMISSION_DENIED")
    assert (
        await client.get(f"/api/v1/rollouts/{rollout['id']}", headers=reader)
    ).status_code == 200


async def test_pause_resume_abort_sends_everything_back(client: Client) -> None:
    await production(client)
    rollout = await start(client, interval_s=60)
    rid = rollout["id"]
    await until(client, rid, {"Progressing"})
    paused = (await client.post(f"/api/v1/rollouts/{rid}/pause")).json()
    assert paused["phase"] == "Paused" and paused["weight"] == 10
    resumed = (await client.post(f"/api/v1/rollouts/{rid}/resume")).json()
    assert resumed["phase"] == "Progressing"
    aborted = (await client.post(f"/api/v1/rollouts/{rid}/abort")).json()
    assert aborted["phase"] == "Aborted" and aborted["weight"] == 0
    assert (await traffic(client)).get("splits", []) == []
    error(await client.post(f"/api/v1/rollouts/{rid}/resume"), 409, "INVALID_STATE", "phase")
    actions = [e["action"] for e in (await client.get("/api/v1/models/iris/audit")).json()["items"]]
    assert {"rollout.start", "rollout.paused", "rollout.progressing", "rollout.aborted"} <= set(
        actions
    )


async def test_promote_now_makes_the_candidate_production(client: Client) -> None:
    await production(client)
    rollout = await start(client, interval_s=60)
    done = (await client.post(f"/api/v1/rollouts/{rollout['id']}/promote")).json()
    assert done["phase"] == "Succeeded"
    stages = {
        v["version"]: v["stage"]
        for v in (await client.get("/api/v1/models/iris/versions")).json()["items"]
    }
    assert stages == {1: "Archived", 2: "Production"}
    assert (await traffic(client)).get("splits", []) == []


async def test_the_controller_promotes_a_healthy_candidate(client: Client) -> None:
    await production(client)
    rollout = await start(client)
    rid = rollout["id"]
    for weight in (10, 50):
        view = await until(client, rid, {"Progressing", "Promoting"})
        assert view["rollout"]["weight"] == weight
        await report(client, 1, "stable", 400, 2, 20)
        await report(client, 2, "canary", 400, 2, 20)
        await until(client, rid, {"Promoting"} if weight == 50 else {"Progressing"})
        if weight == 10:
            view = await show(client, rid)
            while view["rollout"]["weight"] == 10:
                view = await until(client, rid, {"Progressing"})
                await asyncio.sleep(0.05)
    await report(client, 2, "canary", 400, 2, 20)
    view = await until(client, rid, {"Succeeded"})
    assert [
        look["verdict"]["outcome"]
        for look in view["looks"]
        if look["verdict"]["outcome"] != "inconclusive"
    ] == ["pass", "pass"]
    stages = {
        v["version"]: v["stage"]
        for v in (await client.get("/api/v1/models/iris/versions")).json()["items"]
    }
    assert stages == {1: "Archived", 2: "Production"}


async def test_the_controller_rolls_back_an_erroring_candidate(client: Client) -> None:
    await production(client)
    rollout = await start(client)
    rid = rollout["id"]
    await until(client, rid, {"Progressing"})
    await report(client, 1, "stable", 500, 0, 20)
    await report(client, 2, "canary", 100, 30, 20)
    view = await until(client, rid, {"RolledBack"})
    assert view["rollout"]["weight"] == 0 and "error rate" in view["rollout"]["reason"]
    assert (await traffic(client)).get("splits", []) == []
    failed = view["looks"][-1]["verdict"]
    assert failed["outcome"] == "fail"
    errors = next(c for c in failed["checks"] if c["name"] == "errors")
    assert errors["p_value"] < errors["threshold"]
    assert failed["candidate"]["errors"] == 30 and failed["baseline"]["requests"] == 500


async def test_a_shadow_rollout_compares_the_field_it_names(client: Client) -> None:
    """`compare_field` goes from the spec into the traffic policy and the route table the
    gateways decode; the look records the agreement with its counts; the schema shows it."""
    await production(client)
    spec = {"mode": "shadow", "compare_field": "predictions", "min_agreement": 0.9}
    rid = (await start(client, **spec))["id"]
    await until(client, rid, {"Progressing"})
    shadow = {"version": 2, "sample_percent": 100.0, "compare_field": "predictions"}
    assert (await traffic(client))["shadow"] == shadow
    routes = await client.get("/api/v1/routes")
    table = msgspec.json.decode(routes.content, type=RouteTable)  # as the gateway decodes it
    policy = table.models["iris"].policy
    assert policy.shadow is not None and policy.shadow.compare_field == "predictions"
    await report(client, 1, "stable", 400, 0, 20)
    await report(client, 2, "shadow", 400, 0, 20, compared=400, agreed=388)
    view = await until(client, rid, {"Succeeded"})
    look = view["looks"][-1]
    assert (look["agreement"], look["compared"], look["agreed"]) == (0.97, 400, 388)
    assert view["rollout"]["spec"]["compare_field"] == "predictions"
    assert "shadow" not in await traffic(client)
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    field = schemas["Shadow"]["properties"]["compare_field"]
    assert schemas["RolloutSpec"]["properties"]["compare_field"] == field
    assert {"agreement", "compared", "agreed"} <= set(schemas["Look"]["properties"])


async def test_compare_field_is_for_shadow_rollouts(client: Client) -> None:
    await production(client)
    canary = await client.post(
        "/api/v1/models/iris/rollouts", json={**FAST, "compare_field": "predictions"}
    )
    error(canary, 400, "INVALID_PARAMETER_VALUE", "compare_field")
    bad = await client.post(
        "/api/v1/models/iris/rollouts", json={**FAST, "mode": "shadow", "compare_field": "a..b"}
    )
    assert bad.status_code == 400 and "compare_field" in bad.text
    assert (await client.get("/api/v1/models/iris/rollouts")).json() == []
