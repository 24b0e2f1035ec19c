"""OpenTelemetry spans for the gateway, as its hooks (gateway.hooks): given to the gateway at
start when tracing is on, so that with tracing off (the default) no hook is called at all.

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
several times more); a request's hooks object holds its SERVER span.
"""

from __future__ import annotations

from typing import Final, Protocol

from msgspec.structs import replace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation import set_span_in_context

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.traffic import SHADOW_VARIANT
from gateway.errors import GatewayError
from gateway.routing import Choice
from gateway.shadow import ShadowCopy
from gateway.transport.base import Headers, UpstreamRequest, UpstreamResponse

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


def span_name(method: str, path: str) -> str:
    """A low-cardinality name: the route's template, never the model's name."""
    if path == "/v2":
        return f"{method} /v2"
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
    ids = (context.trace_id, context.span_id, context.trace_flags)
    out.append((b"traceparent", b"00-%032x-%016x-%02x" % ids))
    if context.trace_state:
        out.append((b"tracestate", context.trace_state.to_header().encode("latin-1")))
    return out


class TracingHooks:
    """The gateway's hooks (gateway.hooks.Hooks) with a tracer provider behind them."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.tracer: Tracer = tracing.tracer(TRACER_NAME)

    def _parent(self, headers: Headers) -> Context | None:
        carrier: dict[str, str] | None = None
        for name, value in headers:
            if name in _TRACE_HEADERS:
                carrier = carrier or {}
                carrier[name.decode()] = value.decode("latin-1")
        return self.tracing.propagator.extract(carrier) if carrier else None

    def request(
        self, method: str, path: str, headers: Headers
    ) -> _RequestSpan | _UnsampledRequest | None:
        if path == "/metrics" or path.startswith(_UNTRACED):  # probes and scrapes: no spans
            return None
        # No attributes before the sampler decides: an unsampled request builds no dict.
        span = self.tracer.start_span(
            span_name(method, path), context=self._parent(headers), kind=SpanKind.SERVER
        )
        if not span.is_recording():  # not sampled: only the trace context travels on
            return _UnsampledRequest(span)
        span.set_attributes({"http.request.method": method, "url.path": path})
        return _RequestSpan(span, self.tracer)

    def shadow(self, copy: ShadowCopy) -> _ShadowSpan:
        return _ShadowSpan(self.tracer, copy)


class _UnsampledRequest:
    """A request the sampler left out: its trace context still goes to the upstream."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def attempt(
        self, route: ModelRoute, target: VersionRoute, request: UpstreamRequest
    ) -> _Injected:
        return _Injected(replace(request, headers=_inject(self.span, request.headers)))

    def fallback(self, route: ModelRoute, before: Choice, after: Choice, why: str) -> None:
        return None

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Choice) -> None:
        return None

    def origin(self) -> object | None:
        return self.span.get_span_context()

    def end(self, status: int, error: BaseException | None) -> None:
        self.span.end()


class _Injected:
    """An upstream attempt of an unsampled request: no CLIENT span of its own."""

    __slots__ = ("request",)

    def __init__(self, request: UpstreamRequest) -> None:
        self.request = request

    def end(
        self, answer: UpstreamResponse | None, error: BaseException | None, breaker: str
    ) -> None:
        return None


class _RequestSpan:
    """A sampled request: its SERVER span, and the count of its upstream attempts."""

    __slots__ = ("attempts", "span", "tracer")

    def __init__(self, span: Span, tracer: Tracer) -> None:
        self.span = span
        self.tracer = tracer
        self.attempts = 0

    def attempt(
        self, route: ModelRoute, target: VersionRoute, request: UpstreamRequest
    ) -> _AttemptSpan:
        retry = self.attempts > 0
        self.attempts += 1
        span = self.tracer.start_span(
            f"POST {request.path.decode(errors='replace')}",
            context=set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes={
                MODEL: route.name,
                VERSION: str(target.version),
                "server.address": target.endpoint,
                "http.request.method": "POST",
                RETRY: retry,
            },
        )
        return _AttemptSpan(span, replace(request, headers=_inject(span, request.headers)))

    def fallback(self, route: ModelRoute, before: Choice, after: Choice, why: str) -> None:
        self.span.set_attribute(FALLBACK, why)
        self.span.add_event(
            "fallback",
            {"from.version": str(before.version), "to.version": str(after.version), "reason": why},
        )

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Choice) -> None:
        self.span.set_attributes(
            {
                MODEL: route.name,
                VERSION: str(choice.version),
                VARIANT: choice.variant,
                REVISION: table.revision,
            }
        )
        if route.policy.steered_by:
            self.span.set_attribute(ROLLOUT, route.policy.steered_by)

    def origin(self) -> object | None:
        return self.span.get_span_context()

    def end(self, status: int, error: BaseException | None) -> None:
        span = self.span
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        if self.attempts:
            span.set_attribute(ATTEMPTS, self.attempts)
        if status:
            span.set_attribute(STATUS, status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()


class _AttemptSpan:
    """A CLIENT span per upstream attempt; the upstream gets its trace context."""

    __slots__ = ("request", "span")

    def __init__(self, span: Span, request: UpstreamRequest) -> None:
        self.span = span
        self.request = request

    def end(
        self, answer: UpstreamResponse | None, error: BaseException | None, breaker: str
    ) -> None:
        span = self.span
        if isinstance(error, GatewayError):
            span.set_attribute("error.type", error.code)
            span.set_status(Status(StatusCode.ERROR, error.message))
        elif error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR))
        elif answer is not None:
            span.set_attribute(STATUS, answer.status)
            if answer.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.set_attribute(BREAKER, breaker)
        span.end()


class _ShadowSpan:
    """A shadow copy's CLIENT span: a trace of its own, linked to the primary request."""

    __slots__ = ("copy", "span")

    def __init__(self, tracer: Tracer, copy: ShadowCopy) -> None:
        origin = copy.origin
        links = [Link(origin)] if isinstance(origin, SpanContext) and origin.is_valid else []
        steered_by = copy.route.policy.steered_by
        self.span = tracer.start_span(
            f"shadow POST {copy.path.decode(errors='replace')}",
            context=Context(),  # a new trace: the copy is not part of the answer's latency
            kind=SpanKind.CLIENT,
            links=links,
            attributes={
                MODEL: copy.route.name,
                VERSION: str(copy.target.version),
                VARIANT: SHADOW_VARIANT,
                "server.address": copy.target.endpoint,
                **({ROLLOUT: steered_by} if steered_by else {}),
            },
        )
        self.copy = copy._replace(headers=_inject(self.span, copy.headers))

    def end(self, agreed: bool | None, error: BaseException | None) -> None:
        if error is None:
            if agreed is not None:
                self.span.set_attribute(AGREED, agreed)
            else:
                self.span.set_status(Status(StatusCode.ERROR, "no comparable answer"))
        self.span.end()
