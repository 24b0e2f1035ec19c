"""The Open Inference Protocol over HTTP as a real client speaks it: `tritonclient.http` at its
default settings (binary tensors both ways) against `modelyard serve`, which runs the iris
example's bento (uploaded as an archive, so the model metadata comes from its API schema) in
a real `bentoml serve`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.processes import ModelyardProcess

tritonclient_http = pytest.importorskip("tritonclient.http")
triton_utils = pytest.importorskip("tritonclient.utils")

pytestmark = pytest.mark.e2e

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa, a virginica
PREDICTIONS = [0, 2]
DEPLOY_TIMEOUT_S = 90.0
InferenceServerException = triton_utils.InferenceServerException


@pytest.fixture(scope="module")
def yard(
    iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelyardProcess]:
    """`modelyard serve` with iris v1 uploaded as a bento, Production, served and routed."""
    token = "oip-tritonclient-e2e-admin-token-0123"
    proc = ModelyardProcess("serve", tmp_path_factory.mktemp("yard"), token)
    proc.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=60) as c:
            assert c.post("/models", json={"name": "iris"}).status_code == 201
            raw = iris_bentos[0].read_bytes()
            octets = {"Content-Type": "application/octet-stream"}
            created = c.post("/models/iris/versions/bento", content=raw, headers=octets)
            assert created.status_code == 201, created.text
            promote = c.post("/models/iris/versions/1/stage", json={"stage": "Production"})
            assert promote.status_code == 200, promote.text
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while httpx.get(f"{proc.url}/v2/models/iris/ready").status_code != 200:
            assert time.monotonic() < deadline, "iris v1 never became ready behind the gateway"
            time.sleep(0.2)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(yard: ModelyardProcess) -> Iterator[Any]:
    c = tritonclient_http.InferenceServerClient(url=yard.url.removeprefix("http://"))
    try:
        yield c
    finally:
        c.close()


def status_of(error: pytest.ExceptionInfo[Any]) -> str:
    return str(error.value.status())


def rows_input(datatype: str, *, binary: bool = True, rows: Any = ROWS) -> Any:
    array = np.array(rows, dtype=triton_utils.triton_to_np_dtype(datatype))
    tensor = tritonclient_http.InferInput("input_series", list(array.shape), datatype)
    return tensor.set_data_from_numpy(array, binary_data=binary)


def test_live_ready_and_server_metadata(client: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris") and client.is_model_ready("iris", "1")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelyard" and metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_is_the_bentos_api_schema(client: Any) -> None:
    metadata = client.get_model_metadata("iris")
    assert metadata["versions"] == ["1"] and metadata["platform"] == "bentoml"
    assert metadata["inputs"] == [{"name": "input_series", "datatype": "FP64", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "model_version", "datatype": "BYTES", "shape": []},
        {"name": "predictions", "datatype": "INT64", "shape": [-1]},
    ]
    assert client.get_model_metadata("iris", "1")["inputs"] == metadata["inputs"]


def test_what_the_metadata_says_infer_accepts(client: Any) -> None:
    """Inputs built from the metadata alone (datatype, shape with -1 as 2 rows)."""
    inputs = []
    for spec in client.get_model_metadata("iris")["inputs"]:
        shape = [len(ROWS) if dim == -1 else dim for dim in spec["shape"]]
        dtype = triton_utils.triton_to_np_dtype(spec["datatype"])
        array = np.array(ROWS, dtype=dtype).reshape(shape)
        tensor = tritonclient_http.InferInput(spec["name"], shape, spec["datatype"])
        inputs.append(tensor.set_data_from_numpy(array))
    result = client.infer("iris", inputs)
    assert result.as_numpy("predictions").tolist() == PREDICTIONS
    declared = {o["name"]: o for o in client.get_model_metadata("iris")["outputs"]}
    for output in result.get_response()["outputs"]:  # and what it says infer answers
        spec = declared[output["name"]]
        assert output["datatype"] == spec["datatype"]
        assert len(output["shape"]) == len(spec["shape"])
        assert all(d in (-1, g) for d, g in zip(spec["shape"], output["shape"], strict=True))


def test_binary_tensors_both_ways_at_the_clients_defaults(client: Any) -> None:
    result = client.infer("iris", [rows_input("FP64")])
    response = result.get_response()
    by_name = {output["name"]: output for output in response["outputs"]}
    # the defaults ask for binary outputs: no JSON data, a binary size instead
    assert "data" not in by_name["predictions"]
    assert by_name["predictions"]["parameters"]["binary_data_size"] == 8 * len(ROWS)
    predictions = result.as_numpy("predictions")
    assert predictions.dtype == np.int64 and predictions.tolist() == PREDICTIONS
    assert by_name["model_version"]["datatype"] == "BYTES"
    assert result.as_numpy("model_version").item() == b"v1"
    assert response["model_name"] == "iris" and response["model_version"] == "1"


def test_json_tensors_both_ways(client: Any) -> None:
    wanted = [
        tritonclient_http.InferRequestedOutput("predictions", binary_data=False),
        tritonclient_http.InferRequestedOutput("model_version", binary_data=False),
    ]
    result = client.infer("iris", [rows_input("FP64", binary=False)], outputs=wanted)
    outputs = {output["name"]: output for output in result.get_response()["outputs"]}
    assert outputs["predictions"]["data"] == PREDICTIONS
    assert outputs["predictions"]["datatype"] == "INT64"
    assert outputs["model_version"]["data"] == ["v1"]
    assert result.as_numpy("predictions").tolist() == PREDICTIONS


def test_mixed_binary_and_json_outputs(client: Any) -> None:
    wanted = [
        tritonclient_http.InferRequestedOutput("model_version", binary_data=False),
        tritonclient_http.InferRequestedOutput("predictions", binary_data=True),
    ]
    result = client.infer("iris", [rows_input("FP64")], outputs=wanted)
    outputs = result.get_response()["outputs"]
    assert [output["name"] for output in outputs] == ["model_version", "predictions"]
    assert outputs[0]["data"] == ["v1"] and "data" not in outputs[1]
    assert result.as_numpy("predictions").tolist() == PREDICTIONS


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_number_datatypes_the_float_input_takes(client: Any, datatype: str, binary: bool) -> None:
    rows = ROWS if datatype != "INT64" else [[5, 3, 1, 0], [7, 3, 5, 2]]
    result = client.infer("iris", [rows_input(datatype, binary=binary, rows=rows)])
    assert result.as_numpy("predictions").tolist() == PREDICTIONS


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_for_the_float_input_is_a_400_naming_the_datatype(client: Any, binary: bool) -> None:
    rows = np.array([["a", "b", "c", "d"]], dtype=np.object_)
    tensor = tritonclient_http.InferInput("input_series", [1, 4], "BYTES")
    tensor.set_data_from_numpy(rows, binary_data=binary)
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris", [tensor])
    assert status_of(error) == "400"
    assert "FP64" in error.value.message() and "BYTES" in error.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_bad_shape_is_a_400_with_a_message(client: Any, binary: bool) -> None:
    bad = rows_input("FP64", binary=binary, rows=[[5.1, 3.5, 1.4]])
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris", [bad])
    assert status_of(error) == "400"
    assert "shape [-1, 4]" in error.value.message() and "[1, 3]" in error.value.message()


def test_an_unknown_model_is_a_404_everywhere(client: Any, yard: ModelyardProcess) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("nope")
    assert status_of(error) == "404" and "nope" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("nope", [rows_input("FP64")])
    assert status_of(error) == "404"
    assert not client.is_model_ready("nope")
    assert httpx.get(f"{yard.url}/v2/models/nope/ready").status_code == 404


def test_an_unknown_version_is_a_404_everywhere(client: Any, yard: ModelyardProcess) -> None:
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("iris", "999")
    assert status_of(error) == "404" and "999" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.infer("iris", [rows_input("FP64")], model_version="999")
    assert status_of(error) == "404" and "999" in error.value.message()
    ready = httpx.get(f"{yard.url}/v2/models/iris/versions/999/ready")
    assert ready.status_code == 404 and "999" in ready.json()["error"]
    pinned = client.infer("iris", [rows_input("FP64")], model_version="1")
    assert pinned.get_response()["model_version"] == "1"
