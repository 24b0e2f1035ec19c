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

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.chart import NAMESPACE, helm_binary, is_hook, kinds, one, part, render
from tests.pods import VENV_BIN, LocalPod, Translation, local_pod

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
