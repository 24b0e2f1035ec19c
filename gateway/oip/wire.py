"""The Open Inference Protocol's JSON messages (REST), and their codecs. Pure: no IO."""

from __future__ import annotations

from typing import Any, Final

import msgspec


class InferInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None  # None: binary (``parameters.binary_data_size``)
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
    data: list[Any] | None = None  # None: binary (``parameters.binary_data_size``)
    parameters: dict[str, Any] | None = None


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


class ServerMetadata(msgspec.Struct):
    name: str
    version: str
    extensions: list[str]


class ErrorBody(msgspec.Struct):
    error: str


# --- codecs, built once -------------------------------------------------------------------------

encoder: Final = msgspec.json.Encoder()
request_decoder: Final = msgspec.json.Decoder(InferRequest)
any_decoder: Final = msgspec.json.Decoder()
