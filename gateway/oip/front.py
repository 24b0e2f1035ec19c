"""The gateway's Open Inference Protocol calls: server health and metadata, model metadata,
model readiness and inference. Each takes what its request says (parsed by gateway.request)
and returns the whole answer; the HTTP front (gateway.front) maps `/v2/...` paths to them, and
a gRPC front maps its methods to the same calls. A model version that is not served is an
`UnknownModel` (404, gRPC NOT_FOUND) from every call that names one.

Inference to an OIP upstream forwards the body as it came (binary tensor data and its
``Inference-Header-Content-Length`` included); to a BentoML upstream, each input becomes the
API argument of that name, checked against what the API declares, and the answer is
translated back, with binary outputs when asked (gateway.oip). Either way the request body is
decoded once, here.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any, Final

import msgspec
from msgspec.structs import replace

from contract.health import Readiness
from contract.routes import ModelRoute, RouteTable, VersionRoute
from gateway.errors import UnknownModel
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.hooks import RequestHooks
from gateway.oip.inputs import check_request, decode_request, to_bentoml_body
from gateway.oip.outputs import (
    answer_outputs,
    binary_answer,
    binary_output_default,
    error_body,
    model_metadata,
    server_metadata,
)
from gateway.oip.wire import InferOutput, InferRequest
from gateway.reply import JSON, Reply
from gateway.request import HEADER_LENGTH, inference_header_length, oip_headers, routing_of
from gateway.transport.base import Headers

_LIVE: Final = Reply(200, [JSON], b'{"live":true}')
_SERVER_METADATA: Final = Reply(
    200, [JSON], server_metadata(importlib.metadata.version("modelyard"))
)
_BINARY: Final = (b"content-type", b"application/octet-stream")
_DEFAULT_API: Final = "predict"
_ERROR_TEXT_CHARS: Final = 1000

#: Writes a BentoML model's answer as another front's message, from its outputs, the model's
#: name, the version that served and the request's id (the gRPC front: the serialized
#: `ModelInferResponse`, without the OIP JSON in between).
OutputsWriter = Callable[[list[InferOutput], str, str, str | None], bytes]
#: The content type of an answer an `OutputsWriter` wrote: the reply's first header, this very
#: tuple (an upstream's headers are never it; `Forwarder.reply` keeps the tuples it is given).
WRITTEN: Final = (b"content-type", b"application/x-modelyard-written")


class OipFront:
    __slots__ = ("follower", "forwarder")

    def __init__(self, follower: RouteFollower, forwarder: Forwarder) -> None:
        self.follower = follower
        self.forwarder = forwarder

    def server_live(self) -> Reply:
        return _LIVE

    def server_ready(self, readiness: Callable[[], Readiness] | None) -> Reply:
        """Ready once a route table arrived and the process's own verdict (if any) says so."""
        follower = self.follower
        table = follower.table
        verdict = readiness() if readiness is not None else None
        ready = table is not None and (verdict is None or verdict.ready)
        detail: dict[str, Any] = {
            "ready": ready,
            "revision": table.revision if table is not None else None,
            "registry": "reachable" if follower.registry_up else "unreachable",
        }
        if follower.problem:
            detail["problem"] = follower.problem
            detail["serving_last_table_since"] = follower.since
        if not ready:
            detail["error"] = "not ready: " + (
                "no route table yet" if table is None else "see not_ready and detail"
            )
        if verdict is not None:
            if verdict.detail:
                detail["detail"] = verdict.detail
            if verdict.not_ready:
                detail["not_ready"] = verdict.not_ready
        return Reply(200 if ready else 503, [JSON], msgspec.json.encode(detail))

    def server_metadata(self) -> Reply:
        """Name, version and the protocol extensions spoken (``GET /v2``)."""
        return _SERVER_METADATA

    def model_metadata(self, route: ModelRoute, version: int | None) -> Reply:
        """The metadata of the pinned version, else of the stable one (or the newest served):
        its inputs and outputs as its API declares them. `UnknownModel` for a version that is
        not served."""
        target = _served_version(route, version)
        if target is None:
            target = route.versions.get(route.stable or -1) or (
                route.versions[max(route.versions)] if route.versions else None
            )
        numbers = [version] if version is not None else sorted(route.versions)
        api = target.apis[0] if target is not None and target.apis else None
        platform = target.protocol if target is not None else "bentoml"
        body = model_metadata(
            route.name,
            [str(n) for n in numbers],
            platform,
            api.inputs if api is not None else [],
            api.tensors if api is not None else None,
            api.outputs if api is not None else None,
        )
        return Reply(200, [JSON], body)

    def model_ready(self, route: ModelRoute, version: int | None) -> Reply:
        """Whether the version (else the stable one) is served; `UnknownModel` for a version
        that is not."""
        if version is not None:
            _served_version(route, version)
            ready = True
        else:
            ready = route.stable in route.versions
        answer: dict[str, Any] = {"name": route.name, "ready": ready}
        if not ready:
            answer["error"] = f"model {route.name!r} has no stable version served"
        return Reply(200 if ready else 503, [JSON], msgspec.json.encode(answer))

    async def infer(
        self,
        table: RouteTable,
        route: ModelRoute,
        version: int | None,
        raw: Headers,
        body: bytes | InferRequest,
        hooks: RequestHooks | None,
        writer: OutputsWriter | None = None,
    ) -> Reply:
        """Inference, routed as any call to the model; `header_length` and binary tensor data
        (the extension) in both directions: ``Inference-Header-Content-Length`` in `raw`.
        `body` the request's bytes, or the request already decoded (the gRPC front: checked
        here as bytes are, encoded as JSON only for an OIP upstream). With `writer`, a BentoML
        model's successful answer is what it writes, with the content type `WRITTEN` (an OIP
        upstream's answer and every error stay OIP JSON)."""
        _served_version(route, version)
        routing = routing_of(route, raw, version, None, None)
        if version is None:
            _served_version(route, routing.version)  # a version pinned by a header
        header_length = inference_header_length(raw)
        if isinstance(body, InferRequest):
            request = check_request(body)
        else:
            request = decode_request(body, header_length)
        forwarder = self.forwarder
        choice = forwarder.choose(route, routing)
        if choice.route.protocol == "oip":
            path = f"/v2/models/{route.name}/infer".encode()
            forward = oip_headers(raw, header_length)
            if isinstance(body, InferRequest):
                body = request_json(body)
            answer, choice = await forwarder.send(route, choice, path, forward, body, hooks)
            reply = forwarder.reply(
                table, route, choice, answer.status, answer.body, answer.headers, hooks
            )
            length = [(k, v) for k, v in answer.headers if k == HEADER_LENGTH]
            return replace(reply, headers=[*reply.headers, *length]) if length else reply
        api = choice.route.apis[0] if choice.route.apis else None
        upstream_body = to_bentoml_body(
            request, api.inputs if api else None, api.tensors if api else None
        )
        path = b"/" + (api.name if api else _DEFAULT_API).encode()
        forward = oip_headers(raw)
        answer, choice = await forwarder.send(route, choice, path, forward, upstream_body, hooks)
        json_length = None
        if answer.status >= 400:
            text = answer.body.decode(errors="replace")[:_ERROR_TEXT_CHARS]
            out = error_body(f"version {choice.version} answered {answer.status}: {text}")
        elif writer is not None:
            outputs = answer_outputs(answer.body, request.outputs)
            out = writer(outputs, route.name, str(choice.version), request.id)
            return forwarder.reply(table, route, choice, answer.status, out, [WRITTEN], hooks)
        else:
            out, json_length = binary_answer(
                answer.body,
                model=route.name,
                version=str(choice.version),
                request_id=request.id,
                requested=request.outputs,
                binary_output=binary_output_default(request.parameters),
            )
        if json_length is None:
            return forwarder.reply(table, route, choice, answer.status, out, [JSON], hooks)
        reply = forwarder.reply(table, route, choice, answer.status, out, [_BINARY], hooks)
        return replace(reply, headers=[*reply.headers, (HEADER_LENGTH, str(json_length).encode())])


def request_json(request: InferRequest) -> bytes:
    """The OIP JSON of a decoded request, its unset fields left out (as a client sends it)."""
    found = msgspec.to_builtins(request)
    for tensor in (*found["inputs"], *(found["outputs"] or ())):
        for key in [key for key, value in tensor.items() if value is None]:
            del tensor[key]
    return msgspec.json.encode({k: v for k, v in found.items() if v is not None})


def _served_version(route: ModelRoute, version: int | None) -> VersionRoute | None:
    """The route of `version` (None when none is pinned); `UnknownModel` when it is not
    served (it does not exist, or takes no traffic)."""
    if version is None:
        return None
    target = route.versions.get(version)
    if target is None:
        served = ", ".join(map(str, sorted(route.versions))) or "none"
        raise UnknownModel(
            f"model {route.name!r} has no version {version} served (served: {served})",
            field="version",
        )
    return target
