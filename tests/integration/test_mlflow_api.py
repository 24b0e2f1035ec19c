"""The MLflow-compatible API over HTTP, in-process, on both real stores."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from modelyard.app import create_app
from modelyard.settings import load_settings

ADMIN = "admin-token-for-tests-0123456789abcdef"
API = "/api/2.0/mlflow"
Client = AsyncTestClient[Any]


@pytest.fixture
async def client(store_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = load_settings(
        {}, data_dir=str(tmp_path), database_url=store_url, admin_token=ADMIN, max_body_bytes=65536
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as c:
        c.headers.update({"Authorization": f"Bearer {ADMIN}"})
        yield c


def error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    assert body["message"]


async def model(c: Client, name: str = "iris", **extra: Any) -> dict[str, Any]:
    r = await c.post(f"{API}/registered-models/create", json={"name": name, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json()["registered_model"])


_sources = iter(range(1, 1_000_000))


async def version(c: Client, name: str = "iris", **extra: Any) -> dict[str, Any]:
    """A new version (a distinct source each time: identical creates return the first one)."""
    body = {"name": name, "source": f"s3://bucket/model-{next(_sources)}", **extra}
    r = await c.post(f"{API}/model-versions/create", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["model_version"])


async def test_models_create_get_update_rename_delete(client: Client) -> None:
    made = await model(
        client, description="d", tags=[{"key": "team", "value": "ml"}, {"key": "k", "value": ""}]
    )
    assert made["name"] == "iris" and made["description"] == "d"
    assert made["tags"] == [{"key": "k"}, {"key": "team", "value": "ml"}]
    assert isinstance(made["creation_timestamp"], int) and made["user_id"] == "bootstrap-admin"
    error(
        await client.post(f"{API}/registered-models/create", json={"name": "iris"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    r = await client.patch(
        f"{API}/registered-models/update", json={"name": "iris", "description": "e"}
    )
    assert r.json()["registered_model"]["description"] == "e"
    await version(client)
    r = await client.post(
        f"{API}/registered-models/rename", json={"name": "iris", "new_name": "flower"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["registered_model"]["name"] == "flower"
    got = (await client.get(f"{API}/registered-models/get", params={"name": "flower"})).json()
    assert [v["version"] for v in got["registered_model"]["latest_versions"]] == ["1"]
    error(
        await client.get(f"{API}/registered-models/get", params={"name": "iris"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    await model(client, "taken")
    error(
        await client.post(
            f"{API}/registered-models/rename", json={"name": "flower", "new_name": "taken"}
        ),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    r = await client.request("DELETE", f"{API}/registered-models/delete", json={"name": "flower"})
    assert r.status_code == 200 and r.json() == {}
    error(
        await client.get(f"{API}/registered-models/get", params={"name": "flower"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # the native API sees the same data
    assert (await client.get("/api/v1/models/taken")).status_code == 200


async def test_versions_are_strings_ready_and_created_once(client: Client) -> None:
    await model(client)
    body = {
        "name": "iris",
        "source": "runs:/abc/model",
        "run_id": "abc",
        "tags": [{"key": "k", "value": "v"}],
        "description": "first",
    }
    first = (await client.post(f"{API}/model-versions/create", json=body)).json()["model_version"]
    assert first["version"] == "1" and first["status"] == "READY"
    assert first["current_stage"] == "None" and first["source"] == "runs:/abc/model"
    again = (await client.post(f"{API}/model-versions/create", json=body)).json()["model_version"]
    assert again["version"] == "1", "a retried create made a second version"
    other = await version(client, source="runs:/abc/model", run_id="abc", description="second")
    assert other["version"] == "2"
    native = (await client.get("/api/v1/models/iris/versions/2")).json()
    assert native["source"] == "runs:/abc/model" and native["format"] == "mlflow"
    r = await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "2"})
    assert r.json()["model_version"]["description"] == "second"
    error(
        await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "x"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(
        await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "9"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    r = await client.patch(
        f"{API}/model-versions/update", json={"name": "iris", "version": "2", "description": "z"}
    )
    assert r.json()["model_version"]["description"] == "z"
    r = await client.get(
        f"{API}/model-versions/get-download-uri", params={"name": "iris", "version": "1"}
    )
    assert r.json() == {"artifact_uri": "runs:/abc/model"}


async def test_stages_latest_versions_and_archive(client: Client) -> None:
    await model(client)
    for _ in range(3):
        await version(client)

    async def move(v: str, stage: str, archive: bool = False) -> dict[str, Any]:
        r = await client.post(
            f"{API}/model-versions/transition-stage",
            json={
                "name": "iris",
                "version": v,
                "stage": stage,
                "archive_existing_versions": archive,
            },
        )
        assert r.status_code == 200, r.text
        return dict(r.json()["model_version"])

    assert (await move("1", "production"))["current_stage"] == "Production"
    error(
        await client.post(
            f"{API}/model-versions/transition-stage",
            json={"name": "iris", "version": "2", "stage": "Production"},
        ),
        409,
        "RESOURCE_CONFLICT",
    )
    await move("2", "Production", archive=True)
    await move("3", "Staging")
    one = (
        await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "1"})
    ).json()
    assert one["model_version"]["current_stage"] == "Archived"
    r = await client.post(
        f"{API}/registered-models/get-latest-versions",
        json={"name": "iris", "stages": ["Production"]},
    )
    assert [v["version"] for v in r.json()["model_versions"]] == ["2"]
    r = await client.get(f"{API}/registered-models/get-latest-versions", params={"name": "iris"})
    got = {v["current_stage"]: v["version"] for v in r.json()["model_versions"]}
    assert got == {"Archived": "1", "Production": "2", "Staging": "3"}
    error(
        await client.post(
            f"{API}/model-versions/transition-stage",
            json={"name": "iris", "version": "1", "stage": "Gold"},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )


async def test_tags_and_aliases(client: Client) -> None:
    await model(client)
    await version(client)
    await version(client)
    ok = await client.post(
        f"{API}/registered-models/set-tag", json={"name": "iris", "key": "a", "value": "1"}
    )
    assert ok.status_code == 200 and ok.json() == {}
    await client.request(
        "DELETE", f"{API}/registered-models/delete-tag", json={"name": "iris", "key": "a"}
    )
    await client.post(
        f"{API}/model-versions/set-tag",
        json={"name": "iris", "version": "1", "key": "b", "value": "2"},
    )
    got = (
        await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "1"})
    ).json()
    assert got["model_version"]["tags"] == [{"key": "b", "value": "2"}]
    await client.request(
        "DELETE",
        f"{API}/model-versions/delete-tag",
        json={"name": "iris", "version": "1", "key": "b"},
    )
    r = await client.post(
        f"{API}/registered-models/alias", json={"name": "iris", "alias": "champion", "version": "2"}
    )
    assert r.status_code == 200, r.text
    r = await client.get(
        f"{API}/registered-models/alias", params={"name": "iris", "alias": "champion"}
    )
    assert r.json()["model_version"]["version"] == "2"
    assert r.json()["model_version"]["aliases"] == ["champion"]
    m = (await client.get(f"{API}/registered-models/get", params={"name": "iris"})).json()
    assert m["registered_model"]["aliases"] == [{"alias": "champion", "version": "2"}]
    # MLflow deletes a version's aliases with it
    r = await client.request(
        "DELETE", f"{API}/model-versions/delete", json={"name": "iris", "version": "2"}
    )
    assert r.status_code == 200, r.text
    error(
        await client.get(
            f"{API}/registered-models/alias", params={"name": "iris", "alias": "champion"}
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    await client.post(
        f"{API}/registered-models/alias", json={"name": "iris", "alias": "x", "version": "1"}
    )
    r = await client.request(
        "DELETE", f"{API}/registered-models/alias", json={"name": "iris", "alias": "x"}
    )
    assert r.status_code == 200


async def test_search_filters_order_and_pages(client: Client) -> None:
    for name in ("alpha", "beta", "gamma"):
        await model(client, name, tags=[{"key": "team", "value": name[0]}])
        await version(client, name, run_id=f"run-{name}", source=f"s3://b/{name}")
        await version(client, name, run_id=f"run-{name}-2", source=f"s3://b/{name}/2")

    async def models(**params: Any) -> Any:
        return await client.get(f"{API}/registered-models/search", params=params)

    async def versions(**params: Any) -> Any:
        return await client.get(f"{API}/model-versions/search", params=params)

    def names(r: Any, key: str = "registered_models") -> list[str]:
        assert r.status_code == 200, r.text
        return [x["name"] for x in r.json().get(key, [])]

    assert names(await models()) == ["alpha", "beta", "gamma"]
    assert names(await models(filter="name LIKE 'a%'")) == ["alpha"]
    assert names(await models(filter="name ILIKE '%ETA'")) == ["beta"]
    assert names(await models(filter="name != 'beta'")) == ["alpha", "gamma"]
    assert names(await models(filter="name IN ('gamma', 'alpha', 'nope')")) == ["alpha", "gamma"]
    prompt = "tags.team = 'b' AND tag.`mlflow.prompt.is_prompt` != 'true'"
    assert names(await models(filter=prompt)) == ["beta"]
    assert names(await models(order_by=["name DESC"])) == ["gamma", "beta", "alpha"]
    first = await models(max_results=2)
    assert names(first) == ["alpha", "beta"]
    token = first.json()["next_page_token"]
    rest = await models(max_results=2, page_token=token)
    assert names(rest) == ["gamma"] and "next_page_token" not in rest.json()

    r = await versions(filter="name = 'beta'")
    assert [(v["name"], v["version"]) for v in r.json()["model_versions"]] == [
        ("beta", "2"),
        ("beta", "1"),
    ]
    r = await versions(filter="run_id IN ('run-alpha', 'run-gamma-2')")
    assert [(v["name"], v["version"]) for v in r.json()["model_versions"]] == [
        ("alpha", "1"),
        ("gamma", "2"),
    ]
    r = await versions(
        filter="source_path LIKE '%/2' AND version_number >= 2", order_by=["name DESC"]
    )
    assert [v["name"] for v in r.json()["model_versions"]] == ["gamma", "beta", "alpha"]
    r = await versions(filter="version_number = 1", max_results=2)
    assert len(r.json()["model_versions"]) == 2 and r.json()["next_page_token"]

    for bad in (
        "name = ",
        "name == 'x'",
        "foo = 'x'",
        "name = 'a' OR name = 'b'",
        "tags.x IN ('a')",
    ):
        error(await models(filter=bad), 400, "INVALID_PARAMETER_VALUE")
    error(await versions(filter="version_number = 'one'"), 400, "INVALID_PARAMETER_VALUE")
    error(await models(order_by=["owner"]), 400, "INVALID_PARAMETER_VALUE")
    error(await models(page_token="not a token"), 400, "INVALID_PARAMETER_VALUE")
    error(await models(max_results=5000), 400, "INVALID_PARAMETER_VALUE")


async def test_auth_bearer_basic_and_roles(client: Client) -> None:
    r = await client.post("/api/v1/tokens", json={"name": "reader-bot", "role": "reader"})
    reader = r.json()["token"]
    await model(client)
    client.headers.pop("Authorization")
    url = f"{API}/registered-models/get"
    error(await client.get(url, params={"name": "iris"}), 401, "UNAUTHENTICATED")
    basic = base64.b64encode(f"anyone:{ADMIN}".encode()).decode()
    r = await client.get(url, params={"name": "iris"}, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text
    wrong = base64.b64encode(b"anyone:wrong-password-000000").decode()
    error(
        await client.get(url, params={"name": "iris"}, headers={"Authorization": f"Basic {wrong}"}),
        401,
        "UNAUTHENTICATED",
    )
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert (await client.get(url, params={"name": "iris"}, headers=as_reader)).status_code == 200
    r = await client.post(
        f"{API}/registered-models/get-latest-versions", json={"name": "iris"}, headers=as_reader
    )
    assert r.status_code == 200, "get-latest-versions is a read, even as a POST"
    error(
        await client.post(f"{API}/registered-models/create", json={"name": "x"}, headers=as_reader),
        403,
        "PERMISSION_DENIED",
    )


async def test_errors_have_mlflow_shape(client: Client) -> None:
    error(
        await client.post(f"{API}/registered-models/create", json={}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(
        await client.post(f"{API}/registered-models/create", content=b"{"),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(
        await client.post(f"{API}/registered-models/create", json={"name": "bad name!"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(await client.get(f"{API}/no-such-endpoint"), 404, "ENDPOINT_NOT_FOUND")
    error(
        await client.post(f"{API}/model-versions/create", json={"name": "nope", "source": "x"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # the native API keeps its own shape
    r = await client.get("/api/v1/models/nope")
    assert r.status_code == 404 and r.json()["field"] == "name"
