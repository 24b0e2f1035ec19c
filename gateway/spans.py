"""A sampled span as the gateway records it: plain fields, one tuple (contract.spans) handed
to `Tracing.emit` when it ends, no SDK object on the request path; and the W3C `traceparent`
the upstream gets. Used by gateway.traced."""

from __future__ import annotations

import random
import time
import traceback
from typing import Final, Protocol

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, StatusCode

from contract.spans import SpanAttributes, SpanEvent, SpanLink, SpanRecord
from gateway.transport.base import Headers

TRACE_HEADERS: Final = frozenset({b"traceparent", b"tracestate"})
SERVER: Final = SpanKind.SERVER.value
CLIENT: Final = SpanKind.CLIENT.value
ERROR: Final = StatusCode.ERROR.value
SAMPLED: Final = 1  # the W3C sampled flag


class Tracing(Protocol):
    """What the gateway needs of a running tracer provider (`adapters.telemetry` gives one)."""

    @property
    def propagator(self) -> TextMapPropagator: ...

    @property
    def dropped(self) -> int:
        """Spans dropped so far (the export queue was full)."""

    def sample(self, trace_id: int, parent_span_id: int, parent_flags: int, name: str) -> bool:
        """The sampler's decision for a SERVER span; `parent_flags` -1: no parent."""

    def emit(self, record: SpanRecord) -> None:
        """A finished span, for export (never blocks)."""


def new_id(bits: int) -> int:
    """A random non-zero id, as the SDK's RandomIdGenerator makes them."""
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


def inject(headers: Headers, trace_id: int, span_id: int, flags: int, state: str) -> Headers:
    """`headers` with the caller's trace headers replaced by this span's. The same bytes as
    `TraceContextTextMapPropagator.inject` (a unit test checks), formatted directly: it runs
    on every request, sampled or not, and the propagator's context and dict cost 3x more."""
    out = [h for h in headers if h[0] not in TRACE_HEADERS]
    out.append((b"traceparent", b"00-%032x-%016x-%02x" % (trace_id, span_id, flags)))
    if state:
        out.append((b"tracestate", state.encode("latin-1")))
    return out


def exception_event(error: BaseException) -> SpanEvent:
    """The event `Span.record_exception` adds (the same attributes)."""
    module, name = type(error).__module__, type(error).__qualname__
    attrs: SpanAttributes = {
        "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
        "exception.message": str(error),
        "exception.stacktrace": "".join(traceback.format_exception(error)),
        "exception.escaped": "False",
    }
    return ("exception", time.time_ns(), attrs)


class SpanBuilder:
    """A sampled span being recorded: plain fields, one tuple for `Tracing.emit` at its end."""

    __slots__ = (
        "attrs",
        "code",
        "description",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "remote",
        "span_id",
        "start",
        "state",
        "trace_id",
        "tracing",
    )

    def __init__(
        self,
        tracing: Tracing,
        name: str,
        kind: int,
        trace_id: int,
        parent_id: int,
        remote: bool,
        state: str,
    ) -> None:
        self.tracing = tracing
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = new_id(64)
        self.parent_id = parent_id
        self.remote = remote
        self.state = state
        self.start = time.time_ns()
        self.attrs: SpanAttributes = {}
        self.events: tuple[SpanEvent, ...] = ()  # tuples: see contract.spans
        self.links: tuple[SpanLink, ...] = ()
        self.code = 0
        self.description = ""

    def error(self, description: str = "") -> None:
        self.code = ERROR
        self.description = description

    def finish(self) -> None:
        self.tracing.emit(
            (
                self.name,
                self.kind,
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.remote,
                SAMPLED,
                self.state,
                self.start,
                time.time_ns(),
                self.attrs,
                self.code,
                self.description,
                self.events,
                self.links,
            )
        )
