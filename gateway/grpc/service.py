"""The `GRPCInferenceService` methods, each the OIP front's call of the same name
(gateway.oip.front), so gRPC routes, measures and traces as HTTP does.

Every method takes a request message and the call's metadata (gRPC metadata is HTTP/2
headers: the sticky key, header rules and `x-modelyard-version`/`-alias` pins are read from it
as from HTTP headers) and returns the answer message, or raises `RpcError` with the gRPC
status code of the HTTP status the same call over HTTP would have had (`CODES`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Final

from contract.routes import ModelRoute
from gateway.errors import GatewayError, UnknownModel
from gateway.forward import MODEL_HEADER, REVISION_HEADER, VARIANT_HEADER, VERSION_HEADER
from gateway.front import Gateway
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.answers import infer_response_bytes
from gateway.grpc.tensors import (
    error_message,
    infer_request,
    infer_response,
    model_metadata_response,
)
from gateway.hooks import RequestHooks
from gateway.oip.front import WRITTEN
from gateway.reply import Reply, status_of
from gateway.request import served, version_number
from gateway.transport.base import Headers

#: gRPC status codes (grpc.StatusCode's numbers) of the HTTP statuses the gateway answers with:
#: Google's mapping between the two (google/rpc/code.proto), 502 as 503.
OK: Final = 0
CODES: Final[dict[int, int]] = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    403: 7,  # PERMISSION_DENIED
    404: 5,  # NOT_FOUND
    409: 10,  # ABORTED
    413: 8,  # RESOURCE_EXHAUSTED
    422: 3,  # INVALID_ARGUMENT (a model refusing its input)
    429: 8,  # RESOURCE_EXHAUSTED
    499: 1,  # CANCELLED
    500: 13,  # INTERNAL
    501: 12,  # UNIMPLEMENTED
    502: 14,  # UNAVAILABLE
    503: 14,  # UNAVAILABLE
    504: 4,  # DEADLINE_EXCEEDED
}
UNKNOWN: Final = 2
_GATEWAY_HEADERS: Final = (MODEL_HEADER, VERSION_HEADER, VARIANT_HEADER, REVISION_HEADER)


def code_of(status: int) -> int:
    """The gRPC code for an HTTP status: its own, else that of its class (4xx: invalid
    argument, 5xx: internal)."""
    if status < 400:
        return OK
    found = CODES.get(status)
    if found is not None:
        return found
    return 3 if status < 500 else 13


class RpcError(Exception):
    """A call's failure: the gRPC status code, the message, and the HTTP status it stands for."""

    def __init__(self, code: int, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @classmethod
    def of(cls, exc: GatewayError) -> RpcError:
        status = status_of(exc)
        return cls(code_of(status), exc.message, status)


class InferenceService:
    """The service over one running gateway; `name`/`version` are the server metadata's."""

    def __init__(self, gateway: Gateway, name: str, version: str) -> None:
        self.gateway = gateway
        self.metadata = pb.ServerMetadataResponse(name=name, version=version, extensions=[])

    def server_live(self) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.gateway.oip.server_live().status == 200)

    def server_ready(self) -> pb.ServerReadyResponse:
        reply = self.gateway.oip.server_ready(self.gateway.readiness)
        return pb.ServerReadyResponse(ready=reply.status == 200)

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return self.metadata

    def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        try:
            route, version = self._model(request.name, request.version)
            reply = self.gateway.oip.model_ready(route, version)
        except GatewayError as exc:
            raise RpcError.of(exc) from None
        if reply.status not in (200, 503):  # 503: known, not ready
            raise _failed(reply)
        return pb.ModelReadyResponse(ready=reply.status == 200)

    def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        try:
            route, version = self._model(request.name, request.version)
            reply = self.gateway.oip.model_metadata(route, version)
            if reply.status != 200:
                raise _failed(reply)
            return model_metadata_response(reply.body)
        except GatewayError as exc:
            raise RpcError.of(exc) from None

    def model_infer(
        self, request: pb.ModelInferRequest, headers: Headers
    ) -> Coroutine[Any, Any, tuple[bytes, Headers]]:
        """The answer (the serialized `ModelInferResponse`), and the gateway's headers naming
        model, version, variant and revision (sent as the call's trailing metadata). Without
        hooks (no tracing) the call itself: one coroutine fewer for every step of the call."""
        if self.gateway.hooks is None:
            return self._infer(request, headers, None)
        return self._hooked(request, headers)

    async def _hooked(
        self, request: pb.ModelInferRequest, headers: Headers
    ) -> tuple[bytes, Headers]:
        gateway = self.gateway
        assert gateway.hooks is not None
        version_path = f"/versions/{request.model_version}" if request.model_version else ""
        path = f"/v2/models/{request.model_name}{version_path}/infer"
        hooks = gateway.hooks.request("POST", path, headers)
        if isinstance(hooks, list):  # nothing to observe, other headers (a trace context)
            headers, hooks = hooks, None
        try:
            return await self._infer(request, headers, hooks)
        except RpcError as exc:
            if hooks is not None:
                hooks.end(exc.status, None)
            raise
        except BaseException as exc:
            if hooks is not None:
                hooks.end(0, exc)
            raise

    async def _infer(
        self, request: pb.ModelInferRequest, headers: Headers, hooks: RequestHooks | None
    ) -> tuple[bytes, Headers]:
        """The call; `hooks` told how it ended when it answers (the caller tells them of a
        failure)."""
        try:
            route, version = self._model(request.model_name, request.model_version)
            body = infer_request(request)
            table = self.gateway.follower.table
            assert table is not None  # `_model` found the route in it
            reply = await self.gateway.oip.infer(
                table, route, version, headers, body, hooks, infer_response_bytes
            )
            if reply.status >= 400:
                raise _failed(reply)
            said: Headers = []
            served_by = None
            for name, value in reply.headers:
                if name in _GATEWAY_HEADERS:
                    said.append((name, value))
                    if name == VERSION_HEADER:
                        served_by = value.decode()
            # a BentoML model's: the message itself. The marker's value by identity (no
            # upstream's header is that object); not the pair's: compiled code (mypyc) makes
            # new tuples of the same two objects
            if reply.headers[0][1] is WRITTEN[1]:
                answer = reply.body
            else:  # an OIP upstream's JSON
                answer = infer_response(reply.body, served_by).SerializeToString()
        except GatewayError as exc:
            raise RpcError.of(exc) from None
        if hooks is not None:
            hooks.end(reply.status, None)
        return answer, said

    def _model(self, name: str, version_text: str) -> tuple[ModelRoute, int | None]:
        """The model's route and the version asked for ("" = none); `UnknownModel` for a model
        or a version not served here."""
        route = served(self.gateway.follower.table, name)
        if not version_text:
            return route, None
        version = version_number(version_text)
        if version not in route.versions:
            raise UnknownModel(
                f"model {name!r} has no version {version} served here", field="version"
            )
        return route, version


def _failed(reply: Reply) -> RpcError:
    return RpcError(code_of(reply.status), error_message(reply.body), reply.status)
