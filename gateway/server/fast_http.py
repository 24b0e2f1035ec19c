"""An HTTP/1.1 server protocol that answers the gateway's paths itself and hands every other
connection to uvicorn.

Why: under uvicorn, each request builds an ASGI scope (with a copy of the app state), a request
cycle with an `asyncio.Event`, `receive`/`send` message dicts whose headers are checked one by
one, and arms a keep-alive timer when it ends; for a proxy whose own work is a routing decision
and one upstream call, that was about a third of the gateway's CPU per request. Here a request
on a fast path is parsed by httptools straight into (method, path, headers, body), handed to
the handler (`Gateway.start`), and its answer, given back through a `respond` callback (at
once, or later: no Task here), is written with one `write`. Per connection there is one idle
timer, re-armed only when it fires, instead of one per request.

A request that is not on a fast path (the registry API, the console, an upgrade, a method the
gateway does not serve) hands its connection to uvicorn's protocol for good: the request's head
is written out again from what was parsed (and a chunked body chunked again), fed to uvicorn's
protocol with whatever follows, and the transport is switched to it, much as uvicorn itself does
for a WebSocket upgrade. Inference clients stay on the fast path; a client that calls the API on
a connection is served by uvicorn from then on. If answers of this protocol are still owed on
the connection (pipelining), the switch waits until they are written, so answers keep their order.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from typing import Any, Final, Protocol, cast

import httptools
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.errors import PayloadTooLarge
from gateway.reply import Reply, error_reply
from gateway.request import is_oip
from gateway.respond import Respond
from gateway.server.handover import HandOver
from gateway.server.limits import (
    HEAD_ALLOWANCE,
    LINE_DONE,
    LINE_NEXT,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    HeadBudget,
    Refused,
    answer_and_linger,
    head_too_large,
    no_version,
    refusal,
    too_many_headers,
    uri_too_long,
)
from gateway.transport.base import TRACE_CONTEXT, Headers

log = logging.getLogger("modelyard.http")

MAX_PIPELINED: Final = 16  # queued requests on one connection before reading pauses
_JSON: Final = (b"content-type", b"application/json")
_STATUS_LINES: Final = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus
}
_CR: Final = 13  # a read beginning with a byte above it begins with no empty line
_REQUEST_LINE_SPACES: Final = 2  # `METHOD SP target SP HTTP/x.y`
#: How a whole HTTP/1.1 request line ends (before its LF). The parser reaches a message's
#: `on_headers_complete` only if its line was `METHOD SP target SP HTTP/x.y`, so a line seen
#: to end so is HTTP/1.1: `get_http_version()` formats a new string each call (measured:
#: 2.6k instructions, the check here 1.2k; loadtests/hotpath_profile.py --callgrind, routed).
_HTTP11_END: Final = b" HTTP/1.1\r"
#: `HeadBudget.left` once over `MAX_HEAD_BYTES` were fed in a head (from `HEAD_ALLOWANCE`)
_LEFT_PAST_MAX_HEAD: Final = HEAD_ALLOWANCE - MAX_HEAD_BYTES
_NOTED: Final = frozenset((b"host", b"expect", *TRACE_CONTEXT))  # headers `on_header` notes
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_INTERNAL: Final = (
    b'{"error_code":"INTERNAL","message":"the gateway failed to answer; see its log"}'
)


#: The end of a kept-alive answer's head by its body's size: its `content-length` line and
#: the empty line. Bytes formatting (`%d`) costs more than a dict lookup, a model's answers
#: come in few sizes, and each piece less to join counts (loadtests/hotpath_profile.py
#: --callgrind, routed: 0.5k instructions a request less in all). Remembered
#: up to this many sizes.
_LENGTH_ENDS: dict[int, bytes] = {}
_MAX_LENGTH_ENDS: Final = 4096
_CLOSE: Final = b"connection: close\r\n\r\n"
_KEPT_ALIVE: Final = b"connection: keep-alive\r\n\r\n"


def _length_end(size: int) -> bytes:
    if len(_LENGTH_ENDS) >= _MAX_LENGTH_ENDS:
        _LENGTH_ENDS.clear()
    end = _LENGTH_ENDS[size] = b"content-length: %d\r\n\r\n" % size
    return end


#: Request targets -> their paths as text: `httptools.parse_url` builds a URL object, and
#: clients of the gateway send the same few targets (loadtests/hotpath_profile.py
#: --callgrind, routed: 2.5k instructions a request less). Up to this many targets of up
#: to this many bytes (at most 1 MiB of keys, whatever clients send).
_PATHS: dict[bytes, str] = {}
_MAX_PATHS: Final = 4096
_MAX_PATH_KEY: Final = 256


def _path_of(url: bytes) -> str:
    """The path of `url` (raises as `httptools.parse_url` does), remembered in `_PATHS`."""
    path: str = httptools.parse_url(url).path.decode("latin-1")
    if len(url) <= _MAX_PATH_KEY:
        if len(_PATHS) >= _MAX_PATHS:
            _PATHS.clear()
        _PATHS[url] = path
    return path


_DefaultHead = tuple[list[tuple[bytes, bytes]], bytes, bytes]
_OK: Final = 200
_default_heads: list[_DefaultHead] = [([], b"", b"")]


def _default_head(headers: list[tuple[bytes, bytes]]) -> _DefaultHead:
    """uvicorn's default headers (`date`, kept fresh by replacing the list every second) as
    header lines, joined once per list rather than once per answer; and after a 200's status
    line, the usual answer's start in one piece (a piece less to join: 0.3k instructions)."""
    found = _default_heads[0]
    if found[0] is not headers:
        lines = b"".join(b"%b: %b\r\n" % pair for pair in headers)
        found = (headers, lines, _STATUS_LINES[_OK] + lines)
        _default_heads[0] = found
    return found


class FastHandler(Protocol):
    max_body: int

    def start(
        self,
        method: str,
        path: str,
        headers: Headers,
        body: bytes,
        respond: Respond,
        context: bool = True,
    ) -> None:
        """Answer the request by calling `respond` once, now or later (None: a 500).
        `context`: whether `headers` hold W3C trace context (`TRACE_CONTEXT`), as the parser
        noted (True: they may, look)."""


class FastPaths(Protocol):
    def handler_for(self, method: str, path: str) -> FastHandler | None:
        """Who answers `method path` on the fast path; None: hand the connection to uvicorn."""
        ...


class _Request:
    """One request parsed, to be answered (its fields set by `on_message_complete`).

    A plain class, not a msgspec Struct: compiled (mypyc), a native class, made by a C call
    and its fields read as C struct members (a Struct's: a generic attribute lookup each).
    No `__init__`: interpreted, that would be one more Python frame for every request (as a
    NamedTuple's `__new__` would). loadtests/hotpath_profile.py --callgrind, routed: compiled
    -0.75k, interpreted +0.6k instructions a request."""

    __slots__ = (
        "body",
        "handler",
        "headers",
        "http10",
        "keep_alive",
        "method",
        "path",
        "too_large",
    )

    handler: FastHandler
    method: str
    path: str
    headers: Headers
    body: bytes
    keep_alive: bool
    too_large: bool
    http10: bool


def protocol_class(paths: FastPaths) -> type[asyncio.Protocol]:
    """What to give uvicorn as its protocol class (`http=`): a factory of `FastHttpProtocol`
    bound to `paths`. Not a subclass made at run time: the compiled build (mypyc, see
    `modelyard/compiled.py`) cannot be subclassed by interpreted code, and uvicorn only calls
    what it is given."""

    def bound(
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> FastHttpProtocol:
        protocol = FastHttpProtocol(config, server_state, app_state, _loop)
        protocol.paths = paths
        return protocol

    return cast(type[asyncio.Protocol], bound)


class FastHttpProtocol(HandOver, asyncio.Protocol):
    paths: FastPaths  # set by protocol_class's factory

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.keep_alive_s = float(config.timeout_keep_alive)
        self.access_log = config.access_log and logging.getLogger("uvicorn.access").hasHandlers()
        self.client = ""
        # per message
        self.url = b""
        self.headers: Headers = []
        self.body: list[bytes] = []
        self.size = 0
        self.path = ""
        self.method = ""
        self.handler: FastHandler | None = None
        self.too_large = False
        self.chunked = False
        self.expect: bytes | None = None  # the `Expect` header's value
        self.context = False  # a W3C trace context header seen (`FastHandler.start`)
        self.http10 = False
        self.http11 = False  # the message's request line was seen to say HTTP/1.1 (`_HTTP11_END`)
        self.budget = HeadBudget()
        self.uncounted = False  # the message began in a read counted for the one before it
        # per connection
        self.queue: deque[_Request] = deque()
        self.current: _Request | None = None  # the request being answered (one at a time)
        self.respond: Respond = self._respond  # bound once: handed to every request
        self.busy = False
        self.closing = False
        self.paused = False  # reading paused: too many pipelined requests queued
        self.writing_paused = False  # the transport's buffer is full: the client is not reading
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.handing_over = False  # the connection goes to uvicorn once nothing is owed here
        self.forwarded: list[bytes] = []  # bytes for uvicorn's protocol until the switch
        self.successor: asyncio.Protocol | None = None
        self.refused = False  # a request was refused: nothing more is read
        self.refusal = b""  # its answer, written once the answers owed before it are

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        # uvicorn's set is typed with its own protocols; it only calls `shutdown()` on them
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        if self.access_log:
            peer = transport.get_extra_info("peername")
            self.client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.last_active = self.loop.time()
        self.idle_timer = self.loop.call_later(self.keep_alive_s, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.closing = True
        self.queue.clear()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def data_received(self, data: bytes) -> None:
        budget = self.budget
        while data and not self.refused:
            size = len(data)
            if budget.in_head:  # `HeadBudget.fed`, inlined: once per request at least
                left = budget.left
                if size > left:  # never more than the limit parsed
                    size = max(left, 0)
                    chunk, data = data[:size], data[size:]
                else:
                    chunk, data = data, b""
                budget.left = left - size
                if budget.line != LINE_DONE:
                    # `HeadBudget.request_line`'s usual case inlined: a whole request line at
                    # the read's start (the rest, as `request_line` does)
                    line = budget.line == LINE_NEXT and size and chunk[0] > _CR
                    end = chunk.find(b"\n") if line else -1
                    try:
                        if end < 0:
                            budget.request_line(chunk)
                        else:
                            budget.line = LINE_DONE
                            if chunk.count(b" ", 0, end) < _REQUEST_LINE_SPACES:
                                raise no_version()
                            self.http11 = chunk[end - len(_HTTP11_END) : end] == _HTTP11_END
                    except Refused as refused:
                        self._refuse(refused)
                        return
            else:
                chunk, data = data, b""
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserUpgrade as upgrade:  # the head went to uvicorn already
                self._forward(chunk[upgrade.args[0] :] + data)
                return
            except httptools.HttpParserError as error:
                self._refuse(refusal(error))
                return
            if data and budget.in_head and budget.left <= 0:
                self._refuse(head_too_large())

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading and answering its requests
        until it does (without this, answers would pile up in memory without bound)."""
        self.writing_paused = True
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.busy and self.queue:
            self._start(self.queue.popleft())
        if not self.paused:
            transport.resume_reading()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after what is owed."""
        self.closing = True
        if not self.busy and not self.handing_over and self.transport is not None:
            self.transport.close()

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        budget = self.budget  # HeadBudget.begin, inlined
        if budget.line == LINE_NEXT:  # begun inside a read already fed: after another message
            budget.line = LINE_DONE
            self.uncounted = True  # (its head's bytes in that read are not in `budget.left`)
        self.url = b""
        self.headers = []
        self.body = []
        self.size = 0
        self.handler = None
        self.too_large = False
        self.chunked = False
        self.expect = None
        self.context = False

    def on_url(self, url: bytes) -> None:
        budget = self.budget  # HeadBudget.url, inlined
        budget.url_size += len(url)
        if budget.url_size > MAX_REQUEST_LINE:
            raise uri_too_long()
        self.url = self.url + url  # (not `+=`: mypyc 2.4 fails to compile it)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Runs for every header of every request, so it only keeps the header: the number
        and size limits (`HeadBudget.header`'s) are checked once, in `on_headers_complete`.
        The list cannot grow without bound meanwhile: `data_received` feeds a head at most
        `HeadBudget.left` bytes past one read. Measured (loadtests/hotpath_profile.py
        --callgrind, routed): 4.2k instructions a request less than with the checks per
        header."""
        lower = name.lower()
        if lower in _NOTED:  # one set lookup; the name's hash is kept for routing's lookups
            if lower == b"host":
                self.budget.hosts += 1
            elif lower == b"expect":  # noted here: no second pass over the headers for it
                self.expect = value
            else:  # trace context: the gateway then reads it (no pass over the headers for it)
                self.context = True
        self.headers.append((lower, value))

    def _head_limits(self) -> None:
        """`HeadBudget.header`'s limits on the whole head: at most `MAX_HEADERS` headers, and
        their names and values at most `MAX_HEAD_BYTES`. The sizes are added up only when the
        head's bytes may be over that: more than that fed for it (`budget.left`), or some of
        them in a read counted for the message before it (`uncounted`)."""
        self.uncounted = False
        headers = self.headers
        if len(headers) > MAX_HEADERS:
            raise too_many_headers()
        size = 0
        for name, value in headers:
            size += len(name) + len(value)
        if size > MAX_HEAD_BYTES:
            raise head_too_large()

    def on_headers_complete(self) -> None:
        if (
            len(self.headers) > MAX_HEADERS
            or self.budget.left < _LEFT_PAST_MAX_HEAD
            or self.uncounted
        ):
            self._head_limits()  # (raises, or the head is within the limits)
        parser = self.parser
        version = "1.1" if self.http11 else parser.get_http_version()
        budget = self.budget
        if version == "1.1" and budget.hosts == 1:  # `HeadBudget.complete`'s usual case
            budget.in_head = False
        else:
            budget.complete(version)
        self.http10 = version == "1.0"
        if not self.handing_over:
            # who answers (None: hand the connection to uvicorn), worked out inline: once a
            # request, and a call less
            handler = None
            if not parser.should_upgrade():
                url = self.url
                path = _PATHS.get(url) or _path_of(url)
                if "%" not in path:  # percent-encoded: uvicorn decodes it; no gateway path needs it
                    self.path = path
                    self.method = method = parser.get_method().decode("ascii")
                    handler = self.paths.handler_for(method, path)
            self.handler = handler
            if handler is not None:
                expect = self.expect
                if expect is not None and expect.lower() == b"100-continue":
                    self._continue(handler.max_body)
                return
            self.handing_over = True
            if self.idle_timer is not None:
                self.idle_timer.cancel()
                self.idle_timer = None
        self._forward_head()

    def on_body(self, body: bytes) -> None:
        handler = self.handler
        if handler is None:  # handing over
            self._forward(b"%x\r\n%b\r\n" % (len(body), body) if self.chunked else body)
        elif not self.too_large:
            self.size += len(body)
            if self.size > handler.max_body:
                self.too_large = True
                self.body = []
            else:
                self.body.append(body)

    def on_message_complete(self) -> None:
        budget = self.budget  # `HeadBudget.reset`, inlined (its `count` and `size`: not used here)
        budget.in_head = True
        budget.left = HEAD_ALLOWANCE
        budget.url_size = budget.hosts = budget.spaces = 0
        budget.line = LINE_NEXT
        self.http11 = False  # (set again only where the next message's line is read whole)
        handler = self.handler
        if handler is None:
            if self.chunked:
                self._forward(b"0\r\n\r\n")
            self._maybe_switch()
            return
        body = self.body
        request = _Request()  # (no `__init__`: see `_Request`)
        request.handler = handler
        request.method = self.method
        request.path = self.path
        request.headers = self.headers
        request.body = body[0] if len(body) == 1 else b"".join(body)
        request.keep_alive = self.parser.should_keep_alive()
        request.too_large = too_large = self.too_large
        request.http10 = self.http10
        if self.busy:
            self.queue.append(request)
            if len(self.queue) >= MAX_PIPELINED and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True
        elif too_large:
            self._start(request)
        else:  # `_start`, inlined: once per request
            self.busy = True
            self.current = request
            try:
                handler.start(
                    self.method, self.path, self.headers, request.body, self.respond, self.context
                )
            except Exception:
                log.exception("unhandled error answering %s %s", request.method, request.path)
                if self.current is request:  # (not answered before it raised)
                    self._respond(None)

    # --- answering ------------------------------------------------------------------------------

    def _start(self, request: _Request) -> None:
        self.busy = True
        self.current = request
        if request.too_large:
            limit = request.handler.max_body
            too_large = PayloadTooLarge(f"the request body is over the {limit}-byte limit")
            self._respond(error_reply(too_large, is_oip(request.path)))
            return
        try:
            request.handler.start(  # (a pipelined request's trace context: looked for)
                request.method, request.path, request.headers, request.body, self.respond
            )
        except Exception:
            log.exception("unhandled error answering %s %s", request.method, request.path)
            if self.current is request:  # (not answered before it raised)
                self._respond(None)

    def _respond(self, reply: Reply | None) -> None:
        """The handler's answer to the request in flight (None: it failed, a 500 that closes
        the connection); once per request, the first answer counting."""
        request = self.current
        if request is None:
            return
        self.current = None
        keep_alive = request.keep_alive
        if reply is None:
            reply, keep_alive = Reply(500, [_JSON], _INTERNAL), False
        status = reply.status  # the answer's bytes, joined for one `write`
        defaults = self.server_state.default_headers
        found = _default_heads[0]  # `_default_head`, inlined
        if found[0] is not defaults:
            found = _default_head(defaults)
        if status == _OK:
            parts = [found[2]]
        else:
            line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
            parts = [line, found[1]]
        headers = reply.headers
        if reply.head_of is headers:
            parts.append(reply.head)
        else:
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
        body = reply.body
        size = len(body)
        if keep_alive and not request.http10:  # the usual answer: the head ends at its length
            parts += (_LENGTH_ENDS.get(size) or _length_end(size), body)
        else:  # closed, or HTTP/1.0 kept alive (not its default: said so)
            connection = _KEPT_ALIVE if keep_alive else _CLOSE
            parts += (b"content-length: %d\r\n" % size, connection, body)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(parts))
        if self.access_log:
            logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/1.1" %d', self.client, request.method, request.path, reply.status
            )
        if keep_alive and not (self.queue or self.closing or self.refusal or self.handing_over):
            self.busy = False  # `_done`'s common case: nothing more owed, the connection kept
            self.last_active = self.loop.time()
            return
        self._done(keep_alive)

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _done(self, keep_alive: bool) -> None:
        self.busy = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not keep_alive or (self.closing and not self.handing_over):
            transport.close()
            return
        if self.queue:
            if self.writing_paused:  # answered again once the client reads (resume_writing)
                return
            self._start(self.queue.popleft())
            if self.paused and len(self.queue) < MAX_PIPELINED // 2:
                self.paused = False
                if not self.writing_paused:
                    transport.resume_reading()
            return
        if self.refusal:
            answer_and_linger(transport, self.refusal)
            return
        self.last_active = self.loop.time()
        if self.handing_over:
            self._maybe_switch()

    def _check_idle(self) -> None:
        """The keep-alive timeout: one timer per connection, re-armed when it fires."""
        self.idle_timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.handing_over:
            return
        idle_for = self.loop.time() - self.last_active
        if not self.busy and idle_for >= self.keep_alive_s:
            transport.close()
            return
        wait = self.keep_alive_s if self.busy else self.keep_alive_s - idle_for
        self.idle_timer = self.loop.call_later(wait, self._check_idle)

    def _continue(self, max_body: int) -> None:
        """`Expect: 100-continue`: 413 instead when the announced body is over the limit."""
        for name, value in self.headers:
            if name == b"content-length" and value.isdigit() and int(value) > max_body:
                message = f"the request body is over the {max_body}-byte limit"
                raise Refused(413, "REQUEST_TOO_LARGE", message)
        self._write(_CONTINUE)

    def _refuse(self, refused: Refused) -> None:
        """Answer a request refused before any handler, after the answers owed before it."""
        self.refused = True
        transport = self.transport
        if transport is None:
            return
        transport.pause_reading()
        answer = refused.answer(self.server_state.default_headers)
        if (self.busy or self.queue) and not self.handing_over:
            self.refusal = answer
            return
        answer_and_linger(transport, answer)
