"""gRPC unary calls over the HTTP/2 connection (h2conn): a request's headers and body in, the
answer's header blocks and message out, each method an `InferenceService` call.

As the gRPC spec (PROTOCOL-HTTP2.md) and grpcio's server answer:
- `content-type` not `application/grpc[+proto|;...]`: HTTP 415; `:method` not POST: HTTP 405;
- `grpc-encoding` other than identity, a compressed message, an unknown method: UNIMPLEMENTED
  (a compressed flag with identity encoding: INTERNAL);
- a message over `max_message`: RESOURCE_EXHAUSTED, before it is parsed (h2conn stops
  gathering the body past that size);
- bytes that are not the method's protobuf message: INTERNAL ("Exception deserializing
  request!", as grpcio says; grpc-go also answers INTERNAL);
- `grpc-timeout`: the call's deadline; when it passes, the call is cancelled (the gateway's
  hooks see a cancellation, as for a client that went away over HTTP) and answers
  DEADLINE_EXCEEDED.
Metadata are the request's headers without the pseudo-headers and the gRPC protocol's own
(content-type, te, grpc-*): names lower-case bytes, as grpcio's `invocation_metadata` gave them.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Coroutine
from typing import Any, Final

from google.protobuf.message import DecodeError

from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc import h2frames as f
from gateway.grpc.h2conn import Answer, RequestHeaders
from gateway.grpc.service import InferenceService, RpcError
from gateway.transport.base import Headers

log = logging.getLogger(__name__)

SERVICE: Final = "inference.GRPCInferenceService"
PREFIX: Final = f"/{SERVICE}/".encode()
INTERNAL: Final = 13
UNIMPLEMENTED: Final = 12
RESOURCE_EXHAUSTED: Final = 8
DEADLINE_EXCEEDED: Final = 4
_PROTOCOL_HEADERS: Final = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)

Handler = Callable[[Any, Headers], Any]


def failure(code: int, message: str) -> Answer:
    """A trailers-only answer: the head carries the status."""
    return f.RESPONSE_HEAD + f.trailers(code, message, []), b"", b""


_MESSAGE_PREFIX: Final = struct.Struct(">BI")  # compressed flag, length


def success(message: bytes, metadata: Headers) -> Answer:
    return f.RESPONSE_HEAD, _MESSAGE_PREFIX.pack(0, len(message)) + message, f.ok_trailers(metadata)


def http_refusal(status: int) -> Answer:
    return f.status_head(status), b"", b""


_Parsed = tuple[bytes, bytes, bytes, bytes | None, float | None, Headers]


def _parse(headers: list[tuple[bytes, bytes]]) -> _Parsed:
    """:path, :method, content-type, grpc-encoding, grpc-timeout (seconds) and the metadata
    (the rest; the gateway only reads it)."""
    path = method = content_type = b""
    encoding = None
    timeout = None
    metadata: Headers = []
    for name, value in headers:
        if name[:1] == b":":
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
        elif name in _PROTOCOL_HEADERS:
            if name == b"content-type":
                content_type = value
            elif name == b"grpc-encoding":
                encoding = value
            elif name == b"grpc-timeout":
                timeout = f.parse_timeout(value)
        else:
            metadata.append((name, value))
    return path, method, content_type, encoding, timeout, metadata


class GrpcCalls:
    """The service's methods by path; `call` answers at once for all but ModelInfer."""

    def __init__(self, service: InferenceService, max_message: int) -> None:
        self.max_message = max_message
        self.service = service
        self.methods: dict[bytes, tuple[Any, Handler, bool]] = {
            PREFIX + b"ServerLive": (
                pb.ServerLiveRequest,
                lambda r, h: service.server_live(),
                False,
            ),
            PREFIX + b"ServerReady": (
                pb.ServerReadyRequest,
                lambda r, h: service.server_ready(),
                False,
            ),
            PREFIX + b"ServerMetadata": (
                pb.ServerMetadataRequest,
                lambda r, h: service.server_metadata(),
                False,
            ),
            PREFIX + b"ModelReady": (
                pb.ModelReadyRequest,
                lambda r, h: service.model_ready(r),
                False,
            ),
            PREFIX + b"ModelMetadata": (
                pb.ModelMetadataRequest,
                lambda r, h: service.model_metadata(r),
                False,
            ),
            PREFIX + b"ModelInfer": (pb.ModelInferRequest, service.model_infer, True),
        }

    def oversized(self) -> Answer:
        return failure(
            RESOURCE_EXHAUSTED,
            f"Received message larger than max (limit {self.max_message} bytes)",
        )

    def call(self, headers: RequestHeaders, body: bytes) -> Answer | Coroutine[Any, Any, Answer]:
        parsed: _Parsed | None = headers.memo  # the same block parsed before
        if parsed is None:
            parsed = headers.memo = _parse(headers.headers)
        path, method, content_type, encoding, timeout, metadata = parsed
        if method != b"POST":
            return http_refusal(405)
        if not content_type.startswith(b"application/grpc"):
            return http_refusal(415)
        found = self.methods.get(path)
        if found is None:
            return failure(UNIMPLEMENTED, f"Method not found: {path.decode('latin-1')}")
        if encoding not in (None, b"identity"):
            return failure(UNIMPLEMENTED, f"Compression {encoding.decode('latin-1')} unsupported")
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            return failure(INTERNAL, "a unary call takes exactly one whole message")
        if body[0]:
            return failure(INTERNAL, "a compressed message without grpc-encoding")
        if len(body) - 5 > self.max_message:
            return self.oversized()
        request_type, handler, awaits = found
        try:
            request = request_type.FromString(body[5:])
        except DecodeError:
            return failure(INTERNAL, "Exception deserializing request!")
        if awaits:
            return self._awaited(request, metadata, timeout)
        try:
            return success(handler(request, metadata).SerializeToString(), [])
        except RpcError as exc:
            return failure(exc.code, exc.message)

    async def _awaited(
        self, request: pb.ModelInferRequest, metadata: Headers, limit_s: float | None
    ) -> Answer:
        try:
            if limit_s is None:
                answer, said = await self.service.model_infer(request, metadata)
            else:
                async with asyncio.timeout(limit_s) as within:
                    answer, said = await self.service.model_infer(request, metadata)
        except RpcError as exc:
            return failure(exc.code, exc.message)
        except TimeoutError:
            if limit_s is None or not within.expired():
                raise
            return failure(DEADLINE_EXCEEDED, "Deadline Exceeded")
        except Exception as exc:
            log.exception("gRPC call failed")
            return failure(INTERNAL, f"Unexpected {type(exc).__name__}: {exc}")
        return success(answer, said)
