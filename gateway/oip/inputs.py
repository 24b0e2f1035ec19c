"""An OIP inference request: decoded and checked (every client error is a `BadRequest` naming
the field), and turned into the JSON body of a BentoML API (one argument per input). Pure."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from contract.json_depth import MAX_JSON_DEPTH, too_deep
from gateway.errors import BadRequest
from gateway.oip.tensors import (
    ALLOWED,
    DATATYPES,
    FLOAT_LIMITS,
    INT_RANGES,
    Ragged,
    flatten,
    kind_of,
    leading_dims,
    reshape,
)
from gateway.oip.wire import InferInput, InferRequest, encoder, request_decoder


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
    if too_deep(body):  # before the decoder's recursion can fail
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        request = request_decoder.decode(body)
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
    allowed = ALLOWED.get(datatype)
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
        flat, types, _ = flatten(tensor.data)
    except Ragged as ragged:
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
            f"{field}: element {index} (row-major) is {kind_of(value)}, {datatype} needs {wanted}",
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
    if shape and leading_dims(data) == shape:
        return data
    try:
        flat, _, _ = flatten(data)
    except Ragged as ragged:
        raise BadRequest(f"{where}: not a rectangular array: {ragged}", field=where) from None
    expected = math.prod(shape)
    if len(flat) != expected:
        raise BadRequest(
            f"{where}: shape {shape} needs {expected} elements, got {len(flat)}", field=where
        )
    return reshape(flat, shape)


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
    return encoder.encode(body)
