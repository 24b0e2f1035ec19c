"""A Bento's API schema (bento.yaml `schema.routes[].input/output`) as OIP tensors: pure."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from adapters.bento_schema import tensors
from contract.routes import ApiSpec, TensorSpec

#: The iris example's input schema as bentoml 1.4 writes it (examples/iris/service.py).
IRIS_INPUT = {
    "properties": {
        "input_series": {
            "dim": -4,
            "dtype": "float64",
            "format": "numpy-array",
            "shape": [-1, 4],
            "title": "Input Series",
            "type": "tensor",
        }
    },
    "required": ["input_series"],
    "title": "Input",
    "type": "object",
}


def one(prop: dict[str, Any]) -> TensorSpec | None:
    found = tensors({"properties": {"x": prop}})
    return found[0] if found else None


def test_the_iris_input_is_an_fp64_tensor_of_rows_of_four() -> None:
    assert tensors(IRIS_INPUT) == [TensorSpec("input_series", "FP64", [-1, 4])]


@pytest.mark.parametrize(
    ("prop", "datatype", "shape"),
    [
        ({"type": "tensor", "dtype": "float32"}, "FP32", None),  # no shape: any rank
        ({"type": "tensor", "dtype": "int64", "shape": [3]}, "INT64", [3]),
        ({"type": "tensor", "dtype": "uint8", "shape": [-1, 28, 28]}, "UINT8", [-1, 28, 28]),
        ({"type": "tensor", "dtype": "bool", "shape": []}, "BOOL", []),
        ({"type": "tensor", "shape": [2]}, None, [2]),  # no dtype: any datatype
        ({"type": "number"}, "FP64", []),
        ({"type": "number", "format": "float"}, "FP32", []),
        ({"type": "integer"}, "INT64", []),
        ({"type": "string"}, "BYTES", []),
        ({"type": "boolean"}, "BOOL", []),
        ({"type": "array", "items": {"type": "number"}}, "FP64", [-1]),
        (
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
            "INT64",
            [-1, -1],
        ),
        (
            {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 4,
                    "maxItems": 4,
                },
            },
            "FP64",
            [-1, 4],
        ),
        (
            {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
            "BYTES",
            [-1],
        ),
    ],
)
def test_json_schema_types_map_to_oip(prop: dict[str, Any], datatype: str, shape: Any) -> None:
    assert one(prop) == TensorSpec("x", datatype, shape)


@pytest.mark.parametrize(
    "prop",
    [
        {"type": "object"},
        {"type": "dataframe", "orient": "records"},
        {"type": "file", "format": "image"},
        {"anyOf": [{"type": "number"}, {"type": "string"}]},
        {"type": "array", "items": {"type": "object"}},
        {"type": "tensor", "dtype": "complex128"},
        {"type": "tensor", "shape": [-2]},
        {"type": "tensor", "shape": [1] * 40},
        "not a schema",
    ],
)
def test_what_is_not_an_array_of_one_type_is_left_out(prop: Any) -> None:
    assert one(prop) is None


def test_outputs_only_when_the_schema_lists_properties() -> None:
    assert tensors({"type": "object", "additionalProperties": True}) == []
    assert tensors(None) == []
    declared = {"properties": {"label": {"type": "string"}, "p": {"type": "number"}}}
    assert tensors(declared) == [TensorSpec("label", "BYTES", []), TensorSpec("p", "FP64", [])]


def test_property_count_is_bounded() -> None:
    many = {"properties": {f"x{i:03}": {"type": "integer"} for i in range(150)}}
    assert len(tensors(many)) == 100


@pytest.mark.parametrize(
    "spec",
    [
        {"name": ""},
        {"name": "c" * 257},
        {"name": "c", "inputs": ["x"] * 101},
        {"name": "c", "tensors": [{"name": "x", "datatype": "BF16"}]},
        {"name": "c", "tensors": [{"name": "x", "shape": [-2]}]},
        {"name": "c", "tensors": [{"name": "x", "shape": [1] * 33}]},
        {"name": "c", "outputs": [{"name": "y", "datatype": "FP64", "extra": 1}]},
        {"name": "c", "unknown": []},
    ],
)
def test_an_api_spec_is_bounded(spec: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(spec), type=ApiSpec)


def test_an_api_spec_stored_before_tensors_still_reads() -> None:
    old = b'{"name": "classify", "inputs": ["input_series"]}'
    assert msgspec.json.decode(old, type=ApiSpec) == ApiSpec("classify", ["input_series"])
    assert msgspec.json.encode(ApiSpec("classify", ["x"])) == b'{"name":"classify","inputs":["x"]}'
