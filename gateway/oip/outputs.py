"""A BentoML answer as an OIP inference response, the OIP model metadata, and the OIP error
object (the mapping is described in gateway/oip/__init__.py). Pure."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from contract.routes import TensorSpec
from gateway.errors import BadRequest
from gateway.oip.binary import encode_raw
from gateway.oip.tensors import (
    BOOL_TYPES,
    INT64_MAX,
    INT64_MIN,
    INT_TYPES,
    NUMBER_TYPES,
    STR_TYPES,
    UINT64_MAX,
    Ragged,
    flatten,
)
from gateway.oip.wire import (
    ErrorBody,
    InferOutput,
    InferResponse,
    MetadataTensor,
    ModelMetadata,
    RequestedOutput,
    ServerMetadata,
    any_decoder,
    encoder,
)

_UNKNOWN_DATATYPE: Final = "BYTES"
_VARIABLE: Final = -1
SERVER_NAME: Final = "modelyard"
#: The OIP extensions the gateway speaks (Triton's names).
EXTENSIONS: Final = ["binary_tensor_data"]


def _json_texts(values: list[Any]) -> list[str]:
    encode = encoder.encode
    return [encode(value).decode() for value in values]


def _typed(flat: list[Any], types: set[type]) -> tuple[str, list[Any]]:
    """(datatype, data) for row-major answer elements."""
    if not types:
        return "FP64", flat
    if types <= INT_TYPES:
        low, high = min(flat), max(flat)
        if low >= INT64_MIN and high <= INT64_MAX:
            return "INT64", flat
        if low >= 0 and high <= UINT64_MAX:
            return "UINT64", flat
        return "BYTES", _json_texts(flat)
    if types <= NUMBER_TYPES:
        if int not in types:
            return "FP64", flat
        try:
            return "FP64", [float(value) for value in flat]
        except OverflowError:
            return "BYTES", _json_texts(flat)
    if types <= BOOL_TYPES:
        return "BOOL", flat
    if types <= STR_TYPES:
        return "BYTES", flat
    return "BYTES", _json_texts(flat)


def _to_output(name: str, value: Any) -> InferOutput:
    if type(value) is not list:
        datatype, data = _typed([value], {type(value)})
        return InferOutput(name=name, shape=[], datatype=datatype, data=data)
    try:
        flat, types, shape = flatten(value)
    except Ragged:
        return InferOutput(name=name, shape=[len(value)], datatype="BYTES", data=_json_texts(value))
    datatype, data = _typed(flat, types)
    return InferOutput(name=name, shape=shape, datatype=datatype, data=data)


def answer_outputs(answer: bytes, requested: list[RequestedOutput] | None) -> list[InferOutput]:
    """The outputs of a BentoML answer (see the module docstring for the mapping), selected
    and ordered by `requested` when given."""
    try:
        value = any_decoder.decode(answer)
    except msgspec.DecodeError:
        value = answer.decode("utf-8", errors="replace")
    named: dict[str, Any] = value if type(value) is dict else {"output0": value}
    if requested is None:
        return [_to_output(name, item) for name, item in named.items()]
    outputs = []
    for wanted in requested:
        if wanted.name not in named:
            raise BadRequest(
                f"the model gave no output {wanted.name!r}; it gave "
                f"{', '.join(map(repr, named)) or 'none'}",
                field="outputs",
            )
        outputs.append(_to_output(wanted.name, named[wanted.name]))
    return outputs


def from_bentoml_answer(
    answer: bytes,
    *,
    model: str,
    version: str,
    request_id: str | None,
    requested: list[RequestedOutput] | None,
) -> bytes:
    """The OIP response body for a BentoML answer, all JSON."""
    outputs = answer_outputs(answer, requested)
    return encode_response(
        InferResponse(model_name=model, outputs=outputs, model_version=version, id=request_id)
    )


def binary_answer(
    answer: bytes,
    *,
    model: str,
    version: str,
    request_id: str | None,
    requested: list[RequestedOutput] | None,
    binary_output: bool,
) -> tuple[bytes, int | None]:
    """The OIP response body for a BentoML answer with the binary tensor data extension, and
    the length of its JSON header when outputs follow it as binary data (None: all JSON).

    An output goes binary when its request entry says ``parameters.binary_data`` true, or,
    saying nothing, when `binary_output` (the request's ``parameters.binary_data_output``)."""
    outputs = answer_outputs(answer, requested)
    response = InferResponse(
        model_name=model, outputs=outputs, model_version=version, id=request_id
    )
    wants = _binary_wanted(requested, binary_output, len(outputs))
    if not any(wants):
        return encode_response(response), None
    raws = []
    for output, want in zip(outputs, wants, strict=True):
        if want and output.data is not None:
            raw = encode_raw(output.datatype, output.data)
            output.data = None
            output.parameters = {"binary_data_size": len(raw)}
            raws.append(raw)
    header = encode_response(response)
    return b"".join([header, *raws]), len(header)


def _binary_wanted(
    requested: list[RequestedOutput] | None, default: bool, count: int
) -> list[bool]:
    if requested is None:
        return [default] * count
    wants = []
    for output in requested:
        flag = output.parameters.get("binary_data") if output.parameters else None
        wants.append(flag if type(flag) is bool else default)
    return wants


def binary_output_default(parameters: dict[str, Any] | None) -> bool:
    """The request's ``parameters.binary_data_output`` (false when absent or not a boolean)."""
    flag = parameters.get("binary_data_output") if parameters else None
    return flag is True


def encode_response(response: InferResponse) -> bytes:
    return encoder.encode(response)


# --- metadata and errors ------------------------------------------------------------------------


def model_metadata(
    name: str,
    versions: list[str],
    platform: str,
    inputs: list[str],
    tensors: list[TensorSpec] | None = None,
    outputs: list[TensorSpec] | None = None,
) -> bytes:
    """OIP model metadata: each API argument (`inputs`) as the tensor `tensors` declares it;
    what is not known is said as BYTES (datatype) and [-1] (shape), and the gateway then
    accepts any datatype or shape for it. Outputs as declared (none when not declared)."""
    declared = {spec.name: spec for spec in tensors or []}
    return encoder.encode(
        ModelMetadata(
            name=name,
            versions=versions,
            platform=platform,
            inputs=[_metadata_tensor(declared.get(arg) or TensorSpec(arg)) for arg in inputs],
            outputs=[_metadata_tensor(spec) for spec in outputs or []],
        )
    )


def _metadata_tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(
        name=spec.name,
        datatype=spec.datatype or _UNKNOWN_DATATYPE,
        shape=list(spec.shape) if spec.shape is not None else [_VARIABLE],
    )


def server_metadata(version: str) -> bytes:
    """OIP server metadata: modelyard, its version, the protocol extensions it speaks."""
    return encoder.encode(ServerMetadata(name=SERVER_NAME, version=version, extensions=EXTENSIONS))


def error_body(message: str) -> bytes:
    """The OIP error object: ``{"error": message}``."""
    return encoder.encode(ErrorBody(error=message))
