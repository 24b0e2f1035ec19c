"""Open Inference Protocol v2 (REST: JSON and binary tensor data) ⇄ BentoML JSON APIs.

The package: `wire` (the JSON messages and their codecs), `tensors` (datatypes, nested arrays),
`binary` (raw tensors of the binary extension), `inputs` (request → BentoML body), `outputs`
(BentoML answer → response, metadata, errors), all pure; and `front`, the gateway's OIP calls
(server health and metadata, model metadata and readiness, inference), which the gRPC front
shares with the HTTP one.

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

Binary tensor data (the extension, as tritonclient sends it by default)
    With an ``Inference-Header-Content-Length`` header, only that many bytes of the body are the
    JSON; an input with ``parameters.binary_data_size`` (and no ``data``) takes that many of the
    bytes after it, inputs in order, decoded (``binary``: little-endian, row-major, BYTES as
    4-byte lengths and UTF-8 text) into ``data`` before anything else reads it. Outputs go
    binary when the request's ``parameters.binary_data_output`` or the requested output's
    ``parameters.binary_data`` says so: ``data`` is left out, ``parameters.binary_data_size``
    says how many bytes of the answer after its JSON are the output's, and the answer carries
    its own ``Inference-Header-Content-Length``.

Model metadata
    Each API argument as the Bento's API schema declares it (``ApiSpec.tensors``, read at
    registration by adapters.bento_schema), the outputs likewise; what is not known is said as
    ``BYTES`` of shape ``[-1]``, and the gateway then accepts any datatype or shape for it.
    Inference refuses, before any upstream, an input whose datatype or shape the declaration
    does not take (``check_declared``: a float input takes any number datatype, an integer
    one any integer datatype; -1 is any size). Per-output parameters other than
    ``binary_data`` are accepted and ignored.
"""

from gateway.oip.binary import decode_raw, encode_raw
from gateway.oip.inputs import check_declared, decode_request, to_bentoml_body
from gateway.oip.outputs import (
    binary_answer,
    encode_response,
    error_body,
    from_bentoml_answer,
    model_metadata,
    server_metadata,
)
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
    ServerMetadata,
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
    "ServerMetadata",
    "binary_answer",
    "check_declared",
    "decode_raw",
    "decode_request",
    "encode_raw",
    "encode_response",
    "error_body",
    "from_bentoml_answer",
    "model_metadata",
    "server_metadata",
    "to_bentoml_body",
]
