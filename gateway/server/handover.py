"""Handing a connection from the fast protocol to uvicorn's, once nothing is owed on it.

The request's head is written out again from what was parsed (and a chunked body chunked
again), fed to uvicorn's protocol with whatever follows, and the transport is switched to it,
much as uvicorn itself does for a WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from typing import Any, Final

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.server.protocol import CoalescingHttpToolsProtocol
from gateway.transport.base import Headers

_CHUNKED: Final = b"chunked"


class HandOver:
    """The fast protocol's half that hands its connection to uvicorn (a mixin)."""

    config: Config
    server_state: ServerState
    app_state: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    parser: httptools.HttpRequestParser
    transport: asyncio.Transport | None
    url: bytes
    headers: Headers
    chunked: bool
    busy: bool
    queue: Sized
    closing: bool
    paused: bool
    writing_paused: bool
    handing_over: bool
    forwarded: list[bytes]
    successor: asyncio.Protocol | None

    def _forward_head(self) -> None:
        version = self.parser.get_http_version().encode("ascii")
        parts = [self.parser.get_method(), b" ", self.url, b" HTTP/", version, b"\r\n"]
        for name, value in self.headers:
            parts += (name, b": ", value, b"\r\n")
            if name == b"transfer-encoding" and _CHUNKED in value.lower():
                self.chunked = True
        parts.append(b"\r\n")
        self._forward(b"".join(parts))

    def _forward(self, data: bytes) -> None:
        if self.successor is not None:
            self.successor.data_received(data)
        else:
            self.forwarded.append(data)
            self._maybe_switch()

    def _maybe_switch(self) -> None:
        """Switch the transport to uvicorn's protocol once nothing is owed on this one."""
        if not self.handing_over or self.successor is not None or self.busy or self.queue:
            return
        if self.transport is None:
            return
        if self.transport.is_closing():
            return
        successor = CoalescingHttpToolsProtocol(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            _loop=self.loop,
        )
        self.server_state.connections.discard(self)
        successor.connection_made(self.transport)
        self.transport.set_protocol(successor)
        self.successor = successor
        forwarded, self.forwarded = self.forwarded, []
        if self.paused or self.writing_paused:  # uvicorn's protocol keeps its own flow control
            self.transport.resume_reading()
            self.paused = self.writing_paused = False
        for data in forwarded:
            successor.data_received(data)
        if self.closing:
            successor.shutdown()
