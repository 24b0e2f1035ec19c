"""A BentoML model's answer as the serialized `ModelInferResponse`, written straight from its
outputs (gateway.oip.outputs.answer_outputs) with every output's data in
`raw_output_contents`. No IO; the only state is two bounded caches of encoded bytes (each
model's head, each output's description), cleared whole when full.

Why by hand: the gRPC call used to build the OIP JSON answer (as the HTTP front does), decode
it again (gateway.grpc.tensors.infer_response), flatten and pack each output, build the
protobuf message and serialize it; writing the message's bytes from the outputs leaves out
the JSON round trip and the message object. Measured with `python -m loadtests.oip_hotpath
--callgrind` (FP32 [3, 4] in, one INT64 output): 359,678 -> 348,119 instructions per gRPC call;
keeping each model's head (model_name, model_version) and each output's description bytes
(a model's answers repeat them) took it on from 337,031 to 319,967.

The bytes are those protobuf gives for the same message (its fields in number order, empty
strings and empty repeated fields left out, shapes packed): tests/unit/test_grpc_answers.py
compares them with `ModelInferResponse.SerializeToString()`.
"""

from __future__ import annotations

from typing import Final

from gateway.oip.binary import encode_raw
from gateway.oip.wire import InferOutput

# Field keys (field number << 3 | wire type 2, length-delimited) of ModelInferResponse ...
_MODEL_NAME: Final = b"\x0a"
_MODEL_VERSION: Final = b"\x12"
_ID: Final = b"\x1a"
_OUTPUTS: Final = b"\x2a"
_RAW_OUTPUT: Final = b"\x32"
# ... and of its InferOutputTensor.
_NAME: Final = b"\x0a"
_DATATYPE: Final = b"\x12"
_SHAPE: Final = b"\x1a"
#: Varints of 0..127, one byte each: every length and dimension of a small answer.
_SMALL: Final = tuple(bytes((n,)) for n in range(128))


def varint(value: int) -> bytes:
    """A protobuf varint of a non-negative integer (a negative one: 10 bytes, as int64)."""
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: bytes, data: bytes) -> bytes:
    size = len(data)
    return key + (_SMALL[size] if size < 128 else varint(size)) + data


def _head(model: str, version: str) -> bytes:
    """model_name and model_version, kept per model and version (each answer repeats them)."""
    head = (_field(_MODEL_NAME, model.encode()) if model else b"") + (
        _field(_MODEL_VERSION, version.encode()) if version else b""
    )
    if len(_HEADS) >= _KEPT:
        _HEADS.clear()
    _HEADS[model, version] = head
    return head


def _tensor(name: str, datatype: str, shape: list[int]) -> bytes:
    """An `InferOutputTensor` field of the answer: name, datatype, shape (no contents: the
    data travels raw), kept per output (a model's answers repeat theirs)."""
    key: tuple[str | int, ...] = (name, datatype, *shape)
    found = _TENSORS.get(key)
    if found is not None:
        return found
    parts = []
    if name:
        parts.append(_field(_NAME, name.encode()))
    if datatype:
        parts.append(_field(_DATATYPE, datatype.encode()))
    if shape:
        parts.append(_field(_SHAPE, b"".join(map(varint, shape))))
    found = _field(_OUTPUTS, b"".join(parts))
    if len(_TENSORS) >= _KEPT:
        _TENSORS.clear()
    _TENSORS[key] = found
    return found


_KEPT: Final = 256
_HEADS: dict[tuple[str, str], bytes] = {}
_TENSORS: dict[tuple[str | int, ...], bytes] = {}


def infer_response_bytes(
    outputs: list[InferOutput], model: str, version: str, request_id: str | None
) -> bytes:
    """The serialized `ModelInferResponse` of a BentoML answer's outputs (each with its flat,
    typed `data`, as `answer_outputs` makes them)."""
    head = _HEADS.get((model, version))
    parts = [_head(model, version) if head is None else head]
    if request_id:
        parts.append(_field(_ID, request_id.encode()))
    raws = []
    for output in outputs:
        parts.append(_tensor(output.name, output.datatype, output.shape))
        raws.append(_field(_RAW_OUTPUT, encode_raw(output.datatype, output.data or [])))
    return b"".join(parts + raws)
