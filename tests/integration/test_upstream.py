"""The upstream client against real loopback servers.

Two kinds of server, both in the test's event loop: a plain asyncio server scripted per test for
the wire's edge cases (stale keep-alive, resets, bad HTTP, close-delimited bodies), and uvicorn for
what a real model server sends (chunked streaming, large bodies). Servers listen before the client
starts, so no test waits for readiness; every wait is on an event the server sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvicorn
import uvloop

from gateway.errors import BadRequest, ConnectFailed, UpstreamBroken, UpstreamError, UpstreamTimeout
from gateway.transport.pool import Http1Transport, UpstreamPool

LOOPBACK = "127.0.0.1"
TIMEOUT_S = 5.0  # for requests that must not time out
SLACK_S = 0.5  # how late a deadline may fire on a busy two-core machine
EARLY_S = 0.01  # uvloop's timers run on a clock cached per loop turn, a hair behind monotonic
EVENT_WAIT_S = 5.0
PATTERN = bytes(range(256))
MIB = 1024 * 1024


def pattern(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


def answer(body: bytes = b"ok", status: int = 200, headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), headers, body)


class Request:
    def __init__(self, line: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.line, self.headers, self.body = line, headers, body


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: Any) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.index = server.accepted

    async def read_request(self) -> Request | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            line, *rest = head[:-4].split(b"\r\n")
            headers = [(n, v.strip()) for n, v in (h.split(b":", 1) for h in rest)]
            length = next((int(v) for n, v in headers if n.lower() == b"content-length"), 0)
            request = Request(line, headers, await self.reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        self.server.requests.append((self.index, request))
        self.server.request_seen.set()
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def wait_eof(self) -> None:
        """Until the client closes its side (FIN or RST); records it on the server."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.server.client_closed.set()


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A plain asyncio server on a free loopback port running `handler` for each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.open = 0
        self.peak = 0
        self.requests: list[tuple[int, Request]] = []
        self.request_seen = asyncio.Event()
        self.client_closed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{LOOPBACK}:{self.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:  # aborted by _serve; wait until the sockets are closed
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        peer = Peer(self, reader, writer)
        self.accepted += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await self.handler(peer)
        except asyncio.CancelledError:
            pass  # cancelled by __aexit__; ending quietly keeps asyncio's stream callback silent
        finally:
            self.open -= 1
            writer.transport.abort()  # no await here: a cancel must not land in the cleanup


async def keep_alive(peer: Peer) -> None:
    """Answer every request with its own path as the body."""
    while (request := await peer.read_request()) is not None:
        await peer.send(answer(request.line.split(b" ")[1]))


async def never_answer(peer: Peer) -> None:
    await peer.read_request()
    await peer.wait_eof()


def scripted(*per_connection: Handler) -> Handler:
    """Connection N runs the N-th handler."""

    async def handler(peer: Peer) -> None:
        await per_connection[peer.index](peer)

    return handler


# -- uvicorn, for a real server's framing ---------------------------------------------------------


async def uvicorn_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/len/N: N bytes with content-length; /chunks?1,2,3: streamed chunks; /echo: the body."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path: str = scope["path"]
    if path.startswith("/len/"):
        data = pattern(int(path.removeprefix("/len/")))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(data))],
            }
        )
        await send({"type": "http.response.body", "body": data})
    elif path == "/chunks":
        sizes = [int(s) for s in scope["query_string"].split(b",")]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for size in sizes:  # no content-length: uvicorn sends each part as one chunk
            await send({"type": "http.response.body", "body": pattern(size), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def uvicorn_server() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    sock.listen(128)  # accepting (into the backlog) before uvicorn even starts
    config = uvicorn.Config(uvicorn_app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://{LOOPBACK}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# -- fixtures -------------------------------------------------------------------------------------


class Env:
    """Servers and pools of one test, closed in reverse order (pools before their servers)."""

    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self._stack = stack

    async def server(self, handler: Handler) -> RawServer:
        return await self._stack.enter_async_context(bounded(RawServer(handler)))

    async def uvicorn(self) -> str:
        return await self._stack.enter_async_context(bounded(uvicorn_server()))

    def pool(self, url: str, **options: Any) -> UpstreamPool:
        pool = UpstreamPool(url, **options)

        async def close() -> None:
            async with asyncio.timeout(EVENT_WAIT_S):  # a hung close fails the test, not the run
                await pool.close()

        self._stack.push_async_callback(close)
        return pool


@contextlib.asynccontextmanager
async def bounded(context: contextlib.AbstractAsyncContextManager[Any]) -> AsyncIterator[Any]:
    """Enter `context`; a shutdown that hangs fails the test instead of stalling the run."""
    async with contextlib.AsyncExitStack() as stack:
        value = await stack.enter_async_context(context)
        try:
            yield value
        finally:
            async with asyncio.timeout(EVENT_WAIT_S):
                await stack.aclose()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as stack:
        yield Env(stack)


@pytest.fixture
def refused_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return f"http://{LOOPBACK}:{sock.getsockname()[1]}"


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A listener whose accept queue is full: a connect to it hangs (the kernel drops the SYN)."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        filler.close()
        listener.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a state the client reaches by itself (a FIN it reads), bounded."""
    async with asyncio.timeout(EVENT_WAIT_S):
        while not condition():
            await asyncio.sleep(0.001)


async def get(pool: UpstreamPool, path: bytes = b"/", timeout_s: float = TIMEOUT_S) -> Any:
    return await pool.request(b"GET", path, [], b"", timeout_s)


# -- bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, 65536, 2 * MIB])
async def test_content_length_bodies(env: Env, size: int) -> None:
    pool = env.pool(await env.uvicorn())
    response = await get(pool, b"/len/%d" % size)
    assert response.status == 200
    assert response.body == pattern(size)
    assert (b"content-length", b"%d" % size) in response.headers


@pytest.mark.parametrize(
    "sizes",
    [[1], [1, 2, 15, 16, 17, 255, 256], [4096] * 8, [65535, 65536, 100_000], [2 * MIB], [0, 3]],
    ids=["one-byte", "small", "4k", "64k", "2MiB", "empty-part"],
)
async def test_chunked_bodies(env: Env, sizes: list[int]) -> None:
    pool = env.pool(await env.uvicorn())
    query = b",".join(b"%d" % s for s in sizes)
    response = await get(pool, b"/chunks?" + query)
    assert response.status == 200
    assert response.body == b"".join(pattern(s) for s in sizes)
    assert all(name != b"transfer-encoding" for name, _ in response.headers)
    assert (await get(pool, b"/len/3")).body == pattern(3)
    assert pool.reused == 1 and pool.open_connections == 1


async def test_chunk_extensions_and_trailers_parsed_byte_by_byte(env: Env) -> None:
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 11\r\n\r\n"
    )

    async def dribble(peer: Peer) -> None:
        while await peer.read_request() is not None:
            for i in range(len(wire)):
                await peer.send(wire[i : i + 1])

    pool = env.pool((await env.server(dribble)).url)
    for _ in range(2):
        response = await get(pool)
        assert response.body == b"hello world"
        assert response.headers == []
    assert pool.reused == 1


async def test_large_request_body_is_sent_whole(env: Env) -> None:
    pool = env.pool(await env.uvicorn())
    body = pattern(2 * MIB + 3)
    response = await pool.request(b"POST", b"/echo", [], body, TIMEOUT_S)
    assert response.status == 201 and response.body == body


# -- keep-alive -----------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(env: Env) -> None:
    server = await env.server(keep_alive)
    pool = env.pool(server.url)
    for i in range(10):
        assert (await get(pool, b"/%d" % i)).body == b"/%d" % i
        assert pool.open_connections == 1 and pool.idle_connections == 1
    assert pool.reused == 9
    assert server.accepted == 1


async def test_connection_closed_while_idle_is_not_a_failure(env: Env) -> None:
    async def answer_once_then_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"first"))
        await peer.close()

    server = await env.server(scripted(answer_once_then_close, keep_alive))
    pool = env.pool(server.url)
    assert (await get(pool)).body == b"first"
    assert (await get(pool, b"/second")).body == b"/second"
    assert server.accepted == 2


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_stale_keep_alive_is_retried_once_on_a_fresh_connection(env: Env, how: str) -> None:
    async def close_on_second_request(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"first"))
        await peer.read_request()  # it arrived just as the server gave up on the connection
        await (peer.close() if how == "fin" else peer.reset())

    server = await env.server(scripted(close_on_second_request, keep_alive))
    pool = env.pool(server.url)
    assert (await get(pool)).body == b"first"
    assert (await get(pool, b"/again")).body == b"/again"
    assert [(conn, r.line) for conn, r in server.requests] == [
        (0, b"GET / HTTP/1.1"),
        (0, b"GET /again HTTP/1.1"),
        (1, b"GET /again HTTP/1.1"),
    ]
    assert pool.open_connections == 1


async def test_no_retry_once_the_answer_has_started(env: Env) -> None:
    async def half_answer_second(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer())
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\n")
        await peer.close()

    server = await env.server(half_answer_second)
    pool = env.pool(server.url)
    await get(pool)
    with pytest.raises(UpstreamBroken, match=server.url):
        await get(pool)
    assert server.accepted == 1 and pool.open_connections == 0


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_fresh_connection_closed_after_the_request_is_broken(env: Env, how: str) -> None:
    async def read_then_close(peer: Peer) -> None:
        await peer.read_request()
        await (peer.close() if how == "fin" else peer.reset())

    server = await env.server(read_then_close)
    pool = env.pool(server.url)
    with pytest.raises(UpstreamBroken, match="before a complete answer") as raised:
        await get(pool)
    assert server.url in raised.value.message
    assert server.accepted == 1 and pool.open_connections == 0


async def test_idle_connections_expire(env: Env) -> None:
    server = await env.server(keep_alive)
    pool = env.pool(server.url, idle_timeout_s=0.3)
    await get(pool)
    await get(pool)  # at once: reused
    await asyncio.sleep(0.4)  # time must pass for the idle connection to expire
    await get(pool)
    assert server.accepted == 2 and pool.reused == 1 and pool.open_connections == 1


async def test_expired_connections_at_the_bottom_of_the_stack_are_closed(env: Env) -> None:
    async def slow_path(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.line.startswith(b"GET /slow"):
                await asyncio.sleep(0.4)  # the other connection ages meanwhile
            await peer.send(answer())

    server = await env.server(slow_path)
    pool = env.pool(server.url, idle_timeout_s=0.3)
    await asyncio.gather(get(pool, b"/fast"), get(pool, b"/slow"))  # idle: fast, then slow
    assert pool.idle_connections == 2
    await get(pool)
    assert pool.reused == 1  # the warm one, from the top
    assert pool.idle_connections == 1 and pool.open_connections == 1
    assert server.accepted == 2


async def test_a_connection_the_server_closes_while_idle_leaves_the_pool(env: Env) -> None:
    async def answer_once_then_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"first"))
        await peer.close()

    server = await env.server(scripted(answer_once_then_close, keep_alive))
    pool = env.pool(server.url)
    assert (await get(pool)).body == b"first"
    await until(lambda: pool.open_connections == 0)  # seen without sending anything
    assert pool.idle_connections == 0
    assert (await get(pool, b"/next")).body == b"/next"
    assert pool.reused == 0 and server.accepted == 2


async def test_unsolicited_bytes_on_an_idle_connection_retire_it(env: Env) -> None:
    answered = asyncio.Event()

    async def chatty(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer())
        await answered.wait()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")  # nobody asked
        await peer.wait_eof()

    server = await env.server(chatty)
    pool = env.pool(server.url)
    await get(pool)
    assert pool.idle_connections == 1
    answered.set()
    await asyncio.wait_for(server.client_closed.wait(), EVENT_WAIT_S)
    await until(lambda: pool.open_connections == 0)
    assert pool.idle_connections == 0


# -- answers that end the connection --------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        answer(b"bye", headers=b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nbye",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_close_answers_are_not_reused(env: Env, wire: bytes) -> None:
    async def answer_and_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(wire)
        await peer.wait_eof()

    server = await env.server(answer_and_close)
    pool = env.pool(server.url)
    for _ in range(2):
        response = await get(pool)
        assert response.body == b"bye"
        assert all(name != b"connection" for name, _ in response.headers)
        assert pool.open_connections == 0
    assert server.accepted == 2 and pool.reused == 0


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_close_delimited_body(env: Env, version: bytes) -> None:
    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/" + version + b" 200 OK\r\nX-Kind: stream\r\n\r\n")
        for part in (b"part one, ", b"part two, ", pattern(100_000)):
            await peer.send(part)
        await peer.close()

    server = await env.server(until_close)
    pool = env.pool(server.url)
    response = await get(pool)
    assert response.body == b"part one, part two, " + pattern(100_000)
    assert response.headers == [(b"x-kind", b"stream")]
    assert pool.open_connections == 0


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ],
    ids=["short-content-length", "unterminated-chunks", "cut-headers"],
)
async def test_truncated_answer_is_broken(env: Env, wire: bytes) -> None:
    async def truncate(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(wire)
        await peer.close()

    pool = env.pool((await env.server(truncate)).url)
    with pytest.raises(UpstreamBroken):
        await get(pool)
    assert pool.open_connections == 0


# -- answers without a body, informational answers -----------------------------------------------


async def test_informational_answers_are_skipped(env: Env) -> None:
    async def informational(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + answer(b"one"))
        await peer.read_request()
        await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"two"))
        await peer.wait_eof()

    pool = env.pool((await env.server(informational)).url)
    expect = [(b"expect", b"100-continue")]
    first = await pool.request(b"POST", b"/", expect, b"body", TIMEOUT_S)
    assert (first.status, first.body, first.headers) == (200, b"one", [(b"content-length", b"3")])
    second = await pool.request(b"POST", b"/", expect, b"body", TIMEOUT_S)
    assert (second.status, second.body) == (200, b"two")
    assert pool.reused == 1


async def test_head_204_and_304_have_no_body_and_keep_the_connection(env: Env) -> None:
    wires = {
        b"/head-length": b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n",
        b"/head-chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        b"/head-bare": b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n",
        b"/204": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"/304": b'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\n\r\n',
    }

    async def no_body(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await peer.send(wires[request.line.split(b" ")[1]])

    server = await env.server(no_body)
    pool = env.pool(server.url)
    for path in wires:
        method = b"HEAD" if path.startswith(b"/head") else b"GET"
        response = await pool.request(method, path, [], b"", TIMEOUT_S)
        assert response.body == b""
        assert response.status == int(wires[path][9:12])
    assert server.accepted == 1 and pool.reused == len(wires) - 1


async def test_head_answer_with_connection_close_is_not_reused(env: Env) -> None:
    async def head_then_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 9\r\n\r\n")
        await peer.wait_eof()

    server = await env.server(head_then_close)
    pool = env.pool(server.url)
    for _ in range(2):
        response = await pool.request(b"HEAD", b"/", [], b"", TIMEOUT_S)
        assert (response.status, response.body) == (200, b"")
        assert pool.open_connections == 0
    assert server.accepted == 2 and pool.reused == 0


# -- errors ---------------------------------------------------------------------------------------


async def test_connect_refused(env: Env, refused_url: str) -> None:
    pool = env.pool(refused_url)
    with pytest.raises(ConnectFailed, match="cannot connect") as raised:
        await get(pool)
    assert refused_url in raised.value.message
    assert pool.open_connections == 0


async def test_unknown_host(env: Env) -> None:
    pool = env.pool("http://no-such-host.invalid:8080", connect_timeout_s=3.0)
    with pytest.raises(ConnectFailed, match=r"no-such-host\.invalid"):
        await get(pool)
    assert pool.open_connections == 0


async def test_connect_timeout(env: Env, full_backlog: str) -> None:
    pool = env.pool(full_backlog, connect_timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match="connect timed out"):
        await get(pool)
    assert 0.2 - EARLY_S <= time.monotonic() - started < 0.2 + SLACK_S
    assert pool.open_connections == 0


async def test_no_answer_times_out_and_drops_the_connection(env: Env) -> None:
    server = await env.server(never_answer)
    pool = env.pool(server.url)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=server.url):
        await get(pool, timeout_s=0.3)
    assert 0.3 - EARLY_S <= time.monotonic() - started < 0.3 + SLACK_S
    assert pool.open_connections == 0 and pool.idle_connections == 0
    await asyncio.wait_for(server.client_closed.wait(), EVENT_WAIT_S)


async def test_a_spent_budget_sends_nothing(env: Env) -> None:
    server = await env.server(keep_alive)
    pool = env.pool(server.url)
    for budget in (0.0, -1.0):
        with pytest.raises(UpstreamTimeout):
            await get(pool, timeout_s=budget)
    assert server.accepted == 0 and pool.open_connections == 0


async def test_a_shorter_deadline_after_a_longer_one_still_fires_on_time(env: Env) -> None:
    async def answer_first_only(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer())
        await peer.read_request()
        await peer.wait_eof()

    pool = env.pool((await env.server(answer_first_only)).url)
    await get(pool, timeout_s=30.0)  # arms the connection's timer 30 s out
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await get(pool, timeout_s=0.2)
    assert 0.2 - EARLY_S <= time.monotonic() - started < 0.2 + SLACK_S
    assert pool.reused == 1 and pool.open_connections == 0


async def test_a_longer_deadline_after_a_shorter_one_is_honoured(env: Env) -> None:
    async def second_answer_late(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"quick"))
        await peer.read_request()
        await asyncio.sleep(0.5)  # past the first request's deadline, inside the second's
        await peer.send(answer(b"late"))
        await peer.wait_eof()

    pool = env.pool((await env.server(second_answer_late)).url)
    assert (await get(pool, timeout_s=0.3)).body == b"quick"
    assert (await get(pool, timeout_s=TIMEOUT_S)).body == b"late"
    assert pool.reused == 1 and pool.open_connections == 1


async def test_the_deadline_covers_waiting_for_a_connection(env: Env) -> None:
    release = asyncio.Event()

    async def held(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await release.wait()
            await peer.send(answer())

    server = await env.server(held)
    pool = env.pool(server.url, max_connections=1)
    holder = asyncio.create_task(get(pool))
    await asyncio.wait_for(server.request_seen.wait(), EVENT_WAIT_S)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):  # not the outer TimeoutError: the pool's own deadline
        await asyncio.wait_for(get(pool, timeout_s=0.2), EVENT_WAIT_S)
    assert 0.2 - EARLY_S <= time.monotonic() - started < 0.2 + SLACK_S
    release.set()
    assert (await holder).status == 200
    assert len(server.requests) == 1 and pool.open_connections == 1


@pytest.mark.parametrize(
    "wire",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n",
    ],
    ids=["garbage", "status", "two-lengths", "chunk-size", "header", "upgrade"],
)
async def test_invalid_http_is_broken(env: Env, wire: bytes) -> None:
    async def invalid(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(wire)
        await peer.wait_eof()

    server = await env.server(invalid)
    pool = env.pool(server.url)
    with pytest.raises(UpstreamBroken, match=server.url):
        await get(pool)
    assert pool.open_connections == 0
    await asyncio.wait_for(server.client_closed.wait(), EVENT_WAIT_S)


async def test_bytes_after_the_answer_retire_the_connection(env: Env) -> None:
    async def extra(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(answer(b"one") + answer(b"unasked"))
        await peer.wait_eof()

    server = await env.server(scripted(extra, keep_alive))
    pool = env.pool(server.url)
    assert (await get(pool)).body == b"one"
    assert (await get(pool, b"/two")).body == b"/two"
    assert server.accepted == 2


async def test_header_injection_is_refused_before_connecting(env: Env) -> None:
    server = await env.server(keep_alive)
    pool = env.pool(server.url)
    for headers, path in [([(b"x-a", b"1\r\nx-evil: 1")], b"/"), ([], b"/a b"), ([], b"/a\nb")]:
        with pytest.raises(BadRequest):
            await pool.request(b"GET", path, headers, b"", TIMEOUT_S)
    assert server.accepted == 0 and pool.open_connections == 0


# -- cancellation, limits, closing ----------------------------------------------------------------


async def test_cancelled_request_closes_its_connection(env: Env) -> None:
    server = await env.server(never_answer)
    pool = env.pool(server.url)
    task = asyncio.create_task(get(pool))
    await asyncio.wait_for(server.request_seen.wait(), EVENT_WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.open_connections == 0 and pool.idle_connections == 0
    await asyncio.wait_for(server.client_closed.wait(), EVENT_WAIT_S)
    await pool.close()
    assert pool.open_connections == 0


async def test_cancelled_while_connecting_frees_the_slot(env: Env, full_backlog: str) -> None:
    pool = env.pool(full_backlog, max_connections=1, connect_timeout_s=30.0)
    task = asyncio.create_task(get(pool))
    await asyncio.sleep(0)  # one step: the task takes its slot and waits for the SYN-ACK
    assert pool.open_connections == 1 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.open_connections == 0


async def test_cancelled_waiter_leaves_the_queue(env: Env) -> None:
    release = asyncio.Event()

    async def held(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            if request.line.startswith(b"GET /slow"):
                await release.wait()
            await peer.send(answer())

    server = await env.server(held)
    pool = env.pool(server.url, max_connections=1)
    slow = asyncio.create_task(get(pool, b"/slow"))
    await asyncio.wait_for(server.request_seen.wait(), EVENT_WAIT_S)
    queued = asyncio.create_task(get(pool, b"/queued"))
    await asyncio.sleep(0)  # let it reach the queue; it cannot get further while /slow holds
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    release.set()
    assert (await slow).status == 200
    assert (await get(pool, b"/next")).status == 200
    assert [r.line.split(b" ")[1] for _, r in server.requests] == [b"/slow", b"/next"]
    assert server.accepted == 1 and pool.open_connections == 1


async def test_concurrency_is_bounded_by_max_connections(env: Env) -> None:
    async def slow_keep_alive(peer: Peer) -> None:
        while (request := await peer.read_request()) is not None:
            await asyncio.sleep(0)  # answer after others had a turn, so requests overlap
            await peer.send(answer(request.line.split(b" ")[1]))

    server = await env.server(slow_keep_alive)
    pool = env.pool(server.url, max_connections=16)
    paths = [b"/%d" % i for i in range(200)]
    responses = await asyncio.gather(*(get(pool, p) for p in paths))
    assert [r.body for r in responses] == paths
    assert server.peak == 16 and server.accepted == 16
    assert pool.open_connections == 16 and pool.idle_connections == 16
    assert pool.reused == 200 - 16


async def test_a_closed_connection_passes_its_slot_to_the_next_in_line(env: Env) -> None:
    release = asyncio.Event()

    async def close_after_answer(peer: Peer) -> None:
        await peer.read_request()
        await release.wait()
        await peer.send(answer(b"bye", headers=b"Connection: close\r\n"))
        await peer.wait_eof()

    server = await env.server(close_after_answer)
    pool = env.pool(server.url, max_connections=1)
    first = asyncio.create_task(get(pool))
    await asyncio.wait_for(server.request_seen.wait(), EVENT_WAIT_S)
    second = asyncio.create_task(get(pool))  # queues: the one slot is taken
    await asyncio.sleep(0)
    assert server.accepted == 1 and not second.done()
    release.set()
    assert [(await first).body, (await second).body] == [b"bye", b"bye"]
    assert server.accepted == 2 and pool.open_connections == 0


async def test_closing_the_pool_never_passes_off_a_cut_body_as_complete(env: Env) -> None:
    sent = asyncio.Event()

    async def until_close(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\npartial")  # the body ends when the server closes
        sent.set()
        await peer.wait_eof()

    server = await env.server(until_close)
    pool = env.pool(server.url)
    task = asyncio.create_task(get(pool))
    await asyncio.wait_for(sent.wait(), EVENT_WAIT_S)
    for _ in range(10):  # loop turns, not wall time: the client reads what its socket holds
        await asyncio.sleep(0)
    await pool.close()  # our close, not the server's: the body is cut, not complete
    with pytest.raises(UpstreamError):
        await task


async def test_close_ends_in_flight_and_queued_requests_and_refuses_new_ones(env: Env) -> None:
    server = await env.server(never_answer)
    pool = env.pool(server.url, max_connections=1)
    in_flight = asyncio.create_task(get(pool))
    await asyncio.wait_for(server.request_seen.wait(), EVENT_WAIT_S)
    queued = asyncio.create_task(get(pool))
    await asyncio.sleep(0)  # one step: it finds no free slot and queues
    await pool.close()
    with pytest.raises(UpstreamError):
        await in_flight
    with pytest.raises(ConnectFailed, match="pool closed"):
        await queued
    assert pool.open_connections == 0
    with pytest.raises(ConnectFailed, match="pool closed"):
        await get(pool)


# -- headers --------------------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_not_forwarded(env: Env) -> None:
    server = await env.server(keep_alive)
    pool = env.pool(server.url)
    headers = [
        (b"Host", b"evil.example"),
        (b"Content-Length", b"999"),
        (b"Connection", b"keep-alive, X-Private"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"TE", b"trailers"),
        (b"Trailer", b"X-Sum"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic c2VjcmV0"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"X-Private", b"1"),
        (b"X-Request-Id", b"abc"),
        (b"Accept", b"*/*"),
    ]
    await pool.request(b"POST", b"/v2/models/iris/infer?x=1", headers, b"hello", TIMEOUT_S)
    (_, request), *_ = server.requests
    assert request.line == b"POST /v2/models/iris/infer?x=1 HTTP/1.1"
    assert request.headers == [
        (b"host", f"{LOOPBACK}:{server.port}".encode()),
        (b"content-length", b"5"),
        (b"x-request-id", b"abc"),
        (b"accept", b"*/*"),
    ]
    assert request.body == b"hello"


async def test_answer_headers_are_lower_cased_and_end_to_end_only(env: Env) -> None:
    extra = (
        b"Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
        b"Proxy-Authenticate: Basic\r\nTrailer: X-Sum\r\nX-Model-Version: 3\r\n"
        b"Content-Type: application/json\r\n"
    )

    async def hop(peer: Peer) -> None:
        while await peer.read_request() is not None:
            await peer.send(answer(b"{}", headers=extra))

    pool = env.pool((await env.server(hop)).url)
    response = await get(pool)
    assert response.headers == [
        (b"content-length", b"2"),
        (b"x-model-version", b"3"),
        (b"content-type", b"application/json"),
    ]
    await get(pool)
    assert pool.reused == 1


# -- construction, the registry, another event loop -----------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://a:1", "http://a:1/prefix", "http://u:p@a:1", "ftp://a", "http://:80"]
)
def test_unsupported_base_urls(url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        UpstreamPool(url)


async def test_the_transport_keeps_one_pool_per_base_url(env: Env) -> None:
    server = await env.server(keep_alive)
    transport = Http1Transport(max_connections=4)
    pool = transport.pool(server.url)
    assert transport.pool(server.url) is pool
    assert transport.pool("http://127.0.0.1:1") is not pool
    await get(pool)
    await transport.close()
    assert pool.open_connections == 0
    with pytest.raises(ConnectFailed, match="pool closed"):
        await get(pool)


async def _uvloop_scenarios() -> None:
    """The paths whose timing differs between event loops: reuse, stale retry, timeout, cancel."""
    async with contextlib.AsyncExitStack() as stack:
        env = Env(stack)
        pool = env.pool(await env.uvicorn())
        assert (await get(pool, b"/chunks?1,100000")).body == pattern(1) + pattern(100_000)
        assert (await get(pool, b"/len/5")).body == pattern(5)
        assert pool.reused == 1

        async def close_on_second(peer: Peer) -> None:
            await peer.read_request()
            await peer.send(answer(b"first"))
            await peer.read_request()
            await peer.reset()

        stale = await env.server(scripted(close_on_second, keep_alive))
        pool = env.pool(stale.url)
        assert [(await get(pool, b"/a")).body, (await get(pool, b"/b")).body] == [b"first", b"/b"]

        silent = await env.server(never_answer)
        pool = env.pool(silent.url)
        with pytest.raises(UpstreamTimeout):
            await get(pool, timeout_s=0.2)
        task = asyncio.create_task(get(pool))
        silent.request_seen.clear()
        await asyncio.wait_for(silent.request_seen.wait(), EVENT_WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.open_connections == 0


def test_the_same_paths_under_uvloop() -> None:
    """uvicorn runs the gateway on uvloop, whose transports time their callbacks differently."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_uvloop_scenarios())
