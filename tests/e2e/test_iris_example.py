"""The iris example's bentos: archive contents, and real `bentoml serve` processes of v1 and v2,
including the fault switch; v2 is a healthy candidate (the same answer fields as v1, mostly the
same predictions). BentoML is only ever run in subprocesses and spoken to over HTTP: it is not
imported here (it warns at import, and the suite turns warnings into errors)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadtests.iris_compare import measure
from modelyard.processes import free_port
from tests.e2e.bento import (
    BENTOML,
    READY_TIMEOUT_S,
    V1,
    V2,
    BentoServer,
    bento_env,
    classify,
    make_bento_home,
    serve,
    serve_many,
    stop,
)

pytestmark = pytest.mark.e2e

XZ_MAGIC, GZ_MAGIC = b"\xfd7zXZ\x00", b"\x1f\x8b"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa, a virginica


@pytest.fixture(scope="module")
def bento_home(iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bento_home(iris_bentos, tmp_path_factory.mktemp("bentoml-home"))


@pytest.fixture(scope="module")
def servers(
    bento_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BentoServer, BentoServer]]:
    """v1 and v2 without faults."""
    with serve_many(bento_home, tmp_path_factory.mktemp("logs"), [(V1, {}), (V2, {})]) as (v1, v2):
        yield v1, v2


@pytest.fixture(scope="module")
def v1_server(servers: tuple[BentoServer, BentoServer]) -> BentoServer:
    return servers[0]


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


def test_v2_answers_v1s_fields_with_mostly_the_same_predictions(
    servers: tuple[BentoServer, BentoServer],
) -> None:
    """A healthy candidate: the same fields (only `model_version` differs), the class v1
    predicts for 147 of the 150 iris rows (a shadow measures something: not all of them) and
    for every row the tests and load tests send."""
    v1, v2 = servers
    response, _ = classify(v2.url, ROWS)
    assert response.json() == {"predictions": [0, 2], "model_version": "v2"}
    report = measure(v1.url, v2.url, requests=20)
    assert report["same_fields"] and report["fields"]["v2"] == ["model_version", "predictions"]
    iris, probes = report["agreement"]["iris"], report["agreement"]["probes"]
    assert (iris["agreed"], iris["rows"]) == (147, 150)
    assert 0.9 <= iris["share"] < 1.0
    assert probes["agreed"] == probes["rows"] == 3


def test_v2_with_latency_fault_is_slow(bento_home: Path, tmp_path: Path) -> None:
    with serve(bento_home, V2, tmp_path, {"IRIS_FAULT_LATENCY_MS": "300"}) as server:
        response, elapsed = classify(server.url, ROWS)
    assert response.status_code == 200, response.text
    assert elapsed >= 0.3
    assert response.json() == {"predictions": [0, 2], "model_version": "v2"}


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
