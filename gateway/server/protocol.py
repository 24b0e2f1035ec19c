"""uvicorn's httptools protocol with the writes of one loop turn sent as one.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and the body when it sends `http.response.body`: two `send()` syscalls and two TCP segments for
every small answer, and on loopback each one wakes the client. Measured with `perf` on the
gateway at concurrency 1, waking readers was a fifth of its CPU. Holding what is written until
the loop's next turn (both messages are sent in one turn: uvicorn's `send` does not suspend
unless the transport is paused) sends head and body together.

It also keeps the fast protocol's limits on the connections handed to it (`limits`): the same
bounded request line and head, `Host` and version rules, and time: a head must be complete
`HEAD_TIMEOUT_S` after it began and a body may not stall for `BODY_IDLE_S` (uvicorn times out
only idle connections between requests, so a slow body held its connection for ever).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.server import limits
from gateway.server.limits import HeadBudget, Refused, answer_and_linger, head_too_large

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

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, abort, ...
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    budget: HeadBudget
    refused: Refused | None = None
    receiving = False  # between a message's first byte and its end
    began = 0.0
    last_read = 0.0
    slow_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.budget = HeadBudget()
        front = CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(front)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        budget = self.budget
        while data and self.refused is None:
            if budget.in_head and len(data) > budget.left:
                cut = max(budget.left, 0)
                chunk, data = data[:cut], data[cut:]
            else:
                chunk, data = data, b""
            try:
                budget.fed(chunk)
            except Refused as refused:
                self.refused = refused
                self.send_400_response("")
                return
            super().data_received(chunk)
            if self.transport.is_closing():
                return
            if data and budget.in_head and budget.left <= 0:
                self.refused = head_too_large()
                self.send_400_response("")
                return

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error: the limit's own answer when one was crossed."""
        refused = self.refused or Refused(400, "BAD_REQUEST", "malformed HTTP request")
        self.refused = refused
        answer = refused.answer(self.server_state.default_headers)
        answer_and_linger(self.transport, answer)

    def on_message_begin(self) -> None:
        self.budget.begin()
        super().on_message_begin()
        self.receiving = True
        self.began = self.loop.time()
        if self.slow_timer is None:
            self.slow_timer = self.loop.call_later(limits.BODY_IDLE_S, self._check_slow)

    def on_url(self, url: bytes) -> None:
        self._checked(self.budget.url, len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._checked(self.budget.header, name, value)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._checked(self.budget.complete, self.parser.get_http_version())
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.budget.reset()
        self.receiving = False
        super().on_message_complete()

    def _checked(self, check: Any, *args: Any) -> None:
        try:
            check(*args)
        except Refused as refused:
            self.refused = refused
            raise

    def _check_slow(self) -> None:
        """A head not complete in time, or a body stalled: close the connection."""
        self.slow_timer = None
        if not self.receiving or self.transport.is_closing():
            return
        now = self.loop.time()
        head_late = self.budget.in_head and now - self.began > limits.HEAD_TIMEOUT_S
        if head_late or now - self.last_read > limits.BODY_IDLE_S:
            self.transport.close()
            return
        wait = min(limits.BODY_IDLE_S, limits.HEAD_TIMEOUT_S)
        self.slow_timer = self.loop.call_later(wait, self._check_slow)
