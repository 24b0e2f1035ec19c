"""The limits and the strict HTTP/1.1 framing of the gateway's server, over raw sockets against
a real uvicorn server with the fast protocol: on the fast path and on connections handed to
uvicorn (issue 18). loadtests/http_edges.py sends the same requests to nginx for comparison."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.server import limits
from tests.integration.test_fast_http import MAX_BODY, connect, post, serving

FAST = "/fast/x"
API = "/api/v1/x"  # not a fast path: the connection goes to uvicorn


def get(path: str, *extra: str, version: str = "HTTP/1.1", host: bool = True) -> bytes:
    head = [f"GET {path} {version}", *(["Host: t"] if host else []), *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


async def refused(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send `raw`; the status and body of the answer, and the connection closed after it."""
    async with connect(port) as c:
        c.writer.write(raw)
        a = await c.answer()
        assert await c.closed()
        return a.status, a.body


@pytest.mark.parametrize("path", [FAST, API])
async def test_too_many_headers_get_431(path: str) -> None:
    async with serving() as s:
        extra = [f"X-H{i}: v" for i in range(10_000)]
        status, body = await refused(s.port, get(path, *extra))
        assert status == 431 and b"HEADERS_TOO_LARGE" in body
        extra = [f"X-H{i}: v" for i in range(limits.MAX_HEADERS - 1)]
        async with connect(s.port) as c:  # at the limit: served
            c.writer.write(get(path, *extra))
            assert (await c.answer()).status == 200


@pytest.mark.parametrize("path", [FAST, API])
async def test_a_header_over_the_head_limit_gets_431(path: str) -> None:
    async with serving() as s:
        big = "X-Big: " + "a" * (limits.MAX_HEAD_BYTES + 1)
        assert (await refused(s.port, get(path, big)))[0] == 431
        big = "X-Big: " + "a" * (limits.MAX_HEAD_BYTES - 100)
        async with connect(s.port) as c:
            c.writer.write(get(path, big))
            assert (await c.answer()).status == 200


@pytest.mark.parametrize("path", [FAST, API])
async def test_one_header_over_the_count_gets_431(path: str) -> None:
    """A small head, complete, one header over the limit (Host and `MAX_HEADERS` more): the
    fast protocol counts the headers once the head is complete, not as they come."""
    async with serving() as s:
        extra = [f"X-H{i}: v" for i in range(limits.MAX_HEADERS)]
        status, body = await refused(s.port, get(path, *extra))
        assert status == 431 and b"more than" in body


async def test_a_pipelined_head_read_with_a_body_is_held_to_the_size_limit() -> None:
    """The next request's head arrives in the read that ends the last one's body, so none
    of its bytes went through the head budget's count: its size is still checked."""
    async with serving() as s, connect(s.port) as c:
        big = "X-Big: " + "a" * (limits.MAX_HEAD_BYTES + 1)
        first = post(FAST, b"0123456789")
        c.writer.write(first[:-10])  # the head alone: its body comes with the next request
        await c.writer.drain()
        await asyncio.sleep(0.1)
        c.writer.write(b"0123456789" + get(FAST, big))
        assert (await c.answer()).status == 200
        a = await c.answer()
        assert a.status == 431 and b"HEADERS_TOO_LARGE" in a.body
        assert await c.closed()


@pytest.mark.parametrize("path", [FAST, API])
async def test_a_long_request_line_gets_414(path: str) -> None:
    async with serving() as s:
        long = path + "?" + "q" * (limits.MAX_REQUEST_LINE + 1)
        assert (await refused(s.port, get(long)))[0] == 414


@pytest.mark.parametrize("path", [FAST, API])
async def test_host_exactly_once_on_http_1_1(path: str) -> None:
    async with serving() as s:
        assert (await refused(s.port, get(path, host=False)))[0] == 400
        assert (await refused(s.port, get(path, "Host: u")))[0] == 400
        async with connect(s.port) as c:  # HTTP/1.0 needs none
            c.writer.write(get(path, version="HTTP/1.0", host=False))
            assert (await c.answer()).status == 200


@pytest.mark.parametrize("path", [FAST, API])
async def test_only_http_1_0_and_1_1(path: str) -> None:
    async with serving() as s:
        assert (await refused(s.port, get(path, version="HTTP/2.0")))[0] == 505
        assert (await refused(s.port, f"GET {path}\r\n\r\n".encode()))[0] == 400  # 0.9
        assert (await refused(s.port, get(path, version="HTTP/0.9")))[0] == 400
        assert (await refused(s.port, get(path, version="HTTP/3.0")))[0] == 400


BARE_LINES = [b"GET /fast/x\r\n", b"GET /\n", b"\r\nGET /api/v1/x\r\n"]


@pytest.mark.parametrize("uvicorn_only", [False, True], ids=["fast", "uvicorn"])
@pytest.mark.parametrize("line", BARE_LINES)
async def test_a_request_line_without_a_version_gets_400_at_once(
    line: bytes, uvicorn_only: bool
) -> None:
    """HTTP/0.9 (`GET /` and a line end, nothing more): answered as soon as the line ends
    (`Client.answer` waits 5 s; the head's limit would be 30 s), on the fast protocol and on
    uvicorn's alone (the registry role)."""
    async with serving(uvicorn_only=uvicorn_only) as s, connect(s.port) as c:
        c.writer.write(line)
        a = await c.answer()
        assert a.status == 400 and b"no HTTP version" in a.body
        assert await c.closed()


@pytest.mark.parametrize("uvicorn_only", [False, True], ids=["fast", "uvicorn"])
async def test_a_request_line_in_pieces_is_judged_when_it_ends(uvicorn_only: bool) -> None:
    # a valid line in pieces (the pauses: separate reads), then more on the same connection
    async with serving(uvicorn_only=uvicorn_only) as s, connect(s.port) as c:
        for piece in (b"GET /fast", b"/x", b" HTTP", b"/1.1\r", b"\nHost: t\r\n\r\n"):
            c.writer.write(piece)
            await c.writer.drain()
            await asyncio.sleep(0.05)
        assert (await c.answer()).status == 200
        c.writer.write(get(FAST))  # the next request on the connection is checked too
        assert (await c.answer()).status == 200
        c.writer.write(b"GET /fast/x")
        await c.writer.drain()
        await asyncio.sleep(0.05)
        c.writer.write(b"\r\n")
        assert (await c.answer()).status == 400


async def test_a_bare_line_behind_an_unfinished_request_waits_its_turn() -> None:
    """After an answer still owed on the fast path, the 400 comes second, then the close."""
    async with serving() as s, connect(s.port) as c:
        c.writer.write(post("/fast/slow", b"1"))
        await c.writer.drain()
        await asyncio.sleep(0.1)
        c.writer.write(b"GET /\r\n")
        await c.writer.drain()
        await asyncio.sleep(0.1)
        s.handler.release.set()
        first, second = await c.answer(), await c.answer()
        assert first.status == 200 and second.status == 400
        assert await c.closed()


async def test_a_malformed_request_after_a_valid_one_is_answered_after_it() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(
            post("/fast/slow", b"1") + b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"
        )
        s.handler.release.set()
        first, second = await c.answer(), await c.answer()
        assert first.status == 200 and first.body == b"POST /fast/slow  1"
        assert second.status == 400 and b"BAD_REQUEST" in second.body
        assert await c.closed()


async def test_expect_100_continue_over_the_limit_gets_413_without_continue() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(
            post(FAST, b"", "Expect: 100-Continue")[:-4].replace(
                b"Content-Length: 0", b"Content-Length: %d" % (MAX_BODY + 1)
            )
            + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413 ")
        assert s.handler.calls == []


async def test_expect_100_continue_in_any_case() -> None:
    async with serving() as s, connect(s.port) as c:
        c.writer.write(
            b"POST /fast/p HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-CONTINUE\r\n\r\n"
        )
        interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        c.writer.write(b"{}")
        assert (await c.answer()).body == b"POST /fast/p  {}"


async def test_an_http_1_0_keep_alive_answer_says_keep_alive() -> None:
    async with serving() as s, connect(s.port) as c:
        for _ in range(2):
            c.writer.write(get(FAST, "Connection: keep-alive", version="HTTP/1.0", host=False))
            a = await c.answer()
            assert a.status == 200 and a.headers[b"connection"] == b"keep-alive"


async def test_each_request_on_a_connection_is_held_to_its_own_version() -> None:
    """The fast protocol takes the version from a whole request line it read (HTTP/1.1)
    or asks the parser: 1.1 then 1.0 alternate on one connection, in separate reads and
    pipelined in one, and 1.0 is answered as 1.0 (kept alive only when asked) each time."""
    http10 = get(FAST, "Connection: keep-alive", version="HTTP/1.0", host=False)
    async with serving() as s, connect(s.port) as c:
        for _ in range(2):
            c.writer.write(get(FAST))
            a = await c.answer()
            assert a.status == 200 and b"connection" not in a.headers
            c.writer.write(http10)
            a = await c.answer()
            assert a.status == 200 and a.headers[b"connection"] == b"keep-alive"
        c.writer.write(get(FAST) + http10 + get(FAST) + get(FAST, version="HTTP/1.0", host=False))
        answers = [await c.answer() for _ in range(4)]
        assert [a.status for a in answers] == [200] * 4
        assert [a.headers.get(b"connection") for a in answers] == [
            None,
            b"keep-alive",
            None,
            b"close",
        ]
        assert await c.closed()
    async with serving() as s:  # HTTP/1.0 without Host is served; 1.1 without it is not
        assert (await refused(s.port, get(FAST, host=False)))[0] == 400


async def test_a_slow_body_on_a_handed_over_connection_is_timed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "BODY_IDLE_S", 0.3)
    monkeypatch.setattr(limits, "HEAD_TIMEOUT_S", 0.3)
    async with serving() as s:
        async with connect(s.port) as c:  # a body that stalls
            c.writer.write(post(API, b"0123456789")[:-5])
            assert await c.closed()
        async with connect(s.port) as c:  # a head that trickles in, once handed over
            c.writer.write(get(API))
            assert (await c.answer()).headers[b"x-via"] == b"asgi"
            c.writer.write(b"GET /api/v1/x HTTP/1.1\r\n")
            for _ in range(20):  # 2 s of trickle; the head's limit is 0.3 s
                await asyncio.sleep(0.1)
                c.writer.write(b"X-A: b\r\n")
            with contextlib.suppress(ConnectionError):  # reset: it was closed while we wrote
                assert await c.closed()
                return


async def test_a_slow_body_on_the_fast_path_is_timed_out() -> None:
    """The fast path closes a connection that has not completed a request `keep_alive_s`
    after its last answer (data that trickles in does not count as activity)."""
    async with serving(keep_alive_s=1) as s, connect(s.port) as c:
        c.writer.write(post(FAST, b"0123456789")[:-5])
        for _ in range(3):  # 2 of the 5 bytes never come
            await asyncio.sleep(0.1)
            c.writer.write(b"0")
        assert await c.closed()
