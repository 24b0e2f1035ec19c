"""HTTP/1.1 on one upstream connection: request encoding and response parsing (httptools).

Why an asyncio Protocol and not streams: bytes go from `data_received` straight into llhttp (the
parser uvicorn uses), with no StreamReader buffer in between and a single future per request, which
is what made the small client measured in DESIGN.md several times faster than aiohttp or httpx.
The pool (`gateway.transport.pool`) decides about reuse, retries and error mapping; this module
only says what happened on the wire:

- `ConnectionLost`: the connection closed before a complete answer; `received` says whether any
  byte of the answer had arrived, which decides whether the stale keep-alive retry is safe.
- `InvalidResponse`: the server spoke something that is not valid HTTP/1.1.

One parser serves all the answers on a connection (llhttp resets itself after each message); it
is replaced only after an answer to HEAD, where we stop parsing at the headers because llhttp does
not know the request method and would wait for a body that never comes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Final, Protocol, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from gateway.errors import BadRequest
from gateway.transport.base import Headers, UpstreamResponse

# Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection and are never forwarded, in
# either direction. `host` and `content-length` are not hop-by-hop, but the client sets them itself.
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade")
)
PROXY_PREFIX = b"proxy-"
_SET_BY_CLIENT = HOP_BY_HOP | {b"host", b"content-length"}
_CONNECTION_TOKENS_KEPT = frozenset((b"close", b"keep-alive"))

#: End-to-end header names as servers spell them (uvicorn and Starlette, which BentoML runs
#: on, in lower case; nginx and most others capitalised) -> the name in lower case: an answer's
#: usual headers are kept with one set lookup each, without `lower()` and the hop-by-hop tests
#: (loadtests/hotpath_profile.py --callgrind, routed: 1.2k instructions a request less; the
#: `connection` header and its usual tokens as spelt: 0.5k more).
_END_TO_END: Final = {
    spelt: spelt.lower()
    for name in (
        b"Content-Type",
        b"Content-Length",
        b"Date",
        b"Server",
        b"Cache-Control",
        b"Vary",
        b"X-Request-Id",
        b"Content-Encoding",
        b"Etag",
        b"Last-Modified",
    )
    for spelt in (name, name.lower())
}
_CONNECTION_SPELT: Final = frozenset((b"Connection", b"connection"))
_CONNECTION_KEPT_SPELT: Final = frozenset((b"keep-alive", b"Keep-Alive", b"close", b"Close"))

_SP = b" "
_COLON_SP = b": "
_CRLF = b"\r\n"
HEAD_END: Final = _CRLF  # `encode_request`'s usual `end`: the empty line alone
_FIXED_HEAD_PIECES = 5  # method, space, path, head_middle(...), content-length value
#: `bytes.translate` tables that change only what a piece of a request head may not hold: a
#: space, CR or LF in the method or the path (`_TARGET`), CR or LF in a header's name or value
#: (`_LINE`). A piece with none comes back equal (CPython and mypyc return the piece itself,
#: so the `!=` that tests it stops at identity). Why not `count`s over the joined head: each
#: `bytes.count(sub, start, end)` builds an argument tuple and parses it with a format string
#: (1.1k instructions a call, three a request), a `translate` takes one argument by
#: position (mypyc: a C primitive); loadtests/hotpath_profile.py --callgrind, routed.
_TARGET: Final = bytes.maketrans(b" \r\n", b"\0\0\0")
_LINE: Final = bytes.maketrans(b"\r\n", b"\0\0")
_P = b"p"  # a one-byte slice is a cached object: a cheap test before startswith
_NO_NAMES: frozenset[bytes] = frozenset()
_FIRST_FINAL_STATUS = 200
_SWITCHING_PROTOCOLS = 101


#: Content-length values and their CRLF by body size: `b"%d\r\n" % n` (bytes formatting,
#: an int's decimal string) cost more than a dict lookup, and answers and requests of one
#: model come in few sizes. Remembered up to this many sizes.
_LENGTHS: dict[int, bytes] = {}
_MAX_LENGTHS: Final = 4096


def _length_line(size: int) -> bytes:
    if len(_LENGTHS) >= _MAX_LENGTHS:
        _LENGTHS.clear()
    line = _LENGTHS[size] = b"%d\r\n" % size
    return line


def head_middle(netloc: str) -> bytes:
    """What every request head to one upstream has between the path and the body length:
    the protocol, the `host` line and the `content-length` name. Built once per pool, and
    checked then: `encode_request` does not look for CR or LF in it again."""
    host = netloc.encode("ascii")
    if host.translate(_LINE) != host:
        raise ValueError(f"an upstream's host:port holds CR or LF: {netloc!r}")
    return b" HTTP/1.1\r\nhost: " + host + b"\r\ncontent-length: "


def _connection_tokens(values: list[bytes]) -> set[bytes]:
    return {t.strip().lower() for v in values for t in v.split(b",")} - {b""}


def _listed_in_connection(values: list[bytes]) -> set[bytes] | frozenset[bytes]:
    """Header names a `connection` header lists besides close/keep-alive: hop-by-hop too."""
    if len(values) == 1 and values[0].lower() in _CONNECTION_TOKENS_KEPT:
        return _NO_NAMES  # the usual case, kept cheap
    return _connection_tokens(values) - _CONNECTION_TOKENS_KEPT


def encode_request(
    method: bytes, path: bytes, middle: bytes, headers: Headers, body: bytes, end: bytes = HEAD_END
) -> bytes:
    """Request line, headers and body as one buffer (one `b"".join`, one `transport.write`).

    Hop-by-hop headers (and any header the client's `connection` header names) are dropped;
    `host` and `content-length` are always ours. CR or LF inside a forwarded header or a space in
    the method or the path would let a caller smuggle a second request, so they raise
    `BadRequest` (each piece tested on its own: `_TARGET`, `_LINE`).

    `middle`: `head_middle`'s, checked when it was made. `end`: what ends the head, the empty
    line, or header lines of the gateway's own before it (an unsampled request's
    `traceparent`, gateway.spans.traceparent_block): never a caller's bytes, so not checked (a
    header pair through the loop and the checks below cost 2.5k instructions more;
    loadtests/hotpath_profile.py --callgrind, traced0).
    """
    if method.translate(_TARGET) != method or path.translate(_TARGET) != path:
        raise BadRequest("request method or path contains a space, CR or LF")
    size = len(body)
    parts = [method, _SP, path, middle, _LENGTHS.get(size) or _length_line(size)]
    connection: list[bytes] | None = None
    smuggled = False
    for name, value in headers:
        lower = name.lower()
        if lower in _SET_BY_CLIENT or (lower[:1] == _P and lower.startswith(PROXY_PREFIX)):
            if lower == b"connection":
                connection = [*(connection or ()), value]
            continue
        if lower.translate(_LINE) != lower or value.translate(_LINE) != value:
            smuggled = True
        parts += (lower, _COLON_SP, value, _CRLF)
    if connection is not None:
        named = _listed_in_connection(connection)
        if named:
            start = _FIXED_HEAD_PIECES
            pairs = [parts[i : i + 4] for i in range(start, len(parts), 4)]
            pairs = [p for p in pairs if p[0] not in named]
            parts = parts[:start] + [piece for pair in pairs for piece in pair]
            if smuggled:  # only the headers sent count (as they did when the head was counted)
                smuggled = any(_holds_line_end(pair) for pair in pairs)
    if smuggled:
        raise BadRequest("a header's name or value contains CR or LF")
    parts.append(end)
    parts.append(body)
    return b"".join(parts)


def _holds_line_end(pair: list[bytes]) -> bool:
    """Whether a header's pieces (name, `: `, value, CRLF) hold CR or LF in the name or value."""
    name, value = pair[0], pair[2]
    return name.translate(_LINE) != name or value.translate(_LINE) != value


def with_end(headers: Headers, end: bytes) -> Headers:
    """`headers` and the header lines of an `encode_request` `end`: what to send the same
    request with as a header list."""
    pairs = [line.split(_COLON_SP, 1) for line in end[: -len(_CRLF) * 2].split(_CRLF)]
    return [*headers, *((name, value) for name, value in pairs)]


class ConnectionLost(Exception):
    """The connection closed before a complete answer (or before the request could be written)."""

    def __init__(self, cause: str, *, received: bool, sent: bool = True) -> None:
        super().__init__(cause)
        self.cause = cause
        self.received = received
        self.sent = sent


class InvalidResponse(Exception):
    """The server's bytes are not a valid HTTP/1.1 answer to our request."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before the whole answer arrived."""


class Listener(Protocol):
    """What `Http1Connection.start` tells instead of resolving a future: exactly one of the two
    calls, from inside the connection's own callbacks (so neither may raise)."""

    def answered(self, response: UpstreamResponse) -> None: ...

    def failed(self, error: Exception) -> None:
        """`ConnectionLost`, `InvalidResponse` or `DeadlineExceeded`, as `send`'s future."""


class _Stop(Exception):
    """Raised inside a parser callback to stop llhttp; the reason sits on the connection."""


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining).

    A request is sent in one of two forms: `send` returns a future (the coroutine path), `start`
    calls a `Listener` back instead (the gateway's callback lane, gateway.lane: no future, no
    Task woken). `_waiter` or `_listener` holds the request in flight, never both.

    The pool owns the fields without a leading underscore: `idle`, `idle_since`, `reused`.

    Deadlines: a per-request `asyncio.timeout` costs a timer (and, on the default loop, a
    Python-level heap entry) for every request. Here each connection keeps one timer, armed at the
    deadline of some request; when it fires it either fails the request in flight (its deadline has
    passed) or re-arms itself at the current request's later deadline. Back-to-back requests with
    the same timeout therefore touch the timer about once per timeout period, not once per request.
    """

    __slots__ = (
        "_body",
        "_connection",
        "_deadline",
        "_eof",
        "_head_only",
        "_headers",
        "_headers_done",
        "_listener",
        "_loop",
        "_on_lost",
        "_parser",
        "_received",
        "_status",
        "_stop",
        "_timer",
        "_timer_at",
        "_transfer_encoding",
        "_transport",
        "_waiter",
        "closed",
        "idle",
        "idle_since",
        "keep_alive",
        "lost",
        "reused",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_lost: Callable[[Http1Connection], None]
    ) -> None:
        self._loop = loop
        self._on_lost = on_lost
        self._parser = HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._listener: Listener | None = None
        self._head_only = False
        self._received = False
        self._eof = False
        self._stop = ""
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._reset_message()
        self.closed = False
        self.keep_alive = True
        self.idle = False
        self.idle_since = 0.0
        self.reused = False
        self.lost: asyncio.Future[None] = loop.create_future()

    def _reset_message(self) -> None:
        self._status = 0
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._connection: list[bytes] | None = None
        self._transfer_encoding: bytes | None = None
        self._headers_done = False

    # -- used by the pool ---------------------------------------------------------------------

    def send(
        self, data: bytes, *, head_only: bool, deadline: float
    ) -> asyncio.Future[UpstreamResponse]:
        """Write one request; the future resolves with the answer or fails with our errors
        (`DeadlineExceeded` once `loop.time()` passes `deadline`)."""
        self.start(data, deadline, None, head_only)  # (nothing is answered before it returns)
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._waiter = waiter
        return waiter

    def start(
        self, data: bytes, deadline: float, listener: Listener | None, head_only: bool = False
    ) -> None:
        """`send` in callback form: `listener` hears the answer or the error, as `send`'s
        future would have; `ConnectionLost` raised here too when nothing was written."""
        transport = self._transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionLost(
                "closed before the request was written", received=False, sent=False
            )
        self._listener = listener
        self._head_only = head_only
        self._received = False
        self._deadline = deadline
        timer = self._timer
        if timer is None or self._timer_at > deadline:  # not armed, or armed too late
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
        transport.write(data)

    def finish(self) -> bool:
        """After an answer: forget the request; True if the connection can serve another."""
        self._waiter = None
        self._listener = None
        return self.keep_alive and not self.closed

    def close(self, *, graceful: bool) -> None:
        self.keep_alive = False
        if self._transport is not None and not self.closed:
            if graceful:
                self._transport.close()
            else:
                self._transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio and uvloop set it already; state it, it is the hot path
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (self._listener is None) if waiter is None else waiter.done():
            # Bytes while idle or after the whole answer: the stream is out of step, drop it.
            self.close(graceful=False)
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail("the server switched protocols (unexpected upgrade)")
        except HttpParserError as exc:
            stop, self._stop = self._stop, ""
            if stop == "head":
                self._parser = HttpResponseParser(self)
            elif stop:
                self._fail(stop)
            else:
                self._fail(f"invalid HTTP response: {exc}")

    def eof_received(self) -> bool | None:
        self._eof = True  # the server's FIN: the end of a close-delimited body
        return None  # close our side too; connection_lost completes the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_lost(self)
        if self._pending():  # told last: the pool's own bookkeeping of the loss is done
            if self._eof and exc is None and self._ends_at_close():
                self._complete()
            else:
                cause = f"{type(exc).__name__}: {exc}" if exc else "connection closed"
                self._settle(None, ConnectionLost(cause, received=self._received))

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        waiter = self._waiter
        if (self._listener is None) if waiter is None else waiter.done():
            self._stop = "the server sent more than one answer"
            raise _Stop
        self._status = 0  # `_reset_message`, inlined: once per answer
        self._headers = []
        self._body = []
        self._connection = None
        self._transfer_encoding = None
        self._headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:
            return  # a trailer field after a chunked body: not merged into the headers
        if name in _END_TO_END:
            self._headers.append((_END_TO_END[name], value))
            return
        if name in _CONNECTION_SPELT:  # (on most answers: `keep-alive`)
            connection = self._connection
            if connection is None:
                self._connection = [value]
            else:
                connection.append(value)
            return
        name = name.lower()
        if name in HOP_BY_HOP or (name[:1] == _P and name.startswith(PROXY_PREFIX)):
            if name == b"connection":
                self._connection = [*(self._connection or ()), value]
            elif name == b"transfer-encoding":
                self._transfer_encoding = value
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = status = self._parser.get_status_code()
        self._headers_done = True
        if status < _FIRST_FINAL_STATUS:
            if status == _SWITCHING_PROTOCOLS:
                self._stop = "the server switched protocols (unexpected 101)"
                raise _Stop
            return  # informational (100 Continue, 103 Early Hints): skipped
        connection = self._connection
        if connection is not None and (
            len(connection) != 1
            or (
                connection[0] not in _CONNECTION_KEPT_SPELT
                and connection[0].lower() not in _CONNECTION_TOKENS_KEPT
            )
        ):  # the usual `keep-alive` alone, tested here: no call for it on every answer
            named = _listed_in_connection(connection)
            if named:
                self._headers = [h for h in self._headers if h[0] not in named]
        if self._head_only:
            self.keep_alive = self._head_keep_alive()
            self._complete()
            self._stop = "head"
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status >= _FIRST_FINAL_STATUS:
            self.keep_alive = self._parser.should_keep_alive()
            body = self._body  # `_complete`, inlined: once per answer
            listener = self._listener
            if listener is not None:
                self._listener = None
                answer = b"".join(body) if len(body) != 1 else body[0]
                listener.answered(UpstreamResponse(self._status, self._headers, answer))
                return
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                answer = b"".join(body) if len(body) != 1 else body[0]
                waiter.set_result(UpstreamResponse(self._status, self._headers, answer))

    # -- helpers ----------------------------------------------------------------------------------

    def _pending(self) -> bool:
        """A request is in flight and not yet answered nor failed."""
        waiter = self._waiter
        return self._listener is not None or (waiter is not None and not waiter.done())

    def _settle(self, answer: UpstreamResponse | None, error: Exception | None) -> None:
        """Hand the request in flight its answer or its error (the future's or the listener's
        form), once."""
        listener = self._listener
        if listener is not None:
            self._listener = None
            if error is None:
                assert answer is not None
                listener.answered(answer)
            else:
                listener.failed(error)
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(cast(UpstreamResponse, answer))
            else:
                waiter.set_exception(error)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._pending():
            return  # idle, or answered: the next request arms the timer again
        if self._loop.time() < self._deadline:  # a later request than the one that armed it
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            self._timer_at = self._deadline
            return
        self.close(graceful=False)  # closed first: a listener hears of a connection already done
        self._settle(None, DeadlineExceeded())

    def _complete(self) -> None:
        self._settle(UpstreamResponse(self._status, self._headers, b"".join(self._body)), None)

    def _fail(self, message: str) -> None:
        self.close(graceful=False)
        self._settle(None, InvalidResponse(message))

    def _ends_at_close(self) -> bool:
        """A final answer with neither a length nor chunked coding ends when the server closes."""
        if not self._headers_done or self._status < _FIRST_FINAL_STATUS:
            return False
        coding = self._transfer_encoding
        if coding is not None and coding.rstrip().lower().endswith(b"chunked"):
            return False
        return all(name != b"content-length" for name, _ in self._headers)

    def _head_keep_alive(self) -> bool:
        tokens = _connection_tokens(self._connection) if self._connection else set()
        if b"close" in tokens:
            return False
        return self._parser.get_http_version() != "1.0" or b"keep-alive" in tokens
