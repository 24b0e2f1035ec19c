"""The traffic policy through the REST API in-process, on both real stores: a policy that names
a version nothing serves is 409 (one that does not exist 404, the stable one in a split 400)
and writes nothing; GET /traffic says where the traffic goes and whether it is served; taking a
named version out of service takes it out of the policy in the same change, even racing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.test_api import Client, error, model_with_versions

TRAFFIC = "/api/v1/models/iris/traffic"


@pytest.fixture
def client(steering_client: Client) -> Client:
    return steering_client


async def stage(client: Client, number: int, to: str, **headers: str) -> Any:
    return await client.post(
        f"/api/v1/models/iris/versions/{number}/stage", json={"stage": to}, headers=headers
    )


async def iris(client: Client, versions: int = 3) -> None:
    """iris with `versions` versions (Bento artifacts, no endpoint); v1 in Production."""
    await model_with_versions(client, versions)
    assert (await stage(client, 1, "Production")).status_code == 200


async def audit_actions(client: Client) -> list[str]:
    items = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    return [e["action"] for e in items]


async def test_a_policy_that_cannot_take_effect_is_refused_and_writes_nothing(
    client: Client,
) -> None:
    await iris(client)
    assert (await stage(client, 3, "Archived")).status_code == 200
    before = (await client.get(TRAFFIC)).json()
    actions = await audit_actions(client)

    r = await client.put(TRAFFIC, json={"splits": [{"version": 2, "weight": 10}]})
    error(r, 409, "VERSION_NOT_SERVED", "splits[0].version")
    assert "version 2 of 'iris' cannot be served" in r.json()["message"]
    assert "stage None and has no endpoint" in r.json()["message"]
    rule = {"rules": [{"header": "x-beta", "value": "1", "version": 3}]}
    error(await client.put(TRAFFIC, json=rule), 409, "VERSION_NOT_SERVED", "rules[0].version")
    shadow = {"shadow": {"version": 3}}
    r = await client.put(TRAFFIC, json=shadow)
    error(r, 409, "VERSION_NOT_SERVED", "shadow.version")
    assert "stage Archived" in r.json()["message"]
    missing = {"splits": [{"version": 9, "weight": 10}]}
    error(
        await client.put(TRAFFIC, json=missing), 404, "RESOURCE_DOES_NOT_EXIST", "splits[0].version"
    )
    itself = {"splits": [{"version": 1, "weight": 10}]}
    r = await client.put(TRAFFIC, json=itself)
    error(r, 400, "INVALID_PARAMETER_VALUE", "splits[0].version")
    assert "Production" in r.json()["message"]

    assert (await client.get(TRAFFIC)).json() == before  # nothing half-written
    assert await audit_actions(client) == actions
    assert (await stage(client, 2, "Staging")).status_code == 200  # now it is served
    r = await client.put(TRAFFIC, json={"splits": [{"version": 2, "weight": 10}]})
    assert r.status_code == 200, r.text


async def test_get_traffic_says_whether_each_version_is_served(client: Client) -> None:
    await iris(client)
    assert (await stage(client, 2, "Staging")).status_code == 200
    body = {"endpoint": "http://127.0.0.1:9", "apis": [{"name": "classify"}]}
    assert (await client.post("/api/v1/models/iris/versions", json=body)).status_code == 201
    policy = {"splits": [{"version": 2, "weight": 10}], "shadow": {"version": 4}}
    assert (await client.put(TRAFFIC, json=policy)).status_code == 200
    view = (await client.get(TRAFFIC)).json()
    assert view["splits"] == [{"version": 2, "weight": 10.0}]
    by_number = {v["version"]: v for v in view["versions"]}
    assert list(by_number) == [1, 2, 4]
    # `modelyard registry` runs no model servers: it cannot tell whether v1 and v2 answer
    no_servers = "this process runs no model servers (deployer none)"
    assert by_number[1] == {
        "version": 1,
        "named_by": ["stable"],
        "stage": "Production",
        "status": "no_deployer",
        "serving": None,
        "detail": no_servers,
    }
    assert by_number[2]["named_by"] == ["splits[0]"] and by_number[2]["stage"] == "Staging"
    assert by_number[4]["status"] == "endpoint" and by_number[4]["named_by"] == ["shadow"]
    assert by_number[4]["endpoint"] == "http://127.0.0.1:9" and by_number[4]["serving"] is None
    # `versions` is read-only: the policy alone goes back
    error(await client.put(TRAFFIC, json=view), 400, "INVALID_PARAMETER_VALUE", "versions")
    spec = (await client.get("/schema/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    ref = spec["paths"]["/api/v1/models/{name}/traffic"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    shown = schemas[ref.rsplit("/", 1)[1]]
    assert "versions" in shown["properties"] and "versions" in shown["required"]
    served = schemas[shown["properties"]["versions"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"named_by", "stage", "status", "serving"} <= set(served["properties"])
    assert "starting" in served["properties"]["status"]["enum"]
    assert "read-only" in shown["properties"]["versions"]["description"]
    put = spec["paths"]["/api/v1/models/{name}/traffic"]["put"]["requestBody"]["content"]
    taken = schemas[put["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert "versions" not in taken["properties"]
    refusals = spec["paths"]["/api/v1/models/{name}/traffic"]["put"]["responses"]
    assert "VERSION_NOT_SERVED" in refusals["409"]["description"]
    assert "starting" in spec["paths"]["/readyz"]["get"]["responses"]["503"]["description"]


async def test_archiving_a_named_version_takes_it_out_of_the_policy(client: Client) -> None:
    await iris(client)
    assert (await stage(client, 2, "Staging")).status_code == 200
    policy = {
        "splits": [{"version": 2, "weight": 10}],
        "rules": [{"header": "x-beta", "value": "1", "version": 2}],
        "sticky": {"header": "x-user"},
    }
    assert (await client.put(TRAFFIC, json=policy)).status_code == 200
    r = await stage(client, 2, "Archived", **{"x-request-id": "archive-v2"})
    assert r.status_code == 200 and r.json()["stage"] == "Archived"
    after = (await client.get(TRAFFIC)).json()
    assert after.get("splits", []) == [] and after.get("rules", []) == []
    assert after["sticky"] == {"header": "x-user"}  # what does not name it stays
    items = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    last = items[-2:]
    assert [e["action"] for e in last] == ["version.stage", "model.traffic"]
    assert {e["request_id"] for e in last} == {"archive-v2"}  # one change
    # deleting the version a shadow copies to lets go of the shadow too
    body = {"endpoint": "http://127.0.0.1:9"}
    assert (await client.post("/api/v1/models/iris/versions", json=body)).status_code == 201
    assert (await client.put(TRAFFIC, json={"shadow": {"version": 4}})).status_code == 200
    assert (await client.delete("/api/v1/models/iris/versions/4")).status_code == 204
    assert "shadow" not in (await client.get(TRAFFIC)).json()


async def test_a_racing_archive_never_leaves_a_split_to_an_unserved_version(
    client: Client,
) -> None:
    await iris(client, versions=2)
    for _ in range(8):
        assert (await stage(client, 2, "Staging")).status_code == 200
        put, moved = await asyncio.gather(
            client.put(TRAFFIC, json={"splits": [{"version": 2, "weight": 10}]}),
            stage(client, 2, "Archived"),
        )
        assert moved.status_code == 200, moved.text
        assert put.status_code in (200, 409), put.text
        if put.status_code == 409:
            assert put.json()["error_code"] == "VERSION_NOT_SERVED"
        assert (await client.get(TRAFFIC)).json().get("splits", []) == []
        assert (await client.delete(TRAFFIC)).status_code == 200


async def test_an_experiments_arm_cannot_be_archived_while_it_runs(client: Client) -> None:
    await iris(client, versions=2)
    spec = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": {"header": "x-user"},
    }
    r = await client.post("/api/v1/models/iris/experiments", json=spec)
    assert r.status_code == 201, r.text
    v2 = (await client.get("/api/v1/models/iris/versions/2")).json()
    assert v2["stage"] == "Staging"  # the experiment staged its arm itself
    error(await stage(client, 2, "Archived"), 409, "ROLLOUT_IN_PROGRESS", "experiment")
    assert (await client.get("/api/v1/models/iris/versions/2")).json()["stage"] == "Staging"
