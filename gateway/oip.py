"""Open Inference Protocol v2 (REST, JSON) ⇄ BentoML JSON APIs. Pure: no IO.

Request, OIP → BentoML
    ``{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [...]}]}`` becomes the
    JSON object ``{"x": [[...4 numbers...], [...4 numbers...]]}``: one API argument per OIP input,
    the data reshaped to the input's shape as nested lists (shape ``[]`` is a bare scalar, ``[4]`` a
    flat list, ``[2, 4]`` two rows of four, and so on; a zero dimension gives empty lists).
    ``decode_request`` checks everything a client can get wrong and names the field: the datatype
    is one of the OIP table; dimensions are not negative; ``data``, flat (row-major) or nested
    (any rectangular nesting), holds exactly prod(shape) elements; each element fits the datatype
    (BOOL: true/false; INTn/UINTn: integers in the range of the width; FPn: numbers that do not
    round to infinity in that width; BYTES: strings); input names are unique. When the API's
    argument names are known, ``to_bentoml_body`` also refuses missing and unexpected inputs.

Answer, BentoML → OIP
    BentoML answers with any JSON. A JSON object gives one output per key, in the object's order;
    anything else (a list or a scalar) gives one output named ``output0``. For each value:

    * shape: the dimensions of the nested lists (a scalar is shape ``[]``); ``data`` is flattened
      row-major.
    * datatype: only booleans → BOOL; only integers → INT64 (UINT64 when they only fit that);
      numbers with at least one float → FP64 (integers written as floats); only strings → BYTES;
      an empty list → FP64 with shape ``[0]``.
    * anything else (null, objects, a mix of kinds, integers beyond 64 bits) → BYTES whose elements
      are the JSON encoding of each element, keeping the shape.
    * a ragged array (rows of different lengths, or arrays mixed with scalars at one depth) has no
      tensor shape: it becomes BYTES with shape ``[n]`` for its ``n`` top-level elements, each the
      JSON encoding of that element (``[[1, 2], [3]]`` → ``["[1,2]", "[3]"]``).
    * an answer that is not JSON at all (BentoML returning text) → one BYTES output ``output0``
      of shape ``[]`` holding the text.

    ``outputs`` in the request selects and orders the outputs; naming one the model did not
    produce is a client error on ``outputs``. ``model_version`` is the version that served,
    ``id`` the request's id.

Not supported: the binary tensor data extension (``binary_data_size`` and friends, and raw
bytes after the JSON header), and per-output parameters (accepted, ignored). The model metadata
lists each BentoML API argument as a ``BYTES`` tensor of shape ``[-1]``: BentoML JSON APIs do not
declare tensor types, and the gateway accepts any datatype for them.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Final

import msgspec

from gateway.errors import BadRequest

# ----------------------------------------------------------------------------------------------
# Wire types


class InferInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(msgspec.Struct, forbid_unknown_fields=True):
    inputs: list[InferInput]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


class InferOutput(msgspec.Struct, omit_defaults=True):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(msgspec.Struct, omit_defaults=True):
    model_name: str
    outputs: list[InferOutput]
    model_version: str | None = None
    id: str | None = None


class MetadataTensor(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(msgspec.Struct):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ErrorBody(msgspec.Struct):
    error: str


# ----------------------------------------------------------------------------------------------
# Datatypes

#: Integer datatypes and their inclusive ranges.
INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
}
#: Float datatypes and the magnitude from which a value rounds to infinity in that width
#: (largest finite value plus half a unit in the last place), as exact integers.
FLOAT_LIMITS: Final[dict[str, int]] = {
    "FP16": 2**16 - 2**4,  # 65520
    "FP32": 2**128 - 2**103,
    "FP64": 2**1024 - 2**970,
}
DATATYPES: Final = frozenset({"BOOL", "BYTES", *INT_RANGES, *FLOAT_LIMITS})

_BOOL: Final[frozenset[type]] = frozenset({bool})
_INT: Final[frozenset[type]] = frozenset({int})
_NUMBER: Final[frozenset[type]] = frozenset({int, float})
_STR: Final[frozenset[type]] = frozenset({str})
_INT64_MIN, _INT64_MAX = INT_RANGES["INT64"]
_UINT64_MAX = INT_RANGES["UINT64"][1]

_ALLOWED: Final[dict[str, tuple[frozenset[type], str]]] = {
    "BOOL": (_BOOL, "a boolean"),
    "BYTES": (_STR, "a string"),
    **{dt: (_INT, "an integer") for dt in INT_RANGES},
    **{dt: (_NUMBER, "a number") for dt in FLOAT_LIMITS},
}

_KINDS: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}

# ----------------------------------------------------------------------------------------------
# Codecs, built once

_encoder: Final = msgspec.json.Encoder()
_request_decoder: Final = msgspec.json.Decoder(InferRequest)
_any_decoder: Final = msgspec.json.Decoder()

_METADATA_INPUT_DATATYPE: Final = "BYTES"
_VARIABLE: Final = -1


# ----------------------------------------------------------------------------------------------
# Nested arrays


class _Ragged(Exception):
    """Nested lists that do not form a rectangular array."""


def _flatten(data: list[Any]) -> tuple[list[Any], set[type], list[int]]:
    """Flatten rectangular nested lists row-major: (elements, their types, dimensions).

    Works level by level with C-speed builtins; returns ``data`` itself when it is already flat.
    Raises `_Ragged` for rows of different lengths or arrays mixed with scalars at one depth.
    """
    level = data
    dims = [len(data)]
    while True:
        types = set(map(type, level))
        if list not in types:
            return level, types, dims
        if len(types) > 1:
            raise _Ragged(f"arrays mixed with scalars at depth {len(dims)}")
        widths = set(map(len, level))
        if len(widths) > 1:
            raise _Ragged(f"rows of different lengths {sorted(widths)[:4]} at depth {len(dims)}")
        dims.append(widths.pop())
        level = list(itertools.chain.from_iterable(level))


def _leading_dims(data: list[Any]) -> list[int]:
    """Dimensions along the first element of each level: O(depth), checks nothing else."""
    dims: list[int] = []
    value: Any = data
    while type(value) is list:
        dims.append(len(value))
        if not value:
            break
        value = value[0]
    return dims


def _reshape(flat: list[Any], shape: list[int]) -> Any:
    """Row-major flat elements → nested lists of `shape` (shape [] → the bare element)."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    if 0 in shape:
        return _empty(shape)
    rows = flat
    for width in reversed(shape[1:]):
        rows = [rows[i : i + width] for i in range(0, len(rows), width)]
    return rows


def _empty(shape: list[int]) -> list[Any]:
    """Nested empty lists of a shape with a zero in it: [2, 0] → [[], []]."""
    if len(shape) == 1:
        return []
    return [_empty(shape[1:]) for _ in range(shape[0])]


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


# ----------------------------------------------------------------------------------------------
# Request


def _schema_error(error: msgspec.ValidationError) -> BadRequest:
    """msgspec's "Expected `int`, got `str` - at `$.inputs[0].shape[0]`" → that message, naming
    the field ``inputs[0].shape[0]``; a missing or unknown field is named by its own path."""
    text = str(error)
    message, _, location = text.partition(" - at `")
    path = location.rstrip("`").removeprefix("$").removeprefix(".")
    if message.startswith(("Object missing required field `", "Object contains unknown field `")):
        name = message.split("`")[1]
        path = f"{path}.{name}" if path else name
    where = f" at {path}" if path else ""
    return BadRequest(f"invalid inference request: {message}{where}", field=path or None)


def decode_request(body: bytes) -> InferRequest:
    """Parse and check an OIP inference request; every client error is a `BadRequest`."""
    try:
        request = _request_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise _schema_error(error) from None
    except msgspec.DecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if not request.inputs:
        raise BadRequest("an inference request needs at least one input", field="inputs")
    names: set[str] = set()
    for index, tensor in enumerate(request.inputs):
        if tensor.name in names:
            raise BadRequest(f"input {tensor.name!r} is given more than once", field="inputs")
        names.add(tensor.name)
        _check_input(tensor, f"inputs[{index}]")
    if request.outputs is not None:
        wanted: set[str] = set()
        for output in request.outputs:
            if output.name in wanted:
                raise BadRequest(f"output {output.name!r} is requested twice", field="outputs")
            wanted.add(output.name)
    return request


def _check_input(tensor: InferInput, where: str) -> None:
    datatype = tensor.datatype
    allowed = _ALLOWED.get(datatype)
    if allowed is None:
        raise BadRequest(
            f"{where}.datatype: unknown datatype {datatype!r}; "
            f"one of {', '.join(sorted(DATATYPES))}",
            field=f"{where}.datatype",
        )
    if tensor.parameters and "binary_data_size" in tensor.parameters:
        raise BadRequest(
            f"{where}.parameters: the binary tensor data extension is not supported; "
            "send the data as JSON",
            field=f"{where}.parameters",
        )
    shape = tensor.shape
    if any(dim < 0 for dim in shape):
        raise BadRequest(
            f"{where}.shape: dimensions must not be negative, got {shape}", field=f"{where}.shape"
        )
    field = f"{where}.data"
    try:
        flat, types, _ = _flatten(tensor.data)
    except _Ragged as ragged:
        raise BadRequest(f"{field}: not a rectangular array: {ragged}", field=field) from None
    expected = math.prod(shape)
    if len(flat) != expected:
        raise BadRequest(
            f"{field}: shape {shape} needs {expected} elements, got {len(flat)}", field=field
        )
    kinds, wanted = allowed
    if not types <= kinds:
        index, value = next((i, v) for i, v in enumerate(flat) if type(v) not in kinds)
        raise BadRequest(
            f"{field}: element {index} (row-major) is {_kind(value)}, {datatype} needs {wanted}",
            field=field,
        )
    if not flat:
        return
    bounds = INT_RANGES.get(datatype)
    if bounds is not None:
        low, high = bounds
        if min(flat) < low or max(flat) > high:
            index, value = next((i, v) for i, v in enumerate(flat) if not low <= v <= high)
            raise BadRequest(
                f"{field}: element {index} (row-major) is {value}, "
                f"out of the {datatype} range [{low}, {high}]",
                field=field,
            )
        return
    limit = FLOAT_LIMITS.get(datatype)
    if limit is not None and (min(flat) <= -limit or max(flat) >= limit):
        index, value = next((i, v) for i, v in enumerate(flat) if not -limit < v < limit)
        raise BadRequest(
            f"{field}: element {index} (row-major) is {value}, too large for {datatype}",
            field=field,
        )


def _natural(tensor: InferInput, where: str) -> Any:
    """The tensor's data nested as its shape. Already-nested data of that shape passes as is."""
    shape = tensor.shape
    data = tensor.data
    if shape and _leading_dims(data) == shape:
        return data
    try:
        flat, _, _ = _flatten(data)
    except _Ragged as ragged:
        raise BadRequest(f"{where}: not a rectangular array: {ragged}", field=where) from None
    expected = math.prod(shape)
    if len(flat) != expected:
        raise BadRequest(
            f"{where}: shape {shape} needs {expected} elements, got {len(flat)}", field=where
        )
    return _reshape(flat, shape)


def to_bentoml_body(request: InferRequest, api_inputs: list[str] | None) -> bytes:
    """The BentoML JSON body for a request checked by `decode_request`: one key per input.

    With `api_inputs` (the API's argument names) every argument must be given, and no other.
    Data already nested as its shape is passed on as is; other data is flattened and reshaped
    (count and rectangularity are checked again, element types only by `decode_request`).
    """
    if api_inputs is not None:
        given = [tensor.name for tensor in request.inputs]
        missing = [name for name in api_inputs if name not in given]
        takes = set(api_inputs)
        extra = [name for name in given if name not in takes]
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"missing input(s) {', '.join(map(repr, missing))}")
            if extra:
                problems.append(f"unexpected input(s) {', '.join(map(repr, extra))}")
            raise BadRequest(
                f"{'; '.join(problems)}: the API takes "
                f"{', '.join(map(repr, api_inputs)) or 'no inputs'}",
                field="inputs",
            )
    body = {
        tensor.name: _natural(tensor, f"inputs[{index}].data")
        for index, tensor in enumerate(request.inputs)
    }
    return _encoder.encode(body)


# ----------------------------------------------------------------------------------------------
# Answer


def _json_texts(values: list[Any]) -> list[str]:
    encode = _encoder.encode
    return [encode(value).decode() for value in values]


def _typed(flat: list[Any], types: set[type]) -> tuple[str, list[Any]]:
    """(datatype, data) for row-major answer elements."""
    if not types:
        return "FP64", flat
    if types <= _INT:
        low, high = min(flat), max(flat)
        if low >= _INT64_MIN and high <= _INT64_MAX:
            return "INT64", flat
        if low >= 0 and high <= _UINT64_MAX:
            return "UINT64", flat
        return "BYTES", _json_texts(flat)
    if types <= _NUMBER:
        if int not in types:
            return "FP64", flat
        try:
            return "FP64", [float(value) for value in flat]
        except OverflowError:
            return "BYTES", _json_texts(flat)
    if types <= _BOOL:
        return "BOOL", flat
    if types <= _STR:
        return "BYTES", flat
    return "BYTES", _json_texts(flat)


def _to_output(name: str, value: Any) -> InferOutput:
    if type(value) is not list:
        datatype, data = _typed([value], {type(value)})
        return InferOutput(name=name, shape=[], datatype=datatype, data=data)
    try:
        flat, types, shape = _flatten(value)
    except _Ragged:
        return InferOutput(name=name, shape=[len(value)], datatype="BYTES", data=_json_texts(value))
    datatype, data = _typed(flat, types)
    return InferOutput(name=name, shape=shape, datatype=datatype, data=data)


def from_bentoml_answer(
    answer: bytes,
    *,
    model: str,
    version: str,
    request_id: str | None,
    requested: list[RequestedOutput] | None,
) -> bytes:
    """The OIP response body for a BentoML answer (see the module docstring for the mapping)."""
    try:
        value = _any_decoder.decode(answer)
    except msgspec.DecodeError:
        value = answer.decode("utf-8", errors="replace")
    named: dict[str, Any] = value if type(value) is dict else {"output0": value}
    if requested is None:
        outputs = [_to_output(name, item) for name, item in named.items()]
    else:
        outputs = []
        for wanted in requested:
            if wanted.name not in named:
                raise BadRequest(
                    f"the model gave no output {wanted.name!r}; it gave "
                    f"{', '.join(map(repr, named)) or 'none'}",
                    field="outputs",
                )
            outputs.append(_to_output(wanted.name, named[wanted.name]))
    return encode_response(
        InferResponse(model_name=model, outputs=outputs, model_version=version, id=request_id)
    )


def encode_response(response: InferResponse) -> bytes:
    return _encoder.encode(response)


# ----------------------------------------------------------------------------------------------
# Metadata and errors


def model_metadata(name: str, versions: list[str], platform: str, inputs: list[str]) -> bytes:
    """OIP model metadata: each API argument as a BYTES tensor of variable shape, no outputs
    (a BentoML JSON API declares neither types nor outputs)."""
    return _encoder.encode(
        ModelMetadata(
            name=name,
            versions=versions,
            platform=platform,
            inputs=[
                MetadataTensor(name=arg, datatype=_METADATA_INPUT_DATATYPE, shape=[_VARIABLE])
                for arg in inputs
            ],
            outputs=[],
        )
    )


def error_body(message: str) -> bytes:
    """The OIP error object: ``{"error": message}``."""
    return _encoder.encode(ErrorBody(error=message))
