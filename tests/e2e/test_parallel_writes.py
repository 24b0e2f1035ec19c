"""Parallel writes to one model never fail: the database serializes them (a lock taken at the
start of the write), a client waits its turn. 64 threads, no client retries, on real
`modelyard registry` processes (SQLite, PostgreSQL, two replicas on one PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from modelyard.processes import ModelyardProcess
from tests.e2e.conftest import Factory

pytestmark = pytest.mark.e2e
THREADS = 64
DIGEST = "sha256:" + "12" * 32
VERSION = {"artifact_uri": "s3://bucket/m.bento", "digest": DIGEST, "size_bytes": 1}
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_client_retries(monkeypatch: pytest.MonkeyPatch, admin_token: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def in_threads(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call on a thread of its own, all at once; any exception fails the test."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def api(proc: ModelyardProcess, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{proc.url}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=THREADS),
        timeout=60,
    )


def mlflow_creates(urls: list[str], name: str) -> list[int]:
    """THREADS versions of `name` made by the stock MLflow client, spread over `urls`."""
    clients = [MlflowClient(tracking_uri=url, registry_uri=url) for url in urls]
    clients[0].create_registered_model(name)

    def create(i: int) -> Callable[[], int]:
        c = clients[i % len(clients)]
        return lambda: int(
            c.create_model_version(name, f"s3://bucket/{name}/{i}", f"run-{i}").version
        )

    return in_threads([create(i) for i in range(THREADS)])


def test_64_mlflow_clients_create_versions_1_to_64(server: Factory) -> None:
    proc = server()
    proc.start()
    made = mlflow_creates([proc.url], "iris")
    assert sorted(made) == list(range(1, THREADS + 1))
    listed = MlflowClient(tracking_uri=proc.url).search_model_versions("name='iris'")
    assert sorted(int(v.version) for v in listed) == list(range(1, THREADS + 1))


def test_64_native_creates_without_idempotency_key(server: Factory, admin_token: str) -> None:
    proc = server()
    proc.start()
    with api(proc, admin_token) as c:
        assert c.post("/models", json={"name": "iris"}).status_code == 201
        answers = in_threads([lambda: c.post("/models/iris/versions", json=VERSION)] * THREADS)
        assert [r.status_code for r in answers] == [201] * THREADS
        assert sorted(r.json()["version"] for r in answers) == list(range(1, THREADS + 1))


def test_64_parallel_stage_alias_tag_and_traffic_writes(server: Factory, admin_token: str) -> None:
    proc = server()
    proc.start()
    with api(proc, admin_token) as c:
        assert c.post("/models", json={"name": "iris"}).status_code == 201
        served = {"endpoint": "http://127.0.0.1:9/"}  # runs elsewhere: traffic may go to it
        for _ in range(4):
            assert c.post("/models/iris/versions", json=served).status_code == 201
        promote = {"stage": "Production", "archive_existing": True}
        writes: list[Callable[[], httpx.Response]] = []
        for i in range(THREADS):
            number = 1 + i % 4
            kind = i % 4
            if kind == 0:
                writes.append(
                    lambda n=number: c.post(f"/models/iris/versions/{n}/stage", json=promote)
                )  # type: ignore[misc]
            elif kind == 1:
                writes.append(
                    lambda n=number: c.put("/models/iris/aliases/champion", json={"version": n})
                )  # type: ignore[misc]
            elif kind == 2:
                writes.append(lambda i=i: c.put(f"/models/iris/tags/t{i}", json={"value": str(i)}))  # type: ignore[misc]
            else:
                split: dict[str, Any] = {"splits": [{"version": number, "weight": 100}]}
                writes.append(lambda s=split: c.put("/models/iris/traffic", json=s))  # type: ignore[misc]
        answers = in_threads(writes)
        assert [r.status_code for r in answers] == [200] * THREADS, [
            r.text for r in answers if r.status_code != 200
        ]
        listed = c.get("/models/iris/versions", params={"stage": "Production"}).json()
        assert len(listed["items"]) == 1
        model = c.get("/models/iris").json()
        assert {k for k in model["tags"]} == {f"t{i}" for i in range(2, THREADS, 4)}
        assert c.get("/models/iris/audit/verify").json()["ok"]


def test_64_mlflow_clients_on_two_replicas(
    replicas: list[ModelyardProcess], admin_token: str
) -> None:
    made = mlflow_creates([proc.url for proc in replicas], "iris")
    assert sorted(made) == list(range(1, THREADS + 1))
    with api(replicas[1], admin_token) as c:
        answers = in_threads([lambda: c.post("/models/iris/versions", json=VERSION)] * THREADS)
        assert [r.status_code for r in answers] == [201] * THREADS
        assert sorted(r.json()["version"] for r in answers) == list(range(65, 2 * THREADS + 1))


LONG_NAME = "team forecasting - " + "m" * 200  # 218 characters, with spaces


@pytest.mark.parametrize("name", ["my model", LONG_NAME, "модель 1 (v2)"])
def test_names_as_mlflow_accepts_them(server: Factory, admin_token: str, name: str) -> None:
    """Spaces, non-ASCII and names over 128 characters, on the MLflow API and (percent-encoded
    in paths) on the native API."""
    proc = server()
    proc.start()
    mlflow = MlflowClient(tracking_uri=proc.url, registry_uri=proc.url)
    assert mlflow.create_registered_model(name).name == name
    assert mlflow.create_model_version(name, "s3://bucket/m", "run-1").version == "1"
    mlflow.set_registered_model_alias(name, "champion", "1")
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
    with api(proc, admin_token) as c:
        path = "/models/" + quote(name, safe="")
        assert c.get(path).json()["name"] == name
        made = c.post(f"{path}/versions", json=VERSION)
        assert made.status_code == 201, made.text
        assert made.json()["version"] == 2
        assert c.put(f"{path}/tags/k", json={"value": "v"}).status_code == 200
        assert c.get(f"{path}/aliases/champion").json()["version"] == 1


@pytest.mark.parametrize("name", ["a/b", "a:b", " ", "..", "x" * 257])
def test_names_mlflow_refuses_are_refused(server: Factory, name: str) -> None:
    proc = server()
    proc.start()
    with pytest.raises(MlflowException) as refused:
        MlflowClient(tracking_uri=proc.url).create_registered_model(name)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
