"""The fast HTTP/1.1 protocol under a real uvicorn server on a loopback port, spoken to over raw
sockets: keep-alive, pipelining in order, chunked bodies, the body limit, 100-continue, HTTP/1.0,
errors, the idle timeout, graceful shutdown, and connections handed to uvicorn for every path
that is not a fast one (the registry API), also in the middle of a pipelined batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import uvicorn

from gateway.reply import Reply
from gateway.respond import CoroutineHandler, Respond
from gateway.server.fast_http import protocol_class
from gateway.server.protocol import CoalescingHttpToolsProtocol
from gateway.transport.base import Headers

MAX_BODY = 1024
BIG = 1024 * 1024
JSON = (b"content-type", b"application/json")


@dataclass
class Handler(CoroutineHandler):
    """Answers `/fast/...`: echoes method, path, body and the `x-tag` header; `/fast/slow`
    waits for `release`; `/fast/boom` raises."""

    max_body: int = MAX_BODY
    calls: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    contexts: list[bool] = field(default_factory=list)  # what `start` was told of each

    def start(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        respond: Respond,
        context: bool = True,
    ) -> None:
        self.contexts.append(context)
        super().start(method, path, headers, body, respond, context)

    async def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        self.calls.append(path)
        if path == "/fast/slow":
            await self.release.wait()
        if path == "/fast/boom":
            raise RuntimeError("handler bug")
        if path == "/fast/big":
            return Reply(200, [JSON], b"%08d" % len(self.calls) + b"x" * BIG)
        if path.startswith("/fast/head"):  # an answer with its headers encoded already
            own = [JSON, (b"x-own", b"1")]
            reply = Reply(200, own, b"{}", b"content-type: application/json\r\nx-own: 1\r\n", own)
            if path == "/fast/head/replaced":  # a copy with other headers: `head` is stale
                return msgspec.structs.replace(reply, headers=[*own, (b"x-more", b"2")])
            return reply
        tag = dict(headers).get(b"x-tag", b"")
        return Reply(
            200,
            [JSON, (b"x-via", b"fast")],
            b"%s %s %s %s" % (method.encode(), path.encode(), tag, body),
        )


@dataclass
class Paths:
    handler: Handler

    def handler_for(self, method: str, path: str) -> Handler | None:
        return self.handler if path.startswith("/fast/") and method in ("GET", "POST") else None


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The framework side: everything not on the fast path (echo, marked `x-via: asgi`)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b"%s %s %s" % (scope["method"].encode(), scope["path"].encode(), body)
    headers = [(b"content-length", str(len(answer)).encode()), (b"x-via", b"asgi")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@dataclass
class Served:
    port: int
    handler: Handler
    server: uvicorn.Server


@contextlib.asynccontextmanager
async def serving(keep_alive_s: int = 30, uvicorn_only: bool = False) -> AsyncIterator[Served]:
    """The fast protocol in front of `asgi_echo`; `uvicorn_only`: uvicorn's protocol with our
    limits alone, as `modelyard registry` serves (no fast path)."""
    handler = Handler()
    config = uvicorn.Config(
        asgi_echo,
        host="127.0.0.1",
        port=0,
        http=CoalescingHttpToolsProtocol if uvicorn_only else protocol_class(Paths(handler)),
        timeout_keep_alive=keep_alive_s,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(port, handler, server)
    finally:
        server.should_exit = True
        handler.release.set()
        await asyncio.wait_for(task, 10)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Client:
    """Raw bytes out; answers (each with a content-length) read one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    async def _more(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), 5)
        assert data, "the server closed the connection before a complete answer"
        self.buffer += data

    async def answer(self) -> Answer:
        while True:
            while b"\r\n\r\n" not in self.buffer:
                await self._more()
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ")[1])
            if status == 100:  # an interim answer: the real one follows
                continue
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers[b"content-length"])
            while len(self.buffer) < size:
                await self._more()
            body, self.buffer = self.buffer[:size], self.buffer[size:]
            return Answer(status, headers, body)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(path: str, *chunks: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


async def test_keep_alive_requests_are_answered_on_the_fast_path() -> None:
    async with serving() as s, connect(s.port) as c:
        for i in range(3):
            c.writer.write(post("/fast/predict", b"{}", f"X-Tag: t{i}"))
            a = await c.answer()
            assert a.status == 200 and a.body == f"POST /fast/predict t{i} {{}}".encode()
            assert a.headers[b"x-via"] == b"fast" and b"date" in a.headers
            assert a.headers[b"content-length"] == str(len(a.body)).encode()
        assert s.handler.calls == ["/fast/predict"] * 3


async def test_an_encoded_head_is_written_only_for_the_headers_it_encodes() -> None:
    """`Reply.head` stands for `headers` while `head_of` is that list: a copy of the reply
    with other headers is written from its headers (no stale head, nothing lost)."""
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/head", b"{}"))
        a = await c.answer()
        assert a.status == 200 and a.body == b"{}"
        assert a.headers[b"x-own"] == b"1" and a.headers[b"content-type"] == b"application/json"
        assert b"x-more" not in a.headers and b"date" in a.headers
        c.writer.write(post("/fast/head/replaced", b"{}"))
        a = await c.answer()
        assert a.headers[b"x-own"] == b"1" and a.headers[b"x-more"] == b"2"
        assert a.headers[b"content-length"] == b"2"


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/slow", b"1") + post("/fast/a", b"2") + post("/fast/b", b"3"))
        await asyncio.sleep(0)  # nothing can be answered while the first one waits
        first = asyncio.create_task(c.answer())
        done, _ = await asyncio.wait([first], timeout=0.2)
        assert not done, "an answer came before the first request's"
        s.handler.release.set()
        answers = [await first, await c.answer(), await c.answer()]
        assert [a.body for a in answers] == [
            b"POST /fast/slow  1",
            b"POST /fast/a  2",
            b"POST /fast/b  3",
        ]


async def test_the_handler_is_told_which_requests_carry_trace_context() -> None:
    """A request with a `traceparent` or a `tracestate` (in any case) is said to carry trace
    context, the others not; a pipelined one (queued, then started) may: looked for."""
    parent = "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    extras = [(parent,), (), ("TraceState: k=v",), ("X-Tag: traceparent",), ("Traceparent: x",)]
    async with serving() as s, connect(s.port) as c:
        for extra in extras:
            c.writer.write(post("/fast/a", b"1", *extra))
            assert (await c.answer()).status == 200
        c.writer.write(post("/fast/slow", b"1") + post("/fast/b", b"2"))
        s.handler.release.set()
        for _ in range(2):
            assert (await c.answer()).status == 200
    assert s.handler.contexts == [True, False, True, False, True, False, True]


async def test_a_chunked_body_is_put_together() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(chunked("/fast/predict", b'{"a":', b"1}"))
        a = await c.answer()
        assert a.status == 200 and a.body == b'POST /fast/predict  {"a":1}'


async def test_a_body_over_the_limit_gets_413_and_the_connection_goes_on() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/predict", b"x" * (MAX_BODY + 1)))
        a = await c.answer()
        assert a.status == 413 and b"REQUEST_TOO_LARGE" in a.body
        assert s.handler.calls == []  # the handler never saw it
        c.writer.write(post("/fast/predict", b"ok"))
        assert (await c.answer()).body == b"POST /fast/predict  ok"


async def test_expect_100_continue_gets_an_interim_answer() -> None:
    async with serving() as s, connect(s.port) as c:
        head = (
            b"POST /fast/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        c.writer.write(head)
        interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        c.writer.write(b"{}")
        assert (await c.answer()).body == b"POST /fast/p  {}"


async def test_http_1_0_is_answered_and_closed() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(b"GET /fast/x HTTP/1.0\r\n\r\n")
        a = await c.answer()
        assert a.status == 200 and a.headers[b"connection"] == b"close"
        assert await c.closed()


async def test_a_malformed_request_gets_400_and_a_closed_connection() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(b"POST /fast/x HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        a = await c.answer()
        assert a.status == 400 and b"BAD_REQUEST" in a.body
        assert await c.closed()


async def test_a_failing_handler_gets_500_json_and_the_server_lives_on() -> None:
    async with serving() as s:
        async with connect(s.port) as c:
            c.writer.write(post("/fast/boom", b""))
            a = await c.answer()
            assert a.status == 500 and a.headers[b"connection"] == b"close"
            assert b"INTERNAL" in a.body and b"handler bug" not in a.body  # nothing internal
            assert await c.closed()
        async with connect(s.port) as c:
            c.writer.write(post("/fast/after", b""))
            assert (await c.answer()).status == 200


async def test_other_paths_hand_the_connection_to_uvicorn() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/one", b"1"))
        assert (await c.answer()).headers[b"x-via"] == b"fast"
        c.writer.write(post("/api/v1/models", b'{"name":"m"}'))
        a = await c.answer()
        assert a.headers[b"x-via"] == b"asgi" and a.body == b'POST /api/v1/models {"name":"m"}'
        # from now on uvicorn serves this connection, chunked bodies included
        c.writer.write(chunked("/api/v1/x", b"ab", b"cd") + post("/fast/two", b"2"))
        a, b = await c.answer(), await c.answer()
        assert a.body == b"POST /api/v1/x abcd" and b.headers[b"x-via"] == b"asgi"
        assert s.handler.calls == ["/fast/one"]


async def test_a_handover_waits_for_the_answers_still_owed() -> None:
    async with serving() as s, connect(s.port) as c:
        # a slow fast-path request, then an API request and its chunked body, in one write
        c.writer.write(post("/fast/slow", b"1") + chunked("/api/v1/y", b"xy", b"z"))
        first = asyncio.create_task(c.answer())
        done, _ = await asyncio.wait([first], timeout=0.2)
        assert not done
        s.handler.release.set()
        a, b = await first, await c.answer()
        assert a.headers[b"x-via"] == b"fast" and a.body == b"POST /fast/slow  1"
        assert b.headers[b"x-via"] == b"asgi" and b.body == b"POST /api/v1/y xyz"


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with serving(keep_alive_s=1) as s, connect(s.port) as c:
        c.writer.write(post("/fast/x", b""))
        assert (await c.answer()).status == 200
        assert await c.closed()  # within the read's 5 s bound


async def test_shutdown_lets_the_request_in_flight_finish() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/slow", b"last"))
        while s.handler.calls != ["/fast/slow"]:
            await asyncio.sleep(0.01)
        s.server.should_exit = True  # graceful: waits for the connection
        while s.server.servers[0].is_serving():  # shutting down: no new connections
            await asyncio.sleep(0.01)
        s.handler.release.set()
        a = await c.answer()
        assert a.status == 200 and a.body == b"POST /fast/slow  last"
        assert await c.closed()


@pytest.mark.parametrize("path", ["/fast/%41", "/other"])
async def test_paths_the_fast_path_does_not_take_go_to_uvicorn(path: str) -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post(path, b"b"))
        a = await c.answer()
        assert a.headers[b"x-via"] == b"asgi" and s.handler.calls == []


async def test_a_client_that_does_not_read_stops_being_read() -> None:
    """Flow control: answers pile up in the socket buffers, the transport pauses writing, and
    the server stops reading (and answering) more requests until the client reads again."""
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/big", b"") * 200)
        settled, last = 0, -1
        while settled < 20:  # until the server has stopped taking requests for 0.5 s
            await asyncio.sleep(0.025)
            settled = settled + 1 if len(s.handler.calls) == last else 0
            last = len(s.handler.calls)
        assert last < 60, f"{last} answers of 1 MiB taken while the client read nothing"
        for i in range(200):  # reading again: everything is answered, in order
            a = await c.answer()
            assert a.status == 200 and a.body[:8] == b"%08d" % (i + 1)
        assert len(s.handler.calls) == 200
