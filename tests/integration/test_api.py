"""The REST API in-process (the real Litestar app) on both real stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings

ADMIN = "admin-token-for-tests-0123456789abcdef"
DIGEST = "sha256:" + "ef" * 32
VERSION = {"artifact_uri": "s3://bucket/iris.bento", "digest": DIGEST, "size_bytes": 1}

Client = AsyncTestClient[Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(store_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), database_url=store_url, admin_token=ADMIN, max_body_bytes=65536
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as c:
        c.headers.update(bearer(ADMIN))
        yield c


async def token(client: Client, role: str) -> str:
    r = await client.post("/api/v1/tokens", json={"name": f"{role}-bot", "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def model_with_versions(client: Client, n: int, name: str = "iris") -> None:
    assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    for _ in range(n):
        assert (
            await client.post(f"/api/v1/models/{name}/versions", json=VERSION)
        ).status_code == 201


def error(r: Any, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    assert body["message"]
    if field is not None:
        assert body.get("field") == field, body


async def test_health_and_openapi_need_no_token(client: Client) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ok" and ready["rollouts"] in ("leading", "standby")
    spec = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/models" in spec["paths"]
    error(await client.get("/api/v1/models"), 401, "UNAUTHENTICATED")


async def test_roles_are_checked_on_every_write(client: Client) -> None:
    await model_with_versions(client, 1)
    reader, deployer = await token(client, "reader"), await token(client, "deployer")
    assert (await client.get("/api/v1/models/iris", headers=bearer(reader))).status_code == 200
    writes = [
        ("POST", "/api/v1/models", {"name": "x"}),
        ("POST", "/api/v1/models/iris/versions", VERSION),
        ("POST", "/api/v1/models/iris/versions/1/stage", {"stage": "Staging"}),
        ("PUT", "/api/v1/models/iris/aliases/champion", {"version": 1}),
        ("PUT", "/api/v1/models/iris/tags/k", {"value": "v"}),
        ("DELETE", "/api/v1/models/iris", None),
    ]
    for method, path, body in writes:
        r = await client.request(method, path, json=body, headers=bearer(reader))
        error(r, 403, "PERMISSION_DENIED")
    r = await client.post(
        "/api/v1/models/iris/versions/1/stage", json={"stage": "Staging"}, headers=bearer(deployer)
    )
    assert r.status_code == 200
    error(
        await client.delete("/api/v1/models/iris", headers=bearer(deployer)),
        403,
        "PERMISSION_DENIED",
    )
    error(await client.get("/api/v1/tokens", headers=bearer(deployer)), 403, "PERMISSION_DENIED")
    audit = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    assert [e["action"] for e in audit][-1] == "version.stage"
    assert audit[-1]["actor"] == "deployer-bot"


async def test_revoked_and_unknown_tokens_are_refused(client: Client) -> None:
    reader = await token(client, "reader")
    listed = (await client.get("/api/v1/tokens")).json()["items"]
    assert all("hash" not in t and reader not in str(t) for t in listed)
    rid = next(t["id"] for t in listed if t["name"] == "reader-bot")
    assert (await client.delete(f"/api/v1/tokens/{rid}")).status_code == 200
    error(await client.get("/api/v1/models", headers=bearer(reader)), 401, "UNAUTHENTICATED")
    error(await client.get("/api/v1/models", headers=bearer("myd_guess")), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad/name"}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"description": "no name"}, "name"),
        ({"name": "ok", "tags": {"k": 1}}, "tags"),
        ({"name": "x" * 257}, "name"),
    ],
)
async def test_bad_model_bodies_name_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    error(await client.post("/api/v1/models", json=body), 400, "INVALID_PARAMETER_VALUE", field)
    assert (await client.get("/api/v1/models")).json()["items"] == []


async def test_bad_input_everywhere_is_a_clear_4xx(client: Client) -> None:
    await model_with_versions(client, 1)
    r = await client.post(
        "/api/v1/models", content=b"{not json", headers={"content-type": "application/json"}
    )
    error(r, 400, "INVALID_PARAMETER_VALUE")
    bad_digest = {**VERSION, "digest": "md5:abc"}
    error(
        await client.post("/api/v1/models/iris/versions", json=bad_digest),
        400,
        "INVALID_PARAMETER_VALUE",
        "digest",
    )
    error(
        await client.post("/api/v1/models/iris/versions", json={}),
        400,
        "INVALID_PARAMETER_VALUE",
        "artifact_uri",
    )
    error(
        await client.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Prod"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "stage",
    )
    error(await client.get("/api/v1/models?limit=0"), 400, "INVALID_PARAMETER_VALUE", "limit")
    error(await client.get("/api/v1/models?cursor=zzz"), 400, "INVALID_PARAMETER_VALUE", "cursor")
    error(await client.get("/api/v1/models?tag=novalue"), 400, "INVALID_PARAMETER_VALUE", "tag")
    error(
        await client.put("/api/v1/models/iris/aliases/latest", json={"version": 1}),
        400,
        "INVALID_PARAMETER_VALUE",
        "alias",
    )
    error(await client.get("/api/v1/models/bad%3Aname"), 400, "INVALID_PARAMETER_VALUE", "name")
    error(
        await client.get("/api/v1/models/iris/versions/0"),
        400,
        "INVALID_PARAMETER_VALUE",
        "version",
    )
    huge = {"name": "big", "description": "x" * 70_000}
    error(await client.post("/api/v1/models", json=huge), 413, "REQUEST_TOO_LARGE")
    error(await client.get("/api/v1/nothing-here"), 404, "ENDPOINT_NOT_FOUND")
    versions = (await client.get("/api/v1/models/iris/versions")).json()["items"]
    assert [v["version"] for v in versions] == [1]


async def test_missing_things_are_404_with_mlflow_codes(client: Client) -> None:
    await model_with_versions(client, 1)
    error(await client.get("/api/v1/models/nope"), 404, "RESOURCE_DOES_NOT_EXIST", "name")
    error(
        await client.get("/api/v1/models/iris/versions/9"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "version",
    )
    error(
        await client.get("/api/v1/models/iris/aliases/champion"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "alias",
    )
    error(
        await client.put("/api/v1/models/iris/aliases/champion", json={"version": 5}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "version",
    )


async def test_conflicts_are_409_and_change_nothing(client: Client) -> None:
    await model_with_versions(client, 2)
    error(
        await client.post("/api/v1/models", json={"name": "iris"}),
        409,
        "RESOURCE_ALREADY_EXISTS",
        "name",
    )
    assert (
        await client.post("/api/v1/models/iris/versions/1/stage", json={"stage": "Production"})
    ).status_code == 200
    before = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    r = await client.post("/api/v1/models/iris/versions/2/stage", json={"stage": "Production"})
    error(r, 409, "STAGE_OCCUPIED", "archive_existing")
    assert (await client.get("/api/v1/models/iris/audit")).json()["items"] == before
    assert (
        await client.put("/api/v1/models/iris/aliases/champion", json={"version": 2})
    ).status_code == 200
    error(await client.delete("/api/v1/models/iris/versions/2"), 409, "ALIAS_IN_USE", "version")
    assert (await client.get("/api/v1/models/iris/versions/2")).status_code == 200


async def test_stale_if_match_is_412(client: Client) -> None:
    await model_with_versions(client, 1)
    r = await client.get("/api/v1/models/iris/versions/1")
    etag = r.headers["etag"]
    ok = await client.post(
        "/api/v1/models/iris/versions/1/stage",
        json={"stage": "Staging"},
        headers={"If-Match": etag},
    )
    assert ok.status_code == 200 and ok.headers["etag"] != etag
    stale = await client.patch(
        "/api/v1/models/iris/versions/1", json={"description": "x"}, headers={"If-Match": etag}
    )
    error(stale, 412, "PRECONDITION_FAILED", "If-Match")
    assert (await client.get("/api/v1/models/iris/versions/1")).json()["description"] == ""
    fresh = await client.patch(
        "/api/v1/models/iris/versions/1",
        json={"description": "x"},
        headers={"If-Match": ok.headers["etag"]},
    )
    assert fresh.status_code == 200 and fresh.json()["description"] == "x"
    model_etag = (await client.get("/api/v1/models/iris")).headers["etag"]
    await client.put("/api/v1/models/iris/tags/a", json={"value": "b"})
    r = await client.put(
        "/api/v1/models/iris/aliases/champion",
        json={"version": 1},
        headers={"If-Match": model_etag},
    )
    error(r, 412, "PRECONDITION_FAILED")


async def test_idempotency_key_replays_and_refuses_reuse(client: Client) -> None:
    await model_with_versions(client, 0)
    headers = {"Idempotency-Key": "create-v1-abc"}
    runs = await asyncio.gather(
        *(
            client.post("/api/v1/models/iris/versions", json=VERSION, headers=headers)
            for _ in range(6)
        )
    )
    assert {r.status_code for r in runs} == {201}
    assert len({r.text for r in runs}) == 1 and runs[0].json()["version"] == 1
    assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 1
    other = {**VERSION, "description": "different"}
    r = await client.post("/api/v1/models/iris/versions", json=other, headers=headers)
    error(r, 422, "IDEMPOTENCY_KEY_REUSED", "Idempotency-Key")


async def test_pages_are_stable_under_concurrent_inserts(client: Client) -> None:
    await model_with_versions(client, 30)
    seen: list[int] = []
    cursor: str | None = None
    inserting = asyncio.gather(
        *(client.post("/api/v1/models/iris/versions", json=VERSION) for _ in range(20))
    )
    while True:
        # one insert lands between every two pages, besides the 20 racing alongside
        assert (await client.post("/api/v1/models/iris/versions", json=VERSION)).status_code == 201
        url = "/api/v1/models/iris/versions?limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url)).json()
        seen += [v["version"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    await inserting
    assert len(seen) == len(set(seen)), "a version was listed twice"
    assert set(range(1, 31)) <= set(seen), "a version that existed at the start was skipped"
    assert seen == sorted(seen, reverse=True)


async def test_request_id_and_reason_reach_the_audit_log(client: Client) -> None:
    await model_with_versions(client, 1)
    r = await client.post(
        "/api/v1/models/iris/versions/1/stage",
        json={"stage": "Staging", "reason": "passed offline eval"},
        headers={"X-Request-Id": "req-42"},
    )
    assert r.headers["x-request-id"] == "req-42"
    events = (await client.get("/api/v1/models/iris/versions/1/audit")).json()["items"]
    assert events[-1]["request_id"] == "req-42" and events[-1]["reason"] == "passed offline eval"
    assert events[-1]["before"] == {"stage": "None"}
    generated = (await client.get("/livez")).headers["x-request-id"]
    assert len(generated) == 32
    verify = (await client.get("/api/v1/models/iris/audit/verify")).json()
    assert verify["ok"] is True and verify["events"] == 3


async def test_alias_history_answers_what_it_pointed_to(client: Client) -> None:
    await model_with_versions(client, 2)
    await client.put("/api/v1/models/iris/aliases/champion", json={"version": 1})
    first = (await client.get("/api/v1/models/iris/audit")).json()["items"][-1]["at"]
    await asyncio.sleep(0.002)
    await client.put("/api/v1/models/iris/aliases/champion", json={"version": 2})
    r = await client.get("/api/v1/models/iris/aliases/champion/history", params={"at": first})
    assert r.json()["version"] == 1
    assert (await client.get("/api/v1/models/iris/aliases/champion")).json()["version"] == 2
    assert (await client.get("/api/v1/models/iris/aliases")).json() == {"champion": 2}


async def test_artifact_reference_and_digest_never_change(client: Client) -> None:
    await model_with_versions(client, 1)
    for field, value in (("artifact_uri", "s3://other/x"), ("digest", "sha256:" + "00" * 32)):
        r = await client.patch("/api/v1/models/iris/versions/1", json={field: value})
        error(r, 400, "INVALID_PARAMETER_VALUE", field)
    got = (await client.get("/api/v1/models/iris/versions/1")).json()
    assert (got["artifact_uri"], got["digest"]) == (VERSION["artifact_uri"], DIGEST)


async def test_admin_deletes_a_model_and_the_audit_keeps_its_history(client: Client) -> None:
    await model_with_versions(client, 1)
    await client.put("/api/v1/models/iris/aliases/champion", json={"version": 1})
    assert (await client.delete("/api/v1/models/iris")).status_code == 204
    error(await client.get("/api/v1/models/iris"), 404, "RESOURCE_DOES_NOT_EXIST")
    events = (await client.get("/api/v1/models/iris/audit")).json()["items"]
    assert [e["action"] for e in events][-2:] == ["alias.delete", "model.delete"]
    assert (await client.get("/api/v1/models/iris/audit/verify")).json()["ok"] is True
    assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
