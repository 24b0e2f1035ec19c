"""The floor proxy (loadtests/proxy_floor.py) must really proxy, or its figure says nothing: each
request reaches the upstream at the fixed path with its body, every answer comes back, and the
requests of one client connection share one upstream connection."""

from __future__ import annotations

import asyncio
from typing import cast

import httptools
import uvloop

from loadtests import proxy_floor


class _Upstream(asyncio.Protocol):
    """Answers every request with its path and body length; counts connections."""

    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).connections += 1
        self.transport = cast(asyncio.Transport, transport)
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = b""

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        answer = b"%b %d" % (self.url, len(self.body))
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"
            % (len(answer), answer)
        )
        self.url, self.body = b"", b""


async def _exchange(bodies: list[bytes]) -> list[bytes]:
    loop = asyncio.get_running_loop()
    upstream = await loop.create_server(_Upstream, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    front = await loop.create_server(
        lambda: proxy_floor.Front("127.0.0.1", up_port, b"/predict"), "127.0.0.1", 0
    )
    port = front.sockets[0].getsockname()[1]
    answers: list[bytes] = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for body in bodies:
                writer.write(
                    b"POST /anything HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b"
                    % (len(body), body)
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                answers.append(head.split(b"\r\n")[0] + b" | " + await reader.readexactly(length))
        finally:
            writer.close()
    finally:
        front.close()
        upstream.close()
    return answers


def test_every_request_goes_to_the_fixed_path_on_one_kept_alive_connection() -> None:
    _Upstream.connections = 0
    bodies = [b'{"a":1}', b"x" * 5000, b""]
    answers = uvloop.run(_exchange(bodies))
    assert answers == [b"HTTP/1.1 200 OK | /predict %d" % len(body) for body in bodies]
    assert _Upstream.connections == 1
