"""Resilience around a `Transport`: what happens between the routing decision and the wire.

- Load shedding: past `max_inflight` requests in flight, `Overloaded` at once (503 with
  `retry-after`), nothing sent.
- A circuit breaker per upstream (gateway.breaker): timeouts, broken connections and 5xx
  answers count against it; an ejected upstream is not called.
- Fallback to the stable version: a request whose upstream is ejected, or refuses the
  connection (`ConnectFailed`: nothing was sent, so sending it elsewhere is safe), goes to the
  model's stable version instead, once. A pinned request, or one already on the stable
  version, has nowhere else to go: `NoHealthyUpstream`. Nothing is retried after a request
  was sent (a stale keep-alive connection is the transport's own, safe, retry).

The hooks (gateway.hooks) hear about each fallback and each upstream attempt.

The gateway's callback lane (gateway.lane) makes the same decisions without this coroutine for
its common case, through the same functions (`answered`, `failed`), and hands a request back to
`send` (`underway`) where the coroutine path must go on: the stale keep-alive retry and what
follows it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from contract.routes import ModelRoute, VersionRoute
from gateway.breaker import Breaker
from gateway.errors import (
    ConnectFailed,
    NoHealthyUpstream,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.hooks import AttemptEnd, RequestHooks
from gateway.routing import STABLE, Choice
from gateway.transport.base import Headers, Transport, UpstreamRequest, UpstreamResponse

DEFAULT_MAX_INFLIGHT: Final = 1024
_POST: Final = b"POST"


class Forward(msgspec.Struct, gc=False):
    """One request on its way to an upstream. `choice` starts as the routing decision and
    ends as the version that was really called (after a fallback, the stable one)."""

    route: ModelRoute
    choice: Choice
    path: bytes
    headers: Headers
    body: bytes
    hooks: RequestHooks | None = None


class Resilient:
    """Wraps a `Transport` with load shedding, breakers and the fallback to stable."""

    __slots__ = ("breaker", "breakers", "clock", "inflight", "max_inflight", "transport")

    def __init__(
        self,
        transport: Transport,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        breaker: Callable[[], Breaker] = Breaker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.max_inflight = max_inflight
        self.inflight = 0
        #: One breaker per upstream base URL, made by `breaker` on first use.
        self.breakers: dict[str, Breaker] = {}
        self.breaker = breaker
        self.clock = clock

    def states(self) -> dict[str, str]:
        """Each upstream's breaker state now: closed, open or half_open."""
        now = self.clock()
        return {endpoint: b.state(now) for endpoint, b in self.breakers.items()}

    async def send(
        self,
        forward: Forward,
        underway: Awaitable[UpstreamResponse] | None = None,
        underway_attempt: AttemptEnd | None = None,
    ) -> UpstreamResponse:
        """Send `forward` to its chosen version, or to the stable one (see the module's
        docstring); the answer whatever its status, or a `GatewayError`.

        `underway`: the callback lane's first attempt on the chosen version, already counted
        in flight and past its breaker (the stale retry, gateway.lane), to be awaited instead
        of sending; what follows it is this coroutine's as for any request. `underway_attempt`:
        its hooks (a sampled request's first attempt), told how it ended."""
        if underway is None:
            if self.inflight >= self.max_inflight:
                raise Overloaded(f"over {self.max_inflight} requests in flight; retry shortly")
            self.inflight += 1
        try:
            route, hooks = forward.route, forward.hooks
            target = forward.choice.route
            breaker = self.breakers.get(target.endpoint) or self._breaker(target.endpoint)
            # a closed breaker allows everything: only an open one needs asking (and a clock)
            if (
                underway is None
                and breaker.opened_at is not None
                and not breaker.allow(self.clock())
            ):
                target = self._fallback(forward, "its upstream is ejected")
                breaker = self._breaker(target.endpoint)
            retried = False
            attempt: AttemptEnd | None = underway_attempt
            while True:  # at most twice: the retry of a refused connection on the stable version
                if underway is None:
                    request = UpstreamRequest(
                        target.endpoint,
                        _POST,
                        forward.path,
                        forward.headers,
                        forward.body,
                        route.policy.deadline_ms / 1000,
                    )
                    attempt = None
                    if hooks is not None:
                        hooked = hooks.attempt(route, target, request)
                        attempt, request = hooked, hooked.request
                try:
                    if underway is None:
                        answer = await self.transport.handle(request)
                    else:
                        answer, underway = await underway, None
                except BaseException as exc:
                    underway = None
                    error = self.failed(route, target, breaker, exc)
                    if attempt is not None:
                        attempt.end(None, error, breaker.state(self.clock()))
                    if isinstance(error, ConnectFailed) and not retried:
                        retried = True
                        target = self._fallback(forward, "its upstream refused the connection")
                        breaker = self._breaker(target.endpoint)
                        continue
                    if error is exc:
                        raise
                    raise error from None
                self.answered(breaker, answer.status)
                if attempt is not None:
                    attempt.end(answer, None, breaker.state(self.clock()))
                return answer
        finally:
            self.inflight -= 1

    def answered(self, breaker: Breaker, status: int) -> None:
        """An attempt's answer: a 5xx counts against its upstream, anything else for it."""
        if status >= 500:
            breaker.failure(self.clock())
        elif breaker.failures or breaker.opened_at is not None:
            breaker.success()  # (on a clean breaker it would change nothing)

    def failed(
        self, route: ModelRoute, target: VersionRoute, breaker: Breaker, exc: BaseException
    ) -> BaseException:
        """What an attempt's failure means: upstream errors count against the upstream, and
        a timeout is reported against the model's deadline."""
        if not isinstance(exc, UpstreamError):
            return exc  # cancelled, or a request that cannot be sent: not the upstream's fault
        breaker.failure(self.clock())
        if isinstance(exc, UpstreamTimeout):
            return UpstreamTimeout(
                f"version {target.version} of {route.name!r} did not answer within the model's"
                f" {route.policy.deadline_ms} ms deadline"
            )
        return exc

    def _fallback(self, forward: Forward, why: str) -> VersionRoute:
        route, choice = forward.route, forward.choice
        stable = route.versions.get(route.stable) if route.stable is not None else None
        if stable is None or choice.version == route.stable or choice.variant == "pinned":
            raise NoHealthyUpstream(
                f"version {choice.version} of {route.name!r} cannot serve: {why}"
            )
        forward.choice = Choice(stable.version, STABLE, stable)
        if forward.hooks is not None:
            forward.hooks.fallback(route, choice, forward.choice, why)
        return stable

    def _breaker(self, endpoint: str) -> Breaker:
        found = self.breakers.get(endpoint)
        if found is None:
            found = self.breakers[endpoint] = self.breaker()
        return found
