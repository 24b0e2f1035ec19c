"""Limits on what a client may send before it is answered, shared by the fast protocol and the
uvicorn protocol it hands connections to.

httptools gathers a header's name and value in memory before it calls back, so a limit checked
only in the callbacks comes too late for one huge header: the bytes of a request's head are
counted as they arrive (`HeadBudget`) and the parser never gets more than the limit (plus the
read that crossed it). The callbacks then check the precise limits: the request line, the
head's size and its number of headers, `Host` exactly once on HTTP/1.1, HTTP/1.0 and 1.1 only.
nginx answers the same requests with 414, 400 ("Request Header Or Cookie Too Large"), 400 and
505; the head's limits answer 431 here as RFC 6585 says.

A request line without a version (`GET /` and a line end: HTTP/0.9) is refused with 400 as soon
as its line end arrives. httptools takes such a line for HTTP/0.9 followed by headers and waits
for the empty line, which an HTTP/0.9 client never sends: both sides waited until the head
timeout. nginx serves HTTP/0.9 (the body alone, then it closes); modelyard serves only 1.0 and
1.1. The line is checked from the bytes fed, so only when its message begins at a read's start
(the usual case; one pipelined behind another in the same read falls to the head timeout).
"""

from __future__ import annotations

import asyncio
import http
from typing import Final

MAX_REQUEST_LINE: Final = 8 * 1024  # the target; nginx: large_client_header_buffers 8k
MAX_HEAD_BYTES: Final = 64 * 1024  # names and values of all headers (h11: 64 KiB)
MAX_HEADERS: Final = 100
HEAD_TIMEOUT_S: Final = 30.0  # a request's head must be complete this long after it began
BODY_IDLE_S: Final = 30.0  # a request's body may not stall longer than this between reads
HEAD_ALLOWANCE: Final = MAX_HEAD_BYTES + MAX_REQUEST_LINE + 1024  # the line, CRLFs, ": "
LINGER_S: Final = 2.0  # after a refusal, what the client still sends is read and dropped


class Refused(Exception):
    """A request refused before it reaches any handler: answered, then the connection closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def answer(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        body = b'{"error_code":"%s","message":"%s"}' % (self.code.encode(), self.message.encode())
        phrase = http.HTTPStatus(self.status).phrase.encode()
        parts = [b"HTTP/1.1 %d %s\r\n" % (self.status, phrase)]
        for name, value in default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        parts += (b"connection: close\r\n\r\n", body)
        return b"".join(parts)


def bad_request(message: str = "malformed HTTP request") -> Refused:
    return Refused(400, "BAD_REQUEST", message)


def no_version() -> Refused:
    return bad_request("the request line names no HTTP version (HTTP/0.9 is not served)")


def head_too_large() -> Refused:
    return Refused(431, "HEADERS_TOO_LARGE", f"the headers are over {MAX_HEAD_BYTES} bytes")


def too_many_headers() -> Refused:
    return Refused(431, "HEADERS_TOO_LARGE", f"more than {MAX_HEADERS} headers")


def uri_too_long() -> Refused:
    return Refused(414, "URI_TOO_LONG", f"the request target is over {MAX_REQUEST_LINE} bytes")


# Where a head's request line stands: the next bytes begin it, it is being read, or checked
# (or not checked: its message began inside a read already fed).
LINE_NEXT: Final = 0
LINE_OPEN: Final = 1
LINE_DONE: Final = 2


class HeadBudget:
    """Counts one request head as the parser sees it; raises `Refused` past a limit.

    `allowance` is how many more bytes the parser may be fed while a head is being read;
    `url`, `header` and `complete` are called from the parser's callbacks."""

    __slots__ = ("count", "hosts", "in_head", "left", "line", "size", "spaces", "url_size")

    def __init__(self) -> None:
        self.in_head = True
        self.reset()

    def reset(self) -> None:
        """The next message's head (called when a message ends, and at the start; inlined in
        `FastHttpProtocol.on_message_complete`: a field added here is added there)."""
        self.in_head = True
        self.left = HEAD_ALLOWANCE
        self.count = self.size = self.url_size = self.hosts = 0
        self.line = LINE_NEXT
        self.spaces = 0

    def begin(self) -> None:
        """The parser began a message (`on_message_begin`): one that began inside a read
        already fed is not at that read's start, so its line is not checked."""
        if self.line == LINE_NEXT:
            self.line = LINE_DONE

    def fed(self, chunk: bytes) -> None:
        """`chunk` is about to be parsed; raises `Refused` for a request line without a version."""
        if self.in_head:
            self.left -= len(chunk)
            if self.line != LINE_DONE:
                self.request_line(chunk)

    def request_line(self, chunk: bytes) -> None:
        """The request line's part in `chunk`: raises `Refused` for one without a version."""
        if self.line == LINE_NEXT:
            chunk = chunk.lstrip(b"\r\n")  # empty lines before a request are allowed
            if not chunk:
                return
            self.line = LINE_OPEN
        end = chunk.find(b"\n")
        self.spaces += chunk.count(b" ", 0, len(chunk) if end < 0 else end)
        if end >= 0:
            self.line = LINE_DONE
            if self.spaces < 2:  # `METHOD SP target SP HTTP/x.y`
                raise no_version()

    def url(self, size: int) -> None:
        self.url_size += size
        if self.url_size > MAX_REQUEST_LINE:
            raise uri_too_long()

    def header(self, name: bytes, value: bytes) -> None:
        self.count += 1
        self.size += len(name) + len(value)
        if self.count > MAX_HEADERS:
            raise too_many_headers()
        if self.size > MAX_HEAD_BYTES:
            raise head_too_large()
        if len(name) == 4 and name.lower() == b"host":
            self.hosts += 1

    def complete(self, version: str) -> None:
        """The head is complete: HTTP/1.0 or 1.1 only, and `Host` exactly once on 1.1."""
        self.in_head = False
        if version == "1.1":
            if self.hosts != 1:
                raise bad_request("HTTP/1.1 needs exactly one Host header")
        elif version != "1.0":
            if version.startswith("0."):
                raise bad_request("HTTP/0.9 is not served")
            raise Refused(505, "HTTP_VERSION_NOT_SUPPORTED", "only HTTP/1.0 and 1.1 are served")


def refusal(error: BaseException) -> Refused:
    """The `Refused` a parser error stands for (raised in a callback, or the parser's own)."""
    cause = error.__context__
    return cause if isinstance(cause, Refused) else bad_request()


def answer_and_linger(transport: asyncio.Transport, answer: bytes) -> None:
    """Write a refusal and close gently, as nginx's lingering close: our side is shut for
    writing, and what the client still sends (the rest of a huge head or body) is read and
    dropped for `LINGER_S` or until it closes its side; closing with that data unread would
    reset the connection, and the client could lose the answer."""
    transport.write(answer)
    if not transport.can_write_eof():
        transport.close()
        return
    transport.write_eof()
    transport.resume_reading()
    asyncio.get_running_loop().call_later(LINGER_S, transport.close)
