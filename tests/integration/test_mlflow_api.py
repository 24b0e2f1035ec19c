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
INVALID = "INVALID_PARAMETER_VALUE"


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
        400,  # as MLflow's store: "Registered model alias champion not found."
        "INVALID_PARAMETER_VALUE",
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
        await client.post(f"{API}/registered-models/create", json={"name": "bad/name"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(await client.get(f"{API}/no-such-endpoint"), 404, "ENDPOINT_NOT_FOUND")
    error(
        await client.post(
            f"{API}/model-versions/create", json={"name": "nope", "source": "s3://b/x"}
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # the native API keeps its own shape
    r = await client.get("/api/v1/models/nope")
    assert r.status_code == 404 and r.json()["field"] == "name"


async def test_a_body_over_the_limit_is_mlflows_invalid_parameter_not_a_500(
    client: Client,
) -> None:
    """The fixture's limit is 64 KiB: a larger body is refused before it is read whole, with a
    code MLflow's client knows (issue 18), and nothing is created."""
    big = {"name": "iris", "description": "x" * 70_000}
    error(await client.post(f"{API}/registered-models/create", json=big), 413, INVALID)
    r = await client.get(f"{API}/registered-models/get", params={"name": "iris"})
    error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    # the native API keeps its own code
    r = await client.post("/api/v1/models", json=big)
    assert (r.status_code, r.json()["error_code"]) == (413, "REQUEST_TOO_LARGE"), r.text


async def test_what_mlflow_3_sends_with_a_version_is_kept(client: Client) -> None:
    """`mlflow.register_model("runs:/…")` in MLflow 3 sends the logged model's id and source;
    run_link comes from Databricks tracking. All of it comes back, on both APIs."""
    await model(client)
    body = {
        "name": "iris",
        "source": "models:/m-0a1b2c",
        "run_id": "r1",
        "model_id": "m-0a1b2c",
        "run_link": "https://tracking.example/#/experiments/1/runs/r1",
        "tags": [{"key": "k", "value": "v"}],
    }
    r = await client.post(f"{API}/model-versions/create", json=body)
    assert r.status_code == 200, r.text
    made = r.json()["model_version"]
    assert (made["model_id"], made["run_link"]) == (body["model_id"], body["run_link"])
    got = (
        await client.get(f"{API}/model-versions/get", params={"name": "iris", "version": "1"})
    ).json()["model_version"]
    assert got["model_id"] == "m-0a1b2c" and got["source"] == "models:/m-0a1b2c"
    assert got["run_id"] == "r1" and got["tags"] == [{"key": "k", "value": "v"}]
    native = (await client.get("/api/v1/models/iris/versions/1")).json()
    assert native["logged_model_id"] == "m-0a1b2c" and native["run_link"] == body["run_link"]
    assert (native["source"], native["run_id"], native["format"]) == (
        "models:/m-0a1b2c",
        "r1",
        "mlflow",
    )
    r = await client.get(
        f"{API}/model-versions/get-download-uri", params={"name": "iris", "version": "1"}
    )
    assert r.json() == {"artifact_uri": "models:/m-0a1b2c"}
    # the client's retry of the same create is the same version; another logged model is not
    again = await client.post(f"{API}/model-versions/create", json=body)
    assert again.json()["model_version"]["version"] == "1"
    other = await client.post(f"{API}/model-versions/create", json={**body, "model_id": "m-ff"})
    assert other.json()["model_version"]["version"] == "2"
    # versions made without them leave both fields out, as MLflow's JSON does
    plain = await version(client)
    assert "model_id" not in plain and "run_link" not in plain
    long_link = {**body, "run_link": "h" * 3000}
    error(
        await client.post(f"{API}/model-versions/create", json=long_link),
        400,
        "INVALID_PARAMETER_VALUE",
    )


async def test_unknown_fields_are_ignored_as_mlflow_does_and_refused_on_v1(client: Client) -> None:
    """MLflow's server parses requests with ignore_unknown_fields: a newer client's field
    must not break the call. modelyard's own API stays closed."""
    made = await model(client, future_field={"x": 1})
    assert made["name"] == "iris"
    r = await client.post(
        f"{API}/model-versions/create",
        json={"name": "iris", "source": "s3://b/1", "some_new_field": "x"},
    )
    assert r.status_code == 200 and r.json()["model_version"]["version"] == "1"
    r = await client.post("/api/v1/models", json={"name": "other", "future_field": 1})
    assert r.status_code == 400 and r.json()["field"] == "future_field", r.text


TRACKING_CALLS = [
    ("POST", f"{API}/experiments/create"),
    ("GET", f"{API}/experiments/get-by-name"),
    ("POST", f"{API}/runs/create"),
    ("POST", f"{API}/logged-models"),
    ("POST", "/api/3.0/mlflow/traces"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/run/model/MLmodel"),
]


async def test_tracking_endpoints_say_they_are_not_served(client: Client) -> None:
    client.headers.pop("Authorization")  # the answer needs no token: it tells nothing stored
    for method, path in TRACKING_CALLS:
        r = await client.request(method, path, json={"name": "iris"})
        error(r, 404, "ENDPOINT_NOT_FOUND")
        said = r.json()["message"]
        assert said.startswith(f"{method} {path} is MLflow tracking"), said
        assert "MLFLOW_TRACKING_URI" in said and "MLFLOW_REGISTRY_URI" in said


async def test_unserved_registry_paths_and_wrong_methods(client: Client) -> None:
    r = await client.get(f"{API}/registered-models/list")
    error(r, 404, "ENDPOINT_NOT_FOUND")
    assert "not an MLflow registry endpoint that modelyard serves" in r.json()["message"]
    # a served path with the wrong method is still a 405, and the served routes still answer
    error(await client.get(f"{API}/registered-models/create"), 405, "METHOD_NOT_ALLOWED")
    await model(client)
    r = await client.get(f"{API}/registered-models/get", params={"name": "iris"})
    assert r.status_code == 200, r.text
    # outside MLflow's prefixes nothing changes
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and "MLflow" not in r.json()["message"]
    spec = (await client.get("/schema/openapi.json")).json()
    assert not [p for p in spec["paths"] if "{rest}" in p], "the catch-all is not in the schema"
