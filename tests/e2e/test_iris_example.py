"""The iris example's bentos: archive contents, and real `bentoml serve` processes of v1 and v2,
including the fault switch. BentoML is only ever run in subprocesses and spoken to over HTTP: it is
not imported here (it warns at import, and the suite turns warnings into errors)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from modelyard.testing import free_port

pytestmark = pytest.mark.e2e

BENTOML = [sys.executable, "-m", "bentoml"]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
V1, V2 = "iris-classifier:v1", "iris-classifier:v2"
XZ_MAGIC, GZ_MAGIC = b"\xfd7zXZ\x00", b"\x1f\x8b"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa, a virginica


@dataclass(frozen=True)
class BentoServer:
    url: str
    startup_s: float


def bento_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRIS_FAULT_", "BENTOML_"))}
    return {**env, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", **extra}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's PID and wait; its process group is killed only if that fails."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers the arbiter left in its group
        os.killpg(proc.pid, signal.SIGKILL)


def output(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def serve(
    home: Path, tag: str, log_dir: Path, fault_env: Mapping[str, str]
) -> Iterator[BentoServer]:
    """`bentoml serve TAG` on a free port; yields once GET /readyz answers 200; always stopped."""
    port = free_port()
    log_path = log_dir / f"serve-{tag.replace(':', '-')}-{port}.log"
    command = [*BENTOML, "serve", tag, "--port", str(port), "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            env=bento_env(home, **fault_env),
            cwd=log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with httpx.Client(timeout=2.0) as client:
                while True:
                    if proc.poll() is not None:
                        pytest.fail(f"{tag} exited with {proc.returncode}:\n{output(log_path)}")
                    if time.perf_counter() - started > READY_TIMEOUT_S:
                        pytest.fail(f"{tag} not ready in {READY_TIMEOUT_S} s:\n{output(log_path)}")
                    try:
                        if client.get(f"{url}/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
            yield BentoServer(url=url, startup_s=time.perf_counter() - started)
        finally:
            stop(proc)


def classify(url: str, rows: object) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = httpx.post(f"{url}/classify", json={"input_series": rows}, timeout=30.0)
    return response, time.perf_counter() - started


@pytest.fixture(scope="module")
def bento_home(iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh BentoML home holding both bentos, imported from the exported archives."""
    home = tmp_path_factory.mktemp("bentoml-home")
    for archive in iris_bentos:
        subprocess.run(
            [*BENTOML, "import", str(archive)],
            env=bento_env(home),
            cwd=home,
            capture_output=True,
            timeout=120,
            check=True,
        )
    return home


@pytest.fixture(scope="module")
def v1_server(bento_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BentoServer]:
    with serve(bento_home, V1, tmp_path_factory.mktemp("v1-logs"), {}) as server:
        yield server


def read_member(tar: tarfile.TarFile, name: str) -> bytes:
    """A file of the archive, whether or not its names start with "./"."""
    for member in tar.getmembers():
        if member.name.removeprefix("./") == name:
            extracted = tar.extractfile(member)
            assert extracted is not None, name
            return extracted.read()
    raise AssertionError(f"{name} is not in the archive")


@pytest.mark.parametrize(("index", "variant"), [(0, "v1"), (1, "v2")])
def test_archive_names_its_model_by_exact_tag(
    iris_bentos: tuple[Path, Path], index: int, variant: str
) -> None:
    archive = iris_bentos[index]
    assert archive.name == f"iris-{variant}.bento"
    magic = archive.read_bytes()[:6]
    assert magic.startswith((XZ_MAGIC, GZ_MAGIC)), magic
    with tarfile.open(archive, "r:*") as tar:
        names = {name.removeprefix("./") for name in tar.getnames()}
        info = yaml.safe_load(read_member(tar, "bento.yaml"))
        model_json = json.loads(read_member(tar, "src/model.json"))
    model_tag = f"iris_clf:{variant}"
    assert info["name"] == "iris-classifier"
    assert info["version"] == variant
    assert [m["tag"] for svc in info["services"] for m in svc["models"]] == [model_tag]
    assert model_json == {"model_tag": model_tag, "variant": variant}
    assert f"models/iris_clf/{variant}/saved_model.pkl" in names
    other = "v2" if variant == "v1" else "v1"
    assert not any(name.startswith(f"models/iris_clf/{other}") for name in names)
    assert {name for name in names if name.startswith("src/") and "." in name} == {
        "src/bentofile.yaml",
        "src/model.json",
        "src/service.py",
    }


def test_v1_serves_class_ids(v1_server: BentoServer) -> None:
    response, _ = classify(v1_server.url, ROWS)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0, 2], "model_version": "v1"}


def test_v1_rejects_rows_of_the_wrong_width(v1_server: BentoServer) -> None:
    response, _ = classify(v1_server.url, [[5.1, 3.5, 1.4]])
    assert response.status_code == 400, response.text


def test_v2_with_latency_fault_is_slow_and_answers_more(bento_home: Path, tmp_path: Path) -> None:
    with serve(bento_home, V2, tmp_path, {"IRIS_FAULT_LATENCY_MS": "300"}) as server:
        response, elapsed = classify(server.url, ROWS)
    assert response.status_code == 200, response.text
    assert elapsed >= 0.3
    body = response.json()
    assert body["model_version"] == "v2"
    assert body["predictions"] == [0, 2]
    assert body["labels"] == ["setosa", "virginica"]
    assert len(body["probabilities"]) == 2
    for row in body["probabilities"]:
        assert len(row) == 3
        assert sum(row) == pytest.approx(1.0, abs=1e-3)


def test_v2_with_error_rate_one_answers_5xx(bento_home: Path, tmp_path: Path) -> None:
    with serve(bento_home, V2, tmp_path, {"IRIS_FAULT_ERROR_RATE": "1"}) as server:
        codes = [classify(server.url, ROWS)[0].status_code for _ in range(3)]
    assert all(500 <= code < 600 for code in codes), codes


@pytest.mark.parametrize(
    ("name", "value"), [("IRIS_FAULT_ERROR_RATE", "1.5"), ("IRIS_FAULT_LATENCY_MS", "fast")]
)
def test_bad_fault_value_stops_the_start(
    bento_home: Path, tmp_path: Path, name: str, value: str
) -> None:
    command = [*BENTOML, "serve", V1, "--port", str(free_port()), "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        command,
        env=bento_env(bento_home, **{name: value}),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=READY_TIMEOUT_S)
    finally:
        stop(proc)
    assert proc.returncode != 0
    assert f"{name}={value!r}" in out.decode(errors="replace")
