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

No SDK span objects on the request path: the sampler decides once per request, from the
caller's `traceparent` flags and the ratio (the bound of `Tracing.bound`, or `Tracing.sample`),
before anything is made. An unsampled request only forwards a `traceparent` (the caller's
trace or a new one, a span id of ours, flag 00): `TracingHooks.request` gives the gateway just
those headers, and it answers on its plain path, the one tracing off runs. A sampled one
keeps its spans as plain attributes here and, when each ends, hands a tuple
(contract.spans) to `Tracing.emit`, which queues it for a separate exporting process
(adapters.span_export): encoding and export never hold the event loop's interpreter; a full
queue drops the span and counts it (`modelyard_gateway_spans_dropped_total`).

A sampled request's spans are plain calls, so the gateway's callback lane carries it as it
does an unsampled one (`TracingHooks.lane`). This module and gateway.spans are compiled with
mypyc (pyproject.toml): native span classes (compiled traced100 115.0k -> 104.5k instructions
a request, loadtests/hotpath_profile.py --callgrind).
"""

from __future__ import annotations

import random
import time
from binascii import hexlify
from collections.abc import Callable
from itertools import chain, repeat
from typing import Final

from msgspec.structs import replace

from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.spans import SpanAttributes, SpanLink, SpanRecord
from contract.traffic import SHADOW_VARIANT
from gateway.errors import GatewayError
from gateway.routing import Choice
from gateway.shadow import ShadowCopy
from gateway.spans import (
    CLIENT,
    NO_PARENT,
    SAMPLED,
    SERVER,
    TRACEPARENT_LINE_START,
    VALUE_START,
    VALUE_STOP,
    SpanBuilder,
    Tracing,
    below,
    exception_event,
    inject,
    new_id,
    next_trace_id,
    parent,
    traceparent_block,
    traceparents,
)
from gateway.transport.base import TRACE_CONTEXT, Headers, UpstreamRequest, UpstreamResponse

TRACER_NAME: Final = "modelyard.gateway"
_UNTRACED: Final = "/v2/health/"
_LOW: Final = (1 << 64) - 1  # the ratio sampler looks at a trace id's low 64 bits
_BLOCK: Final = 1024  # traceparents made at a time
_TRACEPARENT: Final = b"traceparent"
# pieces of `lane_head`'s lines
_DASH: Final = b"-"
_SAMPLED_LINE: Final = b"-01\r\n"
_SAMPLED_END: Final = b"-01\r\n\r\n"
_TS: Final = b"tracestate: "
_CRLF2: Final = b"\r\n\r\n"

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


def _untraced(path: str) -> bool:
    """Probes and scrapes: no spans (checked only where a span could start: `startswith`
    parses its arguments, about 400 instructions, on every request otherwise)."""
    return path == "/metrics" or path.startswith(_UNTRACED)


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


class TracingHooks:
    """The gateway's hooks (gateway.hooks.Hooks) with a tracer provider behind them."""

    __slots__ = ("_bound_hex", "bound", "emit", "fresh", "tracing")  # (a slot is read faster)

    #: A sampled request's hooks are `LaneRequestHooks`: the gateway's callback lane carries
    #: it (gateway.lane) with the same spans, calling them where the coroutine path would.
    lane: Final = True

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.emit = tracing.emit  # what the spans hand their records to
        self.bound = bound = tracing.bound
        #: The bound as the 16 hex digits of a trace id's low half compare with it (b"g":
        #: above them all, every trace sampled).
        self._bound_hex = b"g" if bound is None or bound >> 64 else b"%016x" % bound
        #: The next new root's decision (gateway.hooks): an unsampled one's `traceparent` as
        #: the end of the upstream request's head, or None (`root` decides). Made a block at a
        #: time (`_refill`), handed out by a C iterator: a call of it is no Python frame (the
        #: gateway's callback lane calls it, not `request`: 0.6k instructions a request less).
        self.fresh: Callable[[], bytes | None] = chain.from_iterable(
            map(self._refill, repeat(None))
        ).__next__

    def request(self, method: str, path: str, headers: Headers) -> _RequestSpan | Headers | None:
        """A sampled request's SERVER span; for one the sampler left out, only the headers it
        goes on with (its trace context for the upstream: the caller's trace or a new one, a
        span id of ours, flag 00), so that the gateway answers it on its plain path.

        The common case (no trace headers from the caller, the ratio sampler) is kept to one
        loop over the headers, `fresh` and a test: it runs on every request tracing is on for
        but the callback lane's (which calls `fresh` and `root` itself)."""
        for name, _ in headers:
            if name in TRACE_CONTEXT:
                return self._continued(method, path, headers)
        end = self.fresh()
        if end is not None:
            # (a probe or scrape too: answered here, its headers go nowhere)
            return [*headers, (_TRACEPARENT, end[VALUE_START:VALUE_STOP])]
        return self.root(method, path, headers)

    def root(self, method: str, path: str, headers: Headers) -> _RequestSpan | Headers | None:
        """A new root trace `fresh` left undecided (None): the ratio sampler took it, or no
        ratio (the SDK's sampler decides, `_continued`)."""
        if self.bound is None:
            return self._continued(method, path, headers)
        if _untraced(path):
            return None
        return self._sampled(method, path, self._sampled_root(), 0, -1, "")

    def _continued(self, method: str, path: str, headers: Headers) -> _RequestSpan | Headers | None:
        """`request` for a caller's trace context (or a sampler other than the ratio)."""
        if _untraced(path):
            return None
        traceparent = tracestate = None
        for name, value in headers:
            if name in TRACE_CONTEXT:
                if name == b"traceparent":
                    traceparent = value
                else:
                    tracestate = value
        if traceparent is None and self.bound is not None:  # only a tracestate: a new root
            headers = [h for h in headers if h[0] not in TRACE_CONTEXT]
            return self.request(method, path, headers)
        trace_id, parent_id, flags, state = NO_PARENT
        if traceparent is not None:
            trace_id, parent_id, flags, state = parent(traceparent, tracestate)
        if flags < 0:
            trace_id = new_id(128)
        bound = self.bound
        if bound is not None:
            sampled = bool(flags & SAMPLED) if flags >= 0 else trace_id & _LOW < bound
        else:
            sampled = self.tracing.sample(trace_id, parent_id, flags, span_name(method, path))
        if not sampled:
            return inject(headers, trace_id, new_id(64), 0, state)
        return self._sampled(method, path, trace_id, parent_id, flags, state)

    def _refill(self, _: None = None) -> list[bytes | None]:
        """The next block of roots' decisions: a new unsampled traceparent each (the end of
        an upstream request's head), or None where the ratio sampler takes the new trace
        (every one at ratio 1; with no ratio, `sample` decides each). Decided for the block
        at once, the request keeps to `fresh` and an `is not None`: the slice and comparison
        of the trace id's low half per request it replaces cost about 300 instructions more
        (callgrind)."""
        if self._bound_hex == b"g":
            return [None] * _BLOCK
        block = traceparent_block(_BLOCK)
        fresh: list[bytes | None] = list(traceparents(block))
        for at in below(block, self._bound_hex):
            fresh[at] = None
        return fresh

    def _sampled_root(self) -> int:
        """A new trace id the ratio sampler takes: its low half below the bound, uniform there
        (the same law as a random id that happened to fall below it); `random.randrange`
        would cost 50 bytecodes more, and a modulo 500 instructions (a long division)."""
        if self._bound_hex == b"g":  # every trace sampled: any id (ratio 1)
            return next_trace_id() or 1
        bound = self.bound
        assert bound is not None
        while True:  # (128 random bits scaled to the bound: a bias of at most 2**-64)
            trace_id = random.getrandbits(64) << 64 | random.getrandbits(128) * bound >> 128
            if trace_id:
                return trace_id

    def _sampled(
        self, method: str, path: str, trace_id: int, parent_id: int, flags: int, state: str
    ) -> _RequestSpan:
        attrs: SpanAttributes = {"http.request.method": method, "url.path": path}
        names = _SPAN_NAMES.get(method)
        name = (names.get(path) if names is not None else None) or _span_name(method, path)
        remote = flags >= 0
        span = _RequestSpan(self.emit, name, SERVER, trace_id, parent_id, remote, state, attrs)
        span.attempts = 0
        return span

    def shadow(self, copy: ShadowCopy) -> _ShadowSpan | _UnsampledShadow:
        name = f"shadow POST {copy.path.decode(errors='replace')}"
        trace_id = new_id(128)  # a new trace: the copy is not part of the answer's latency
        if not self.tracing.sample(trace_id, 0, -1, name):
            span_id = new_id(64)
            return _UnsampledShadow(
                copy._replace(headers=inject(copy.headers, trace_id, span_id, 0, ""))
            )
        return _ShadowSpan(self.emit, name, trace_id, copy)


def _unsampled_origin(headers: Headers) -> SpanLink | None:
    """The trace context an unsampled request forwarded (its shadow copies link to it)."""
    traceparent = tracestate = None
    for name, value in headers:
        if name == b"traceparent":
            traceparent = value
        elif name == b"tracestate":
            tracestate = value
    if traceparent is None:
        return None
    trace_id, span_id, flags, state = parent(traceparent, tracestate)
    return (trace_id, span_id, flags, state) if flags >= 0 else None


_CLIENT_NAMES: dict[bytes, str] = {}  # a CLIENT span's name by the upstream path
#: a SERVER span's name by method, then path (by a (method, path) key: a tuple made and
#: hashed, about 550 instructions a sampled request more)
_SPAN_NAMES: dict[str, dict[str, str]] = {}


def _span_name(method: str, path: str) -> str:
    """`span_name`, kept (about 600 instructions a sampled request less)."""
    names = _SPAN_NAMES.get(method)
    if names is None or len(names) >= 1024:
        if len(_SPAN_NAMES) >= 16:  # (methods: what the server's parser takes)
            _SPAN_NAMES.clear()
        names = _SPAN_NAMES[method] = {}
    name = names[path] = span_name(method, path)
    return name


def _client_name(path: bytes) -> str:
    if len(_CLIENT_NAMES) >= 1024:
        _CLIENT_NAMES.clear()
    name = _CLIENT_NAMES[path] = f"POST {path.decode(errors='replace')}"
    return name


class _RequestSpan(SpanBuilder):
    """A sampled request: its SERVER span, and the count of its upstream attempts."""

    __slots__ = ("_lane_attempt", "attempts")

    attempts: int  # (set by `TracingHooks._sampled`: no `__init__` of its own, a call less)
    _lane_attempt: _AttemptSpan  # the attempt `lane_head` made

    def attempt(
        self, route: ModelRoute, target: VersionRoute, request: UpstreamRequest
    ) -> _AttemptSpan:
        span = self._attempt(route, target, request.path)
        self._count(span)
        headers = inject(request.headers, self.trace_id, span.span_id, SAMPLED, self.state)
        span.request = replace(request, headers=headers)
        return span

    def lane_head(self, route: ModelRoute, target: VersionRoute, path: bytes) -> bytes:
        """The end of the lane's attempt's head: its trace context, as `inject` writes it."""
        span = self._lane_attempt = self._attempt(route, target, path)
        # (each id's bytes hexed: `%032x` formatting cost 2.9k instructions a request more)
        trace_hex = hexlify(self.trace_id.to_bytes(16, "big"))
        span_hex = hexlify(span.span_id.to_bytes(8, "big"))
        if self.state:
            state = self.state.encode("latin-1")
            parts = (
                TRACEPARENT_LINE_START,
                trace_hex,
                _DASH,
                span_hex,
                _SAMPLED_LINE,
                _TS,
                state,
                _CRLF2,
            )
            return b"".join(parts)
        return b"".join((TRACEPARENT_LINE_START, trace_hex, _DASH, span_hex, _SAMPLED_END))

    def lane_attempt(self) -> _AttemptSpan:
        """The attempt `lane_head` made, as the lane sends it."""
        span = self._lane_attempt
        self._count(span)
        return span

    def _attempt(self, route: ModelRoute, target: VersionRoute, path: bytes) -> _AttemptSpan:
        name = _CLIENT_NAMES.get(path) or _client_name(path)
        attrs: SpanAttributes = {
            MODEL: route.name,
            VERSION: str(target.version),
            "server.address": target.endpoint,
            "http.request.method": "POST",
            RETRY: False,
        }
        return _AttemptSpan(
            self.emit, name, CLIENT, self.trace_id, self.span_id, False, self.state, attrs
        )

    def _count(self, span: _AttemptSpan) -> None:
        if self.attempts:
            span.attrs[RETRY] = True
        self.attempts += 1

    def fallback(self, route: ModelRoute, before: Choice, after: Choice, why: str) -> None:
        self.attrs[FALLBACK] = why
        event = {
            "from.version": str(before.version),
            "to.version": str(after.version),
            "reason": why,
        }
        self.events += (("fallback", time.time_ns(), dict(event)),)

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Choice) -> None:
        attrs = self.attrs
        attrs[MODEL] = route.name
        attrs[VERSION] = str(choice.version)
        attrs[VARIANT] = choice.variant
        attrs[REVISION] = table.revision
        if route.policy.steered_by:
            attrs[ROLLOUT] = route.policy.steered_by

    def origin(self) -> object | None:
        link: SpanLink = (self.trace_id, self.span_id, SAMPLED, self.state)
        return link

    def end(self, status: int, error: BaseException | None) -> None:
        if error is not None:
            self.events += (exception_event(error),)
            self.error(type(error).__name__)
        if self.attempts:
            self.attrs[ATTEMPTS] = self.attempts
        if status:
            self.attrs[STATUS] = status
            if status >= 500:
                self.error()
        self.finish()


class _AttemptSpan(SpanBuilder):
    """A CLIENT span per upstream attempt; the upstream gets its trace context."""

    __slots__ = ("request",)

    request: UpstreamRequest

    def end(
        self, answer: UpstreamResponse | None, error: BaseException | None, breaker: str
    ) -> None:
        if isinstance(error, GatewayError):
            self.attrs["error.type"] = error.code
            self.error(error.message)
        elif error is not None:
            self.attrs["error.type"] = type(error).__name__
            self.error()
        elif answer is not None:
            self.attrs[STATUS] = answer.status
            if answer.status >= 500:
                self.error()
        self.attrs[BREAKER] = breaker
        self.finish()


class _UnsampledShadow:
    """A shadow copy the sampler left out: only its trace context goes out."""

    __slots__ = ("copy",)

    def __init__(self, copy: ShadowCopy) -> None:
        self.copy = copy

    def end(self, agreed: bool | None, error: BaseException | None) -> None:
        return None


class _ShadowSpan(SpanBuilder):
    """A shadow copy's CLIENT span: a trace of its own, linked to the primary request."""

    __slots__ = ("copy",)

    def __init__(
        self, emit: Callable[[SpanRecord], None], name: str, trace_id: int, copy: ShadowCopy
    ) -> None:
        super().__init__(emit, name, CLIENT, trace_id, 0, False, "", {})
        origin = copy.origin if copy.origin is not None else _unsampled_origin(copy.headers)
        if isinstance(origin, tuple) and len(origin) == 4:
            self.links = (origin,)
        self.attrs.update(
            {
                MODEL: copy.route.name,
                VERSION: str(copy.target.version),
                VARIANT: SHADOW_VARIANT,
                "server.address": copy.target.endpoint,
            }
        )
        if copy.route.policy.steered_by:
            self.attrs[ROLLOUT] = copy.route.policy.steered_by
        headers = inject(copy.headers, trace_id, self.span_id, SAMPLED, "")
        self.copy = copy._replace(headers=headers)

    def end(self, agreed: bool | None, error: BaseException | None) -> None:
        if error is None:
            if agreed is not None:
                self.attrs[AGREED] = agreed
            else:
                self.error("no comparable answer")
        self.finish()
