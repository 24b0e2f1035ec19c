"""The gateway's HTTP front: one request in (method, path, headers, whole body), one `Reply` out.

The fast HTTP server (gateway.server.fast_http) calls `Gateway.start`, which answers through a
`respond` callback (gateway.respond): a passthrough call in the common case takes the callback
lane (gateway.lane), with no Task or coroutine at all; anything else runs the coroutine that
`Gateway.handle` returns, in one Task. `handle` is also what `__call__` (the same as a plain
ASGI app: a framework handler costs more than the proxying itself) and other callers await. The
paths are read by gateway.request; the BentoML JSON passthrough is answered here, the Open
Inference Protocol by gateway.oip.front, both forwarding through gateway.forward.

With hooks (tracing on) `handle` tells them when a request starts and how it ended; without,
`handle` is the plain path itself, with no test for hooks at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, cast

from contract.health import Readiness
from contract.routes import ModelRoute, RouteTable
from gateway.breaker import Breaker
from gateway.errors import GatewayError, PayloadTooLarge, UnknownModel
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.health import UpstreamChecks
from gateway.hooks import AttemptEnd, Hooks, LaneRequestHooks, RequestHooks
from gateway.lane import Lane, ended
from gateway.metrics import GatewayMetrics
from gateway.oip.front import OipFront
from gateway.reply import Reply, error_reply
from gateway.request import (
    INFER,
    INVOKE,
    METRICS,
    MODEL_METADATA,
    MODEL_READY,
    SERVER_LIVE,
    SERVER_METADATA,
    SERVER_READY,
    Call,
    is_oip,
    parse,
    routing_of,
    served,
)
from gateway.respond import Respond, in_task
from gateway.routing import Choice, choose
from gateway.transport.base import TRACE_CONTEXT, Headers, UpstreamResponse
from gateway.transport.http1 import HEAD_END, with_end

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handle = Callable[[str, str, Headers, bytes], Coroutine[Any, Any, Reply]]

DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
_METRICS_TYPE: Final = (b"content-type", b"text/plain; version=0.0.4")


class Gateway:
    def __init__(
        self,
        follower: RouteFollower,
        forwarder: Forwarder,
        *,
        hooks: Hooks | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.follower = follower
        self.forwarder = forwarder
        self.metrics: GatewayMetrics = forwarder.metrics
        self.oip = OipFront(follower, forwarder)
        self.hooks = hooks
        self.max_body = max_body
        #: Health checks of the upstreams (set by `running_gateway`), and the readiness of the
        #: process (set by the app: with a local deployer it knows more than the gateway).
        self.checks: UpstreamChecks | None = None
        self.readiness: Callable[[], Readiness] | None = None
        #: Answer one request whose whole body has been read (and held to `max_body`).
        self.handle: Handle = self._answer if hooks is None else self._observed
        self._hear = hooks.request if hooks is not None else _unheard
        #: a new trace's decision made before, and what decides when it left it open (hooks
        #: that are `FreshRoots`; without: `request` decides every request)
        self._fresh: Callable[[], bytes | None] = getattr(hooks, "fresh", _undecided)
        self._root: Callable[[str, str, Headers], RequestHooks | Headers | None] = getattr(
            hooks, "root", self._hear
        )
        #: whether a sampled request's hooks are `LaneRequestHooks` (the lane can carry it)
        self._lane_hooks = hooks is not None and hooks.lane
        self.metrics.breakers = forwarder.resilient.states
        self.lane = Lane.of(forwarder, self._forwarded)

    @property
    def breakers(self) -> dict[str, Breaker]:
        """Each upstream's breaker (by base URL), for status pages and readiness."""
        return self.forwarder.resilient.breakers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        try:
            body = await _read_body(receive, self.max_body)
        except PayloadTooLarge as exc:
            reply = error_reply(exc, is_oip(path))
        else:
            reply = await self.handle(scope["method"], path, scope["headers"], body)
        headers = [*reply.headers, (b"content-length", str(len(reply.body)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    def start(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        respond: Respond,
        context: bool = True,
    ) -> None:
        """Answer one request through `respond` (called once, now or later): on the callback
        lane when it can be (gateway.lane), else by `handle`'s coroutine in one Task. The same
        answer either way. `context`: whether `headers` may hold the caller's trace context
        (the fast HTTP server says False when it saw none: with tracing on, no loop over the
        headers looking for it; tracing_instr, traced0: 1.1k instructions a request less)."""
        end = HEAD_END
        sampled: LaneRequestHooks | None = None
        if self.hooks is not None:
            if context:  # it may hold the caller's trace context: `request` decides if it does
                for name, _ in headers:
                    if name in TRACE_CONTEXT:
                        break
                else:
                    context = False
            fresh = None if context else self._fresh()  # a new trace, decided in a block
            if fresh is not None:  # unsampled (the common case): its `traceparent` ends the head
                end = fresh
            else:
                heard = (
                    self._hear(method, path, headers)
                    if context
                    else self._root(method, path, headers)
                )
                if isinstance(heard, list):  # unsampled: other headers (the trace context)
                    headers = heard
                elif heard is not None:  # sampled: the hooks hear it all
                    if not self._lane_hooks:  # on the coroutine path
                        in_task(self._heard(method, path, headers, body, heard), respond)
                        return
                    sampled = cast(LaneRequestHooks, heard)
        try:
            call = parse(method, path)
        except GatewayError as exc:
            self._refused(error_reply(exc, is_oip(path)), respond, sampled)
            return
        if call.kind != INVOKE:
            if end is not HEAD_END:
                headers = with_end(headers, end)
            other = self._other(call, method, path, headers, body, sampled)
            in_task(other if sampled is None else ended(other, sampled), respond)
            return
        try:
            table, route, choice, upstream_path, forward = self._routed(call, headers, body)
        except GatewayError as exc:
            self._refused(error_reply(exc, False), respond, sampled)  # /models/...: not OIP
            return
        if sampled is not None and context:  # the caller's trace context: the attempt's instead
            forward = [h for h in forward if h[0] not in TRACE_CONTEXT]
        lane = self.lane
        if (
            lane is None
            or route.policy.shadow is not None
            or not lane.send(
                table, route, choice, upstream_path, forward, body, respond, end, sampled
            )
        ):
            if end is not HEAD_END:
                forward = with_end(forward, end)
            answer = self._forwarded(table, route, choice, upstream_path, forward, body, sampled)
            in_task(answer if sampled is None else ended(answer, sampled), respond)

    @staticmethod
    def _refused(reply: Reply, respond: Respond, hooks: RequestHooks | None) -> None:
        """A request answered with an error before it was routed."""
        if hooks is not None:
            hooks.end(reply.status, None)
        respond(reply)

    def _observed(
        self, method: str, path: str, headers: Headers, body: bytes
    ) -> Coroutine[Any, Any, Reply]:
        """`handle` with hooks: a request they leave out (None, or only other headers: an
        unsampled request's trace context) is answered by the plain path's coroutine itself,
        with no frame of ours around it."""
        hooks = self._hear(method, path, headers)
        if isinstance(hooks, list):  # the common case first (an unsampled request)
            return self._answer(method, path, hooks, body)
        if hooks is None:
            return self._answer(method, path, headers, body)
        return self._heard(method, path, headers, body, hooks)

    async def _heard(
        self, method: str, path: str, headers: Headers, body: bytes, hooks: RequestHooks
    ) -> Reply:
        try:
            reply = await self._answer(method, path, headers, body, hooks)
        except BaseException as exc:
            hooks.end(0, exc)
            raise
        hooks.end(reply.status, None)
        return reply

    def _answer(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        hooks: RequestHooks | None = None,
    ) -> Coroutine[Any, Any, Reply]:
        """The coroutine that answers: a passthrough call's own (`_invoke`), not one more
        awaiting it (a coroutine frame less on every inference request's way down and back
        up, measured with loadtests/hotpath_profile.py)."""
        try:
            call = parse(method, path)
        except GatewayError as exc:
            return _ready(error_reply(exc, is_oip(path)))
        if call.kind == INVOKE:
            return self._invoke(call, headers, body, hooks)
        return self._other(call, method, path, headers, body, hooks)

    async def _other(
        self,
        call: Call,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        hooks: RequestHooks | None,
    ) -> Reply:
        try:
            kind = call.kind
            if kind == METRICS:
                return self._metrics()
            if kind == SERVER_LIVE:
                return self.oip.server_live()
            if kind == SERVER_READY:
                return self.oip.server_ready(self.readiness)
            if kind == SERVER_METADATA:
                return self.oip.server_metadata()
            table = self.follower.table
            route = served(table, call.model)
            assert table is not None
            if kind == INFER:
                return await self.oip.infer(table, route, call.version, headers, body, hooks)
            if kind == MODEL_METADATA:
                return self.oip.model_metadata(route, call.version)
            if kind == MODEL_READY:
                return self.oip.model_ready(route, call.version)
            raise UnknownModel(f"unknown OIP call {method} {path}", field="path")
        except GatewayError as exc:
            return error_reply(exc, is_oip(path))

    def _invoke(
        self, call: Call, raw: Headers, body: bytes, hooks: RequestHooks | None
    ) -> Coroutine[Any, Any, Reply]:
        """The BentoML JSON passthrough: the body goes to the chosen version's API as it is.
        The routing decision is made at once; the coroutine returned forwards it."""
        try:
            table, route, choice, path, forward = self._routed(call, raw, body)
        except GatewayError as exc:
            return _ready(error_reply(exc, False))  # /models/...: not an OIP path
        return self._forwarded(table, route, choice, path, forward, body, hooks)

    def _routed(
        self, call: Call, raw: Headers, body: bytes
    ) -> tuple[RouteTable, ModelRoute, Choice, bytes, Headers]:
        """A passthrough call's route, the version chosen, and the upstream path and headers."""
        table = self.follower.table
        route = table.models.get(call.model) if table is not None else None
        if route is None:
            route = served(table, call.model)  # (raises: `served`'s common case is inlined)
        assert table is not None
        forward: Headers = []  # `passthrough_headers(raw)`, in routing_of's loop
        routing = routing_of(route, raw, call.version, call.alias, body, forward)
        # `Forwarder.choose`, inlined: one frame less on every passthrough call; its arguments
        # by position: a call with keywords cost 0.4k instructions more
        forwarder = self.forwarder
        choice = choose(
            route,
            routing.version,
            routing.alias,
            routing.key,
            routing.headers,
            forwarder.draws,
            forwarder.buckets,
        )
        return table, route, choice, b"/" + call.api.encode(), forward

    async def _forwarded(
        self,
        table: RouteTable,
        route: ModelRoute,
        choice: Choice,
        path: bytes,
        forward: Headers,
        body: bytes,
        hooks: RequestHooks | None,
        underway: Awaitable[UpstreamResponse] | None = None,
        started: float = 0.0,
        underway_attempt: AttemptEnd | None = None,
    ) -> Reply:
        """A passthrough call from its routing decision on: send, answer, offer the shadow.
        `underway`, `started`, `underway_attempt`: a request the callback lane hands over
        (gateway.lane)."""
        forwarder = self.forwarder
        try:
            answer, choice = await forwarder.send(
                route, choice, path, forward, body, hooks, underway, started, underway_attempt
            )
            reply = forwarder.reply(
                table, route, choice, answer.status, answer.body, answer.headers, hooks
            )
            if route.policy.shadow is not None:  # (tested here: no call without a shadow)
                forwarder.offer_shadow(route, choice, path, forward, body, answer, hooks)
        except GatewayError as exc:
            return error_reply(exc, False)  # /models/...: not an OIP path
        return reply

    def _metrics(self) -> Reply:
        table = self.follower.table
        metrics = self.metrics
        metrics.route_revision = table.revision if table is not None else -1
        metrics.route_models = len(table.models) if table is not None else 0
        metrics.registry_up = self.follower.registry_up
        return Reply(200, [_METRICS_TYPE], metrics.render())


def _undecided() -> None:
    return None


def _unheard(method: str, path: str, headers: Headers) -> None:
    return None  # (no hooks: `_observed` is never `handle` then)


async def _ready(reply: Reply) -> Reply:
    return reply


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
