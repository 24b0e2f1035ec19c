"""KServe v2 protobuf messages ⇄ the OIP JSON messages the gateway's OIP front takes and gives.
Pure: no IO.

A `ModelInferRequest` becomes the JSON body of ``POST /v2/models/{name}/infer`` (`infer_body`):
each input's data, from `raw_input_contents` (little-endian, row-major; BYTES as 4-byte length
prefixed elements) or from its typed `contents` field, becomes a flat JSON list; BYTES elements
must be UTF-8 text (BentoML JSON APIs take strings). Sizes are checked against the shapes here,
naming the protobuf field; everything else (datatypes, ranges, names) by gateway.oip.

The JSON answer becomes a `ModelInferResponse` (`infer_response`) with every output's data in
`raw_output_contents`, which is what tritonclient reads (it ignores typed contents for all but
BYTES). Metadata answers become their messages the same way (`model_metadata_response`).
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from typing import Any, Final

import msgspec
import numpy as np

from gateway.errors import BadRequest, UpstreamBroken
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.oip.binary import TYPECODES
from gateway.oip.tensors import Ragged, flatten
from gateway.oip.wire import InferInput, InferRequest, RequestedOutput

#: The numpy type of each fixed-size datatype, little-endian as the protocol's raw bytes.
NUMPY_TYPES: Final[dict[str, str]] = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
#: Each fixed-size datatype's width in bytes.
WIDTHS: Final = {name: np.dtype(kind).itemsize for name, kind in NUMPY_TYPES.items()}
#: `memoryview.cast` formats of the datatypes it reads as the protocol's little-endian raw
#: bytes (on a little-endian machine; elsewhere numpy reads them all): half the time of
#: `np.frombuffer(...).tolist()` for a small tensor.
_NATIVE: Final[dict[str, str]] = {"BOOL": "?", **TYPECODES} if sys.byteorder == "little" else {}
#: The `InferTensorContents` field holding each datatype (FP16 travels as raw bytes only).
CONTENTS_FIELDS: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH: Final = struct.Struct("<I")
_FLOATS: Final = frozenset(("FP16", "FP32", "FP64"))
_NUMBERS: Final = frozenset((int, float))
_encoder: Final = msgspec.json.Encoder()


# --- request: protobuf → OIP JSON -----------------------------------------------------------------


def infer_request(request: pb.ModelInferRequest) -> InferRequest | bytes:
    """The OIP request for a `ModelInferRequest`, decoded (what `gateway.oip.decode_request`
    would make of `infer_body`'s JSON, without the JSON round trip: a third of the gRPC call's
    own work in loadtests/oip_hotpath.py), or that JSON when the round trip would change a
    value (a NaN or an infinity becomes JSON null, which the OIP front refuses)."""
    inputs = []
    for name, shape, datatype, data in _inputs(request):
        if datatype in _FLOATS and not all(map(math.isfinite, data)):
            return infer_body(request)
        inputs.append(InferInput(name, shape, datatype, data))
    given = parameters(request.parameters) if request.parameters else None
    if given and any(type(v) is float and not math.isfinite(v) for v in given.values()):
        return infer_body(request)
    wanted = request.outputs
    return InferRequest(
        inputs,
        request.id or None,
        [RequestedOutput(output.name) for output in wanted] if wanted else None,
        given,
    )


def infer_body(request: pb.ModelInferRequest) -> bytes:
    """The OIP JSON request for a `ModelInferRequest`; `BadRequest` names the protobuf field."""
    return _encoder.encode(infer_dict(request))


def infer_dict(request: pb.ModelInferRequest) -> dict[str, Any]:
    """`infer_body`'s JSON object."""
    inputs = [
        {"name": name, "shape": shape, "datatype": datatype, "data": data}
        for name, shape, datatype, data in _inputs(request)
    ]
    body: dict[str, Any] = {"inputs": inputs}
    if request.id:
        body["id"] = request.id
    if request.outputs:
        body["outputs"] = [{"name": output.name} for output in request.outputs]
    if request.parameters:
        body["parameters"] = parameters(request.parameters)
    return body


def _inputs(request: pb.ModelInferRequest) -> list[tuple[str, list[int], str, list[Any]]]:
    """Each input's name, shape, datatype and flat data, from `raw_input_contents` or its
    typed contents; `BadRequest` names the protobuf field of the first that is wrong."""
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise BadRequest(
            f"raw_input_contents: {len(raw)} entries for {len(tensors)} inputs; "
            "give one per input, in the order of inputs",
            field="raw_input_contents",
        )
    found = []
    for index, tensor in enumerate(tensors):
        shape = list(tensor.shape)
        if shape and min(shape) < 0:
            where = f"inputs[{index}]"
            raise BadRequest(
                f"{where}.shape: dimensions must not be negative, got {shape}",
                field=f"{where}.shape",
            )
        count = math.prod(shape)
        datatype = tensor.datatype
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(
                    f"inputs[{index}].contents: not allowed with raw_input_contents",
                    field=f"inputs[{index}].contents",
                )
            data = _from_raw(raw[index], datatype, count, index)
        else:
            data = _from_contents(tensor, count, f"inputs[{index}]")
        found.append((tensor.name, shape, datatype, data))
    return found


def _from_raw(raw: bytes, datatype: str, count: int, index: int) -> list[Any]:
    """The input's data from its raw contents (`index`: which, for the messages)."""
    width = WIDTHS.get(datatype)
    if width is not None and len(raw) == count * width:  # the usual case, checked at once
        native = _NATIVE.get(datatype)
        if native is not None:
            values: list[Any] = memoryview(raw).cast(native).tolist()  # type: ignore[call-overload]
            return values
        return np.frombuffer(raw, dtype=NUMPY_TYPES[datatype]).tolist()  # type: ignore[no-any-return]
    where = f"raw_input_contents[{index}]"
    if datatype == "BYTES":
        return _texts(_split_bytes(raw, count, where), where)
    if width is None:
        raise BadRequest(
            f"{where}: unknown datatype {datatype!r}; one of "
            f"{', '.join(sorted([*NUMPY_TYPES, 'BYTES']))}",
            field=where,
        )
    raise BadRequest(
        f"{where}: {count} {datatype} elements take {count * width} bytes, got {len(raw)}",
        field=where,
    )


def _split_bytes(raw: bytes, count: int, where: str) -> list[bytes]:
    """BYTES raw contents: each element a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise BadRequest(f"{where}: a BYTES element's length is cut short", field=where)
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > size:
            raise BadRequest(
                f"{where}: element {len(elements)} says {length} bytes, {size - offset} remain",
                field=where,
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise BadRequest(
            f"{where}: the shape needs {count} BYTES elements, got {len(elements)}", field=where
        )
    return elements


def _texts(elements: list[bytes], where: str) -> list[str]:
    try:
        return [element.decode() for element in elements]
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"{where}: BYTES elements must be UTF-8 text (they reach the model as JSON "
            f"strings): {error}",
            field=where,
        ) from None


def _from_contents(tensor: pb.ModelInferRequest.InferInputTensor, count: int, where: str) -> Any:
    field = CONTENTS_FIELDS.get(tensor.datatype)
    if field is None:
        if tensor.datatype in NUMPY_TYPES:  # FP16: no typed field in the protocol
            raise BadRequest(
                f"{where}.contents: {tensor.datatype} travels in raw_input_contents only",
                field=f"{where}.contents",
            )
        return []  # an unknown datatype: gateway.oip names it
    where = f"{where}.contents.{field}"
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise BadRequest(
            f"{where}: shape {list(tensor.shape)} needs {count} elements, got {len(values)}",
            field=where,
        )
    if field == "bytes_contents":
        return _texts(list(values), where)
    return list(values)


def parameters(given: Any) -> dict[str, Any]:
    """A protobuf `map<string, InferParameter>` as the JSON object of its values."""
    found: dict[str, Any] = {}
    for name, value in given.items():
        choice = value.WhichOneof("parameter_choice")
        found[name] = getattr(value, choice) if choice is not None else None
    return found


# --- answers: OIP JSON → protobuf -----------------------------------------------------------------


class _Output(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] = []


class _Response(msgspec.Struct):
    model_name: str = ""
    model_version: str | None = None
    id: str | None = None
    outputs: list[_Output] = []


class _Tensor(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]


class _Metadata(msgspec.Struct):
    name: str
    versions: list[str] = []
    platform: str = ""
    inputs: list[_Tensor] = []
    outputs: list[_Tensor] = []


_response_decoder: Final = msgspec.json.Decoder(_Response)
_metadata_decoder: Final = msgspec.json.Decoder(_Metadata)
_any_decoder: Final = msgspec.json.Decoder()


def infer_response(body: bytes, version: str | None) -> pb.ModelInferResponse:
    """The protobuf answer for an OIP JSON answer; `version` (the version that served, when
    known) wins over the one the body names. `UpstreamBroken` if it is no OIP answer."""
    try:
        answer = _response_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamBroken(
            f"the model's answer is not an OIP inference response: {error}"
        ) from None
    response = pb.ModelInferResponse(
        model_name=answer.model_name,
        model_version=version or answer.model_version or "",
        id=answer.id or "",
    )
    for output in answer.outputs:
        response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        response.raw_output_contents.append(_to_raw(output))
    return response


def _to_raw(output: _Output) -> bytes:
    where = f"output {output.name!r}"
    try:
        flat, types, _ = flatten(output.data)
    except Ragged as ragged:
        raise UpstreamBroken(f"{where} is not a rectangular array: {ragged}") from None
    native = _NATIVE.get(output.datatype)
    if native is not None and native != "?" and types <= _NUMBERS:
        # what numpy gives for these, at a fifth of `np.asarray`'s cost for a small tensor
        try:
            return array(native, flat).tobytes()
        except (TypeError, OverflowError):
            pass  # numpy's way below: float to int, and its messages
    if output.datatype == "BYTES":
        parts: list[bytes] = []
        for value in flat:
            element = value.encode() if type(value) is str else _encoder.encode(value)
            parts += (_LENGTH.pack(len(element)), element)
        return b"".join(parts)
    numpy_type = NUMPY_TYPES.get(output.datatype)
    if numpy_type is None:
        raise UpstreamBroken(f"{where} has an unknown datatype {output.datatype!r}")
    try:
        return np.asarray(flat, dtype=numpy_type).tobytes()
    except (TypeError, ValueError, OverflowError) as error:
        raise UpstreamBroken(f"{where} does not fit {output.datatype}: {error}") from None


def model_metadata_response(body: bytes) -> pb.ModelMetadataResponse:
    try:
        found = _metadata_decoder.decode(body)
    except msgspec.DecodeError as error:
        raise UpstreamBroken(f"the model metadata is not OIP model metadata: {error}") from None
    response = pb.ModelMetadataResponse(
        name=found.name, versions=found.versions, platform=found.platform
    )
    for tensor in found.inputs:
        response.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    for tensor in found.outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    return response


def error_message(body: bytes) -> str:
    """What an error answer says: its OIP ``error`` (or our ``message``), else its text."""
    try:
        found = _any_decoder.decode(body)
    except msgspec.DecodeError:
        found = None
    if isinstance(found, dict):
        for key in ("error", "message"):
            if isinstance(found.get(key), str):
                text: str = found[key]
                return text
    return body.decode(errors="replace")[:1000]
