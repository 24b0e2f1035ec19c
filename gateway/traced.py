"""The gateway with OpenTelemetry spans: chosen at start when tracing is on, so the plain
`Gateway` (tracing off, the default) pays nothing, not even a branch.

Per inference request:

- a SERVER span (`POST /models/{name}/{api}`, `POST /v2/models/{name}/infer`, ...), the child
  of an incoming W3C `traceparent` when there is one, with the model, the version that answered
  (`model.version`, the same text as the `x-modelyard-version` header), the variant, the route
  revision, the rollout or experiment steering the model (`modelyard.rollout.id`), the
  fallback taken (`modelyard.fallback`), the upstream attempts and the status;
- a CLIENT span per upstream call, its child, with the upstream, version, status, the breaker's
  state after the call and whether it was a retry; its `traceparent` replaces the caller's in
  the forwarded headers, so BentoML's own server span becomes the CLIENT span's child;
- a CLIENT span per shadow copy, the root of a trace of its own (it runs after the answer) with a
  link to the primary request's SERVER span, and the agreement as an attribute.

Spans are made with the SDK's tracer directly (no ASGI instrumentation middleware: it costs
several times more) and handed along in a context variable local to the request's task.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Final, Protocol

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation import set_span_in_context

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import SHADOW_VARIANT
from gateway.breaker import Breaker
from gateway.errors import GatewayError
from gateway.follow import RouteFollower
from gateway.metrics import GatewayMetrics
from gateway.proxy import Gateway, Headers, Reply
from gateway.routing import Choice
from gateway.shadow import ShadowCopy, ShadowQueue
from gateway.upstream import UpstreamResponse, Upstreams

TRACER_NAME: Final = "modelyard.gateway"
_TRACE_HEADERS: Final = frozenset({b"traceparent", b"tracestate"})
_UNTRACED: Final = "/v2/health/"

# Attribute names: OpenTelemetry's HTTP conventions where they exist, `model.*` and
# `modelyard.*` for ours.
MODEL: Final = "model.name"
VERSION: Final = "model.version"
VARIANT: Final = "modelyard.variant"
REVISION: Final = "modelyard.route.revision"
ROLLOUT: Final = "modelyard.rollout.id"  # the rollout or experiment steering the model, if any
FALLBACK: Final = "modelyard.fallback"
ATTEMPTS: Final = "modelyard.upstream.attempts"
RETRY: Final = "modelyard.retry"
BREAKER: Final = "modelyard.breaker.state"
AGREED: Final = "modelyard.shadow.agreed"
STATUS: Final = "http.response.status_code"


class Tracing(Protocol):
    """What the gateway needs of a running tracer provider (`adapters.telemetry` gives one)."""

    @property
    def propagator(self) -> TextMapPropagator: ...

    def tracer(self, name: str) -> Tracer: ...


class _Request:
    """What the spans of one request share: the SERVER span and the upstream attempts."""

    __slots__ = ("attempts", "recording", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.recording = span.is_recording()  # sampled
        self.attempts = 0


_current: ContextVar[_Request | None] = ContextVar("modelyard_gateway_request", default=None)


def span_name(method: str, path: str) -> str:
    """A low-cardinality name: the route's template, never the model's name."""
    if path.startswith("/v2/"):
        if path.startswith("/v2/health/"):
            return f"{method} {path}"
        tail = path.rsplit("/", 1)[-1]
        suffix = f"/{tail}" if tail in ("infer", "ready") else ""
        pinned = "/versions/{version}" if "/versions/" in path else ""
        return f"{method} /v2/models/{{name}}{pinned}{suffix}"
    if "/versions/" in path:
        return f"{method} /models/{{name}}/versions/{{version}}/{{api}}"
    return f"{method} /models/{{name}}/{{api}}"


def _inject(span: Span, headers: Headers) -> Headers:
    """`headers` with the caller's trace headers replaced by `span`'s. The same bytes as
    `TraceContextTextMapPropagator.inject` (a unit test checks), formatted directly: it runs
    on every request, sampled or not, and the propagator's context and dict cost 3x more."""
    context = span.get_span_context()
    out = [h for h in headers if h[0] not in _TRACE_HEADERS]
    out.append(
        (b"traceparent", b"00-%032x-%016x-%02x" % (context.trace_id, context.span_id,
                                                    context.trace_flags))
    )  # fmt: skip
    if context.trace_state:
        out.append((b"tracestate", context.trace_state.to_header().encode("latin-1")))
    return out


class TracedGateway(Gateway):
    def __init__(
        self,
        follower: RouteFollower,
        upstreams: Upstreams,
        metrics: GatewayMetrics,
        shadow: ShadowQueue,
        *,
        tracing: Tracing,
        max_body: int,
        max_inflight: int,
    ) -> None:
        super().__init__(
            follower, upstreams, metrics, shadow, max_body=max_body, max_inflight=max_inflight
        )
        self.tracing = tracing
        self.tracer: Tracer = tracing.tracer(TRACER_NAME)

    def _parent(self, headers: Headers) -> Context | None:
        carrier: dict[str, str] | None = None
        for name, value in headers:
            if name in _TRACE_HEADERS:
                carrier = carrier or {}
                carrier[name.decode()] = value.decode("latin-1")
        return self.tracing.propagator.extract(carrier) if carrier else None

    async def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        if path == "/metrics" or path.startswith(_UNTRACED):  # probes and scrapes: no spans
            return await super().handle(method, path, headers, body)
        # No attributes before the sampler decides: an unsampled request builds no dict.
        span = self.tracer.start_span(
            span_name(method, path), context=self._parent(headers), kind=SpanKind.SERVER
        )
        request = _Request(span)
        token = _current.set(request)
        if not request.recording:  # not sampled: only the trace context travels on
            try:
                return await super().handle(method, path, headers, body)
            finally:
                _current.reset(token)
                span.end()
        span.set_attributes({"http.request.method": method, "url.path": path})
        status = 0
        try:
            reply = await super().handle(method, path, headers, body)
            status = reply.status
            return reply
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            _current.reset(token)
            if request.attempts:
                span.set_attribute(ATTEMPTS, request.attempts)
            if status:
                span.set_attribute(STATUS, status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            span.end()

    def _answer(
        self, table: RouteTable, route: ModelRoute, choice: Choice, status: int, body: bytes,
        upstream_headers: Headers,
    ) -> Reply:  # fmt: skip
        request = _current.get()
        if request is not None and request.recording:
            request.span.set_attributes(
                {
                    MODEL: route.name,
                    VERSION: str(choice.version),
                    VARIANT: choice.variant,
                    REVISION: table.revision,
                }
            )
            if route.policy.steered_by:
                request.span.set_attribute(ROLLOUT, route.policy.steered_by)
        return super()._answer(table, route, choice, status, body, upstream_headers)

    def _fallback(self, route: ModelRoute, choice: Choice, why: str) -> Choice:
        chosen = super()._fallback(route, choice, why)  # raises when there is none
        request = _current.get()
        if request is not None and request.recording:
            request.span.set_attribute(FALLBACK, why)
            request.span.add_event(
                "fallback",
                {"from.version": str(choice.version), "to.version": str(chosen.version),
                 "reason": why},
            )  # fmt: skip
        return chosen

    async def _send(
        self, route: ModelRoute, target: VersionRoute, path: bytes,
        headers: list[tuple[bytes, bytes]], body: bytes, breaker: Breaker,
    ) -> UpstreamResponse:  # fmt: skip
        request = _current.get()
        if request is None or not request.recording:  # unsampled: no CLIENT span of its own
            if request is not None:
                headers = _inject(request.span, headers)
            return await super()._send(route, target, path, headers, body, breaker)
        parent = set_span_in_context(request.span)
        retry = request.attempts > 0
        request.attempts += 1
        span = self.tracer.start_span(
            f"POST {path.decode(errors='replace')}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                MODEL: route.name,
                VERSION: str(target.version),
                "server.address": target.endpoint,
                "http.request.method": "POST",
                RETRY: retry,
            },
        )
        try:
            answer = await super()._send(route, target, path, _inject(span, headers), body, breaker)
        except GatewayError as exc:
            span.set_attribute("error.type", exc.code)
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR))
            raise
        else:
            span.set_attribute(STATUS, answer.status)
            if answer.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return answer
        finally:
            span.set_attribute(BREAKER, breaker.state(time.monotonic()))
            span.end()

    def _shadow_origin(self) -> object | None:
        request = _current.get()
        return request.span.get_span_context() if request is not None else None


class TracedShadowQueue(ShadowQueue):
    """Shadow copies with a span each: a trace of its own, linked to the primary request."""

    def __init__(self, upstreams: Upstreams, metrics: GatewayMetrics, tracing: Tracing) -> None:
        super().__init__(upstreams, metrics)
        self.tracing = tracing
        self.tracer = tracing.tracer(TRACER_NAME)

    async def _compare(self, copy: ShadowCopy) -> bool | None:
        origin = copy.origin
        links = [Link(origin)] if isinstance(origin, SpanContext) and origin.is_valid else []
        span = self.tracer.start_span(
            f"shadow POST {copy.path.decode(errors='replace')}",
            context=Context(),  # a new trace: the copy is not part of the answer's latency
            kind=SpanKind.CLIENT,
            links=links,
            attributes={
                MODEL: copy.route.name,
                VERSION: str(copy.target.version),
                VARIANT: SHADOW_VARIANT,
                "server.address": copy.target.endpoint,
                **({ROLLOUT: copy.route.policy.steered_by} if copy.route.policy.steered_by else {}),
            },
        )
        try:
            traced = copy._replace(headers=_inject(span, copy.headers))
            agreed = await super()._compare(traced)
            if agreed is not None:
                span.set_attribute(AGREED, agreed)
            else:
                span.set_status(Status(StatusCode.ERROR, "no comparable answer"))
            return agreed
        finally:
            span.end()
