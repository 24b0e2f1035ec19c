"""The gateway's hot path as a plain ASGI app (a framework handler costs more than the proxying
itself here): route each inference request, forward it over a pooled keep-alive connection,
answer with headers naming model, version, variant and route revision, and measure it.

    /models/{name}/{api}                 BentoML JSON passthrough (also {name}@{alias}, and
    /models/{name}/versions/{v}/{api}    a pin by header: x-modelyard-version / -alias)
    /v2/models/{name}[/versions/{v}]     Open Inference Protocol: metadata, /ready, /infer
    /v2/health/live, /v2/health/ready    OIP health
    /metrics                             Prometheus
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

import msgspec

from contract.health import Readiness
from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import ALIAS_HEADER, BUCKETS, VERSION_HEADER
from gateway import oip
from gateway.breaker import Breaker
from gateway.draws import Draws
from gateway.errors import (
    BadRequest,
    ConnectFailed,
    GatewayError,
    NoHealthyUpstream,
    Overloaded,
    PayloadTooLarge,
    UnknownModel,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.follow import RouteFollower
from gateway.health import UpstreamChecks
from gateway.metrics import GatewayMetrics
from gateway.routing import STABLE, Choice, choose, shadow_target
from gateway.shadow import ShadowCopy, ShadowQueue
from gateway.upstream import UpstreamResponse, Upstreams

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]  # names in lower case, as HTTP servers hand them over


class Reply(NamedTuple):
    """A whole answer; the server adds `content-length`."""

    status: int
    headers: Headers
    body: bytes


DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT: Final = 1024
STATUS: Final[dict[type[GatewayError], int]] = {
    BadRequest: 400,
    PayloadTooLarge: 413,
    UnknownModel: 404,
    Overloaded: 503,
    NoHealthyUpstream: 503,
    UpstreamTimeout: 504,
    UpstreamError: 502,
}
_JSON: Final = (b"content-type", b"application/json")
_FORWARDED: Final = frozenset({b"content-type", b"accept", b"traceparent", b"tracestate"})
_error = msgspec.json.Encoder()


class _Error(msgspec.Struct, omit_defaults=True):
    error_code: str
    message: str
    field: str | None = None
    error: str | None = None  # OIP's own error key


def _status(exc: GatewayError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


class Gateway:
    def __init__(
        self,
        follower: RouteFollower,
        upstreams: Upstreams,
        metrics: GatewayMetrics,
        shadow: ShadowQueue,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.follower = follower
        self.upstreams = upstreams
        self.metrics = metrics
        self.shadow = shadow
        self.max_body = max_body
        self.max_inflight = max_inflight
        self.inflight = 0
        self.breakers: dict[str, Breaker] = {}
        self.draws = Draws()
        #: Health checks of the upstreams (set by `running_gateway`), and the readiness of the
        #: process (set by the app: with a local deployer it knows more than the gateway).
        self.checks: UpstreamChecks | None = None
        self.readiness: Callable[[], Readiness] | None = None
        metrics.breakers = lambda: {u: b.state(time.monotonic()) for u, b in self.breakers.items()}

    # --- the transport-neutral entry, and ASGI on top of it -----------------------------------

    async def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        """Answer one request whose whole body has been read (and held to `max_body`). The
        fast HTTP server (gateway.server.fast_http) calls this directly; `__call__` is ASGI."""
        try:
            if path == "/metrics":
                self._sync_metrics()
                return Reply(200, [(b"content-type", b"text/plain; version=0.0.4")],
                             self.metrics.render())  # fmt: skip
            if path.startswith("/v2/"):
                return await self._oip(method, headers, body, path[4:])
            return await self._passthrough(method, headers, body, path[len("/models/") :])
        except GatewayError as exc:
            return error_reply(exc, path.startswith("/v2/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            body = await _read_body(receive, self.max_body)
        except PayloadTooLarge as exc:
            reply = error_reply(exc, path.startswith("/v2/"))
        else:
            reply = await self.handle(scope["method"], path, scope["headers"], body)
        headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    def _sync_metrics(self) -> None:
        table = self.follower.table
        self.metrics.route_revision = table.revision if table is not None else -1
        self.metrics.registry_up = self.follower.registry_up

    def _model(self, name: str) -> tuple[RouteTable, ModelRoute]:
        table = self.follower.table
        route = table.models.get(name) if table is not None else None
        if table is None or route is None:
            raise UnknownModel(f"no model named {name!r} is served here", field="model")
        return table, route

    # --- BentoML JSON passthrough -------------------------------------------------------------

    async def _passthrough(self, method: str, raw: Headers, body: bytes, rest: str) -> Reply:
        if method != "POST":
            raise UnknownModel("inference calls are POST /models/{name}/{api}", field="path")
        parts = rest.split("/")
        version: int | None = None
        alias: str | None = None
        if len(parts) == 2:
            name, api = parts
            if "@" in name:
                name, alias = name.split("@", 1)
        elif len(parts) == 4 and parts[1] == "versions":
            name, _, number, api = parts
            version = _version_number(number)
        else:
            raise UnknownModel("expected /models/{name}/{api}", field="path")
        table, route = self._model(name)
        headers = _headers(raw, route)
        version, alias = _header_pins(headers, version, alias)
        key = _sticky_key(route, headers, body)
        choice = choose(route, version=version, alias=alias, key=key, headers=headers,
                        draw=self.draws)  # fmt: skip
        forward = [(k, v) for k, v in raw if k in _FORWARDED]
        answer, choice = await self._call(route, choice, b"/" + api.encode(), forward, body)
        reply = self._answer(table, route, choice, answer.status, answer.body, answer.headers)
        self._maybe_shadow(route, choice, b"/" + api.encode(), forward, body, answer)
        return reply

    # --- Open Inference Protocol ----------------------------------------------------------------

    async def _oip(self, method: str, raw: Headers, body: bytes, rest: str) -> Reply:
        if rest in ("health/live", "health/ready"):
            return self._health(rest == "health/live")
        parts = rest.split("/")
        if len(parts) < 2 or parts[0] != "models":
            raise UnknownModel("unknown OIP path", field="path")
        name, tail = parts[1], parts[2:]
        version: int | None = None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = _version_number(tail[1]), tail[2:]
        table, route = self._model(name)
        action = tail[0] if tail else ""
        if action == "" and method == "GET":
            return self._metadata(route, version)
        if action == "ready" and method == "GET":
            ready = (version in route.versions) if version else route.stable in route.versions
            answer = msgspec.json.encode({"name": name, "ready": ready})
            return Reply(200 if ready else 503, [_JSON], answer)
        if action == "infer" and method == "POST":
            return await self._infer(raw, body, table, route, version)
        raise UnknownModel(f"unknown OIP call {method} /v2/{rest}", field="path")

    def _health(self, live: bool) -> Reply:
        if live:
            return Reply(200, [_JSON], b'{"live":true}')
        table = self.follower.table
        verdict = self.readiness() if self.readiness is not None else None
        ready = table is not None and (verdict is None or verdict.ready)
        detail: dict[str, Any] = {
            "ready": ready,
            "revision": table.revision if table is not None else None,
            "registry": "reachable" if self.follower.registry_up else "unreachable",
        }
        if self.follower.problem:
            detail["problem"] = self.follower.problem
            detail["serving_last_table_since"] = self.follower.since
        if verdict is not None:
            if verdict.detail:
                detail["detail"] = verdict.detail
            if verdict.not_ready:
                detail["not_ready"] = verdict.not_ready
        return Reply(200 if ready else 503, [_JSON], msgspec.json.encode(detail))

    def _metadata(self, route: ModelRoute, version: int | None) -> Reply:
        numbers = [version] if version is not None else sorted(route.versions)
        target = route.versions.get(version if version is not None else route.stable or -1)
        inputs = target.apis[0].inputs if target is not None and target.apis else []
        platform = target.protocol if target is not None else "bentoml"
        body = oip.model_metadata(route.name, [str(n) for n in numbers], platform, inputs)
        return Reply(200, [_JSON], body)

    async def _infer(
        self, raw: Headers, body: bytes, table: RouteTable, route: ModelRoute, version: int | None
    ) -> Reply:
        request = oip.decode_request(body)
        headers = _headers(raw, route)
        version, alias = _header_pins(headers, version, None)
        key = _sticky_key(route, headers, None) if route.policy.sticky else None
        choice = choose(route, version=version, alias=alias, key=key, headers=headers,
                        draw=self.draws)  # fmt: skip
        forward = [(k, v) for k, v in raw if k in (b"traceparent", b"tracestate")]
        forward.append(_JSON)
        if choice.route.protocol == "oip":
            path = f"/v2/models/{route.name}/infer".encode()
            answer, choice = await self._call(route, choice, path, forward, body)
            return self._answer(table, route, choice, answer.status, answer.body, [_JSON])
        api = choice.route.apis[0] if choice.route.apis else None
        upstream_body = oip.to_bentoml_body(request, api.inputs if api else None)
        path = b"/" + (api.name if api else "predict").encode()
        answer, choice = await self._call(route, choice, path, forward, upstream_body)
        if answer.status >= 400:
            text = answer.body.decode(errors="replace")[:1000]
            out = oip.error_body(f"version {choice.version} answered {answer.status}: {text}")
        else:
            out = oip.from_bentoml_answer(
                answer.body, model=route.name, version=str(choice.version),
                request_id=request.id, requested=request.outputs,
            )  # fmt: skip
        return self._answer(table, route, choice, answer.status, out, [_JSON])

    # --- calling upstreams ------------------------------------------------------------------------

    async def _call(
        self, route: ModelRoute, choice: Choice, path: bytes, headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[UpstreamResponse, Choice]:  # fmt: skip
        """Forward to the chosen version; if its upstream is ejected or refuses the connection
        (nothing was sent, so it is safe), go to the stable version instead."""
        if self.inflight >= self.max_inflight:
            raise Overloaded(f"over {self.max_inflight} requests in flight; retry shortly")
        self.inflight += 1
        started = time.perf_counter()
        try:
            breaker = self._breaker(choice.route.endpoint)
            if not breaker.allow(time.monotonic()):
                choice = self._fallback(route, choice, "its upstream is ejected")
                breaker = self._breaker(choice.route.endpoint)
            try:
                answer = await self._send(route, choice.route, path, headers, body, breaker)
            except ConnectFailed:
                choice = self._fallback(route, choice, "its upstream refused the connection")
                breaker = self._breaker(choice.route.endpoint)
                answer = await self._send(route, choice.route, path, headers, body, breaker)
        except GatewayError:
            self.metrics.observe(route.name, str(choice.version), choice.variant,
                                 time.perf_counter() - started, True)  # fmt: skip
            raise
        finally:
            self.inflight -= 1
        self.metrics.observe(route.name, str(choice.version), choice.variant,
                             time.perf_counter() - started, answer.status >= 500)  # fmt: skip
        return answer, choice

    def _fallback(self, route: ModelRoute, choice: Choice, why: str) -> Choice:
        stable = route.versions.get(route.stable) if route.stable is not None else None
        if stable is None or choice.version == route.stable or choice.variant == "pinned":
            raise NoHealthyUpstream(
                f"version {choice.version} of {route.name!r} cannot serve: {why}"
            )
        return Choice(stable.version, STABLE, stable)

    def _breaker(self, endpoint: str) -> Breaker:
        found = self.breakers.get(endpoint)
        if found is None:
            found = self.breakers[endpoint] = Breaker()
        return found

    async def _send(
        self, route: ModelRoute, target: VersionRoute, path: bytes,
        headers: list[tuple[bytes, bytes]], body: bytes, breaker: Breaker,
    ) -> UpstreamResponse:  # fmt: skip
        pool = self.upstreams.pool(target.endpoint)
        try:
            answer = await pool.request(
                b"POST", path, headers, body, route.policy.deadline_ms / 1000
            )
        except UpstreamTimeout:
            breaker.failure(time.monotonic())
            raise UpstreamTimeout(
                f"version {target.version} of {route.name!r} did not answer within the model's"
                f" {route.policy.deadline_ms} ms deadline"
            ) from None
        except UpstreamError:
            breaker.failure(time.monotonic())
            raise
        if answer.status >= 500:
            breaker.failure(time.monotonic())
        else:
            breaker.success()
        return answer

    def _answer(
        self, table: RouteTable, route: ModelRoute, choice: Choice, status: int, body: bytes,
        upstream_headers: Headers,
    ) -> Reply:  # fmt: skip
        headers = [(k, v) for k, v in upstream_headers if k == b"content-type"] or [_JSON]
        headers += [
            (b"x-modelyard-model", route.name.encode()),
            (b"x-modelyard-version", str(choice.version).encode()),
            (b"x-modelyard-variant", choice.variant.encode()),
            (b"x-modelyard-route-revision", str(table.revision).encode()),
        ]
        return Reply(status, headers, body)

    def _maybe_shadow(
        self, route: ModelRoute, choice: Choice, path: bytes, headers: list[tuple[bytes, bytes]],
        body: bytes, answer: UpstreamResponse,
    ) -> None:  # fmt: skip
        if route.policy.shadow is None or answer.status >= 400:
            return
        target = shadow_target(route, choice.version, random.randrange(BUCKETS))
        if target is not None:
            origin = self._shadow_origin()
            self.shadow.offer(ShadowCopy(route, target, path, headers, body, answer.body, origin))

    def _shadow_origin(self) -> object | None:
        """What a shadow copy's trace links to: nothing here (`TracedGateway` overrides it)."""
        return None


# --- small helpers --------------------------------------------------------------------------------


def error_reply(exc: GatewayError, oip_call: bool) -> Reply:
    """A JSON error naming the code and the field (and OIP's own `error` key on /v2/)."""
    body = _Error(exc.code, exc.message, exc.field, exc.message if oip_call else None)
    extra = [(b"retry-after", b"1")] if isinstance(exc, Overloaded) else []
    return Reply(_status(exc), [_JSON, *extra], _error.encode(body))


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_PIN_HEADERS: Final = frozenset({VERSION_HEADER.encode(), ALIAS_HEADER.encode()})


def _headers(raw: Headers, route: ModelRoute) -> dict[str, str]:
    """Only the headers routing reads (pins, the policy's rules and sticky key), decoded:
    most requests need two lookups, not every header of the request turned into text."""
    wanted = _PIN_HEADERS
    policy = route.policy
    if policy.rules or policy.sticky is not None:
        names = {r.header.lower() for r in policy.rules}
        if policy.sticky is not None:
            names.add((policy.sticky.header or "cookie").lower())
        wanted = wanted | {n.encode() for n in names}
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in raw if k in wanted}


def _version_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"version must be a positive number, got {text[:20]!r}", field="version")
    return int(text)


def _header_pins(
    headers: dict[str, str], version: int | None, alias: str | None
) -> tuple[int | None, str | None]:
    if version is None and alias is None:
        if VERSION_HEADER in headers:
            return _version_number(headers[VERSION_HEADER]), None
        return None, headers.get(ALIAS_HEADER)
    return version, alias


def _sticky_key(route: ModelRoute, headers: dict[str, str], body: bytes | None) -> str | None:
    sticky = route.policy.sticky
    if sticky is None:
        return None
    if sticky.header is not None:
        return headers.get(sticky.header.lower())
    if sticky.cookie is not None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == sticky.cookie:
                return value
        return None
    if sticky.json_field is not None and body:
        with contextlib.suppress(msgspec.DecodeError):
            found = msgspec.json.decode(body)
            if isinstance(found, dict) and sticky.json_field in found:
                return str(found[sticky.json_field])
    return None
