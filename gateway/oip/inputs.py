"""An OIP inference request: decoded and checked (every client error is a `BadRequest` naming
the field), and turned into the JSON body of a BentoML API (one argument per input). Pure."""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from contract.json_depth import MAX_JSON_DEPTH, too_deep
from contract.routes import TensorSpec
from gateway.errors import BadRequest
from gateway.oip.binary import BadTensor, decode_raw
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


#: The header of the binary tensor data extension: how many bytes of the body are JSON.
HEADER_LENGTH_FIELD: Final = "Inference-Header-Content-Length"


def decode_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse and check an OIP inference request; every client error is a `BadRequest`.

    `header_length` (the ``Inference-Header-Content-Length`` header): the body's first bytes
    are the JSON, the rest the raw data of the inputs that give ``binary_data_size``, in
    their order. Their data is decoded into ``data`` (flat, row-major), so what follows sees
    one kind of input.
    """
    raw = memoryview(b"")
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise BadRequest(
                f"{HEADER_LENGTH_FIELD} is {header_length}, the body has {len(body)} bytes",
                field=HEADER_LENGTH_FIELD,
            )
        raw = memoryview(body)[header_length:]
        body = body[:header_length]
    if too_deep(body):  # before the decoder's recursion can fail
        raise BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        request = request_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise _schema_error(error) from None
    except msgspec.DecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    return check_request(request, raw, header_length)


def check_request(
    request: InferRequest, raw: memoryview | None = None, header_length: int | None = None
) -> InferRequest:
    """`decode_request`'s checks of a request already decoded (the gRPC front builds its
    `InferRequest` from the protobuf message: no JSON round trip); `raw` the binary data."""
    if raw is None:
        raw = memoryview(b"")
    if not request.inputs:
        raise BadRequest("an inference request needs at least one input", field="inputs")
    names: set[str] = set()
    offset = 0
    for index, tensor in enumerate(request.inputs):
        if tensor.name in names:
            raise BadRequest(f"input {tensor.name!r} is given more than once", field="inputs")
        names.add(tensor.name)
        where = f"inputs[{index}]"
        _check_header(tensor, where)
        size = _binary_size(tensor, where)
        if size is None:
            _check_data(tensor, where)
            continue
        if offset + size > len(raw):
            raise BadRequest(
                f"{where}.parameters.binary_data_size is {size}, but only {len(raw) - offset} "
                f"bytes of binary data are left after the JSON"
                + ("" if header_length is not None else f" (no {HEADER_LENGTH_FIELD} header)"),
                field=f"{where}.parameters.binary_data_size",
            )
        try:
            tensor.data = decode_raw(
                tensor.datatype, raw[offset : offset + size], math.prod(tensor.shape)
            )
        except BadTensor as bad:
            field = f"{where}.parameters.binary_data_size"
            raise BadRequest(f"{where}: {bad}", field=field) from None
        offset += size
    if offset != len(raw):
        raise BadRequest(
            f"{len(raw) - offset} bytes of binary data after the JSON are claimed by no "
            "input's binary_data_size",
            field="inputs",
        )
    if request.outputs is not None:
        wanted: set[str] = set()
        for output in request.outputs:
            if output.name in wanted:
                raise BadRequest(f"output {output.name!r} is requested twice", field="outputs")
            wanted.add(output.name)
    return request


def _check_header(tensor: InferInput, where: str) -> None:
    datatype = tensor.datatype
    if datatype not in ALLOWED:
        raise BadRequest(
            f"{where}.datatype: unknown datatype {datatype!r}; "
            f"one of {', '.join(sorted(DATATYPES))}",
            field=f"{where}.datatype",
        )
    shape = tensor.shape
    if any(dim < 0 for dim in shape):
        raise BadRequest(
            f"{where}.shape: dimensions must not be negative, got {shape}", field=f"{where}.shape"
        )


def _binary_size(tensor: InferInput, where: str) -> int | None:
    """The input's ``binary_data_size``; None when its data is JSON."""
    size = tensor.parameters.get("binary_data_size") if tensor.parameters else None
    if size is None:
        if tensor.data is None:
            raise BadRequest(
                f"{where}.data: missing; give data, or parameters.binary_data_size and the "
                f"bytes after the JSON ({HEADER_LENGTH_FIELD})",
                field=f"{where}.data",
            )
        return None
    field = f"{where}.parameters.binary_data_size"
    if type(size) is not int or size < 0:
        raise BadRequest(f"{field} must be a non-negative integer, got {size!r}", field=field)
    if tensor.data is not None:
        raise BadRequest(f"{where}: both data and binary_data_size; give one", field=field)
    return size


def _check_data(tensor: InferInput, where: str) -> None:
    datatype = tensor.datatype
    shape = tensor.shape
    field = f"{where}.data"
    assert tensor.data is not None
    try:
        flat, types, _ = flatten(tensor.data)
    except Ragged as ragged:
        raise BadRequest(f"{field}: not a rectangular array: {ragged}", field=field) from None
    expected = math.prod(shape)
    if len(flat) != expected:
        raise BadRequest(
            f"{field}: shape {shape} needs {expected} elements, got {len(flat)}", field=field
        )
    kinds, wanted = ALLOWED[datatype]
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
    assert data is not None  # decode_request filled binary inputs in
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


#: The datatypes an input declared as one kind takes (numbers are numbers in JSON).
_TAKES: Final[dict[str, frozenset[str]]] = {
    **{dt: frozenset({*INT_RANGES, *FLOAT_LIMITS}) for dt in FLOAT_LIMITS},
    **{dt: frozenset(INT_RANGES) for dt in INT_RANGES},
    "BOOL": frozenset({"BOOL"}),
    "BYTES": frozenset({"BYTES"}),
}


def check_declared(request: InferRequest, tensors: list[TensorSpec]) -> None:
    """Each input's datatype and shape against what the API declares of it (model metadata):
    a float input takes any number datatype, an integer one any integer datatype; each
    declared dimension other than -1 must be matched."""
    declared = {spec.name: spec for spec in tensors}
    for index, tensor in enumerate(request.inputs):
        spec = declared.get(tensor.name)
        if spec is None:
            continue
        where = f"inputs[{index}]"
        if spec.datatype is not None and tensor.datatype not in _TAKES[spec.datatype]:
            raise BadRequest(
                f"{where}.datatype: input {tensor.name!r} is {spec.datatype} (see the model "
                f"metadata), got {tensor.datatype}",
                field=f"{where}.datatype",
            )
        want = spec.shape
        got = tensor.shape
        if want is not None and (
            len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got, strict=True))
        ):
            raise BadRequest(
                f"{where}.shape: input {tensor.name!r} has shape {want} (-1: any size; see the "
                f"model metadata), got {got}",
                field=f"{where}.shape",
            )


def to_bentoml_body(
    request: InferRequest, api_inputs: list[str] | None, tensors: list[TensorSpec] | None = None
) -> bytes:
    """The BentoML JSON body for a request checked by `decode_request`: one key per input.

    With `api_inputs` (the API's argument names) every argument must be given, and no other;
    with `tensors` (what the API declares of them), each must match (`check_declared`).
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
    if tensors:
        check_declared(request, tensors)
    body = {
        tensor.name: _natural(tensor, f"inputs[{index}].data")
        for index, tensor in enumerate(request.inputs)
    }
    return encoder.encode(body)
