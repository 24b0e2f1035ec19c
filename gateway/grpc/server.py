"""The gRPC server (grpc.aio) of `InferenceService`, in the gateway's own event loop.

The methods are registered by hand under the spec's service name (the generated messages live
in a package of their own: gateway/grpc/grpc_predict_v2.proto says why), each a unary call.
Messages are bounded like HTTP bodies (`max_message`): a larger one is refused by gRPC itself
with RESOURCE_EXHAUSTED before it is parsed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc
from grpc import aio

from gateway.front import Gateway
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.service import InferenceService, RpcError
from gateway.transport.base import Headers

SERVICE: Final = "inference.GRPCInferenceService"
STOP_GRACE_S: Final = 5.0

Context = aio.ServicerContext[Any, Any]
#: grpc.StatusCode by its number (`RpcError.code`).
_STATUS: Final = {code.value[0]: code for code in grpc.StatusCode}


class GrpcBindError(RuntimeError):
    """The gRPC port could not be bound (in use, or not allowed)."""


def _headers(context: Context) -> Headers:
    """The call's metadata as the gateway's headers (lower-case names, bytes)."""
    found: Headers = []
    for key, value in context.invocation_metadata() or ():
        found.append((key.encode("latin-1"), value if isinstance(value, bytes) else value.encode()))
    return found


def _unary(
    call: Callable[[Any, Context], Awaitable[Any]], request_type: Any, response_type: Any
) -> grpc.RpcMethodHandler[Any, Any]:
    async def handle(request: Any, context: Context) -> Any:
        try:
            return await call(request, context)
        except RpcError as exc:
            await context.abort(_STATUS[exc.code], exc.message)

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


def handlers(service: InferenceService) -> grpc.GenericRpcHandler[Any, Any]:
    async def server_live(request: pb.ServerLiveRequest, context: Context) -> Any:
        return service.server_live()

    async def server_ready(request: pb.ServerReadyRequest, context: Context) -> Any:
        return service.server_ready()

    async def server_metadata(request: pb.ServerMetadataRequest, context: Context) -> Any:
        return service.server_metadata()

    async def model_ready(request: pb.ModelReadyRequest, context: Context) -> Any:
        return service.model_ready(request)

    async def model_metadata(request: pb.ModelMetadataRequest, context: Context) -> Any:
        return service.model_metadata(request)

    async def model_infer(request: pb.ModelInferRequest, context: Context) -> Any:
        answer, said = await service.model_infer(request, _headers(context))
        context.set_trailing_metadata([(k.decode(), v.decode()) for k, v in said])
        return answer

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": _unary(server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": _unary(server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ServerMetadata": _unary(
                server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse
            ),
            "ModelReady": _unary(model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ModelMetadata": _unary(
                model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse
            ),
            "ModelInfer": _unary(model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
        },
    )


@contextlib.asynccontextmanager
async def running_grpc(
    gateway: Gateway, host: str, port: int, *, max_message: int, name: str, version: str
) -> AsyncIterator[int]:
    """The gRPC server on `host:port` for as long as the context lasts; yields the bound port.
    `name`/`version`: what ServerMetadata answers."""
    options = [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.max_send_message_length", max_message),
        ("grpc.so_reuseport", 0),  # a port in use is an error, not a second listener
    ]
    server = aio.server(options=options)
    server.add_generic_rpc_handlers((handlers(InferenceService(gateway, name, version)),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise GrpcBindError(f"cannot listen for gRPC on {address}: {exc}") from None
    if bound == 0:
        raise GrpcBindError(f"cannot listen for gRPC on {address}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(STOP_GRACE_S)
