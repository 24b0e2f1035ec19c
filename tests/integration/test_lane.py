"""The callback lane (gateway/lane.py) against real loopback upstreams: the same answers,
headers, metrics, breaker effects and errors as the coroutine path (`Gateway.handle`), the
stale keep-alive retry, the fallback to stable, pipelined requests through the fast HTTP
protocol in order, and hooks (unsampled: the lane; sampled: the coroutine path, traced, but for
tracing's own hooks, whose spans the lane records the same).

A request took the lane when `Gateway.start` made no Task: the coroutine path runs in one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from adapters.telemetry import setup_tracing
from contract.routes import ModelRoute, RouteTable, VersionRoute
from contract.spans import SpanRecord
from contract.traffic import Split, TrafficPolicy
from gateway.breaker import Breaker
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.metrics import GatewayMetrics
from gateway.reply import Reply
from gateway.resilience import Resilient
from gateway.server.fast_http import protocol_class
from gateway.shadow import ShadowQueue
from gateway.traced import TracingHooks
from gateway.transport.base import Headers, UpstreamResponse
from gateway.transport.mock import MockTransport
from gateway.transport.pool import Http1Transport
from tests.integration.test_upstream import (
    EVENT_WAIT_S,
    Env,
    Handler,
    Peer,
    RawServer,
    answer,
    env,
    scripted,
)

__all__ = ["env"]  # the fixture, from test_upstream

MODEL = "m"
BODY = b'{"x":[1,2]}'
HEADERS: Headers = [(b"content-type", b"application/json"), (b"x-tag", b"t")]


async def echo(peer: Peer) -> None:
    """Every request answered with its path and body, as JSON's content type says."""
    while (request := await peer.read_request()) is not None:
        path = request.line.split(b" ")[1]
        if path == b"/slow":
            await asyncio.sleep(0.05)
        body = path + b" " + request.body
        await peer.send(answer(body, headers=b"content-type: application/json\r\nx-up: 1\r\n"))


class _Follower:
    def __init__(self, table: RouteTable) -> None:
        self.table: RouteTable | None = table
        self.registry_up = True


class Hooks:
    """Samples requests whose path ends in `/traced`; the others are unsampled (a header list
    with a trace context added)."""

    lane = False  # sampled requests take the coroutine path

    def __init__(self) -> None:
        self.events: list[str] = []

    def request(self, method: str, path: str, headers: Headers) -> Any:
        if path.endswith("/traced"):
            return LaneRequestHooks(self.events) if self.lane else RequestHooks(self.events)
        return [*headers, (b"traceparent", b"00-unsampled")]

    def shadow(self, copy: Any) -> Any:
        raise AssertionError("no shadow here")


class RequestHooks:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def attempt(self, route: Any, target: Any, request: Any) -> Any:
        self.events.append(f"attempt v{target.version}")
        events = self.events

        class Attempt:
            def __init__(self) -> None:
                self.request = request

            def end(self, answer: Any, error: Any, breaker: str) -> None:
                events.append(f"attempt end {answer.status if answer else error!r}")

        return Attempt()

    def fallback(self, route: Any, before: Any, after: Any, why: str) -> None:
        self.events.append("fallback")

    def chosen(self, table: Any, route: Any, choice: Any) -> None:
        self.events.append(f"chosen v{choice.version}")

    def origin(self) -> None:
        return None

    def end(self, status: int, error: BaseException | None) -> None:
        self.events.append(f"end {status}")


TRACED = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"  # the lane's head in LaneRequestHooks


class LaneHooks(Hooks):
    lane = True  # the lane may carry a sampled request


class LaneRequestHooks(RequestHooks):
    def lane_head(self, route: Any, target: VersionRoute, path: bytes) -> bytes:
        self.events.append(f"lane head v{target.version}")
        return b"traceparent: " + TRACED + b"\r\n\r\n"

    def lane_attempt(self) -> Any:
        events = self.events

        class Attempt:
            def end(self, answer: Any, error: Any, breaker: str) -> None:
                events.append(f"lane attempt end {answer.status if answer else error!r}")

        return Attempt()


def gateway_for(
    urls: dict[int, str],
    *,
    splits: list[Split] | None = None,
    deadline_ms: int = 5000,
    threshold: int = 5,
    hooks: Any = None,
) -> Gateway:
    versions = {v: VersionRoute(v, url, "bentoml") for v, url in urls.items()}
    policy = TrafficPolicy(splits=splits or [], deadline_ms=deadline_ms)
    table = RouteTable(1, {MODEL: ModelRoute(MODEL, 1, versions, {}, policy)})
    transport = Http1Transport()
    metrics = GatewayMetrics()
    resilient = Resilient(transport, breaker=lambda: Breaker(threshold=threshold))
    forwarder = Forwarder(resilient, metrics, ShadowQueue(transport, metrics))
    return Gateway(cast(RouteFollower, _Follower(table)), forwarder, hooks=hooks)


@contextlib.asynccontextmanager
async def closing(gateway: Gateway) -> AsyncIterator[Gateway]:
    try:
        yield gateway
    finally:
        transport = gateway.forwarder.resilient.transport
        assert isinstance(transport, Http1Transport)
        await transport.close()


async def started(gateway: Gateway, path: str, headers: Headers = HEADERS) -> tuple[Reply, bool]:
    """`Gateway.start`'s answer, and whether it took the lane (no Task made)."""
    done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    def respond(reply: Reply | None) -> None:
        assert reply is not None and not done.done()
        done.set_result(reply)

    tasks = len(asyncio.all_tasks())
    gateway.start("POST", path, headers, BODY, respond)
    on_lane = len(asyncio.all_tasks()) == tasks
    async with asyncio.timeout(EVENT_WAIT_S):
        return await done, on_lane


async def handled(gateway: Gateway, path: str, headers: Headers = HEADERS) -> Reply:
    return await gateway.handle("POST", path, headers, BODY)


def stats(gateway: Gateway, version: int = 1, variant: str = "stable") -> tuple[int, int]:
    found = gateway.metrics.stats[(MODEL, str(version), variant)]
    return found.requests, found.errors


async def test_the_lane_answers_as_the_coroutine_path_does(env: Env) -> None:
    server = await env.server(echo)
    async with closing(gateway_for({1: server.url})) as gw:
        cold, on_lane = await started(gw, "/models/m/predict")
        assert not on_lane  # no warm connection yet: the coroutine path
        lane, on_lane = await started(gw, "/models/m/predict")
        assert on_lane
        coroutine = await handled(gw, "/models/m/predict")
        assert lane == coroutine == cold
        assert lane.status == 200 and lane.body == b"/predict " + BODY
        assert lane.headers == [
            (b"content-type", b"application/json"),
            (b"x-modelyard-model", b"m"),
            (b"x-modelyard-version", b"1"),
            (b"x-modelyard-variant", b"stable"),
            (b"x-modelyard-route-revision", b"1"),
        ]
        assert stats(gw) == (3, 0)
        assert gw.metrics.stats[(MODEL, "1", "stable")].sum_s > 0
        assert server.accepted == 1  # one connection, reused by both paths
        assert gw.forwarder.resilient.inflight == 0
        _, (_, lane_sent), (_, coroutine_sent) = server.requests
        assert (lane_sent.line, lane_sent.headers, lane_sent.body) == (
            coroutine_sent.line,
            coroutine_sent.headers,
            coroutine_sent.body,
        )


async def test_a_5xx_on_the_lane_counts_against_the_breaker_until_it_opens(env: Env) -> None:
    async def failing(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(answer(b"{}", status=500))

    server = await env.server(failing)
    async with closing(gateway_for({1: server.url}, threshold=2)) as gw:
        first, _ = await started(gw, "/models/m/predict")
        assert first.status == 500
        breaker = gw.breakers[server.url]
        assert breaker.failures == 1 and breaker.opened_at is None
        second, on_lane = await started(gw, "/models/m/predict")
        assert on_lane and second.status == 500 and second.body == b"{}"
        assert breaker.opened_at is not None  # opened by the lane's answer
        third, on_lane = await started(gw, "/models/m/predict")
        assert not on_lane and third.status == 503  # stable, nowhere to fall back to
        assert b"NO_HEALTHY_UPSTREAM" in third.body
        assert stats(gw) == (3, 3)  # (a request no upstream may serve is counted an error)


async def test_a_stale_connection_is_resent_once_on_a_fresh_one(env: Env) -> None:
    async def close_on_second(peer: Peer) -> None:
        request = await peer.read_request()
        assert request is not None
        await peer.send(answer(b"first"))
        await peer.read_request()  # arrived just as the server gave up on the connection
        await peer.close()

    server = await env.server(scripted(close_on_second, echo))
    async with closing(gateway_for({1: server.url})) as gw:
        assert (await started(gw, "/models/m/predict"))[0].body == b"first"
        reply, on_lane = await started(gw, "/models/m/again")
        assert on_lane  # started on the lane, finished by the coroutine path
        assert reply.status == 200 and reply.body == b"/again " + BODY
        assert [(conn, r.line) for conn, r in server.requests] == [
            (0, b"POST /predict HTTP/1.1"),
            (0, b"POST /again HTTP/1.1"),
            (1, b"POST /again HTTP/1.1"),
        ]
        assert stats(gw) == (2, 0) and gw.breakers[server.url].failures == 0
        assert gw.forwarder.resilient.inflight == 0


async def refusing_canary(env: Env) -> RawServer:
    """An upstream that answers once, then closes the connection on the second request and
    stops listening: the lane's resend of it is refused."""
    holder: list[RawServer] = []

    async def close_and_stop_listening(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"canary"))
        await peer.read_request()
        holder[0]._server.close()  # the resend's connection is refused
        await peer.close()

    canary = await env.server(close_and_stop_listening)
    holder.append(canary)
    return canary


async def test_a_refused_resend_falls_back_to_stable(env: Env) -> None:
    stable = await env.server(echo)
    canary = await refusing_canary(env)
    splits = [Split(version=2, weight=100.0)]
    async with closing(gateway_for({1: stable.url, 2: canary.url}, splits=splits)) as gw:
        first, _ = await started(gw, "/models/m/predict")
        assert first.body == b"canary" and (b"x-modelyard-variant", b"canary") in first.headers
        reply, on_lane = await started(gw, "/models/m/predict")
        assert on_lane
        assert reply.status == 200 and reply.body == b"/predict " + BODY
        assert (b"x-modelyard-version", b"1") in reply.headers
        assert (b"x-modelyard-variant", b"stable") in reply.headers
        assert gw.breakers[canary.url].failures == 1  # the refused connection counted
        assert stats(gw, 2, "canary") == (1, 0) and stats(gw, 1, "stable") == (1, 0)
        assert gw.forwarder.resilient.inflight == 0


def failing_second(peer_answers: int, how: str) -> Handler:
    """A peer that answers `peer_answers` requests, then fails the next one: `half` (an answer
    cut short), `garbage` (no HTTP), else silent until the gateway gives up."""

    async def handler(peer: Peer) -> None:
        for _ in range(peer_answers):
            await peer.read_request()
            await peer.send(answer(b"ok"))
        await peer.read_request()
        if how == "half":
            await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await peer.close()
        elif how == "garbage":
            await peer.send(b"NOT HTTP AT ALL\r\n\r\n")
        await peer.wait_eof()

    return handler


@pytest.mark.parametrize("how", ["silent", "half", "garbage"])
async def test_failures_on_the_lane_map_as_on_the_coroutine_path(env: Env, how: str) -> None:
    """A deadline (504), an answer cut short or invalid (502): the same error, breaker and
    metrics for a request on the lane as for one on the coroutine path."""

    results: list[tuple[int, bytes, int, tuple[int, int]]] = []
    for lane in (True, False):
        server = await env.server(failing_second(1, how))
        async with closing(gateway_for({1: server.url}, deadline_ms=200)) as gw:
            assert (await started(gw, "/models/m/predict"))[0].status == 200
            if lane:
                reply, on_lane = await started(gw, "/models/m/predict")
                assert on_lane
            else:
                reply = await handled(gw, "/models/m/predict")
            breaker = gw.breakers[server.url]
            results.append((reply.status, reply.body, breaker.failures, stats(gw)))
            assert gw.forwarder.resilient.inflight == 0
            await asyncio.sleep(0)  # the aborted connection reports itself closed
            assert gw.forwarder.resilient.transport.pools[server.url].open_connections == 0  # type: ignore[attr-defined]
    lane_result, coroutine_result = results
    status = {"silent": 504, "half": 502, "garbage": 502}[how]
    assert lane_result[0] == status
    # the same but for the port in the message
    assert lane_result[2:] == coroutine_result[2:] == (1, (2, 1))
    assert lane_result[0] == coroutine_result[0]
    code = {
        "silent": b"UPSTREAM_TIMEOUT",
        "half": b"UPSTREAM_BROKEN",
        "garbage": b"UPSTREAM_BROKEN",
    }
    assert code[how] in lane_result[1] and code[how] in coroutine_result[1]
    if how == "silent":  # no port in the message: the same bytes
        assert lane_result[1] == coroutine_result[1]


async def test_hooks_trace_a_sampled_request_and_leave_the_others_on_the_lane(env: Env) -> None:
    server = await env.server(echo)
    hooks = Hooks()
    async with closing(gateway_for({1: server.url}, hooks=hooks)) as gw:
        await started(gw, "/models/m/predict")
        reply, on_lane = await started(gw, "/models/m/predict")
        assert on_lane and reply.status == 200
        _, request = server.requests[-1]
        assert (b"traceparent", b"00-unsampled") in request.headers  # the unsampled headers
        assert hooks.events == []
        traced, on_lane = await started(gw, "/models/m/traced")
        assert not on_lane and traced.status == 200
        assert hooks.events == ["attempt v1", "attempt end 200", "chosen v1", "end 200"]


async def test_the_lane_makes_a_sampled_requests_head_only_when_it_has_a_warm_connection(
    env: Env,
) -> None:
    """Two sampled requests at once on a pool with one idle connection: the first takes it
    on the lane (the lane's head, then its attempt); the second finds none and the coroutine
    path makes its one attempt, the lane having made nothing for it (no head, no span)."""
    server = await env.server(echo)
    hooks = LaneHooks()
    async with closing(gateway_for({1: server.url}, hooks=hooks)) as gw:
        await started(gw, "/models/m/predict")  # one connection, idle now
        loop = asyncio.get_running_loop()
        first: asyncio.Future[Reply | None] = loop.create_future()
        second: asyncio.Future[Reply | None] = loop.create_future()
        tasks = len(asyncio.all_tasks())
        gw.start("POST", "/models/m/traced", HEADERS, BODY, first.set_result)
        assert len(asyncio.all_tasks()) == tasks  # on the lane
        assert hooks.events == ["lane head v1"]
        gw.start("POST", "/models/m/traced", HEADERS, BODY, second.set_result)
        assert len(asyncio.all_tasks()) == tasks + 1  # the coroutine path's task
        async with asyncio.timeout(EVENT_WAIT_S):
            replies = await asyncio.gather(first, second)
    assert [r.status if r else None for r in replies] == [200, 200]
    assert hooks.events.count("lane head v1") == 1
    assert hooks.events.count("attempt v1") == 1
    assert hooks.events.count("lane attempt end 200") == hooks.events.count("attempt end 200")
    assert hooks.events.count("end 200") == 2
    lane_sent = [r for _, r in server.requests if (b"traceparent", TRACED) in r.headers]
    assert len(lane_sent) == 1


class _Client:
    """The client's side of the fast HTTP protocol: what it is written."""

    def __init__(self) -> None:
        self.written = b""
        self.more = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written += data
        self.more.set()

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


class _Paths:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def handler_for(self, method: str, path: str) -> Gateway:
        return self.gateway


def post(path: str, tag: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nX-Tag: {tag}\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )


async def until(condition: Callable[[], bool], client: _Client) -> None:
    async with asyncio.timeout(EVENT_WAIT_S):
        while not condition():
            client.more.clear()
            await client.more.wait()


async def test_pipelined_requests_on_the_lane_are_answered_in_order(env: Env) -> None:
    server = await env.server(echo)
    async with closing(gateway_for({1: server.url})) as gw:
        cls = protocol_class(_Paths(gw))
        protocol: Any = cls(Config(app="x", access_log=False), ServerState(), {})  # type: ignore[call-arg]
        client = _Client()
        protocol.connection_made(client)
        protocol.data_received(post("/models/m/warm", "w"))
        await until(lambda: client.written.count(b"HTTP/1.1 200") == 1, client)
        paths = ["/models/m/slow", "/models/m/a", "/models/m/b"]
        protocol.data_received(b"".join(post(p, str(i)) for i, p in enumerate(paths)))
        await until(lambda: client.written.count(b"HTTP/1.1 200") == 4, client)
        bodies = [b"/" + p.rsplit("/", 1)[1].encode() + b" " + BODY for p in paths]
        found = [client.written.find(body) for body in bodies]
        assert -1 not in found and found == sorted(found)
        assert server.accepted == 1  # one upstream connection, on the lane throughout
        assert stats(gw) == (4, 0)
        protocol.connection_lost(None)


async def test_a_mock_transport_keeps_the_coroutine_path() -> None:
    transport = MockTransport(lambda request: UpstreamResponse(200, [], b""))
    metrics = GatewayMetrics()
    forwarder = Forwarder(Resilient(transport), metrics, ShadowQueue(transport, metrics))
    table = RouteTable(1, {})
    gw = Gateway(cast(RouteFollower, _Follower(table)), forwarder)
    assert gw.lane is None


async def test_a_connection_closing_as_the_lane_takes_it_is_resent_on_a_fresh_one(
    env: Env,
) -> None:
    """Closed by us (the server's FIN read) but not yet reported lost: the lane's `start`
    writes nothing on it, and the request goes out once, on a new connection."""
    server = await env.server(echo)
    async with closing(gateway_for({1: server.url})) as gw:
        await started(gw, "/models/m/predict")
        transport = gw.forwarder.resilient.transport
        assert isinstance(transport, Http1Transport)
        idle = transport.pools[server.url]._idle  # (the pool's own stack: no public view)
        idle[-1].close(graceful=True)  # closing, still on the stack until the loop reports it
        reply, _ = await started(gw, "/models/m/again")
        assert reply.status == 200 and reply.body == b"/again " + BODY
        assert [(conn, r.line) for conn, r in server.requests] == [
            (0, b"POST /predict HTTP/1.1"),
            (1, b"POST /again HTTP/1.1"),
        ]
        assert stats(gw) == (2, 0) and gw.forwarder.resilient.inflight == 0


async def test_start_answers_what_it_can_at_once_and_the_rest_in_a_task(env: Env) -> None:
    server = await env.server(echo)
    async with closing(gateway_for({1: server.url})) as gw:
        replies: list[Reply | None] = []
        gw.start("GET", "/models/m/predict", HEADERS, b"", replies.append)
        gw.start("POST", "/models/nothere/predict", HEADERS, b"", replies.append)
        assert [r.status for r in replies if r is not None] == [404, 404]  # no await needed
        metrics, on_lane = await started(gw, "/metrics")
        assert not on_lane and metrics.status == 200


def unsampled_hooks() -> TracingHooks:
    """Tracing on, sampling nothing (no exporter)."""
    env = {"OTEL_TRACES_SAMPLER_ARG": "0", "OTEL_TRACES_EXPORTER": "none"}
    tracing = setup_tracing("gateway", env, "on")
    assert tracing is not None
    return TracingHooks(tracing)


def traceparents(headers: Headers) -> list[bytes]:
    return [value for name, value in headers if name == b"traceparent"]


def traceparent_of(headers: Headers) -> tuple[bytes, bytes, bytes]:
    """The trace id, span id and flags of the one `traceparent` in `headers`."""
    (value,) = [value for name, value in headers if name == b"traceparent"]
    version, trace, span, flags = value.split(b"-")
    assert (version, len(trace), len(span)) == (b"00", 32, 16)
    return trace, span, flags


async def test_an_unsampled_request_forwards_one_traceparent_cold_and_on_the_lane(
    env: Env,
) -> None:
    """Cold (the coroutine path) and on the lane, a new trace or the caller's: one
    `traceparent` of flag 00 to the upstream, the caller's trace id under a span id of ours."""
    server = await env.server(echo)
    async with closing(gateway_for({1: server.url}, hooks=unsampled_hooks())) as gw:
        assert not (await started(gw, "/models/m/predict"))[1]
        assert (await started(gw, "/models/m/predict"))[1]
        caller = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        reply, on_lane = await started(
            gw, "/models/m/predict", [*HEADERS, (b"traceparent", caller)]
        )
        assert on_lane and reply.status == 200
    cold, lane, continued = (traceparent_of(r.headers) for _, r in server.requests)
    assert cold[2] == lane[2] == continued[2] == b"00"
    assert cold[0] != lane[0]  # two new traces
    assert continued[0] == caller.split(b"-")[1] and continued[1] != caller.split(b"-")[2]
    for _, request in server.requests:
        assert (b"content-type", b"application/json") in request.headers


async def test_an_unsampled_request_keeps_its_traceparent_through_resend_and_fallback(
    env: Env,
) -> None:
    """Started on the lane, resent after a stale connection (refused) and fallen back to
    stable: the same `traceparent` on every attempt of the request."""
    stable = await env.server(echo)
    canary = await refusing_canary(env)
    splits = [Split(version=2, weight=100.0)]
    hooks = unsampled_hooks()
    urls = {1: stable.url, 2: canary.url}
    async with closing(gateway_for(urls, splits=splits, hooks=hooks)) as gw:
        assert (await started(gw, "/models/m/predict"))[0].body == b"canary"
        reply, on_lane = await started(gw, "/models/m/predict")
        assert on_lane and reply.body == b"/predict " + BODY  # stable's answer
    (_, first), (_, second) = canary.requests
    ((_, fallen_back),) = stable.requests
    assert traceparent_of(second.headers) == traceparent_of(fallen_back.headers)
    assert traceparent_of(first.headers)[0] != traceparent_of(second.headers)[0]
    assert traceparent_of(fallen_back.headers)[2] == b"00"


class Recorded:
    """Tracing (gateway.spans.Tracing) that samples every trace and keeps the records."""

    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self.bound = 1 << 64
        self.dropped = 0
        self.propagator: Any = None

    def sample(self, trace_id: int, parent_span_id: int, parent_flags: int, name: str) -> bool:
        return True

    def emit(self, record: SpanRecord) -> None:
        self.records.append(record)


def shape(records: list[SpanRecord], url: str = "") -> list[tuple[Any, ...]]:
    """What two requests' spans share: all but ids, times, the exception's text (and the
    upstream's `url`)."""

    def same(value: Any) -> Any:
        return value.replace(url, "<url>") if url and isinstance(value, str) else value

    return [
        (
            r[0],
            r[1],
            r[5],
            r[6],
            r[7],
            {k: same(v) for k, v in r[10].items()},
            r[11],
            same(r[12]),
            [(e[0], sorted(e[2])) for e in r[13]],
        )
        for r in records
    ]


def spans_of_one(records: list[SpanRecord], caller_span: int = 0) -> tuple[Any, ...]:
    """The SERVER span last, its CLIENT spans its children, all of one trace."""
    *clients, server = records
    assert server[1] == 1 and server[4] == caller_span  # SERVER
    for client in clients:
        assert client[1] == 2 and client[2] == server[2] and client[4] == server[3]
    return server, clients


async def test_a_sampled_request_takes_the_lane_with_the_spans_of_the_coroutine_path(
    env: Env,
) -> None:
    """Its SERVER and CLIENT spans as the coroutine path records them, and the CLIENT span's
    trace context the one `traceparent` the upstream gets."""
    server = await env.server(echo)
    tracing = Recorded()
    async with closing(gateway_for({1: server.url}, hooks=TracingHooks(tracing))) as gw:
        cold, on_lane = await started(gw, "/models/m/predict")
        assert not on_lane and cold.status == 200
        coroutine = tracing.records[:]
        tracing.records.clear()
        lane, on_lane = await started(gw, "/models/m/predict")
        assert on_lane and lane == cold
        handled_reply = await handled(gw, "/models/m/predict")
        assert handled_reply == cold
        on_the_lane, by_handle = tracing.records[:2], tracing.records[2:]
    assert shape(on_the_lane) == shape(coroutine) == shape(by_handle)
    for records, (_, request) in zip(
        (coroutine, on_the_lane, by_handle), server.requests, strict=True
    ):
        server_span, (client,) = spans_of_one(records)
        assert traceparent_of(request.headers) == (
            b"%032x" % client[2],
            b"%016x" % client[3],
            b"01",
        )
        assert client[10]["modelyard.retry"] is False
        assert server_span[10]["http.response.status_code"] == 200
        assert server_span[10]["modelyard.upstream.attempts"] == 1
        assert server_span[10]["model.version"] == "1"
    (_, cold_sent), (_, lane_sent), _ = server.requests
    assert [h for h in lane_sent.headers if h[0] != b"traceparent"] == [
        h for h in cold_sent.headers if h[0] != b"traceparent"
    ]


async def test_a_sampled_request_on_the_lane_continues_its_callers_trace(env: Env) -> None:
    server = await env.server(echo)
    tracing = Recorded()
    caller = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [*HEADERS, (b"traceparent", caller), (b"tracestate", b"k=v")]
    async with closing(gateway_for({1: server.url}, hooks=TracingHooks(tracing))) as gw:
        await started(gw, "/models/m/predict", headers)
        tracing.records.clear()
        reply, on_lane = await started(gw, "/models/m/predict", headers)
        assert on_lane and reply.status == 200
    server_span, (client,) = spans_of_one(tracing.records, 0xB7AD6B7169203331)
    assert server_span[2] == 0x0AF7651916CD43DD8448EB211C80319C and server_span[5] is True
    assert server_span[7] == client[7] == "k=v"
    (_, cold), (_, request) = server.requests
    trace, span, flags = traceparent_of(request.headers)
    assert (trace, span, flags) == (b"%032x" % client[2], b"%016x" % client[3], b"01")
    assert [v for n, v in request.headers if n == b"tracestate"] == [b"k=v"]
    assert [h for h in request.headers if h[0] != b"traceparent"] == [
        h for h in cold.headers if h[0] != b"traceparent"
    ]


async def test_a_sampled_request_keeps_its_spans_through_resend_and_fallback(env: Env) -> None:
    """Started on the lane, resent on a fresh connection (refused) and fallen back to
    stable: the first attempt's span (the resend's error), the fallback's event, the second
    attempt's span (a retry), as on the coroutine path."""
    stable = await env.server(echo)
    canary = await refusing_canary(env)
    tracing = Recorded()
    splits = [Split(version=2, weight=100.0)]
    urls = {1: stable.url, 2: canary.url}
    async with closing(gateway_for(urls, splits=splits, hooks=TracingHooks(tracing))) as gw:
        assert (await started(gw, "/models/m/predict"))[0].body == b"canary"
        tracing.records.clear()
        reply, on_lane = await started(gw, "/models/m/predict")
        assert on_lane and reply.body == b"/predict " + BODY
    server_span, (first, second) = spans_of_one(tracing.records)
    assert first[10]["model.version"] == "2" and first[10]["modelyard.retry"] is False
    assert first[11] == 2 and first[10]["error.type"] == "UPSTREAM_UNREACHABLE"
    assert second[10]["model.version"] == "1" and second[10]["modelyard.retry"] is True
    assert second[10]["http.response.status_code"] == 200
    assert server_span[10]["modelyard.upstream.attempts"] == 2
    assert server_span[10]["model.version"] == "1"
    assert [e[0] for e in server_span[13]] == ["fallback"]
    (_, _), (_, resent) = canary.requests
    ((_, fallen_back),) = stable.requests
    assert traceparent_of(resent.headers)[1] == b"%016x" % first[3]
    assert traceparent_of(fallen_back.headers)[1] == b"%016x" % second[3]


@pytest.mark.parametrize("how", ["silent", "garbage"])
async def test_a_sampled_request_failing_on_the_lane_has_the_spans_of_the_coroutine_path(
    env: Env, how: str
) -> None:
    shapes = []
    for lane in (True, False):
        server = await env.server(failing_second(1, how))
        tracing = Recorded()
        hooks = TracingHooks(tracing)
        async with closing(gateway_for({1: server.url}, deadline_ms=200, hooks=hooks)) as gw:
            assert (await started(gw, "/models/m/predict"))[0].status == 200
            tracing.records.clear()
            if lane:
                reply, on_lane = await started(gw, "/models/m/predict")
                assert on_lane
            else:
                reply = await handled(gw, "/models/m/predict")
            assert reply.status == {"silent": 504, "garbage": 502}[how]
            assert gw.forwarder.resilient.inflight == 0
        server_span, (client,) = spans_of_one(tracing.records)
        assert server_span[11] == client[11] == 2  # errors
        assert server_span[10]["http.response.status_code"] == reply.status
        shapes.append(shape(tracing.records, server.url))
    assert shapes[0] == shapes[1]
