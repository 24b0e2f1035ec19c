"""Open Inference Protocol v2 (REST, JSON) ⇄ BentoML JSON APIs.

The package: `wire` (the JSON messages and their codecs), `tensors` (datatypes, nested arrays),
`inputs` (request → BentoML body), `outputs` (BentoML answer → response, metadata, errors), all
pure; and `front`, the gateway's OIP calls (server health, model metadata and readiness,
inference), which a gRPC front would share with the HTTP one.

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

from gateway.oip.inputs import decode_request, to_bentoml_body
from gateway.oip.outputs import encode_response, error_body, from_bentoml_answer, model_metadata
from gateway.oip.tensors import DATATYPES, FLOAT_LIMITS, INT_RANGES
from gateway.oip.wire import (
    ErrorBody,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    MetadataTensor,
    ModelMetadata,
    RequestedOutput,
)

__all__ = [
    "DATATYPES",
    "FLOAT_LIMITS",
    "INT_RANGES",
    "ErrorBody",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "MetadataTensor",
    "ModelMetadata",
    "RequestedOutput",
    "decode_request",
    "encode_response",
    "error_body",
    "from_bentoml_answer",
    "model_metadata",
    "to_bentoml_body",
]
