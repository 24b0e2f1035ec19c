"""One HTTP/2 connection of the gRPC server: an asyncio Protocol and its state machine.

Requests are unary: a stream's headers and body are gathered (bounded), then handed to `Calls`,
which answers at once (a tuple) or later (an awaitable, run as a task, cancelled when the
client resets the stream or the connection is lost). What the connection enforces:

- framing: the preface, frame sizes (ours: 16 KiB), HEADERS + CONTINUATION with nothing in
  between, stream ids rising and odd, SETTINGS/PING/WINDOW_UPDATE/RST_STREAM/GOAWAY lengths;
  a breach is a GOAWAY with the RFC 9113 error code, then close. PRIORITY is ignored.
- bounds: a header block (encoded and decoded) of at most `MAX_HEAD_BYTES`, at most
  `max_streams` open streams (more: REFUSED_STREAM), a body of at most `max_body` (more: the
  call answers `Calls.oversized()` at once), the preface within `head_timeout_s`, a request
  complete `head_timeout_s` after its HEADERS (else the stream is reset; a header block left
  open closes the connection); a peer that does not read stops our reading (pause_writing).
- flow control both ways: our receive windows are replenished as bytes arrive (each stream's
  only while its request is unfinished); answers are sent within the peer's windows, the rest
  waits for its WINDOW_UPDATE.
- shutdown: `shutdown()` sends GOAWAY, refuses newer streams and closes once the open ones
  are answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol, cast

from gateway.grpc import h2frames as f
from gateway.grpc import hpack_decode
from gateway.server.limits import MAX_HEAD_BYTES

HEAD_TIMEOUT_S = 30.0  # the HTTP server's (gateway/server/limits.py); tests shorten it

log = logging.getLogger(__name__)

#: What a call answers: the header block of the answer's head, its body (DATA, possibly
#: empty) and the trailers' block (empty: the head ends the stream, e.g. a trailers-only call).
Answer = tuple[bytes, bytes, bytes]
#: A request's header block, decoded (`.headers`), with a `.memo` its reader may fill.
RequestHeaders = hpack_decode.Block

RECEIVE_WINDOW: Final = 1 << 20  # per stream and (x16) per connection
CONNECTION_WINDOW: Final = 16 << 20
#: named: an unnamed task formats "Task-<n>" for its name (as gateway/server/fast_http.py)
_TASK_NAME: Final = "modelyard-grpc"


class Calls(Protocol):
    def call(
        self, headers: RequestHeaders, body: bytes
    ) -> Answer | Coroutine[Any, Any, Answer]: ...

    def oversized(self) -> Answer: ...


class Stream:
    __slots__ = (
        "began",
        "body",
        "headers",
        "ident",
        "outbox",
        "send_window",
        "taken",
        "task",
        "trailer",
    )

    def __init__(self, ident: int, send_window: int, began: float) -> None:
        self.ident = ident
        self.headers: RequestHeaders | None = None
        self.body = bytearray()
        self.send_window = send_window
        self.began = began
        self.task: asyncio.Task[None] | None = None
        self.outbox: bytes | None = None  # None: request not complete yet
        self.trailer = b""
        self.taken = 0  # bytes received since our last WINDOW_UPDATE of this stream


class H2Connection(asyncio.Protocol):
    def __init__(
        self,
        calls: Calls,
        *,
        max_body: int,
        max_streams: int = 128,
        head_timeout_s: float | None = None,
        on_close: Callable[[H2Connection], None] | None = None,
    ) -> None:
        self.calls = calls
        self.max_body = max_body
        self.max_streams = max_streams
        self.head_timeout_s = HEAD_TIMEOUT_S if head_timeout_s is None else head_timeout_s
        self.on_close = on_close
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface = False
        self.streams: dict[int, Stream] = {}
        self.last_stream = 0
        self.block: bytearray | None = None  # a header block awaiting CONTINUATION
        self.block_stream = 0
        self.block_end = False
        self.decoder = hpack_decode.Decoder(MAX_HEAD_BYTES)
        self.peer_window = f.DEFAULT_WINDOW  # for new streams: the peer's INITIAL_WINDOW_SIZE
        self.peer_frame = f.DEFAULT_FRAME_SIZE
        self.send_window = f.DEFAULT_WINDOW  # the connection's
        self.received = 0  # connection-level bytes taken since our last WINDOW_UPDATE
        self.out: list[bytes] = []
        self.waiting: list[Stream] = []  # answers held by flow control
        self.closing = False
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.closed = asyncio.Event()

    # --- asyncio ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.write(
            f.settings(
                [
                    (f.MAX_CONCURRENT_STREAMS, self.max_streams),
                    (f.INITIAL_WINDOW_SIZE, RECEIVE_WINDOW),
                    (f.MAX_HEADER_LIST_SIZE, MAX_HEAD_BYTES),
                    (f.ENABLE_PUSH, 0),
                ]
            )
            + f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        )
        self.flush()
        self.timer = self.loop.call_later(self.head_timeout_s, self.check_slow)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.buffer:  # the rest of a frame begun in an earlier read
            data = bytes(self.buffer + data)
            self.buffer.clear()
        try:
            at = 0
            if not self.preface:
                if len(data) < len(f.PREFACE):
                    if not f.PREFACE.startswith(data):
                        raise f.FrameError(f.PROTOCOL_ERROR, "not the HTTP/2 preface")
                    self.buffer += data
                    return
                if not data.startswith(f.PREFACE):
                    raise f.FrameError(f.PROTOCOL_ERROR, "not the HTTP/2 preface")
                self.preface = True
                at = len(f.PREFACE)
            while True:
                found = f.parse_frame(data, at, f.DEFAULT_FRAME_SIZE)
                if found is None:
                    break
                kind, flags, stream, payload, at = found
                self.frame(kind, flags, stream, payload)
                if transport.is_closing():
                    return
            if at < len(data):  # at most a frame's header and payload (parse_frame's bound)
                self.buffer += data[at:]
        except f.FrameError as exc:
            self.fail(exc.code, str(exc))
        except Exception:  # a bug of ours: this connection ends, the server goes on
            log.exception("HTTP/2 connection failed")
            self.fail(f.INTERNAL_ERROR, "internal error")
        self.flush()

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for stream in self.streams.values():
            if stream.task is not None:
                stream.task.cancel()
        self.streams.clear()
        self.closed.set()
        if self.on_close is not None:
            self.on_close(self)

    # --- frames in ---------------------------------------------------------------------

    def frame(self, kind: int, flags: int, ident: int, payload: bytes) -> None:
        if self.block is not None and kind != f.CONTINUATION:
            raise f.FrameError(f.PROTOCOL_ERROR, "a frame inside a header block")
        if kind == f.DATA:
            self.on_data(flags, ident, payload)
        elif kind == f.HEADERS:
            if ident == 0 or not ident & 1:
                raise f.FrameError(f.PROTOCOL_ERROR, "HEADERS on a stream clients cannot open")
            fragment = f.unpad(flags, payload)
            if flags & f.PRIORITY_FLAG:
                if len(fragment) < 5:
                    raise f.FrameError(f.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
                fragment = fragment[5:]
            self.block_stream = ident
            self.block_end = bool(flags & f.END_STREAM)
            if flags & f.END_HEADERS:  # the usual: the whole block in this frame
                self.on_headers(fragment)
            else:
                self.block = bytearray(fragment)
        elif kind == f.CONTINUATION:
            if self.block is None or ident != self.block_stream:
                raise f.FrameError(f.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
            self.block += payload
            if len(self.block) > MAX_HEAD_BYTES:
                raise f.FrameError(f.ENHANCE_YOUR_CALM, "a header block over the limit")
            if flags & f.END_HEADERS:
                self.on_headers(bytes(self.block))
        elif kind == f.SETTINGS:
            self.on_settings(flags, ident, payload)
        elif kind == f.WINDOW_UPDATE:
            self.on_window_update(ident, f.parse_u32(payload, "WINDOW_UPDATE") & f.MAX_WINDOW)
        elif kind == f.PING:
            if ident != 0 or len(payload) != 8:
                raise f.FrameError(f.PROTOCOL_ERROR, "a malformed PING")
            if not flags & f.ACK:
                self.write(f.ping_ack(payload))
        elif kind == f.RST_STREAM:
            code = f.parse_u32(payload, "RST_STREAM")
            if ident == 0 or ident > self.last_stream:
                raise f.FrameError(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            stream = self.streams.pop(ident, None)
            if stream is not None:
                log.debug("stream %d reset by the client (code %d)", ident, code)
                if stream.task is not None:
                    stream.task.cancel()
                self.maybe_close()
        elif kind == f.GOAWAY:
            if ident != 0:
                raise f.FrameError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
            self.closing = True
            self.maybe_close()
        elif kind == f.PRIORITY:
            if ident == 0:
                raise f.FrameError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
            if len(payload) != 5:
                raise f.FrameError(f.FRAME_SIZE_ERROR, "a PRIORITY of the wrong size")
        elif kind == f.PUSH_PROMISE:
            raise f.FrameError(f.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # frames of unknown types are ignored (RFC 9113 4.1)

    def on_headers(self, block: bytes) -> None:
        """A whole header block (`block`) of stream `block_stream` arrived."""
        ident, end = self.block_stream, self.block_end
        self.block = None
        try:
            headers = self.decoder.decode_block(block)
        except hpack_decode.ListTooLarge:
            raise f.FrameError(f.ENHANCE_YOUR_CALM, "a header list over the limit") from None
        except hpack_decode.DecodeError as exc:
            raise f.FrameError(f.COMPRESSION_ERROR, f"not valid HPACK: {exc}") from None
        stream = self.streams.get(ident)
        if stream is not None:  # trailers of a request: the body is complete
            if stream.outbox is not None or not end:
                raise f.FrameError(f.PROTOCOL_ERROR, "HEADERS on a finished request")
            self.dispatch(stream)
            return
        if ident <= self.last_stream:
            return  # a stream we closed or reset: ignored
        self.last_stream = ident
        if self.closing:
            return  # after our GOAWAY: not processed
        if len(self.streams) >= self.max_streams:
            self.write(f.rst_stream(ident, f.REFUSED_STREAM))
            return
        stream = Stream(ident, self.peer_window, self.loop.time())
        stream.headers = headers
        self.streams[ident] = stream
        if end:
            self.dispatch(stream)

    def on_data(self, flags: int, ident: int, payload: bytes) -> None:
        if ident == 0:
            raise f.FrameError(f.PROTOCOL_ERROR, "DATA on stream 0")
        if ident > self.last_stream:
            raise f.FrameError(f.PROTOCOL_ERROR, "DATA on an idle stream")
        self.received += len(payload)
        if self.received > CONNECTION_WINDOW:
            raise f.FrameError(f.FLOW_CONTROL_ERROR, "DATA beyond the connection's window")
        if self.received >= CONNECTION_WINDOW // 2:
            self.write(f.window_update(0, self.received))
            self.received = 0
        stream = self.streams.get(ident)
        if stream is None or stream.outbox is not None:
            return  # closed, reset or answered early: dropped (its window counted above)
        stream.taken += len(payload)
        if stream.taken > RECEIVE_WINDOW:
            self.reset(stream, f.FLOW_CONTROL_ERROR)
            return
        data = f.unpad(flags, payload)
        if len(stream.body) + len(data) > self.max_body:
            self.answer(stream, self.calls.oversized())
            self.write(f.rst_stream(ident, f.NO_ERROR))
            stream.body = bytearray()
            return
        if flags & f.END_STREAM:
            if stream.body:
                stream.body += data
                self.dispatch(stream)
            else:  # the usual unary request: its message in one DATA frame, not copied
                self.dispatch(stream, data)
            return
        stream.body += data
        if stream.taken >= RECEIVE_WINDOW // 2:
            self.write(f.window_update(ident, stream.taken))
            stream.taken = 0

    def on_settings(self, flags: int, ident: int, payload: bytes) -> None:
        if ident != 0:
            raise f.FrameError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise f.FrameError(f.FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
            return
        for key, value in f.parse_settings(payload):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.FrameError(f.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1")
                delta = value - self.peer_window
                self.peer_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_FRAME_SIZE <= value <= f.MAX_FRAME_SIZE_LIMIT:
                    raise f.FrameError(f.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self.peer_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.FrameError(f.PROTOCOL_ERROR, "ENABLE_PUSH neither 0 nor 1")
        self.write(f.SETTINGS_ACK)
        self.send_waiting()

    def on_window_update(self, ident: int, increment: int) -> None:
        if ident == 0:
            if increment == 0:
                raise f.FrameError(f.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > f.MAX_WINDOW:
                raise f.FrameError(f.FLOW_CONTROL_ERROR, "the connection's window over 2^31-1")
        else:
            if ident > self.last_stream:
                raise f.FrameError(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            stream = self.streams.get(ident)
            if stream is None:
                return
            if increment == 0 or stream.send_window + increment > f.MAX_WINDOW:
                self.reset(stream, f.PROTOCOL_ERROR if increment == 0 else f.FLOW_CONTROL_ERROR)
                return
            stream.send_window += increment
        self.send_waiting()

    # --- calls ---------------------------------------------------------------------------

    def dispatch(self, stream: Stream, body: bytes | None = None) -> None:
        """The request is complete: its body `body`, else what `stream.body` gathered."""
        assert stream.headers is not None
        stream.outbox = b""  # the request is complete
        try:
            answer = self.calls.call(stream.headers, bytes(stream.body) if body is None else body)
        except Exception:
            log.exception("gRPC call failed")
            self.reset(stream, f.INTERNAL_ERROR)
            return
        stream.body = bytearray()
        if isinstance(answer, tuple):
            self.answer(stream, answer)
            return
        stream.task = asyncio.Task(self.run(stream, answer), loop=self.loop, name=_TASK_NAME)

    async def run(self, stream: Stream, call: Coroutine[Any, Any, Answer]) -> None:
        """A call answered later; written at once when it ends (no turn of the loop waits)."""
        try:
            answer = await call
        except Exception:
            log.exception("gRPC call failed")
            stream.task = None
            self.reset(stream, f.INTERNAL_ERROR)
        else:
            stream.task = None
            if self.streams.get(stream.ident) is stream:
                self.answer(stream, answer)
        self.flush()

    def answer(self, stream: Stream, answer: Answer) -> None:
        head, body, trailer = answer
        size, room = len(body), self.peer_frame
        if (
            0 < size <= room
            and size <= self.send_window
            and size <= stream.send_window
            and len(head) <= room
            and len(trailer) <= room
        ):  # the usual answer: three frames, sent at once
            self.send_window -= size
            self.out.append(f.answer_frames(stream.ident, head, body, trailer))
            self.done(stream)
            return
        end = not body and not trailer
        self.write(f.header_frames(stream.ident, head, self.peer_frame, end))
        if end:
            self.done(stream)
            return
        stream.outbox = body
        stream.trailer = trailer
        self.send(stream)

    def send(self, stream: Stream) -> bool:
        """Sends what the windows allow of the stream's answer; True once all is sent."""
        body = stream.outbox or b""
        if body:
            room = min(self.send_window, stream.send_window)
            if room <= 0:
                return False
            piece = body[:room]
            self.write(b"".join(f.data_frames(stream.ident, piece, self.peer_frame, False)))
            self.send_window -= len(piece)
            stream.send_window -= len(piece)
            stream.outbox = body = body[room:]
            if body:
                return False
        self.write(f.header_frames(stream.ident, stream.trailer, self.peer_frame, True))
        self.done(stream)
        return True

    def send_waiting(self) -> None:
        for stream in list(self.streams.values()):
            if stream.outbox and stream.task is None and self.send_window > 0:
                self.send(stream)

    def done(self, stream: Stream) -> None:
        self.streams.pop(stream.ident, None)
        self.maybe_close()

    def reset(self, stream: Stream, code: int) -> None:
        self.write(f.rst_stream(stream.ident, code))
        if stream.task is not None:
            stream.task.cancel()
        self.done(stream)

    # --- the connection -----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Held until `flush`: at the end of `data_received`, of a call, of a timer's check."""
        self.out.append(data)

    def flush(self) -> None:
        out, self.out = self.out, []
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    def fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with its code, then close."""
        log.info("HTTP/2 connection error %d: %s", code, message)
        self.write(f.goaway(self.last_stream, code, message.encode()[:256]))
        self.close()

    def close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful: GOAWAY, no new streams, close once those open are answered."""
        if not self.closing:
            self.closing = True
            self.write(f.goaway(self.last_stream, f.NO_ERROR))
            self.flush()
        self.maybe_close()

    def maybe_close(self) -> None:
        if self.closing and not self.streams:
            self.close()

    def check_slow(self) -> None:
        """The preface, and every request's headers and body, within `head_timeout_s`."""
        now = self.loop.time()
        if not self.preface:
            self.fail(f.PROTOCOL_ERROR, "no HTTP/2 preface in time")
            return
        if self.block is not None:
            self.fail(f.ENHANCE_YOUR_CALM, "a header block unfinished in time")
            return
        for stream in list(self.streams.values()):
            if stream.outbox is None and now - stream.began >= self.head_timeout_s:
                self.reset(stream, f.CANCEL)
        self.flush()
        self.timer = self.loop.call_later(self.head_timeout_s / 2, self.check_slow)
