"""KServe v2 protobuf ⇄ OIP JSON (gateway/grpc/tensors.py), and gRPC codes for the gateway's
HTTP statuses (gateway/grpc/service.py): pure, no IO, no server."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import numpy as np
import pytest

from gateway.errors import BadRequest, UpstreamBroken
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.service import code_of
from gateway.grpc.tensors import (
    error_message,
    infer_body,
    infer_request,
    infer_response,
    model_metadata_response,
)
from gateway.oip import decode_request
from gateway.oip.front import request_json
from gateway.oip.wire import InferRequest

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def raw_request(*tensors: tuple[str, str, list[int], bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris")
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def as_json(request: pb.ModelInferRequest) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(infer_body(request))
    return decoded


def bytes_raw(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


@pytest.mark.parametrize(
    ("datatype", "numpy_type"),
    [("FP64", "<f8"), ("FP32", "<f4"), ("INT64", "<i8"), ("UINT8", "u1"), ("FP16", "<f2")],
)
def test_raw_contents_become_the_flat_json_data_the_oip_front_checks(
    datatype: str, numpy_type: str
) -> None:
    values = np.array(ROWS, dtype=numpy_type) if "F" in datatype else np.arange(8, dtype=numpy_type)
    request = raw_request(("input_series", datatype, [2, 4], values.tobytes()))
    found = as_json(request)
    (tensor,) = found["inputs"]
    assert tensor == {
        "name": "input_series",
        "shape": [2, 4],
        "datatype": datatype,
        "data": values.reshape(-1).tolist(),
    }
    # what the HTTP front would accept from a JSON client, it accepts from this body
    assert decode_request(infer_body(request)).inputs[0].datatype == datatype


def test_bytes_and_bools_travel_as_strings_and_booleans() -> None:
    request = raw_request(
        ("text", "BYTES", [2], bytes_raw(b"hello", "wörld".encode())),
        ("flags", "BOOL", [3], np.array([True, False, True]).tobytes()),
    )
    inputs = as_json(request)["inputs"]
    assert inputs[0]["data"] == ["hello", "wörld"]
    assert inputs[1]["data"] == [True, False, True]


def test_typed_contents_are_read_from_the_field_of_their_datatype() -> None:
    request = pb.ModelInferRequest(model_name="iris", id="req-7")
    tensor = request.inputs.add(name="input_series", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROWS[0])
    request.outputs.add(name="predictions")
    request.parameters["priority"].int64_param = 3
    found = as_json(request)
    assert found["inputs"][0]["data"] == ROWS[0]
    assert found["id"] == "req-7"
    assert found["outputs"] == [{"name": "predictions"}]
    assert found["parameters"] == {"priority": 3}


@pytest.mark.parametrize(
    ("request_", "field", "words"),
    [
        (
            raw_request(("x", "FP32", [2, 4], np.zeros(6, "<f4").tobytes())),
            "raw_input_contents[0]",
            "8 FP32 elements take 32 bytes, got 24",
        ),
        (
            raw_request(("x", "BYTES", [2], bytes_raw(b"one"))),
            "raw_input_contents[0]",
            "needs 2 BYTES elements, got 1",
        ),
        (
            raw_request(("x", "BYTES", [1], b"\x09\x00\x00\x00abc")),
            "raw_input_contents[0]",
            "says 9 bytes, 3 remain",
        ),
        (
            raw_request(("x", "BYTES", [1], bytes_raw(b"\xff\xfe"))),
            "raw_input_contents[0]",
            "UTF-8",
        ),
        (
            raw_request(("x", "FP32", [-1, 4], b"")),
            "inputs[0].shape",
            "must not be negative",
        ),
        (
            raw_request(("x", "COMPLEX", [1], b"\x00")),
            "raw_input_contents[0]",
            "unknown datatype 'COMPLEX'",
        ),
    ],
)
def test_a_size_that_does_not_fit_the_shape_is_refused_naming_the_protobuf_field(
    request_: pb.ModelInferRequest, field: str, words: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        infer_body(request_)
    assert refused.value.field == field
    assert words in refused.value.message


def test_raw_contents_must_cover_every_input_and_exclude_typed_contents() -> None:
    request = raw_request(("x", "FP64", [1], np.zeros(1).tobytes()))
    request.inputs.add(name="y", datatype="FP64", shape=[1])
    with pytest.raises(BadRequest, match="1 entries for 2 inputs") as refused:
        infer_body(request)
    assert refused.value.field == "raw_input_contents"
    both = raw_request(("x", "FP64", [1], np.zeros(1).tobytes()))
    both.inputs[0].contents.fp64_contents.append(1.0)
    with pytest.raises(BadRequest, match="not allowed with raw_input_contents"):
        infer_body(both)


def test_typed_contents_of_the_wrong_count_or_an_fp16_are_refused() -> None:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[2, 4]).contents.fp64_contents.extend(
        [1.0, 2.0]
    )
    with pytest.raises(BadRequest, match="needs 8 elements, got 2") as refused:
        infer_body(request)
    assert refused.value.field == "inputs[0].contents.fp64_contents"
    half = pb.ModelInferRequest(model_name="iris")
    half.inputs.add(name="x", datatype="FP16", shape=[1])
    with pytest.raises(BadRequest, match="raw_input_contents only"):
        infer_body(half)


def test_an_oip_answer_becomes_raw_output_contents_numpy_reads_back() -> None:
    answer = msgspec.json.encode(
        {
            "model_name": "iris",
            "model_version": "1",
            "id": "req-7",
            "outputs": [
                {"name": "predictions", "shape": [2], "datatype": "INT64", "data": [0, 2]},
                {"name": "scores", "shape": [2, 2], "datatype": "FP32", "data": [[0.5, 1], [2, 3]]},
                {"name": "model_version", "shape": [], "datatype": "BYTES", "data": ["v1"]},
                {"name": "ok", "shape": [1], "datatype": "BOOL", "data": [True]},
            ],
        }
    )
    response = infer_response(answer, "2")
    assert response.model_version == "2"  # the version that served, from the gateway
    assert (response.model_name, response.id) == ("iris", "req-7")
    assert [o.name for o in response.outputs] == ["predictions", "scores", "model_version", "ok"]
    assert list(response.outputs[1].shape) == [2, 2]
    raw = response.raw_output_contents
    assert np.frombuffer(raw[0], "<i8").tolist() == [0, 2]
    assert np.frombuffer(raw[1], "<f4").tolist() == [0.5, 1.0, 2.0, 3.0]
    assert raw[2] == bytes_raw(b"v1")
    assert np.frombuffer(raw[3], "?").tolist() == [True]
    assert infer_response(answer, None).model_version == "1"


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"<html>oops</html>", "not an OIP inference response"),
        (
            b'{"outputs": [{"name": "y", "shape": [1], "datatype": "WEIRD", "data": [1]}]}',
            "unknown datatype 'WEIRD'",
        ),
        (
            b'{"outputs": [{"name": "y", "shape": [1], "datatype": "UINT8", "data": [300]}]}',
            "does not fit UINT8",
        ),
    ],
)
def test_an_answer_that_is_no_oip_response_is_an_upstream_error(answer: bytes, words: str) -> None:
    with pytest.raises(UpstreamBroken, match=words):
        infer_response(answer, "1")


def test_model_metadata_and_error_messages_are_read_from_their_json() -> None:
    body = msgspec.json.encode(
        {
            "name": "iris",
            "versions": ["1", "2"],
            "platform": "bentoml",
            "inputs": [{"name": "input_series", "datatype": "FP64", "shape": [-1, 4]}],
            "outputs": [],
            "extra": "ignored",
        }
    )
    found = model_metadata_response(body)
    assert (found.name, list(found.versions), found.platform) == ("iris", ["1", "2"], "bentoml")
    assert [(t.name, t.datatype, list(t.shape)) for t in found.inputs] == [
        ("input_series", "FP64", [-1, 4])
    ]
    assert error_message(b'{"error": "bad shape"}') == "bad shape"
    assert error_message(b'{"error_code": "X", "message": "no such model"}') == "no such model"
    assert error_message(b"plain text") == "plain text"


@pytest.mark.parametrize(
    ("status", "code"),
    [(200, 0), (400, 3), (404, 5), (413, 8), (418, 3), (500, 13), (502, 14), (503, 14), (504, 4)],
)
def test_http_statuses_map_to_grpc_codes(status: int, code: int) -> None:
    assert code_of(status) == code


def test_the_decoded_request_is_what_the_oip_front_decodes_from_its_json() -> None:
    request = raw_request(
        ("x", "FP32", [2, 4], np.array(ROWS, "<f4").tobytes()),
        ("n", "INT64", [2], np.array([7, -1], "<i8").tobytes()),
    )
    request.id = "r-9"
    request.outputs.add(name="label")
    request.parameters["threshold"].string_param = "high"
    decoded = infer_request(request)
    assert isinstance(decoded, InferRequest)
    assert decoded == decode_request(infer_body(request))
    assert msgspec.json.decode(request_json(decoded)) == as_json(request)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_value_json_cannot_carry_goes_as_json_and_is_refused_as_over_http(value: float) -> None:
    request = raw_request(("x", "FP32", [2], np.array([1.0, value], "<f4").tobytes()))
    given = infer_request(request)
    assert given == infer_body(request)
    assert isinstance(given, bytes)
    with pytest.raises(BadRequest, match=r"inputs\[0\]\.data: element 1"):
        decode_request(given)
