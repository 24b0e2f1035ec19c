"""The hand-written `ModelInferResponse` bytes (gateway/grpc/answers.py) against protobuf's own
serialization of the same message, and against the JSON route they replace
(`from_bentoml_answer` then `infer_response`)."""

from __future__ import annotations

import msgspec
import pytest

from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.answers import infer_response_bytes, varint
from gateway.grpc.tensors import infer_response
from gateway.oip.outputs import answer_outputs, from_bentoml_answer
from gateway.oip.wire import RequestedOutput

ANSWERS = [
    b'{"predictions": [0]}',
    b'{"predictions": [[0.5, 1.25], [2, 3]], "label": ["setosa", "virginica"]}',
    b'{"ok": [true, false, true], "n": 7, "big": [18446744073709551615]}',
    b'{"ragged": [[1, 2], [3]], "empty": [], "mixed": [1, "a", null]}',
    b"[1, 2, 3]",
    b"not json at all",
    b'{"wide": ' + msgspec.json.encode(list(range(300))) + b', "deep": [[[[1]]]]}',
    b'{"' + b"n" * 200 + b'": "' + "é".encode() * 100 + b'"}',
]


@pytest.mark.parametrize("answer", ANSWERS)
@pytest.mark.parametrize(
    ("model", "version", "request_id"), [("iris", "2", "r-1"), ("m", "", None)]
)
def test_the_bytes_are_protobufs_and_say_what_the_json_route_said(
    answer: bytes, model: str, version: str, request_id: str | None
) -> None:
    outputs = answer_outputs(answer, None)
    ours = infer_response_bytes(outputs, model, version, request_id)
    json = from_bentoml_answer(
        answer, model=model, version=version, request_id=request_id, requested=None
    )
    theirs = infer_response(json, version or None)
    assert ours == theirs.SerializeToString()
    parsed = pb.ModelInferResponse.FromString(ours)
    assert parsed == theirs
    assert [o.name for o in parsed.outputs] == [o.name for o in outputs]
    assert len(parsed.raw_output_contents) == len(outputs)


def test_requested_outputs_are_selected_and_ordered() -> None:
    answer = b'{"a": [1], "b": [2.5]}'
    outputs = answer_outputs(answer, [RequestedOutput("b"), RequestedOutput("a")])
    parsed = pb.ModelInferResponse.FromString(infer_response_bytes(outputs, "m", "1", "x"))
    assert [o.name for o in parsed.outputs] == ["b", "a"]
    assert [o.datatype for o in parsed.outputs] == ["FP64", "INT64"]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**63 - 1, -1, -(2**63)])
def test_varints_are_protobufs(value: int) -> None:
    message = pb.ModelInferResponse.InferOutputTensor(shape=[value])
    assert message.SerializeToString() == b"\x1a" + varint(len(varint(value))) + varint(value)


def test_kept_heads_and_tensors_follow_each_answers_own_values() -> None:
    """The bytes kept per model/version and per output description never leak into another
    answer: same output name with another shape or datatype, another version, past the bound."""
    for n in range(300):
        answer = msgspec.json.encode({"y": [n % 7] * (n % 5) if n % 2 else [0.5] * (n % 3)})
        outputs = answer_outputs(answer, None)
        ours = infer_response_bytes(outputs, f"m{n % 3}", str(n), None)
        json = from_bentoml_answer(
            answer, model=f"m{n % 3}", version=str(n), request_id=None, requested=None
        )
        assert ours == infer_response(json, str(n)).SerializeToString(), n
