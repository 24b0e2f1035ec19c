"""The registry's spans, installed only when tracing is on (so they cost nothing otherwise):

- `tracing_middleware`: a SERVER span per API call, named by its route template
  (`GET /api/v1/models/{name}`), the child of an incoming `traceparent`; the span is made
  current for the call, so store operations nest under it and JSON log lines carry its ids;
- `TracedStore`: a CLIENT span per metadata-store operation (`store.get_model`, ...) when it
  runs inside a traced call or tick (background polling makes no root spans);
- `TracedRolloutObserver`: the controller's tick as a span (only ticks that advance a rollout),
  each verdict, phase change and weight change as events on it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Final

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation import set_span_in_context

from adapters.json_logs import REQUEST_ID
from adapters.telemetry import Tracing
from registry.rollouts.state import Rollout
from registry.web.api.metrics import RegistryMetrics

TRACER_NAME: Final = "modelyard.registry"
_TRACE_HEADERS: Final = frozenset({b"traceparent", b"tracestate"})


def tracing_middleware(tracing: Tracing) -> Callable[[ASGIApp], ASGIApp]:
    tracer = tracing.tracer(TRACER_NAME)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            carrier = {
                k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS
            }
            parent = tracing.propagator.extract(carrier) if carrier else None
            method = scope["method"]
            route = scope.get("path_template") or scope["path"]
            span = tracer.start_span(f"{method} {route}", context=parent, kind=SpanKind.SERVER)
            request_id = scope.get("state", {}).get("request_id")
            if span.is_recording():
                span.set_attributes(
                    {"http.request.method": method, "http.route": route, "url.path": scope["path"]}
                )
                if request_id:
                    span.set_attribute("modelyard.request_id", request_id)
            token = otel_context.attach(set_span_in_context(span))
            rid_token = REQUEST_ID.set(request_id)
            status = 0

            async def send_traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_traced)
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                REQUEST_ID.reset(rid_token)
                otel_context.detach(token)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                span.end()

        return middleware

    return factory


class TracedStore:
    """The metadata store with a span around each operation; everything else passes through."""

    def __init__(self, store: Any, tracing: Tracing, system: str) -> None:
        self._store = store
        self._tracer = tracing.tracer(TRACER_NAME)
        self._system = system

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if not inspect.iscoroutinefunction(found):
            return found
        tracer, system = self._tracer, self._system

        async def traced(*args: Any, **kwargs: Any) -> Any:
            if not trace.get_current_span().is_recording():  # no traced caller: no root span
                return await found(*args, **kwargs)
            with tracer.start_as_current_span(
                f"store.{name}",
                kind=SpanKind.CLIENT,
                attributes={"db.system.name": system, "db.operation.name": name},
            ):
                return await found(*args, **kwargs)

        return traced


class TracedRolloutObserver:
    """Metrics as `RegistryMetrics` keeps them, and the tick's span with its events."""

    def __init__(self, metrics: RegistryMetrics, tracing: Tracing) -> None:
        self.metrics = metrics
        self.tracer: Tracer = tracing.tracer(TRACER_NAME)

    def active(self, rollouts: list[Rollout]) -> None:
        self.metrics.active(rollouts)

    @contextlib.contextmanager
    def _tick(self) -> Iterator[None]:
        with self.tracer.start_as_current_span("rollout.tick", kind=SpanKind.INTERNAL):
            yield

    def tick(self) -> contextlib.AbstractContextManager[None]:
        return self._tick()

    def moved(self, before: Rollout, after: Rollout) -> None:
        self.metrics.moved(before, after)
        span = trace.get_current_span()
        if not span.is_recording():
            return
        base = {"rollout.id": after.id, "model.name": after.model,
                "model.version": str(after.spec.candidate)}  # fmt: skip
        look = after.last if after.looks != before.looks else None
        if look is not None:
            span.add_event(
                "rollout.verdict",
                {**base, "outcome": str(look.verdict.outcome), "reason": look.verdict.reason,
                 "look": look.seq, "weight": look.weight},
            )  # fmt: skip
        if after.phase != before.phase:
            span.add_event(
                "rollout.phase", {**base, "from": str(before.phase), "to": str(after.phase)}
            )
        if after.weight != before.weight:
            span.add_event("rollout.weight", {**base, "from": before.weight, "to": after.weight})
