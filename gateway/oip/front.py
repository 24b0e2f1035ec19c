"""The gateway's Open Inference Protocol calls: server health, model metadata, model readiness
and inference. Each takes what its request says (parsed by gateway.request) and returns the
whole answer; the HTTP front (gateway.front) maps `/v2/...` paths to them, and a gRPC front
would map its methods to the same calls.

Inference to an OIP upstream forwards the body as it came; to a BentoML upstream, each input
becomes the API argument of that name and the answer is translated back (gateway.oip). Either
way the request body is decoded once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from contract.health import Readiness
from contract.routes import ModelRoute, RouteTable
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.hooks import RequestHooks
from gateway.oip.inputs import decode_request, to_bentoml_body
from gateway.oip.outputs import error_body, from_bentoml_answer, model_metadata
from gateway.reply import JSON, Reply
from gateway.request import oip_headers, routing_of
from gateway.transport.base import Headers

_LIVE: Final = Reply(200, [JSON], b'{"live":true}')
_DEFAULT_API: Final = "predict"
_ERROR_TEXT_CHARS: Final = 1000


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
        if verdict is not None:
            if verdict.detail:
                detail["detail"] = verdict.detail
            if verdict.not_ready:
                detail["not_ready"] = verdict.not_ready
        return Reply(200 if ready else 503, [JSON], msgspec.json.encode(detail))

    def model_metadata(self, route: ModelRoute, version: int | None) -> Reply:
        numbers = [version] if version is not None else sorted(route.versions)
        target = route.versions.get(version if version is not None else route.stable or -1)
        inputs = target.apis[0].inputs if target is not None and target.apis else []
        platform = target.protocol if target is not None else "bentoml"
        body = model_metadata(route.name, [str(n) for n in numbers], platform, inputs)
        return Reply(200, [JSON], body)

    def model_ready(self, route: ModelRoute, version: int | None) -> Reply:
        ready = (version in route.versions) if version else route.stable in route.versions
        answer = msgspec.json.encode({"name": route.name, "ready": ready})
        return Reply(200 if ready else 503, [JSON], answer)

    async def infer(
        self,
        table: RouteTable,
        route: ModelRoute,
        version: int | None,
        raw: Headers,
        body: bytes,
        hooks: RequestHooks | None,
    ) -> Reply:
        request = decode_request(body)
        forwarder = self.forwarder
        choice = forwarder.choose(route, routing_of(route, raw, version, None, None))
        forward = oip_headers(raw)
        if choice.route.protocol == "oip":
            path = f"/v2/models/{route.name}/infer".encode()
            answer, choice = await forwarder.send(route, choice, path, forward, body, hooks)
            return forwarder.reply(table, route, choice, answer.status, answer.body, [JSON], hooks)
        api = choice.route.apis[0] if choice.route.apis else None
        upstream_body = to_bentoml_body(request, api.inputs if api else None)
        path = b"/" + (api.name if api else _DEFAULT_API).encode()
        answer, choice = await forwarder.send(route, choice, path, forward, upstream_body, hooks)
        if answer.status >= 400:
            text = answer.body.decode(errors="replace")[:_ERROR_TEXT_CHARS]
            out = error_body(f"version {choice.version} answered {answer.status}: {text}")
        else:
            out = from_bentoml_answer(
                answer.body,
                model=route.name,
                version=str(choice.version),
                request_id=request.id,
                requested=request.outputs,
            )
        return forwarder.reply(table, route, choice, answer.status, out, [JSON], hooks)
