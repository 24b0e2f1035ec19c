"""Tracking where MLflow serves it, the registry on modelyard: the stock MLflow client, set up
with environment variables only, against a real `mlflow server` (or a local tracking store)
and a real `modelyard serve`. docs/mlflow.md documents this; its runnable block runs here."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import mlflow.sklearn
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelyard.processes import ModelyardProcess
from tests.e2e.mlflow_server import QUIET, MlflowServer, mlflow_server

pytestmark = [
    pytest.mark.e2e,
    # MLflow deprecates registry stages (since 2.9) but still sends them
    pytest.mark.filterwarnings(
        "ignore:``mlflow.tracking.client.MlflowClient.transition_model_version_stage`` "
        "is deprecated:FutureWarning"
    ),
    # mlflow.pyfunc warns about one of its own type hints when it is first imported (the
    # message starts with a terminal colour code)
    pytest.mark.filterwarnings("ignore:.*Any type hint is inferred as AnyType:UserWarning"),
]
DOC = Path(__file__).resolve().parents[2] / "docs/mlflow.md"
X, Y = load_iris(return_X_y=True)


@pytest.fixture(scope="module", autouse=True)
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One `mlflow server` for the module, spawned before the first test: it boots (12-16 s
    here) while the tests that do not need it run; those that do wait with `ready()`."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as spawned:
        yield spawned
    if spawned.ready_s is not None:
        print(f"\nmlflow server: ready {spawned.ready_s:.1f} s after spawn")


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    """One `modelyard serve` on SQLite for the tests that are about the client, not the store
    (each uses model names of its own)."""
    token = "e2e-" + secrets.token_urlsafe(24)
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), token)
    try:
        proc.start(timeout=60)  # it starts while the mlflow server boots beside it
        yield proc
    finally:
        proc.stop()


def as_a_user(monkeypatch: pytest.MonkeyPatch, tracking: str, registry: str, token: str) -> None:
    """The environment docs/mlflow.md gives, and nothing else of MLflow's."""
    for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
        if name != "MLFLOW_DISABLE_TELEMETRY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # a failure fails fast


def train_and_log() -> tuple[str, str, LogisticRegression]:
    """A run with params, a metric, a text artifact and an sklearn model: (run id, logged
    model id, model)."""
    mlflow.set_experiment("iris-training")
    with mlflow.start_run() as run:
        model = LogisticRegression(max_iter=300).fit(X, Y)
        mlflow.log_param("max_iter", 300)
        mlflow.log_metric("accuracy", model.score(X, Y))
        mlflow.log_text("trained on the iris data", "notes.txt")
        logged = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return run.info.run_id, logged.model_id, model


def native(yard_url: str, token: str, path: str) -> dict[str, object]:
    r = httpx.get(f"{yard_url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_pointing_tracking_at_modelyard_says_where_to_point_it(
    yard: ModelyardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user sees who sets MLFLOW_TRACKING_URI to modelyard: registry calls work, the
    first tracking call fails with MLflow's code and a message that says what to do."""
    as_a_user(monkeypatch, tracking=yard.url, registry=yard.url, token=yard.admin_token)
    MlflowClient().create_registered_model("flowers")  # the registry part works
    calls = {
        "create_experiment": lambda: MlflowClient().create_experiment("iris-training"),
        "set_experiment": lambda: mlflow.set_experiment("iris-training"),
        "register_model": lambda: mlflow.register_model("runs:/0123abcd/model", "flowers"),
    }
    for name, call in calls.items():
        with pytest.raises(MlflowException) as refused:
            call()
        said = refused.value.message
        assert refused.value.error_code == "ENDPOINT_NOT_FOUND", (name, said)
        assert "is MLflow tracking" in said and "which modelyard does not serve" in said, said
        assert "MLFLOW_TRACKING_URI" in said and "`mlflow server`" in said, said
        assert "sqlite:///" in said and "MLFLOW_REGISTRY_URI at this server" in said, said
    assert MlflowClient().search_model_versions("name = 'flowers'") == []


def test_the_documented_local_store_block(yard: ModelyardProcess, tmp_path: Path) -> None:
    """docs/mlflow.md's runnable block, as written but for modelyard's port, run by bash in a
    fresh folder: tracking in ./mlflow.db, the registry on modelyard."""
    block = documented_block()
    assert "127.0.0.1:8000" in block
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        **QUIET,
        "MODELYARD_TOKEN": yard.admin_token,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace("127.0.0.1:8000", yard.url[7:])],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "iris-sklearn version 1 predicts [0 0 0]" in done.stdout, done.stdout
    champion = json.loads(done.stdout.splitlines()[-1])  # the block's curl
    assert champion["model"] == "iris-sklearn" and champion["version"] == 1
    assert champion["aliases"] == ["champion"] and champion["format"] == "mlflow"
    assert re.fullmatch(r"models:/m-[0-9a-f]{32}", str(champion["source"])), champion
    assert champion["source"] == f"models:/{champion['logged_model_id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", str(champion["run_id"])), champion
    assert (work / "mlflow.db").is_file() and (work / "mlruns").is_dir()


def documented_block() -> str:
    """The bash block under docs/mlflow.md's `tested by ...::test_the_documented_local_store_block`
    marker."""
    text = DOC.read_text()
    marker = (
        "<!-- tested by tests/e2e/test_mlflow_tracking.py::test_the_documented_local_store_block"
        " -->"
    )
    found = re.search(re.escape(marker) + r"\n```bash\n(.*?)\n```\n", text, re.DOTALL)
    assert found is not None, f"{DOC} lost its tested block"
    return found.group(1)


def test_register_a_run_tracked_on_an_mlflow_server(
    tracking_server: MlflowServer, yard: ModelyardProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The setup docs/mlflow.md gives: runs on `mlflow server`, versions on modelyard,
    `mlflow.register_model("runs:/…")` between them. (One store: what modelyard keeps of an
    MLflow 3 version is checked on SQLite and PostgreSQL in tests/integration.)"""
    admin_token = yard.admin_token
    as_a_user(monkeypatch, tracking=tracking_server.ready(), registry=yard.url, token=admin_token)
    run_id, model_id, model = train_and_log()

    version = mlflow.register_model(f"runs:/{run_id}/model", "iris")
    assert (version.name, version.version, version.run_id) == ("iris", "1", run_id)
    assert version.source == f"models:/{model_id}" and version.status == "READY"

    # the run is on the tracking server, and only there
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == {"max_iter": "300"} and run.data.metrics["accuracy"] > 0.9
    assert [a.path for a in client.list_artifacts(run_id)] == ["notes.txt"]
    # the version is in modelyard, on both its APIs, with what MLflow 3 sent
    got = native(yard.url, admin_token, "/models/iris/versions/1")
    assert (got["source"], got["run_id"], got["format"]) == (
        f"models:/{model_id}",
        run_id,
        "mlflow",
    )
    assert got["logged_model_id"] == model_id
    raw = httpx.get(
        f"{yard.url}/api/2.0/mlflow/model-versions/get",
        params={"name": "iris", "version": "1"},
        headers={"Authorization": f"Bearer {admin_token}"},
    ).json()["model_version"]
    assert (raw["model_id"], raw["run_id"]) == (model_id, run_id)
    # register_model linked the logged model on the tracking server to the version
    links = client.get_logged_model(model_id).tags["mlflow.modelVersions"]
    assert json.loads(links) == [{"name": "iris", "version": "1"}]

    # stage and alias through the stock client, seen by modelyard
    moved = client.transition_model_version_stage("iris", "1", "Staging")
    assert moved.current_stage == "Staging"
    client.set_registered_model_alias("iris", "champion", "1")
    assert client.get_model_version_by_alias("iris", "champion").run_id == run_id
    got = native(yard.url, admin_token, "/models/iris/aliases/champion")
    assert (got["version"], got["stage"], got["aliases"]) == (1, "Staging", ["champion"])

    # loaded back by name: modelyard says which version, the tracking server has its files
    loaded = mlflow.pyfunc.load_model("models:/iris@champion")
    assert list(loaded.predict(X[::10])) == list(model.predict(X[::10]))
