"""The one way out to the model servers: a `Transport` takes a whole request and returns the
whole answer, or raises an `UpstreamError` (gateway.errors).

The gateway's forwarding and its resilience (breakers, fallback, load shedding) are written
against this Protocol only, so they are tested with `MockTransport` and no socket; the real
transport is `Http1Transport` (keep-alive HTTP/1.1 pools, gateway.transport.pool).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Final, Protocol

import msgspec

#: Header (name, value) pairs; names in lower case, as HTTP servers hand them over.
Headers = list[tuple[bytes, bytes]]
#: The W3C trace context headers' names.
TRACE_CONTEXT: Final = frozenset((b"traceparent", b"tracestate"))


class UpstreamRequest(msgspec.Struct, frozen=True, gc=False):
    """One request to one upstream; `timeout_s` bounds all of it (queueing, connecting, the
    answer). A msgspec Struct: made for every request, it costs a fifth of a NamedTuple."""

    endpoint: str  # the upstream's base URL, http://host:port
    method: bytes
    path: bytes
    headers: Headers
    body: bytes
    timeout_s: float


class UpstreamResponse(msgspec.Struct, gc=False):
    """A complete answer: status, lower-cased end-to-end headers, the whole (de-chunked) body.
    A msgspec Struct, like `UpstreamRequest`: a class with its own `__init__` cost a Python
    frame for every answer."""

    status: int
    headers: Headers
    body: bytes

    def __repr__(self) -> str:
        return f"UpstreamResponse(status={self.status}, {len(self.body)} bytes)"


class Transport(Protocol):
    """Sends one request and returns the whole answer (any status), or raises an
    `UpstreamError`: `ConnectFailed` when nothing was sent (safe to send elsewhere),
    `UpstreamTimeout`, `UpstreamBroken`. `BadRequest` for a request that cannot be sent."""

    def handle(self, request: UpstreamRequest) -> Coroutine[Any, Any, UpstreamResponse]: ...
