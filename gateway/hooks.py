"""The points at which the gateway tells an observer what happens to a request; tracing
(gateway.traced) is the observer. Without one (`hooks=None`, tracing off) the gateway makes no
call at all: each point is one `is not None` test.

    Hooks.request(method, path, headers) -> RequestHooks | Headers | None   request start
    Hooks.fresh() -> bytes | None, Hooks.root(...)      the same, as the callback lane asks
    Hooks.lane (True): a sampled request may take the callback lane: its RequestHooks are
        LaneRequestHooks (lane_head(route, target, path), lane_attempt() -> AttemptEnd)
        RequestHooks.attempt(route, target, request) -> AttemptHooks    each upstream attempt
            AttemptHooks.request                                        what to send instead
            AttemptHooks.end(answer, error, breaker state)
        RequestHooks.fallback(route, before, after, why)                fallback to stable
        RequestHooks.chosen(table, route, choice)                       the version that answers
        RequestHooks.origin()                                           what a shadow copy links to
        RequestHooks.end(status, error)                                 the answer (or a crash)
    Hooks.shadow(copy) -> ShadowHooks                                   a shadow copy's exchange
        ShadowHooks.copy                                                what to send instead
        ShadowHooks.end(agreed, error)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from contract.routes import ModelRoute, RouteTable, VersionRoute
    from gateway.routing import Choice
    from gateway.shadow import ShadowCopy
    from gateway.transport.base import Headers, UpstreamRequest, UpstreamResponse


class AttemptEnd(Protocol):
    def end(
        self, answer: UpstreamResponse | None, error: BaseException | None, breaker: str
    ) -> None:
        """The attempt's answer (any status) or error, and its upstream's breaker after it."""


class AttemptHooks(AttemptEnd, Protocol):
    #: The request to send: the one given to `RequestHooks.attempt`, or a copy of it (with the
    #: attempt's trace context in its headers).
    request: UpstreamRequest


class RequestHooks(Protocol):
    def attempt(
        self, route: ModelRoute, target: VersionRoute, request: UpstreamRequest
    ) -> AttemptHooks: ...

    def fallback(self, route: ModelRoute, before: Choice, after: Choice, why: str) -> None: ...

    def chosen(self, table: RouteTable, route: ModelRoute, choice: Choice) -> None:
        """The version that answers an inference request, as its reply is built."""

    def origin(self) -> object | None:
        """What a shadow copy of this request links to (a span context), if anything."""

    def end(self, status: int, error: BaseException | None) -> None:
        """The reply's status, or (status 0) the error that escaped the gateway."""


class LaneRequestHooks(RequestHooks, Protocol):
    """What a sampled request's hooks offer when their hooks say `lane` (True): the callback
    lane (gateway.lane) can carry the request, its first attempt sent with no
    `UpstreamRequest`: `lane_head` gives what ends the upstream request's head (the trace
    context lines of an attempt on `target` and the empty line, `encode_request`'s `end`),
    and `lane_attempt`, called only if the lane sends it, that attempt."""

    def lane_head(self, route: ModelRoute, target: VersionRoute, path: bytes) -> bytes: ...

    def lane_attempt(self) -> AttemptEnd: ...


class ShadowHooks(Protocol):
    copy: ShadowCopy  # the copy to send (with the trace context of its own span)

    def end(self, agreed: bool | None, error: BaseException | None) -> None:
        """The agreement (None: no comparable answer), or the error that ended the copy."""


class Hooks(Protocol):
    @property
    def lane(self) -> bool:
        """True: a sampled request's `RequestHooks` are `LaneRequestHooks`, so the callback
        lane may carry it; False: sampled requests take the coroutine path."""

    def request(self, method: str, path: str, headers: Headers) -> RequestHooks | Headers | None:
        """A request starts. None: nothing to observe on this one (probes, scrapes); a header
        list: nothing to observe either, but answer it as if it came with these headers (an
        unsampled request's trace context for the upstream)."""

    def shadow(self, copy: ShadowCopy) -> ShadowHooks: ...


class FreshRoots(Protocol):
    """What hooks may offer besides `request` (`Gateway.start` asks them when they do): for
    a request without its caller's trace context, `fresh()` first, then `root(...)` only if
    that said None."""

    #: The next new trace's decision, made beforehand: for an unsampled one, what ends the
    #: upstream request's head (its `traceparent` line and the empty line, `encode_request`'s
    #: `end`); None: `root` decides. (A C callable in gateway.traced: no Python frame.)
    fresh: Callable[[], bytes | None]

    def root(self, method: str, path: str, headers: Headers) -> RequestHooks | Headers | None:
        """`request` for a new trace `fresh` said None to."""
