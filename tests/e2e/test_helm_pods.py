"""The chart's pods, run on this machine as the chart renders them (tests/pods.py: the same
image entrypoint, environment, arguments and Secrets; each mount a directory, each Service URL
and port a loopback one).

- No values: the `modelyard serve` pod registers and promotes the iris Bento, the gateway in it
  answers predictions, and the `helm test` hook's own script passes against it.
- The scaled shape on PostgreSQL and S3 (moto): registry and gateway pods, and the pod of a
  `models` entry that names a registered version, which fetches the archive through the signed
  link, verifies its digest, serves it, and sets the version's endpoint for the gateway.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from loadtests.postgres import fresh_postgres_database, postgres_available
from modelyard.processes import free_port
from tests.chart import NAMESPACE, RENDER_KUBE, Doc, helm_binary, is_hook, kinds, one, part, render
from tests.pods import VENV_BIN, LocalPod, Translation, local_pod
from tests.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, s3_client

pytestmark = pytest.mark.e2e

ROWS: Final = {"input_series": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
READY_S: Final = 60.0
SERVED_S: Final = 150.0
NAME: Final = part("")[:-1]  # ml-modelyard


def wait_for(url: str, deadline_s: float, pod: LocalPod) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert pod.proc is not None and pod.proc.poll() is None, pod.output()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready in {deadline_s} s:\n{pod.output()[-3000:]}")


def cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELYARD_URL": url, "MODELYARD_TOKEN": token}
    return subprocess.run(
        [str(VENV_BIN / "modelyard"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=SERVED_S + 30,
        check=False,
    )


def predict_grpc(target: str, version: str) -> list[int]:
    """The predictions over the pod's gRPC port (tritonclient's defaults), pinned to `version`."""
    rows = triton.InferInput("input_series", [2, 4], "FP64")
    rows.set_data_from_numpy(np.array(ROWS["input_series"]))
    with triton.InferenceServerClient(target) as client:
        result = client.infer("iris", [rows], model_version=version)
    assert result.get_response().model_version == version
    predictions: list[int] = result.as_numpy("predictions").tolist()
    return predictions


def predict(url: str, path: str, version: int) -> dict[str, Any]:
    r = httpx.post(f"{url}{path}", json=ROWS, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-modelyard-version"] == str(version)
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def pods() -> Iterator[list[LocalPod]]:
    started: list[LocalPod] = []
    try:
        yield started
    finally:
        for pod in reversed(started):
            pod.stop()


def test_the_default_pod_serves_a_promoted_bento_and_passes_helm_test(
    tmp_path: Path, iris_bentos: tuple[Path, Path], pods: list[LocalPod]
) -> None:
    helm_binary()
    docs = render("default")
    (deployment,) = kinds(docs, "Deployment")
    serve = local_pod(docs, deployment, Translation(tmp_path))
    assert serve.argv[1:] == ["serve"]
    pods.append(serve)
    serve.start()
    url = f"http://127.0.0.1:{serve.env['MODELYARD_PORT']}"
    wait_for(f"{url}/readyz", READY_S, serve)
    token = serve.env["MODELYARD_ADMIN_TOKEN"]
    assert re.fullmatch(r"myd_[A-Za-z0-9]{43}", token)  # the generated one, from the Secret
    for step in (
        ["models", "create", "iris"],
        ["versions", "create", "iris", "--bento", str(iris_bentos[0])],
    ):
        done = cli(url, token, *step)
        assert done.returncode == 0, done.stdout + done.stderr
    done = cli(url, token, "stage", "iris", "1", "Production", "--wait", str(SERVED_S))
    assert done.returncode == 0, done.stdout + done.stderr + serve.output()[-3000:]
    assert predict(url, "/models/iris/classify", 1)["predictions"] == [0, 2]
    assert predict_grpc(f"127.0.0.1:{serve.env['MODELYARD_GRPC_PORT']}", "1") == [0, 2]
    # the data folder is the claim's directory: SQLite and the artifact are on it
    data = Path(serve.env["MODELYARD_DATA_DIR"])
    assert (data / "modelyard.db").is_file() and list((data / "artifacts").rglob("*.bento"))
    # `helm test`: the hook pod's command, against this pod (its Service URL)
    hook = one([d for d in docs if is_hook(d)], "Pod", f"{NAME}-test")
    service = f"http://{NAME}.{NAMESPACE}.svc:8000"
    test = local_pod(docs, hook, Translation(tmp_path, urls={service: url}))
    done = test.run(timeout=SERVED_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the gateway routed POST /models/helm-test-" in done.stdout


# --- the scaled shape, and a `models` entry that names a registered version ---------------------


@dataclass
class Scaled:
    registry: str
    gateway: str
    gateway_grpc: str  # host:port
    token: str
    version_pod: LocalPod
    version_url: str
    exit_code: int | None


def _postgres() -> Iterator[str]:
    reason = postgres_available()
    if reason is not None:
        if os.environ.get("MODELYARD_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (MODELYARD_REQUIRE_POSTGRES): {reason}")
        pytest.skip(reason)
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def scaled(
    tmp_path_factory: pytest.TempPathFactory, moto_s3: str, iris_bentos: tuple[Path, Path]
) -> Iterator[Scaled]:
    """Registry and gateway pods of the minimal values on PostgreSQL and moto's S3 (set as the
    chart's values), and the pod of `models: [{name: iris-v2, model: iris, version: 2}]`, run
    until it served version 2 and went on to set its endpoint."""
    helm_binary()
    root = tmp_path_factory.mktemp("scaled")
    bucket = f"modelyard-{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_bucket(moto_s3, bucket))
    database = _postgres()
    sets = [
        f"database.url={next(database)}",
        f"artifacts.url=s3://{bucket}/prod",
        f"artifacts.s3.endpointUrl={moto_s3}",
        f"artifacts.s3.region={S3_REGION}",
        f"artifacts.s3.accessKeyId={S3_ACCESS_KEY}",
        f"artifacts.s3.secretAccessKey={S3_SECRET_KEY}",
        "models[0].name=iris-v2",
        "models[0].model=iris",
        "models[0].version=2",
    ]
    docs = render("minimal", RENDER_KUBE, *sets)
    started: list[LocalPod] = []
    try:
        yield _run_scaled(docs, root, started, iris_bentos)
    finally:
        for pod in reversed(started):
            pod.stop()
        database.close()


async def _create_bucket(endpoint: str, name: str) -> None:
    async with s3_client(endpoint) as client:
        await client.create_bucket(Bucket=name)


def _run_scaled(
    docs: list[Doc], root: Path, started: list[LocalPod], bentos: tuple[Path, Path]
) -> Scaled:
    registry = local_pod(docs, one(docs, "Deployment", part("registry")), Translation(root))
    started.append(registry)
    registry.start()
    registry_url = f"http://127.0.0.1:{registry.env['MODELYARD_PORT']}"
    wait_for(f"{registry_url}/readyz", READY_S, registry)
    services = {f"http://{part('registry')}.{NAMESPACE}.svc:8000": registry_url}
    gateway = local_pod(
        docs, one(docs, "Deployment", part("gateway")), Translation(root, urls=services)
    )
    started.append(gateway)
    gateway.start()
    gateway_url = f"http://127.0.0.1:{gateway.env['MODELYARD_PORT']}"
    wait_for(f"{gateway_url}/v2/health/live", READY_S, gateway)
    token = registry.env["MODELYARD_ADMIN_TOKEN"]
    for step in (
        ["models", "create", "iris"],
        ["versions", "create", "iris", "--bento", str(bentos[0])],
        ["versions", "create", "iris", "--bento", str(bentos[1])],
    ):
        done = cli(registry_url, token, *step)
        assert done.returncode == 0, done.stdout + done.stderr
    # the version pod: its Service URL is where it listens here
    port = free_port()
    version_url = f"http://127.0.0.1:{port}"
    service = f"http://{part('model-iris-v2')}.{NAMESPACE}.svc:3000"
    how = Translation(root, urls={**services, service: version_url}, ports={3000: port})
    pod = local_pod(docs, one(docs, "Deployment", part("model-iris-v2")), how)
    started.append(pod)
    pod.start()
    assert pod.proc is not None
    deadline = time.monotonic() + SERVED_S
    while pod.proc.poll() is None and "endpoint" not in pod.output().split(": ready", 1)[-1]:
        assert time.monotonic() < deadline, pod.output()[-3000:]
        time.sleep(0.2)
    grpc_target = f"127.0.0.1:{gateway.env['MODELYARD_GRPC_PORT']}"
    return Scaled(registry_url, gateway_url, grpc_target, token, pod, version_url, pod.proc.poll())


def test_a_version_pod_fetches_verifies_and_serves_the_registered_archive(
    scaled: Scaled,
) -> None:
    pod = scaled.version_pod
    assert pod.argv[1:4] == ["serve-version", "--model", "iris"]
    assert pod.env["MODELYARD_REGISTRY_TOKEN"] == scaled.token  # the gateways' token
    log = pod.output()
    lines = [
        "fetching s3://",  # through the registry's signed link (an S3 presigned URL here)
        "digest verified: sha256:",
        "version 2 of 'iris': starting",
        "version 2 of 'iris': ready",  # `bentoml serve` answered /readyz on the pod's port
    ]
    at = [log.find(line) for line in lines]
    assert all(i >= 0 for i in at) and at == sorted(at), log[-3000:]
    version = httpx.get(
        f"{scaled.registry}/api/v1/models/iris/versions/2",
        headers={"Authorization": f"Bearer {scaled.token}"},
    ).json()
    assert version["digest"] in log
    imported = Path(pod.env["MODELYARD_DATA_DIR"]) / "servers" / "iris" / "2"
    assert (imported / "archive.bento").stat().st_size == version["size_bytes"]


def test_the_version_pod_sets_its_endpoint_and_the_gateway_routes_to_it(scaled: Scaled) -> None:
    log = scaled.version_pod.output()
    assert scaled.exit_code is None, log[-2000:]
    assert f"endpoint set to {scaled.version_url}" in log
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        r = httpx.post(f"{scaled.gateway}/models/iris/versions/2/classify", json=ROWS, timeout=30)
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert predict(scaled.gateway, "/models/iris/versions/2/classify", 2)["predictions"] == [0, 2]
    assert predict_grpc(scaled.gateway_grpc, "2") == [0, 2]  # the gateway pod's gRPC port
