"""HTTP/2 frames (RFC 9113) and the gRPC wire details of the gateway's gRPC server (pure).

Parsing is one function over a buffer (`parse_frame`: the next whole frame, or None); encoding
is one function per frame the server sends. The answer's headers are encoded by hand (RFC 7541):
`:status 200` indexed, `content-type: application/grpc` as a literal with an indexed name, and
the trailers (`grpc-status`, `grpc-message`, the gateway's `x-modelyard-*`) as literals without
indexing, so the server keeps no HPACK encoder state.
"""

from __future__ import annotations

import struct
from typing import Final
from urllib.parse import quote

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_SIZE: Final = 9

# Frame types
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# Flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

# Error codes
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB

# Settings
HEADER_TABLE_SIZE: Final = 0x1
ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE: Final = 0x5
MAX_HEADER_LIST_SIZE: Final = 0x6

DEFAULT_WINDOW: Final = 65_535
DEFAULT_FRAME_SIZE: Final = 16_384
MAX_WINDOW: Final = 2**31 - 1
MAX_FRAME_SIZE_LIMIT: Final = 2**24 - 1

_HEAD: Final = struct.Struct(">HBBBI")  # length as 16 + 8 bits, type, flags, stream id
_U32: Final = struct.Struct(">I")
_SETTING: Final = struct.Struct(">HI")


class FrameError(Exception):
    """The peer broke the protocol: a connection error with this HTTP/2 error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_frame(
    buffer: bytes | bytearray | memoryview, at: int, max_size: int
) -> tuple[int, int, int, bytes, int] | None:
    """The frame at `buffer[at:]` as (type, flags, stream id, payload, end offset), or None
    while it is incomplete. A length over `max_size` is a FRAME_SIZE_ERROR before its payload
    is awaited (so at most a frame's worth of bytes is ever buffered)."""
    if len(buffer) - at < HEADER_SIZE:
        return None
    high, low, kind, flags, stream = _HEAD.unpack_from(buffer, at)
    length = (high << 8) | low
    if length > max_size:
        raise FrameError(FRAME_SIZE_ERROR, f"a frame of {length} bytes (limit {max_size})")
    end = at + HEADER_SIZE + length
    if len(buffer) < end:
        return None
    return kind, flags, stream & 0x7FFF_FFFF, bytes(buffer[at + HEADER_SIZE : end]), end


def unpad(flags: int, payload: bytes) -> bytes:
    """A DATA or HEADERS payload without its padding (PADDED flag)."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise FrameError(PROTOCOL_ERROR, "padding as long as the frame")
    return payload[1 : len(payload) - payload[0]]


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    if len(payload) % 6:
        raise FrameError(FRAME_SIZE_ERROR, "a SETTINGS payload not a multiple of 6 bytes")
    return [_SETTING.unpack_from(payload, at) for at in range(0, len(payload), 6)]


def parse_u32(payload: bytes, kind: str) -> int:
    """The 31-bit value of a WINDOW_UPDATE, or the code of a RST_STREAM."""
    if len(payload) != 4:
        raise FrameError(FRAME_SIZE_ERROR, f"a {kind} payload of {len(payload)} bytes")
    value: int = _U32.unpack(payload)[0]
    return value


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream) + payload


def answer_frames(stream: int, head: bytes, body: bytes, trailer: bytes) -> bytes:
    """A whole answer that fits the peer's frame size and windows as one write: HEADERS (the
    head), DATA (the body) and HEADERS ending the stream (the trailers). One join instead of a
    concatenation per frame (the body is copied once)."""
    pack = _HEAD.pack
    head_size, size, trailer_size = len(head), len(body), len(trailer)
    return b"".join(
        (
            pack(head_size >> 8, head_size & 0xFF, HEADERS, END_HEADERS, stream),
            head,
            pack(size >> 8, size & 0xFF, DATA, 0, stream),
            body,
            pack(trailer_size >> 8, trailer_size & 0xFF, HEADERS, END_HEADERS | END_STREAM, stream),
            trailer,
        )
    )


def settings(values: list[tuple[int, int]]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values))


SETTINGS_ACK: Final = frame(SETTINGS, ACK, 0)


def ping_ack(payload: bytes) -> bytes:
    return frame(PING, ACK, 0, payload)


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, _U32.pack(increment))


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, _U32.pack(code))


def goaway(last_stream: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _U32.pack(last_stream) + _U32.pack(code) + debug)


def data_frames(stream: int, payload: bytes, max_size: int, end: bool) -> list[bytes]:
    """`payload` as DATA frames of at most `max_size` bytes; END_STREAM on the last if `end`."""
    out = []
    for at in range(0, len(payload), max_size):
        piece = payload[at : at + max_size]
        last = at + max_size >= len(payload)
        out.append(frame(DATA, END_STREAM if end and last else 0, stream, piece))
    return out


# --- HPACK encoding of the answers' headers (RFC 7541) ---------------------------------------


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with an N-bit prefix; `first` carries the pattern bits above it."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header as a literal without indexing, its name a literal too (no Huffman)."""
    return b"\x00" + _integer(len(name), 7, 0) + name + _integer(len(value), 7, 0) + value


#: `:status: 200` (static index 8) and `content-type: application/grpc` (name: static 31).
RESPONSE_HEAD: Final = b"\x88" + _integer(31, 4, 0) + _integer(16, 7, 0) + b"application/grpc"
#: grpc-status 0 with no message: the trailer of every successful call.
OK_TRAILER: Final = literal(b"grpc-status", b"0")
_UNRESERVED: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def status_head(status: int) -> bytes:
    """A `:status` other than 200 (a refusal before gRPC: 415)."""
    return b"\x08" + _integer(3, 7, 0) + str(status).encode()


def grpc_message(message: str) -> bytes:
    """`grpc-message` percent-encoded as the gRPC spec says: UTF-8, then every byte outside
    printable ASCII (and `%` itself) as %XX."""
    return quote(message.encode(), safe=_UNRESERVED).encode("ascii")


_OK_TRAILERS: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
_OK_TRAILERS_MAX: Final = 256


def ok_trailers(metadata: list[tuple[bytes, bytes]]) -> bytes:
    """`trailers(0, "", metadata)`, kept for the metadata seen last (a model's answers repeat
    theirs: model, version, variant, route revision)."""
    key = tuple(metadata)
    found = _OK_TRAILERS.get(key)
    if found is None:
        if len(_OK_TRAILERS) >= _OK_TRAILERS_MAX:
            _OK_TRAILERS.clear()
        found = _OK_TRAILERS[key] = trailers(0, "", metadata)
    return found


def trailers(code: int, message: str, metadata: list[tuple[bytes, bytes]]) -> bytes:
    """The trailers' header block: status, message (if any) and trailing metadata."""
    parts = [OK_TRAILER if code == 0 else literal(b"grpc-status", b"%d" % code)]
    if message:
        parts.append(literal(b"grpc-message", grpc_message(message)))
    parts += (literal(name, value) for name, value in metadata)
    return b"".join(parts)


def header_frames(stream: int, block: bytes, max_size: int, end: bool) -> bytes:
    """A header block as HEADERS (+ CONTINUATION) frames of at most `max_size` bytes."""
    if len(block) <= max_size:
        return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream, block)
    first = block[:max_size]
    parts = [frame(HEADERS, END_STREAM if end else 0, stream, first)]
    rest = block[max_size:]
    while rest:
        piece, rest = rest[:max_size], rest[max_size:]
        parts.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream, piece))
    return b"".join(parts)


# --- gRPC ------------------------------------------------------------------------------------

_TIMEOUT_UNITS: Final = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


def parse_timeout(value: bytes) -> float | None:
    """`grpc-timeout` (1 to 8 digits and a unit) in seconds; None if malformed."""
    digits, unit = value[:-1], value[-1:]
    scale = _TIMEOUT_UNITS.get(unit)
    if scale is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        return None
    return int(digits) * scale
