"""A BentoML answer as an OIP inference response, the OIP model metadata, and the OIP error
object (the mapping is described in gateway/oip/__init__.py). Pure."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from gateway.errors import BadRequest
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
    any_decoder,
    encoder,
)

_METADATA_INPUT_DATATYPE: Final = "BYTES"
_VARIABLE: Final = -1


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
        value = any_decoder.decode(answer)
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
    return encoder.encode(response)


# --- metadata and errors ------------------------------------------------------------------------


def model_metadata(name: str, versions: list[str], platform: str, inputs: list[str]) -> bytes:
    """OIP model metadata: each API argument as a BYTES tensor of variable shape, no outputs
    (a BentoML JSON API declares neither types nor outputs)."""
    return encoder.encode(
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
    return encoder.encode(ErrorBody(error=message))
