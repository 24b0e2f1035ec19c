"""The binary tensor data extension (gateway/oip): raw tensors, requests and answers, checked
against tritonclient's own encoding (numpy's bytes, its BYTES serializer, its request builder
and its response reader) as the ground truth. Pure, no IO."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.routes import TensorSpec
from gateway.errors import BadRequest
from gateway.oip import decode_request, model_metadata, to_bentoml_body
from gateway.oip.binary import BadTensor, decode_raw, encode_raw
from gateway.oip.inputs import check_declared
from gateway.oip.outputs import binary_answer, binary_output_default, from_bentoml_answer
from gateway.oip.wire import RequestedOutput

np = pytest.importorskip("numpy")
http = pytest.importorskip("tritonclient.http")
utils = pytest.importorskip("tritonclient.utils")
request_of = pytest.importorskip("tritonclient.http._utils")._get_inference_request

VALUES: dict[str, list[Any]] = {
    "BOOL": [True, False, True],
    "UINT8": [0, 7, 255],
    "UINT16": [0, 65535, 3],
    "UINT32": [0, 2**32 - 1, 5],
    "UINT64": [0, 2**64 - 1, 9],
    "INT8": [-128, 0, 127],
    "INT16": [-(2**15), 1, 2**15 - 1],
    "INT32": [-(2**31), 2, 2**31 - 1],
    "INT64": [-(2**63), 3, 2**63 - 1],
    "FP16": [0.5, -2.0, 65504.0],
    "FP32": [0.5, -1.25, 2.0**100],
    "FP64": [0.1, -1e300, 5.1],
    "BYTES": ["", "héllo", "setosa"],
}


def numpy_bytes(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        array = np.array([v.encode() for v in values], dtype=np.object_)
        return bytes(utils.serialize_byte_tensor(array).item())
    return bytes(np.array(values, dtype=utils.triton_to_np_dtype(datatype)).tobytes())


def triton_request(*inputs: Any, outputs: Any = None) -> tuple[bytes, int | None]:
    body, json_size = request_of(inputs, "", outputs, 0, False, False, 0, None, None)
    return body, json_size


def infer_input(name: str, datatype: str, array: Any, binary: bool = True) -> Any:
    tensor = http.InferInput(name, list(array.shape), datatype)
    return tensor.set_data_from_numpy(array, binary_data=binary)


@pytest.mark.parametrize("datatype", sorted(VALUES))
def test_raw_tensors_are_numpys_and_tritonclients_bytes(datatype: str) -> None:
    values = VALUES[datatype]
    raw = numpy_bytes(datatype, values)
    assert encode_raw(datatype, values) == raw
    assert decode_raw(datatype, raw, len(values)) == values


@pytest.mark.parametrize(
    ("datatype", "raw", "count", "says"),
    [
        ("FP32", b"\x00" * 7, 2, "take 8 bytes"),
        ("INT64", b"\x00" * 16, 3, "take 24 bytes"),
        ("BOOL", b"\x00\x02", 2, "0 or 1"),
        ("FP32", np.array([1.0, np.nan], dtype=np.float32).tobytes(), 2, "element 1"),
        ("FP64", np.array([np.inf], dtype=np.float64).tobytes(), 1, "element 0"),
        ("BYTES", b"\x05\x00\x00\x00ab", 1, "only 2 left"),
        ("BYTES", b"\x01\x00", 1, "cut off"),
        ("BYTES", b"\x01\x00\x00\x00\xff", 1, "not UTF-8"),
        ("BYTES", b"\x01\x00\x00\x00a\x01\x00\x00\x00b", 1, "holds 2"),
        ("BYTES", b"\x01\x00\x00\x00a", 2, "holds 1"),
    ],
)
def test_raw_tensors_that_do_not_fit_say_why(
    datatype: str, raw: bytes, count: int, says: str
) -> None:
    with pytest.raises(BadTensor, match=says):
        decode_raw(datatype, raw, count)


@pytest.mark.parametrize("datatype", ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64"])
def test_a_binary_request_from_tritonclient_decodes_to_its_elements(datatype: str) -> None:
    array = np.array(VALUES[datatype] * 2, dtype=utils.triton_to_np_dtype(datatype)).reshape(2, 3)
    body, size = triton_request(infer_input("x", datatype, array))
    assert size is not None  # binary: the JSON is only the body's start
    request = decode_request(body, size)
    (tensor,) = request.inputs
    assert tensor.data == array.flatten().tolist() and tensor.shape == [2, 3]
    assert json.loads(to_bentoml_body(request, ["x"])) == {"x": array.tolist()}


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    words = np.array([b"a", "é".encode()], dtype=np.object_)
    rows = np.array([[1.5, 2.5]], dtype=np.float32)
    body, size = triton_request(
        infer_input("w", "BYTES", words),
        infer_input("j", "INT64", np.array([7, 8], dtype=np.int64), binary=False),
        infer_input("r", "FP32", rows),
    )
    request = decode_request(body, size)
    assert [t.data for t in request.inputs] == [["a", "é"], [7, 8], [1.5, 2.5]]
    assert request.parameters == {"binary_data_output": True}  # tritonclient's default


def binary_body(tensor: dict[str, Any], raw: bytes) -> tuple[bytes, int]:
    header = msgspec.json.encode({"inputs": [tensor]})
    return header + raw, len(header)


FP32_TWO = {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}


@pytest.mark.parametrize(
    ("tensor", "raw", "length", "field", "says"),
    [
        (FP32_TWO, b"\x00" * 8, -1, "Inference-Header-Content-Length", "the body has"),
        (FP32_TWO, b"\x00" * 8, 10_000, "Inference-Header-Content-Length", "the body has"),
        (FP32_TWO, b"\x00" * 4, None, "inputs[0].parameters.binary_data_size", "only 4 bytes"),
        (FP32_TWO, b"\x00" * 12, None, "inputs", "4 bytes of binary data"),
        (
            {**FP32_TWO, "parameters": {"binary_data_size": 4}},
            b"\x00" * 4,
            None,
            "inputs[0].parameters.binary_data_size",
            "take 8 bytes",
        ),
        (
            {**FP32_TWO, "parameters": {"binary_data_size": "8"}},
            b"\x00" * 8,
            None,
            "inputs[0].parameters.binary_data_size",
            "non-negative integer",
        ),
        ({**FP32_TWO, "parameters": {}}, b"", None, "inputs[0].data", "missing"),
        ({**FP32_TWO, "datatype": "BF16"}, b"\x00" * 8, None, "inputs[0].datatype", "BF16"),
    ],
)
def test_bad_binary_requests_are_400s_naming_the_field(
    tensor: dict[str, Any], raw: bytes, length: int | None, field: str, says: str
) -> None:
    body, header = binary_body(tensor, raw)
    with pytest.raises(BadRequest) as caught:
        decode_request(body, header if length is None else length)
    assert caught.value.field == field and says in caught.value.message


def test_binary_data_without_the_header_length_is_refused() -> None:
    body, _ = binary_body(FP32_TWO, b"\x00" * 8)
    with pytest.raises(BadRequest, match="request body is not valid JSON"):
        decode_request(body)  # the raw bytes after the JSON are not JSON
    header = msgspec.json.encode({"inputs": [FP32_TWO]})
    with pytest.raises(BadRequest, match="no Inference-Header-Content-Length"):
        decode_request(header)


ANSWER = b'{"predictions": [0, 2], "model_version": "v1", "scores": [[0.5, 0.25]], "ok": true}'


def triton_result(body: bytes, length: int | None) -> Any:
    return http.InferResult.from_response_body(body, header_length=length)


def test_a_binary_answer_is_read_by_tritonclient_as_the_json_one() -> None:
    body, length = binary_answer(
        ANSWER, model="iris", version="1", request_id="r", requested=None, binary_output=True
    )
    assert length is not None and length < len(body)
    header = json.loads(body[:length])
    assert all("data" not in o and o["parameters"]["binary_data_size"] for o in header["outputs"])
    plain = from_bentoml_answer(ANSWER, model="iris", version="1", request_id="r", requested=None)
    binary, reference = triton_result(body, length), triton_result(plain, None)
    for name in ("predictions", "model_version", "scores", "ok"):
        got, want = binary.as_numpy(name), reference.as_numpy(name)
        assert got.dtype == want.dtype and got.shape == want.shape
        if name != "model_version":
            assert got.tolist() == want.tolist()
    # BYTES: tritonclient gives bytes for binary data, str for JSON data
    assert binary.as_numpy("model_version").item() == b"v1"
    assert reference.as_numpy("model_version").item() == "v1"
    assert binary.as_numpy("predictions").tolist() == [0, 2]


def test_each_requested_output_says_whether_it_goes_binary() -> None:
    requested = [
        RequestedOutput("model_version", {"binary_data": False}),
        RequestedOutput("predictions", {"binary_data": True}),
        RequestedOutput("scores"),  # the request's default: JSON here
    ]
    body, length = binary_answer(
        ANSWER, model="iris", version="1", request_id=None, requested=requested, binary_output=False
    )
    assert length is not None
    outputs = json.loads(body[:length])["outputs"]
    assert [o["name"] for o in outputs] == ["model_version", "predictions", "scores"]
    assert outputs[0]["data"] == ["v1"] and outputs[2]["data"] == [0.5, 0.25]
    assert outputs[1]["parameters"] == {"binary_data_size": 16} and "data" not in outputs[1]
    assert triton_result(body, length).as_numpy("predictions").tolist() == [0, 2]


def test_json_answers_stay_json_unless_asked() -> None:
    body, length = binary_answer(
        ANSWER, model="iris", version="1", request_id=None, requested=None, binary_output=False
    )
    assert length is None and json.loads(body)["outputs"][0]["data"] == [0, 2]
    assert binary_output_default({"binary_data_output": True})
    assert not binary_output_default({"binary_data_output": "yes"})
    assert not binary_output_default(None)


IRIS = [TensorSpec("input_series", "FP64", [-1, 4])]


def request(datatype: str, shape: list[int], name: str = "input_series") -> Any:
    import math

    values: list[Any] = {"BYTES": ["a"], "BOOL": [True], "FP32": [1.5]}.get(datatype, [1])
    data = values * math.prod(shape)
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    return decode_request(msgspec.json.encode({"inputs": [tensor]}))


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "FP16", "INT64", "INT8", "UINT32"])
def test_a_float_input_takes_any_number_datatype(datatype: str) -> None:
    check_declared(request(datatype, [3, 4]), IRIS)


@pytest.mark.parametrize(
    ("declared", "datatype", "shape", "field"),
    [
        ("FP64", "BYTES", [1, 4], "inputs[0].datatype"),
        ("FP64", "BOOL", [1, 4], "inputs[0].datatype"),
        ("INT64", "FP32", [1, 4], "inputs[0].datatype"),
        ("BOOL", "INT8", [1, 4], "inputs[0].datatype"),
        ("BYTES", "FP64", [1, 4], "inputs[0].datatype"),
        ("FP64", "FP64", [1, 3], "inputs[0].shape"),
        ("FP64", "FP64", [4], "inputs[0].shape"),
        ("FP64", "FP64", [1, 1, 4], "inputs[0].shape"),
    ],
)
def test_what_the_api_does_not_declare_is_a_400(
    declared: str, datatype: str, shape: list[int], field: str
) -> None:
    specs = [TensorSpec("input_series", declared, [-1, 4])]
    with pytest.raises(BadRequest) as caught:
        to_bentoml_body(request(datatype, shape), ["input_series"], specs)
    assert caught.value.field == field
    assert ("[-1, 4]" if field.endswith("shape") else declared) in caught.value.message


def test_unknown_datatype_or_shape_takes_anything() -> None:
    loose = [TensorSpec("input_series"), TensorSpec("other", "BYTES")]
    check_declared(request("BYTES", [2, 3, 1]), loose)
    check_declared(request("BOOL", [1]), [TensorSpec("input_series", None, [-1])])


def test_model_metadata_says_what_the_api_declares() -> None:
    specs = [TensorSpec("b", "INT64", []), TensorSpec("c", None, [2, -1])]
    outputs = [TensorSpec("label", "BYTES", [-1])]
    got = msgspec.json.decode(
        model_metadata("m", ["3"], "bentoml", ["a", "b", "c"], specs, outputs)
    )
    assert got["inputs"] == [
        {"name": "a", "datatype": "BYTES", "shape": [-1]},  # nothing known
        {"name": "b", "datatype": "INT64", "shape": []},
        {"name": "c", "datatype": "BYTES", "shape": [2, -1]},
    ]
    assert got["outputs"] == [{"name": "label", "datatype": "BYTES", "shape": [-1]}]


_NUMPY_ELEMENTS = {
    "BOOL": st.booleans(),
    "INT8": st.integers(-(2**7), 2**7 - 1),
    "UINT32": st.integers(0, 2**32 - 1),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "FP32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "FP64": st.floats(allow_nan=False, allow_infinity=False),
    "BYTES": st.text(max_size=5),
}


@st.composite
def _tensors(draw: Any) -> tuple[str, Any]:
    datatype = draw(st.sampled_from(sorted(_NUMPY_ELEMENTS)))
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    size = int(np.prod(shape)) if shape else 1
    flat = draw(st.lists(_NUMPY_ELEMENTS[datatype], min_size=size, max_size=size))
    if datatype == "BYTES":
        array = np.array([v.encode() for v in flat], dtype=np.object_).reshape(shape)
    else:
        array = np.array(flat, dtype=utils.triton_to_np_dtype(datatype)).reshape(shape)
    return datatype, array


@settings(max_examples=200, deadline=None)
@given(st.lists(_tensors(), min_size=1, max_size=3), st.lists(st.booleans(), min_size=3))
def test_any_request_tritonclient_builds_decodes_to_its_arrays(
    tensors: list[tuple[str, Any]], binary: list[bool]
) -> None:
    inputs = [
        infer_input(f"t{i}", datatype, array, binary[i])
        for i, (datatype, array) in enumerate(tensors)
    ]
    body, size = triton_request(*inputs)
    request = decode_request(body, size)
    for tensor, (datatype, array) in zip(request.inputs, tensors, strict=True):
        want = array.flatten().tolist()
        if datatype == "BYTES":
            want = [v.decode() for v in want]
        assert tensor.shape == list(array.shape) and tensor.data == want
