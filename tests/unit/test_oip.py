"""OIP v2 ⇄ BentoML JSON translation (the gateway/oip package): pure, no IO."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from gateway.errors import BadRequest
from gateway.oip import (
    DATATYPES,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    decode_request,
    encode_response,
    error_body,
    from_bentoml_answer,
    model_metadata,
    to_bentoml_body,
)

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is a dev extra
    HAVE_HYPOTHESIS = False


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return msgspec.json.encode({"inputs": list(inputs), **extra})


def tensor(data: Any, shape: list[int], datatype: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def nest(flat: list[Any], shape: list[int]) -> Any:
    """Row-major nesting, written independently of the module's reshape."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def bentoml(*inputs: dict[str, Any], api_inputs: list[str] | None = None) -> Any:
    return msgspec.json.decode(to_bentoml_body(decode_request(body(*inputs)), api_inputs))


def refused(raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        decode_request(raw)
    return caught.value


def answer(raw: Any, requested: list[str] | None = None, request_id: str | None = "r1") -> Any:
    data = raw if isinstance(raw, bytes) else msgspec.json.encode(raw)
    wanted = None if requested is None else [RequestedOutput(name=n) for n in requested]
    return msgspec.json.decode(
        from_bentoml_answer(
            data, model="iris", version="3", request_id=request_id, requested=wanted
        )
    )


def outputs(raw: Any, requested: list[str] | None = None) -> dict[str, dict[str, Any]]:
    return {out["name"]: out for out in answer(raw, requested)["outputs"]}


# ------------------------------------------------------------------------------------------------
# Request → BentoML body: shapes, flat vs nested


@pytest.mark.parametrize(
    ("shape", "flat"),
    [
        ([], [7.5]),
        ([3], [1.0, 2.0, 3.0]),
        ([2, 4], [float(i) for i in range(8)]),
        ([2, 2, 2], [float(i) for i in range(8)]),
        ([1, 1], [4.0]),
        ([2, 0], []),
        ([0, 3], []),
        ([0], []),
    ],
)
def test_flat_and_nested_data_give_the_same_nested_argument(
    shape: list[int], flat: list[float]
) -> None:
    expected = nest(flat, shape)
    assert bentoml(tensor(flat, shape)) == {"x": expected}
    if shape:
        assert bentoml(tensor(expected, shape)) == {"x": expected}


def test_scalar_shape_gives_a_bare_value() -> None:
    assert bentoml(tensor([3], [], "INT32")) == {"x": 3}
    assert bentoml(tensor([[3]], [], "INT32")) == {"x": 3}


def test_any_rectangular_nesting_with_the_right_count_is_reshaped() -> None:
    columns = [[0, 1], [2, 3], [4, 5], [6, 7]]  # nested as [4, 2], declared [2, 4]
    assert bentoml(tensor(columns, [2, 4], "INT64")) == {"x": [[0, 1, 2, 3], [4, 5, 6, 7]]}


def test_each_input_becomes_the_argument_of_its_name() -> None:
    got = bentoml(
        tensor([[5.1, 3.5, 1.4, 0.2]], [1, 4], "FP64", name="features"),
        tensor(["a", "b"], [2], "BYTES", name="tags"),
        tensor([True], [1], "BOOL", name="flag"),
    )
    assert got == {"features": [[5.1, 3.5, 1.4, 0.2]], "tags": ["a", "b"], "flag": [True]}


def test_request_fields_are_kept() -> None:
    request = decode_request(
        body(
            tensor([1.0], [1]),
            id="req-42",
            outputs=[{"name": "probabilities"}],
            parameters={"content_type": "np"},
        )
    )
    assert request.id == "req-42"
    assert request.outputs == [RequestedOutput(name="probabilities")]
    assert request.parameters == {"content_type": "np"}


def test_spec_example_with_uint32_and_bool() -> None:
    raw = body(
        tensor([1, 2, 3, 4], [2, 2], "UINT32", name="input0"),
        tensor([True, False, True], [3], "BOOL", name="input1"),
        id="42",
    )
    request = decode_request(raw)
    assert msgspec.json.decode(to_bentoml_body(request, ["input0", "input1"])) == {
        "input0": [[1, 2], [3, 4]],
        "input1": [True, False, True],
    }


# ------------------------------------------------------------------------------------------------
# Request checks

GOOD_ELEMENT: dict[str, list[Any]] = {
    "BOOL": [True, False],
    "UINT8": [0, 255],
    "UINT16": [0, 65535],
    "UINT32": [0, 2**32 - 1],
    "UINT64": [0, 2**64 - 1],
    "INT8": [-128, 127],
    "INT16": [-(2**15), 2**15 - 1],
    "INT32": [-(2**31), 2**31 - 1],
    "INT64": [-(2**63), 2**63 - 1],
    "FP16": [1, -65504.0],
    "FP32": [0.5, 3.4028234663852886e38],
    "FP64": [1, 1.7976931348623157e308],
    "BYTES": ["", "héllo"],
}

BAD_ELEMENT: dict[str, list[Any]] = {
    "BOOL": [1, "true", None, 0.0],
    "UINT8": [True, 1.0, "1", -1, 256],
    "UINT16": [False, 65536, -1],
    "UINT32": [2**32, -1, 2.5],
    "UINT64": [2**64, -1, None],
    "INT8": [128, -129, True],
    "INT16": [2**15, -(2**15) - 1],
    "INT32": [2**31, -(2**31) - 1, 1.5],
    "INT64": [2**63, -(2**63) - 1, "9"],
    "FP16": [True, "1.0", None, 65520, -70000.0],
    "FP32": [False, "x", 3.5e38, -(2**128)],
    "FP64": [True, None, "1.0", {"a": 1}, 2**1024],
    "BYTES": [1, True, None, 1.5, {"b": "x"}],
}


def test_the_tables_cover_every_datatype() -> None:
    assert set(GOOD_ELEMENT) == set(BAD_ELEMENT) == DATATYPES
    assert len(DATATYPES) == 13


@pytest.mark.parametrize("datatype", sorted(GOOD_ELEMENT))
def test_every_datatype_is_accepted(datatype: str) -> None:
    values = GOOD_ELEMENT[datatype]
    assert bentoml(tensor(values, [len(values)], datatype)) == {"x": values}


@pytest.mark.parametrize(
    ("datatype", "bad"), [(dt, bad) for dt, values in BAD_ELEMENT.items() for bad in values]
)
def test_elements_that_do_not_fit_the_datatype_are_refused(datatype: str, bad: Any) -> None:
    good = GOOD_ELEMENT[datatype][0]
    error = refused(
        body(tensor([good], [1], datatype), tensor([good, bad], [2], datatype, name="y"))
    )
    assert error.field == "inputs[1].data"
    assert "element 1" in error.message
    assert datatype in error.message


def test_element_index_is_row_major_in_nested_data() -> None:
    error = refused(body(tensor([[1, 2], [3, "four"]], [2, 2], "INT32")))
    assert error.field == "inputs[0].data"
    assert "element 3" in error.message
    assert "a string" in error.message


def test_unknown_datatype_is_refused() -> None:
    error = refused(body(tensor([1.0], [1], "FLOAT32")))
    assert error.field == "inputs[0].datatype"
    assert "FLOAT32" in error.message
    assert "FP32" in error.message


def test_datatypes_are_case_sensitive() -> None:
    assert refused(body(tensor([1.0], [1], "fp32"))).field == "inputs[0].datatype"


def test_negative_dimension_is_refused() -> None:
    error = refused(body(tensor([1.0], [1]), tensor([1.0, 2.0], [-1, 2], name="y")))
    assert error.field == "inputs[1].shape"


@pytest.mark.parametrize(
    ("shape", "data", "expected", "got"),
    [
        ([2, 4], [1.0] * 7, 8, 7),
        ([2, 4], [[1.0, 2.0], [3.0, 4.0]], 8, 4),
        ([3], [], 3, 0),
        ([], [1.0, 2.0], 1, 2),
        ([0], [1.0], 0, 1),
    ],
)
def test_element_count_must_match_the_shape(
    shape: list[int], data: list[Any], expected: int, got: int
) -> None:
    error = refused(body(tensor(data, shape)))
    assert error.field == "inputs[0].data"
    assert f"needs {expected} elements, got {got}" in error.message


@pytest.mark.parametrize(
    "data",
    [
        [[1.0, 2.0], [3.0]],
        [[1.0, 2.0], 3.0, 4.0],
        [[[1.0], [2.0]], [[3.0], 4.0]],
        [[1.0, [2.0]], [3.0, 4.0]],
    ],
)
def test_ragged_data_is_refused(data: list[Any]) -> None:
    error = refused(body(tensor(data, [4])))
    assert error.field == "inputs[0].data"
    assert "rectangular" in error.message


def test_duplicate_input_names_are_refused() -> None:
    error = refused(body(tensor([1.0], [1]), tensor([2.0], [1])))
    assert error.field == "inputs"
    assert "'x'" in error.message


def test_duplicate_requested_outputs_are_refused() -> None:
    error = refused(body(tensor([1.0], [1]), outputs=[{"name": "a"}, {"name": "a"}]))
    assert error.field == "outputs"


def test_empty_inputs_are_refused() -> None:
    assert refused(body()).field == "inputs"


def test_unknown_request_field_is_refused_and_named() -> None:
    error = refused(body(tensor([1.0], [1]), model_name="iris"))
    assert error.field == "model_name"
    assert "unknown field" in error.message


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"id": "1"}', "inputs"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}', "inputs[0].shape"),
        (
            b'{"inputs": [{"name": "x", "shape": "2", "datatype": "FP32", "data": [1]}]}',
            "inputs[0].shape",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1, "2"], "datatype": "FP32", "data": [1]}]}',
            "inputs[0].shape[1]",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": 1}]}',
            "inputs[0].data",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": 3, "data": [1]}]}',
            "inputs[0].datatype",
        ),
        (b'{"inputs": {}}', "inputs"),
        (b'{"inputs": [1]}', "inputs[0]"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "id": 7}',
            "id",
        ),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],'
            b' "outputs": [{}]}',
            "outputs[0].name",
        ),
    ],
)
def test_schema_errors_name_the_field_path(raw: bytes, field: str) -> None:
    error = refused(raw)
    assert error.field == field
    assert field in error.message


@pytest.mark.parametrize("raw", [b"", b"{", b'{"inputs": [', b"not json", b'{"inputs": []} x'])
def test_malformed_json_is_refused_without_a_field(raw: bytes) -> None:
    error = refused(raw)
    assert error.field is None
    assert "JSON" in error.message or "truncated" in error.message


def test_malformed_json_message_says_where() -> None:
    assert "byte" in refused(b'{"inputs": x}').message


def test_body_that_is_not_an_object_is_refused() -> None:
    error = refused(b"[]")
    assert error.field is None
    assert "object" in error.message


def test_data_and_binary_data_size_together_are_refused() -> None:
    raw = body({**tensor([], [2]), "parameters": {"binary_data_size": 8}})
    assert refused(raw).field == "inputs[0].parameters.binary_data_size"


# ------------------------------------------------------------------------------------------------
# API inputs


def test_api_inputs_in_any_order_are_satisfied() -> None:
    got = bentoml(tensor([1.0], [1], name="a"), tensor([2.0], [1], name="b"), api_inputs=["b", "a"])
    assert got == {"a": [1.0], "b": [2.0]}


def test_missing_api_input_is_refused() -> None:
    request = decode_request(body(tensor([1.0], [1], name="a")))
    with pytest.raises(BadRequest) as caught:
        to_bentoml_body(request, ["a", "input_series"])
    assert caught.value.field == "inputs"
    assert "'input_series'" in caught.value.message
    assert "missing" in caught.value.message


def test_input_the_api_does_not_take_is_refused() -> None:
    request = decode_request(body(tensor([1.0], [1], name="a"), tensor([1.0], [1], name="zzz")))
    with pytest.raises(BadRequest) as caught:
        to_bentoml_body(request, ["a"])
    assert caught.value.field == "inputs"
    assert "'zzz'" in caught.value.message
    assert "unexpected" in caught.value.message


def test_without_api_inputs_anything_goes() -> None:
    assert bentoml(tensor([1.0], [1], name="whatever")) == {"whatever": [1.0]}


def test_hand_built_request_with_flat_data_is_reshaped() -> None:
    request = InferRequest(
        inputs=[InferInput(name="x", shape=[2, 2], datatype="INT64", data=[1, 2, 3, 4])]
    )
    assert msgspec.json.decode(to_bentoml_body(request, None)) == {"x": [[1, 2], [3, 4]]}


def test_hand_built_request_with_a_wrong_count_is_refused() -> None:
    request = InferRequest(inputs=[InferInput(name="x", shape=[2, 2], datatype="INT64", data=[1])])
    with pytest.raises(BadRequest) as caught:
        to_bentoml_body(request, None)
    assert caught.value.field == "inputs[0].data"


# ------------------------------------------------------------------------------------------------
# BentoML answer → OIP response

IRIS = {
    "predictions": [0, 2],
    "probabilities": [[0.9, 0.1, 0.0], [0, 0.2, 0.8]],
    "labels": ["setosa", "virginica"],
    "model_version": "v2",
}


def test_iris_like_dict_of_lists() -> None:
    response = answer(IRIS)
    assert response["model_name"] == "iris"
    assert response["model_version"] == "3"
    assert response["id"] == "r1"
    assert response["outputs"] == [
        {"name": "predictions", "shape": [2], "datatype": "INT64", "data": [0, 2]},
        {
            "name": "probabilities",
            "shape": [2, 3],
            "datatype": "FP64",
            "data": [0.9, 0.1, 0.0, 0.0, 0.2, 0.8],
        },
        {"name": "labels", "shape": [2], "datatype": "BYTES", "data": ["setosa", "virginica"]},
        {"name": "model_version", "shape": [], "datatype": "BYTES", "data": ["v2"]},
    ]


def test_integers_among_floats_are_written_as_floats() -> None:
    raw = from_bentoml_answer(
        msgspec.json.encode([1, 0.5]), model="m", version="1", request_id=None, requested=None
    )
    assert b'"data":[1.0,0.5]' in raw


def test_model_version_is_the_serving_version_and_id_is_echoed() -> None:
    response = answer(IRIS, request_id="abc-123")
    assert response["id"] == "abc-123"
    assert response["model_version"] == "3"


def test_no_id_means_no_id_field() -> None:
    assert "id" not in answer([1], request_id=None)


@pytest.mark.parametrize(
    ("value", "shape", "datatype", "data"),
    [
        (0.93, [], "FP64", [0.93]),
        (7, [], "INT64", [7]),
        (True, [], "BOOL", [True]),
        ("setosa", [], "BYTES", ["setosa"]),
        (None, [], "BYTES", ["null"]),
        ([1, 2, 3], [3], "INT64", [1, 2, 3]),
        ([1.5, 2, 3], [3], "FP64", [1.5, 2.0, 3.0]),
        ([[1, 2], [3, 4]], [2, 2], "INT64", [1, 2, 3, 4]),
        ([[[True], [False]]], [1, 2, 1], "BOOL", [True, False]),
        ([True, False], [2], "BOOL", [True, False]),
        (["a", "b"], [2], "BYTES", ["a", "b"]),
        ([], [0], "FP64", []),
        ([[], []], [2, 0], "FP64", []),
        ([2**63], [1], "UINT64", [2**63]),
        ([-1, 2**63], [2], "BYTES", ["-1", "9223372036854775808"]),
        ([2**64], [1], "BYTES", ["18446744073709551616"]),
        ([1, True], [2], "BYTES", ["1", "true"]),
        ([1, "a"], [2], "BYTES", ["1", '"a"']),
        ([0.5, None], [2], "BYTES", ["0.5", "null"]),
    ],
)
def test_single_value_answers(value: Any, shape: list[int], datatype: str, data: list[Any]) -> None:
    got = answer(value)["outputs"]
    assert got == [{"name": "output0", "shape": shape, "datatype": datatype, "data": data}]


def test_ragged_answer_becomes_bytes_of_json_rows() -> None:
    got = outputs({"rows": [[1, 2], [3]], "mixed": [[1], 2, "x"]})
    assert got["rows"] == {
        "name": "rows",
        "shape": [2],
        "datatype": "BYTES",
        "data": ["[1,2]", "[3]"],
    }
    assert got["mixed"]["shape"] == [3]
    assert got["mixed"]["data"] == ["[1]", "2", '"x"']
    assert [msgspec.json.decode(row) for row in got["rows"]["data"]] == [[1, 2], [3]]


def test_nested_objects() -> None:
    got = outputs({"meta": {"a": 1, "b": [1, 2]}, "items": [{"k": 1}, {"k": None}]})
    assert got["meta"] == {
        "name": "meta",
        "shape": [],
        "datatype": "BYTES",
        "data": ['{"a":1,"b":[1,2]}'],
    }
    assert got["items"]["shape"] == [2]
    assert got["items"]["datatype"] == "BYTES"
    assert [msgspec.json.decode(x) for x in got["items"]["data"]] == [{"k": 1}, {"k": None}]


def test_empty_object_answer_gives_no_outputs() -> None:
    assert answer({})["outputs"] == []


def test_requested_outputs_select_and_order() -> None:
    got = answer(IRIS, requested=["labels", "predictions"])["outputs"]
    assert [out["name"] for out in got] == ["labels", "predictions"]


def test_requested_output0_for_a_list_answer() -> None:
    assert answer([1, 2], requested=["output0"])["outputs"][0]["data"] == [1, 2]


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(BadRequest) as caught:
        answer(IRIS, requested=["scores"])
    assert caught.value.field == "outputs"
    assert "'scores'" in caught.value.message
    assert "'predictions'" in caught.value.message


def test_non_json_answer_is_one_bytes_output() -> None:
    got = answer(b"setosa, probably\n")["outputs"]
    assert got == [
        {"name": "output0", "shape": [], "datatype": "BYTES", "data": ["setosa, probably\n"]}
    ]


def test_non_utf8_answer_is_not_a_crash() -> None:
    got = answer(b"\xff\xfeok")["outputs"]
    assert got[0]["datatype"] == "BYTES"
    assert got[0]["data"][0].endswith("ok")


def test_encode_response_omits_unset_fields() -> None:
    raw = encode_response(
        InferResponse(
            model_name="m", outputs=[InferOutput(name="o", shape=[1], datatype="BOOL", data=[True])]
        )
    )
    assert msgspec.json.decode(raw) == {
        "model_name": "m",
        "outputs": [{"name": "o", "shape": [1], "datatype": "BOOL", "data": [True]}],
    }


# ------------------------------------------------------------------------------------------------
# Metadata and errors


def test_model_metadata_shape() -> None:
    got = msgspec.json.decode(model_metadata("iris", ["1", "2"], "bentoml", ["input_series"]))
    assert got == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "bentoml",
        "inputs": [{"name": "input_series", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [],
    }


def test_error_body() -> None:
    assert msgspec.json.decode(error_body('bad "x"')) == {"error": 'bad "x"'}


# ------------------------------------------------------------------------------------------------
# Property: OIP request → BentoML body reproduces the nested array


def _round_trip(flat: list[Any], shape: list[int], datatype: str, nested_data: bool) -> None:
    expected = nest(flat, shape)
    data = expected if nested_data and shape else flat
    got = bentoml(tensor(data, shape, datatype))
    assert got == {"x": expected}
    # and back: the answer's shape and row-major data are the request's (an empty array's
    # inner dimensions cannot be seen in JSON, so those are left out)
    if flat:
        out = answer({"x": expected})["outputs"][0]
        assert out["shape"] == shape
        assert out["data"] == flat


def _random_element(rng: random.Random, datatype: str) -> Any:
    if datatype == "BOOL":
        return rng.random() < 0.5
    if datatype == "INT64":
        return rng.randint(-(2**63), 2**63 - 1)
    if datatype == "FP64":
        return rng.uniform(-1e6, 1e6)
    return "".join(rng.choice("abcé ") for _ in range(rng.randint(0, 4)))


def test_round_trip_seeded_random() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        shape = [rng.randint(0, 4) for _ in range(rng.randint(0, 4))]
        datatype = rng.choice(["BOOL", "INT64", "FP64", "BYTES"])
        flat = [_random_element(rng, datatype) for _ in range(math.prod(shape))]
        _round_trip(flat, shape, datatype, nested_data=rng.random() < 0.5)


if HAVE_HYPOTHESIS:
    _ELEMENTS = {
        "BOOL": st.booleans(),
        "INT64": st.integers(-(2**63), 2**63 - 1),
        "FP64": st.floats(allow_nan=False, allow_infinity=False),
        "BYTES": st.text(max_size=5),
    }

    @st.composite
    def _arrays(draw: st.DrawFn) -> tuple[list[Any], list[int], str]:
        shape = draw(st.lists(st.integers(0, 4), max_size=4))
        datatype = draw(st.sampled_from(sorted(_ELEMENTS)))
        size = math.prod(shape)
        flat = draw(st.lists(_ELEMENTS[datatype], min_size=size, max_size=size))
        return flat, shape, datatype

    @settings(max_examples=200, deadline=None)
    @given(_arrays(), st.booleans())
    def test_round_trip_property(array: tuple[list[Any], list[int], str], nested: bool) -> None:
        flat, shape, datatype = array
        _round_trip(flat, shape, datatype, nested)

else:  # pragma: no cover

    def test_round_trip_property() -> None:
        pytest.skip("hypothesis is not installed")


def test_a_body_nested_100000_deep_is_refused_before_decoding() -> None:
    assert "nests deeper" in str(refused(b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
