"""The whole path on real parts: build the example, register v1 (local files) and v2 (S3 on
moto), promote, and get real predictions from the `bentoml serve` processes that modelyard
started; a crashed server is restarted; stopping modelyard leaves no server behind."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.process_tree import descendants
from modelyard.cli.main import main as cli
from modelyard.processes import ModelyardProcess
from tests.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, create_bucket

pytestmark = pytest.mark.e2e

ROWS = {"input_series": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
DEPLOY_TIMEOUT_S = 90.0


def api(proc: ModelyardProcess, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{proc.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def wait_for(c: httpx.Client, version: int, status: str, *, restarts: int = 0) -> dict[str, Any]:
    """Poll the version's deployment until it has `status` (a readiness check, not a sleep)."""
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    last: Any = None
    while time.monotonic() < deadline:
        r = c.get(f"/models/iris/versions/{version}/deployment")
        last = r.json()
        if r.status_code == 200 and last["status"] == status and last["restarts"] >= restarts:
            return dict(last)
        if r.status_code == 200 and last["status"] == "failed":
            pytest.fail(f"deployment of v{version} failed: {last}")
        time.sleep(0.1)
    pytest.fail(f"v{version} not {status} after {DEPLOY_TIMEOUT_S}s: {last}")


def gone(c: httpx.Client, version: int) -> bool:
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while time.monotonic() < deadline:
        if c.get(f"/models/iris/versions/{version}/deployment").status_code == 404:
            return True
        time.sleep(0.1)
    return False


def predict(endpoint: str) -> dict[str, Any]:
    r = httpx.post(f"{endpoint}/classify", json=ROWS, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_dead(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def serve(tmp_path: Path, admin_token: str) -> Iterator[list[ModelyardProcess]]:
    started: list[ModelyardProcess] = []
    yield started
    for proc in started:
        proc.stop()


async def test_register_promote_and_predict_through_real_bentoml(
    iris_bentos: tuple[Path, Path],
    moto_s3: str,
    tmp_path: Path,
    admin_token: str,
    serve: list[ModelyardProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    v1_bento, v2_bento = iris_bentos
    data = tmp_path / "data"

    # --- phase 1: embedded default, artifacts as local files --------------------------------
    first = ModelyardProcess("serve", data, admin_token)
    serve.append(first)
    first.start()
    with api(first, admin_token) as c:
        assert c.post("/models", json={"name": "iris"}).status_code == 201
        started = time.perf_counter()
        args = ["--json", "--url", first.url, "--token", admin_token, "--metric", "accuracy=0.95"]
        code = cli(["versions", "create", "iris", "--bento", str(v1_bento), *args])
        assert code == 0, capsys.readouterr().err
        v1 = c.get("/models/iris/versions/1").json()
        assert v1["bento_tag"] == "iris-classifier:v1" and v1["artifact_uri"].startswith("file://")
        assert v1["apis"] == [
            {
                "name": "classify",
                "inputs": ["input_series"],
                "tensors": [{"name": "input_series", "datatype": "FP64", "shape": [-1, 4]}],
                "outputs": [
                    {"name": "model_version", "datatype": "BYTES", "shape": []},
                    {"name": "predictions", "datatype": "INT64", "shape": [-1]},
                ],
            }
        ]
        promoted = c.post("/models/iris/versions/1/stage", json={"stage": "Production"})
        assert promoted.status_code == 200
        ready = wait_for(c, 1, "ready")
        answer = predict(ready["endpoint"])
        first_prediction_s = time.perf_counter() - started
        assert answer["model_version"] == "v1" and answer["predictions"] == [0, 2]
        v1_pid = ready["pid"]
        v1_workers = descendants(v1_pid)
    print(f"\nregister + promote -> first prediction: {first_prediction_s:.2f} s")
    first.stop()
    assert wait_dead(v1_pid), "stopping modelyard left the v1 server running"
    assert all(wait_dead(w) for w in v1_workers), "stopping modelyard left v1 workers running"

    # --- phase 2: the same registry moves its uploads to S3 ---------------------------------
    bucket = await create_bucket(moto_s3)
    s3_env = {
        "MODELYARD_ARTIFACT_URL": f"s3://{bucket}/models",
        "MODELYARD_S3_ENDPOINT_URL": moto_s3,
        "MODELYARD_S3_REGION": S3_REGION,
        "MODELYARD_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "MODELYARD_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }
    second = ModelyardProcess("serve", data, admin_token, extra_env=s3_env)
    serve.append(second)
    second.start(timeout=DEPLOY_TIMEOUT_S)  # ready once v1's server answers again
    with api(second, admin_token) as c:
        # v1 is still Production and still served, from its local file
        again = wait_for(c, 1, "ready")
        assert predict(again["endpoint"])["model_version"] == "v1"
        with v2_bento.open("rb") as body:
            r = c.post(
                "/models/iris/versions/bento",
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        assert r.status_code == 201, r.text
        v2 = r.json()
        assert v2["version"] == 2 and v2["artifact_uri"].startswith(f"s3://{bucket}/models/")
        promote = {"stage": "Production", "archive_existing": True}
        assert c.post("/models/iris/versions/2/stage", json=promote).status_code == 200
        ready = wait_for(c, 2, "ready")
        answer = predict(ready["endpoint"])
        assert answer == {"predictions": [0, 2], "model_version": "v2"}
        assert gone(c, 1), "the archived v1 still has a server"
        assert wait_dead(again["pid"])
        assert c.get("/models/iris/versions/1").json()["stage"] == "Archived"

        # a crashed server is noticed and started again; its orphaned workers are ended
        workers = descendants(ready["pid"])
        assert workers, "bentoml serve has worker processes"
        os.kill(ready["pid"], signal.SIGKILL)
        back = wait_for(c, 2, "ready", restarts=1)
        assert back["pid"] != ready["pid"]
        assert all(wait_dead(w) for w in workers), "the crashed server's workers live on"
        assert predict(back["endpoint"])["model_version"] == "v2"
        listed = c.get("/deployments").json()
        assert listed["deployer"] == "local" and [s["version"] for s in listed["items"]] == [2]
    last_workers = descendants(back["pid"])
    second.stop()
    assert wait_dead(back["pid"]), "stopping modelyard left the v2 server running"
    assert all(wait_dead(w) for w in last_workers), "stopping modelyard left workers running"


def test_a_server_that_cannot_start_is_reported_not_orphaned(
    iris_bentos: tuple[Path, Path], tmp_path: Path, admin_token: str, serve: list[ModelyardProcess]
) -> None:
    proc = ModelyardProcess("serve", tmp_path / "data", admin_token)
    serve.append(proc)
    proc.start()
    with api(proc, admin_token) as c:
        assert c.post("/models", json={"name": "iris"}).status_code == 201
        with iris_bentos[0].open("rb") as body:
            r = c.post(
                "/models/iris/versions/bento",
                content=body,
                params={"tag": "serving.env.IRIS_FAULT_ERROR_RATE=2"},
                headers={"Content-Type": "application/octet-stream"},
            )
        assert r.status_code == 201, r.text
        assert c.post("/models/iris/versions/1/stage", json={"stage": "Staging"}).status_code == 200
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        state: dict[str, Any] = {}
        while time.monotonic() < deadline and state.get("status") != "failed":
            state = c.get("/models/iris/versions/1/deployment").json()
            time.sleep(0.1)
        assert state["status"] == "failed", state
        assert "IRIS_FAULT_ERROR_RATE" in state["detail"] and state["pid"] is None
        assert (
            c.post("/models/iris/versions/1/stage", json={"stage": "Archived"}).status_code == 200
        )
        assert gone(c, 1)
