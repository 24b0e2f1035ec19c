"""The coalescing transport front: the writes of one loop turn leave as one write."""

from __future__ import annotations

import asyncio

from gateway.server.protocol import FLUSH_AT_BYTES, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1234) if name == "peername" else default


async def next_turn() -> None:
    await asyncio.sleep(0)


async def test_head_and_body_of_one_turn_leave_as_one_write() -> None:
    inner = RecordingTransport()
    front = CoalescingTransport(inner, asyncio.get_running_loop())
    front.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    front.write(b"{}")
    assert inner.writes == []  # held until the loop's next turn
    await next_turn()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    front.write(b"next")
    await next_turn()
    assert inner.writes[1:] == [b"next"]


async def test_close_sends_what_is_held_first() -> None:
    inner = RecordingTransport()
    front = CoalescingTransport(inner, asyncio.get_running_loop())
    front.write(b"last words")
    front.close()
    assert inner.writes == [b"last words"] and inner.closed
    await next_turn()  # the scheduled flush finds nothing more to send
    assert inner.writes == [b"last words"]


async def test_a_large_turn_is_not_held() -> None:
    inner = RecordingTransport()
    front = CoalescingTransport(inner, asyncio.get_running_loop())
    front.write(b"x" * (FLUSH_AT_BYTES - 1))
    assert inner.writes == []
    front.write(b"yy")
    assert [len(w) for w in inner.writes] == [FLUSH_AT_BYTES + 1]
    front.write(b"z")
    await next_turn()
    assert inner.writes[-1] == b"z"


async def test_writes_after_the_peer_left_are_dropped() -> None:
    inner = RecordingTransport()
    front = CoalescingTransport(inner, asyncio.get_running_loop())
    front.write(b"too late")
    inner.closed = True
    await next_turn()
    assert inner.writes == []


async def test_everything_else_is_the_transport_s() -> None:
    inner = RecordingTransport()
    front = CoalescingTransport(inner, asyncio.get_running_loop())
    assert front.get_extra_info("peername") == ("127.0.0.1", 1234)
    assert front.is_closing() is False
