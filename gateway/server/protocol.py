"""uvicorn's httptools protocol with the writes of one loop turn sent as one.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and the body when it sends `http.response.body`: two `send()` syscalls and two TCP segments for
every small answer, and on loopback each one wakes the client. Measured with `perf` on the
gateway at concurrency 1, waking readers was a fifth of its CPU. Holding what is written until
the loop's next turn (both messages are sent in one turn: uvicorn's `send` does not suspend
unless the transport is paused) sends head and body together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: A turn's writes past this size go out at once (a large streamed body is not held).
FLUSH_AT_BYTES = 64 * 1024


class CoalescingTransport:
    """A transport front that joins the writes of one loop turn into one `write`."""

    __slots__ = ("_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT_BYTES:
            self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, abort, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        front = CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(front)  # type: ignore[arg-type]
