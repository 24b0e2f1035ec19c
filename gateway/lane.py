"""The callback lane: a BentoML passthrough request forwarded with no Task, future or coroutine
frame, for the common case.

Why: on the coroutine path every request made a Task, a future on its upstream connection, and
five coroutine frames that the answer resumed one after the other (`Gateway._invoke`,
`Forwarder.send`, `Resilient.send`, `UpstreamPool.request`, the connection's future), plus the
`Forward` and `UpstreamRequest` records. Here the request is sent synchronously from the
server's parser callback (`Gateway.start`) on a warm pooled connection
(`Http1Connection.start`), and the connection's parser callback answers it (`_Flight.answered`):
loadtests/hotpath_profile.py --callgrind counted the figures in docs/performance.md.

The lane is taken only when nothing on the coroutine path would do more than send, wait and answer:
no shadow, no hooks but tracing's (a sampled request's spans are synchronous calls: its first
attempt's span made as it is sent, `LaneRequestHooks`, ended as it is answered, the request's when
it is replied to: no Task, futures nor coroutine frames for a sampled request either, compiled
traced100 149.6k -> 115.0k instructions a request), the in-flight limit not reached, the chosen
upstream's breaker closed and a warm idle connection in its pool (`Lane.send` says False otherwise,
having done nothing, and the coroutine path runs). Its outcomes go through the same functions as the
coroutine path's (`UpstreamPool.failed`, `Resilient.answered`/`failed`, `Forwarder.measured` and
`reply`), so answers, headers, metrics, breaker effects and errors are the same. Where the coroutine
path would go on (a stale keep-alive connection: resent on a fresh one, then the fallback to stable
if that is refused), the request is handed to it, `underway`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, Final, Protocol

from contract.routes import ModelRoute, RouteTable
from gateway.breaker import Breaker
from gateway.errors import BadRequest, ConnectFailed, GatewayError
from gateway.forward import Forwarder
from gateway.hooks import AttemptEnd, LaneRequestHooks, RequestHooks
from gateway.reply import Reply, error_reply
from gateway.respond import Respond, in_task
from gateway.routing import Choice
from gateway.transport.base import Headers, UpstreamResponse
from gateway.transport.http1 import HEAD_END, Http1Connection, encode_request, with_end
from gateway.transport.pool import Http1Transport, UpstreamPool

log = logging.getLogger("modelyard.http")

_POST: Final = b"POST"


class Forwarded(Protocol):
    """The coroutine path from a routing decision on (`Gateway._forwarded`)."""

    def __call__(
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
    ) -> Coroutine[Any, Any, Reply]: ...


class Lane:
    """Starts passthrough requests on warm connections of an `Http1Transport`'s pools."""

    __slots__ = ("_loop", "forwarded", "forwarder", "pools", "resilient")

    def __init__(self, forwarder: Forwarder, pools: dict[str, UpstreamPool], forwarded: Forwarded):
        self.forwarder = forwarder
        self.resilient = forwarder.resilient
        self.pools = pools
        self.forwarded = forwarded
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def of(cls, forwarder: Forwarder, forwarded: Forwarded) -> Lane | None:
        """The lane over `forwarder`'s transport, if it offers one (only `Http1Transport`
        does: a `MockTransport` keeps every request on the coroutine path)."""
        transport = forwarder.resilient.transport
        if isinstance(transport, Http1Transport):
            return cls(forwarder, transport.pools, forwarded)
        return None

    def send(
        self,
        table: RouteTable,
        route: ModelRoute,
        choice: Choice,
        path: bytes,
        headers: Headers,
        body: bytes,
        respond: Respond,
        end: bytes = HEAD_END,
        hooks: LaneRequestHooks | None = None,
    ) -> bool:
        """Start the request and True (`respond` is called when it ends), or False: not for the
        lane, nothing done. `end`: what ends its head (`encode_request`'s: an unsampled
        request's `traceparent` line, not in `headers`); `hooks`: a sampled request's (its
        attempt's trace context ends the head instead)."""
        resilient = self.resilient
        if resilient.inflight >= resilient.max_inflight:
            return False
        endpoint = choice.route.endpoint
        breaker = resilient.breakers.get(endpoint)
        if breaker is None or breaker.opened_at is not None:
            return False
        pool = self.pools.get(endpoint)
        timeout_s = route.policy.deadline_ms / 1000
        if pool is None or timeout_s <= 0:
            return False
        loop = self._loop or self._running_loop()
        now = loop.time()
        if not pool.lendable(now):
            return False
        started = time.perf_counter()
        if hooks is not None:
            end = hooks.lane_head(route, choice.route, path)
        try:
            data = encode_request(_POST, path, pool.head_middle, headers, body, end)
        except BadRequest:
            return False  # the coroutine path says so, with its metrics
        conn = pool.lend()  # (taken only once the head is made: nothing to give back)
        deadline = now + timeout_s
        resilient.inflight += 1
        flight = _Flight()  # (no `__init__`: see `_Flight`)
        flight.lane = self
        flight.table = table
        flight.route = route
        flight.choice = choice
        flight.path = path
        flight.headers = headers
        flight.body = body
        flight.end = end
        flight.respond = respond
        flight.breaker = breaker
        flight.pool = pool
        flight.conn = conn
        flight.data = data
        flight.deadline = deadline
        flight.timeout_s = timeout_s
        flight.started = started
        flight.hooks = hooks
        flight.attempt = None if hooks is None else hooks.lane_attempt()
        try:
            conn.start(data, deadline, flight)
        except Exception as exc:  # ConnectionLost: nothing written (a stale connection)
            flight.failed(exc)
        return True

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        return loop


class _Flight:
    """One request on the lane, and the connection's `Listener` for it (its fields set by
    `Lane.send`).

    A plain class, not a msgspec Struct: compiled (mypyc), it is a native class, made by a C
    call and its fields read as C struct members, where a Struct's were each a generic
    attribute lookup (`answered` read 14). No `__init__`: interpreted, that would be a Python
    frame for every request; its fields are set where it is made instead.
    loadtests/hotpath_profile.py --callgrind, routed: compiled -2.3k, interpreted +0.7k
    instructions a request (with an `__init__`: -2.3k, +2.4k)."""

    __slots__ = (
        "attempt",
        "body",
        "breaker",
        "choice",
        "conn",
        "data",
        "deadline",
        "end",
        "headers",
        "hooks",
        "lane",
        "path",
        "pool",
        "respond",
        "route",
        "started",
        "table",
        "timeout_s",
    )

    lane: Lane
    table: RouteTable
    route: ModelRoute
    choice: Choice
    path: bytes
    headers: Headers
    body: bytes
    end: bytes  # what ends the head (`Lane.send`)
    respond: Respond
    breaker: Breaker
    pool: UpstreamPool
    conn: Http1Connection
    data: bytes
    deadline: float
    timeout_s: float
    started: float  # time.perf_counter(), as `Forwarder.send` measures
    hooks: LaneRequestHooks | None  # a sampled request's
    attempt: AttemptEnd | None  # and its attempt's

    def answered(self, response: UpstreamResponse) -> None:
        """The whole answer (from inside the connection's parser: nothing may escape)."""
        try:
            self.pool.release(self.conn)
            lane = self.lane
            resilient = lane.resilient
            status = response.status
            breaker = self.breaker
            if status >= 500 or breaker.failures or breaker.opened_at is not None:
                resilient.answered(breaker, status)  # (on a clean breaker a 2xx changes nothing)
            resilient.inflight -= 1
            attempt = self.attempt
            if attempt is not None:
                attempt.end(response, None, breaker.state(resilient.clock()))
            forwarder = lane.forwarder
            route, choice = self.route, self.choice
            forwarder.measured(route, choice, self.started, status >= 500)
            hooks = self.hooks
            reply: Reply | None = forwarder.reply(
                self.table, route, choice, status, response.body, response.headers, hooks
            )
            if hooks is not None:
                hooks.end(status, None)
        except Exception as exc:
            log.exception("unhandled error answering a request")
            reply = None
            self._crashed(exc)
        self.respond(reply)

    def failed(self, error: Exception) -> None:
        """The attempt failed (`ConnectionLost`, `InvalidResponse`, `DeadlineExceeded`)."""
        try:
            lane = self.lane
            failure = self.pool.failed(self.conn, error, self.timeout_s)
            if failure is None:  # stale: resent on a fresh connection, by the coroutine path
                self._resume(self.pool.resend(self.data, self.deadline, self.timeout_s))
                return
            if isinstance(failure, ConnectFailed):  # nothing sent: the fallback to stable
                self._resume(_raise(failure))
                return
            resilient = lane.resilient
            breaker = self.breaker
            failure = resilient.failed(self.route, self.choice.route, breaker, failure)
            resilient.inflight -= 1
            if self.attempt is not None:
                self.attempt.end(None, failure, breaker.state(resilient.clock()))
            if not isinstance(failure, GatewayError):
                raise failure
            lane.forwarder.measured(self.route, self.choice, self.started, True)
            refused = error_reply(failure, False)  # /models/...: not an OIP path
            if self.hooks is not None:
                self.hooks.end(refused.status, None)
            reply: Reply | None = refused
        except Exception as exc:
            log.exception("unhandled error answering a request")
            reply = None
            self._crashed(exc)
        self.respond(reply)

    def _crashed(self, error: Exception) -> None:
        """A sampled request's end when answering it failed (the coroutine path's `_heard`
        tells its hooks so too)."""
        hooks = self.hooks
        if hooks is not None:
            try:
                hooks.end(0, error)
            except Exception:
                log.exception("unhandled error ending a request's hooks")

    def _resume(self, underway: Coroutine[Any, Any, UpstreamResponse]) -> None:
        """Hand the request, its first attempt `underway`, to the coroutine path (with the header
        lines of its head's `end` among its headers: a fallback encodes it again)."""
        answer = self.lane.forwarded(
            self.table,
            self.route,
            self.choice,
            self.path,
            self.headers if self.end is HEAD_END else with_end(self.headers, self.end),
            self.body,
            self.hooks,
            underway,
            self.started,
            self.attempt,
        )
        in_task(answer if self.hooks is None else ended(answer, self.hooks), self.respond)


async def ended(answer: Coroutine[Any, Any, Reply], hooks: RequestHooks) -> Reply:
    """`answer`, its hooks told how it ended (as `Gateway._heard` does)."""
    try:
        reply = await answer
    except BaseException as exc:
        hooks.end(0, exc)
        raise
    hooks.end(reply.status, None)
    return reply


async def _raise(error: BaseException) -> UpstreamResponse:
    """A first attempt that failed already, for the coroutine path to deal with."""
    raise error
