"""A sampled span as the gateway records it: plain fields, one tuple (contract.spans) handed
to `Tracing.emit` when it ends, no SDK object on the request path; and the W3C `traceparent`
the upstream gets. Used by gateway.traced.

Compiled with mypyc, as gateway.traced is (pyproject.toml): `SpanBuilder` and its subclasses
are native classes, their fields C struct members (compiled traced100 115.0k -> 104.5k
instructions a request, loadtests/hotpath_profile.py --callgrind)."""

from __future__ import annotations

import os
import random
import re
import struct
import time
import traceback
from binascii import hexlify
from collections.abc import Callable
from itertools import chain, repeat
from types import FunctionType
from typing import Final, Protocol

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.span import TraceState

from contract.spans import SpanAttributes, SpanEvent, SpanLink, SpanRecord
from gateway.transport.base import TRACE_CONTEXT, Headers

#: `time.time_ns`, held (compiled: a C static, where `time.time_ns` looked it up in the module
#: on each of a sampled request's 4 calls, about 270 instructions each; with `_SPAN_NAMES` by
#: method then path, compiled traced100 99.4k -> 98.5k instructions a request, interpreted
#: 159.8k -> 159.5k)
time_ns: Final = time.time_ns
SERVER: Final = SpanKind.SERVER.value
CLIENT: Final = SpanKind.CLIENT.value
ERROR: Final = StatusCode.ERROR.value
SAMPLED: Final = 1  # the W3C sampled flag
#: `TraceContextTextMapPropagator`'s pattern and limit, on the header's bytes.
_TRACEPARENT: Final = re.compile(
    rb"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_MAX_TRACESTATE: Final = 512
NO_PARENT: Final = (0, 0, -1, "")


class Tracing(Protocol):
    """What the gateway needs of a running tracer provider (`adapters.telemetry` gives one)."""

    @property
    def propagator(self) -> TextMapPropagator: ...

    @property
    def dropped(self) -> int:
        """Spans dropped so far (the export queue was full)."""

    @property
    def bound(self) -> int | None:
        """The parent-based ratio sampler's bound on a trace id's low 64 bits (a root trace
        is sampled when they are below it); None: only `sample` knows."""

    def sample(self, trace_id: int, parent_span_id: int, parent_flags: int, name: str) -> bool:
        """The sampler's decision for a SERVER span; `parent_flags` -1: no parent."""

    def emit(self, record: SpanRecord) -> None:
        """A finished span, for export (never blocks)."""


def new_id(bits: int) -> int:
    """A random non-zero id, as the SDK's RandomIdGenerator makes them."""
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


_IDS: Final = 256  # ids made at a time
_SPAN_IDS: Final = struct.Struct(f">{_IDS}Q")
_TRACE_IDS: Final = struct.Struct("16s" * _IDS)


def _span_id_block(_: None) -> tuple[int, ...]:
    return _SPAN_IDS.unpack(os.urandom(8 * _IDS))


def _trace_id_block(_: None) -> map[int]:
    return map(int.from_bytes, _TRACE_IDS.unpack(os.urandom(16 * _IDS)))


#: The next random 64-bit span id (0, once in 2**64: `span_id` makes it 1) and 128-bit trace
#: id: `os.urandom`'s bytes unpacked a block at a time and handed out by C iterators (no Python
#: frame a call). `random.getrandbits` cost 500 instructions an id compiled (its lookup, a
#: call, a long made from bytes), and a new root's trace id scaled to the ratio's bound 4.4k;
#: with these, `lane_head`'s hexed ids and `Tracing.emit` read once by the hooks, compiled
#: traced100 104.5k -> 99.4k instructions a request (loadtests/hotpath_profile.py
#: --callgrind; interpreted 162.1k -> 159.8k).
next_span_id: Final[Callable[[], int]] = chain.from_iterable(
    map(_span_id_block, repeat(None))
).__next__
next_trace_id: Final[Callable[[], int]] = chain.from_iterable(
    map(_trace_id_block, repeat(None))
).__next__


#: A `traceparent` line up to its trace id (version 00), as the upstream's head carries it.
TRACEPARENT_LINE_START: Final = b"traceparent: 00-"
_LAST: Final = b"00\r\n\r\n"  # a row's flags (00: unsampled) and the head's end
#: A new unsampled root's `traceparent` as the end of an upstream request's head: the header
#: line and the empty line, `encode_request`'s `end` (no header pair, no check per request).
_ROW: Final = TRACEPARENT_LINE_START + b"x" * 32 + b"-" + b"x" * 16 + b"-" + _LAST
_WIDTH: Final = len(_ROW)  # 72
VALUE_START: Final = len(b"traceparent: ")  # where the header's value is in a row
VALUE_STOP: Final = len(_ROW) - 4
#: the same as a slice (compiled, mypyc takes `row[VALUE]` for an index: slice it as
#: `row[VALUE_START:VALUE_STOP]`)
VALUE: Final = slice(VALUE_START, VALUE_STOP)
_LOW_HALF: Final = VALUE_START + 19  # where a trace id's low 16 hex digits start in a row
_UNPACKERS: dict[int, struct.Struct] = {}
_ZEROS: Final = b"0" * 16  # in every all-zero (invalid) trace or span id
#: How `traceparent_block` lays out a row before its last step: 25 random bytes hexed (50
#: digits: the trace id's 32, a place for "-", the span id's 16, a place for "-"), then
#: `_MARK` between one row and the next, which becomes `_BETWEEN`: the end of one row's
#: value and its head's end, then the next row's header name and version.
_DRAWN: Final = 25
_MARK: Final = b"|"
_STRIDE: Final = 2 * _DRAWN + len(_MARK)
_DASHES: Final = (32, 32 + 1 + 16)  # after the trace id's digits, after the span id's
_BETWEEN: Final = _LAST + TRACEPARENT_LINE_START


def traceparent_block(count: int) -> bytes:
    """`count` new unsampled W3C traceparents (`00-<trace id>-<span id>-00`), each as the end
    of an upstream request's head (`traceparent: <value>\\r\\n\\r\\n`, 72 bytes), side by
    side, made in a few C passes over the whole block (not 6,500 instructions of
    `getrandbits` and `%x` formatting per request): the random bytes hexed with `_MARK`
    between rows (`hexlify`'s separator), the two dashes of each row written in two strided
    copies, and each mark replaced by what ends one row and starts the next. The bytes come
    from `os.urandom`, one `getrandom` call a block; the kernel's generator is much of the
    cost (about 1.6 ns a byte here, which callgrind does not see), so each byte makes two
    digits. The rows were made one random byte a character before (a `translate` table,
    then 24 strided copies of the fixed characters): 170 ns and 860 instructions a
    traceparent; now 85 ns and 710 (timeit; callgrind, interpreted), in 8 passes over the
    block where there were 30."""
    while True:
        made = bytearray(hexlify(os.urandom(_DRAWN * count), _MARK, _DRAWN))
        dashes = b"-" * count
        for at in _DASHES:
            made[at::_STRIDE] = dashes
        block = b"".join((TRACEPARENT_LINE_START, made.replace(_MARK, _BETWEEN), _LAST))
        if _ZEROS not in block:  # (an all-zero id is invalid: never in practice)
            return block


def traceparents(block: bytes) -> tuple[bytes, ...]:
    """The rows of a `traceparent_block`, each its own bytes (one C call)."""
    count = len(block) // _WIDTH
    unpack = _UNPACKERS.get(count)
    if unpack is None:
        unpack = _UNPACKERS[count] = struct.Struct(f"{_WIDTH}s" * count)
    return unpack.unpack(block)


def below(block: bytes, bound_hex: bytes) -> list[int]:
    """Which rows of a `traceparent_block` have a trace id whose low half, as 16 hex
    digits, is below `bound_hex` (the ratio sampler's bound: those traces are sampled). Only
    those whose first digit is at most the bound's are compared: at 1 % a sixteenth."""
    firsts = block[_LOW_HALF::_WIDTH]
    found = []
    for digit in b"0123456789abcdef"[: b"0123456789abcdefg".index(bound_hex[:1]) + 1]:
        at = firsts.find(digit)
        while at >= 0:
            start = at * _WIDTH + _LOW_HALF
            if block[start : start + 16] < bound_hex:
                found.append(at)
            at = firsts.find(digit, at + 1)
    return sorted(found)


def parent(traceparent: bytes, tracestate: bytes | None) -> tuple[int, int, int, str]:
    """The caller's (trace id, span id, flags, tracestate) from its W3C headers, or
    `NO_PARENT` for an invalid `traceparent`: what `TraceContextTextMapPropagator.extract`
    reads (a unit test compares them), without its context objects (5x cheaper)."""
    match = _TRACEPARENT.match(traceparent)
    if match is None:
        return NO_PARENT
    version, trace, span, flags, rest = match.groups()
    trace_id, span_id = int(trace, 16), int(span, 16)
    if version == b"ff" or (version == b"00" and rest) or not trace_id or not span_id:
        return NO_PARENT
    state = ""
    if tracestate is not None and len(tracestate) <= _MAX_TRACESTATE:
        parsed = TraceState.from_header([tracestate.decode("latin-1")])
        state = parsed.to_header() if parsed else ""
    return trace_id, span_id, int(flags, 16), state


def inject(headers: Headers, trace_id: int, span_id: int, flags: int, state: str) -> Headers:
    """`headers` with the caller's trace headers replaced by this span's. The same bytes as
    `TraceContextTextMapPropagator.inject` (a unit test checks), formatted directly: it runs
    on every request, sampled or not, and the propagator's context and dict cost 3x more."""
    out = [h for h in headers if h[0] not in TRACE_CONTEXT]
    out.append((b"traceparent", b"00-%032x-%016x-%02x" % (trace_id, span_id, flags)))
    if state:
        out.append((b"tracestate", state.encode("latin-1")))
    return out


def exception_event(error: BaseException) -> SpanEvent:
    """The event `Span.record_exception` adds (the same attributes)."""
    module, name = type(error).__module__, type(error).__qualname__
    attrs: SpanAttributes = {
        "exception.type": f"{module}.{name}" if module and module != "builtins" else name,
        "exception.message": str(error),
        "exception.stacktrace": "".join(traceback.format_exception(error)),
        "exception.escaped": "False",
    }
    return ("exception", time.time_ns(), attrs)


class SpanBuilder:
    """A sampled span being recorded: plain fields, one tuple for `Tracing.emit` at its end."""

    __slots__ = (
        "attrs",
        "code",
        "description",
        "emit",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "remote",
        "span_id",
        "start",
        "state",
        "trace_id",
    )

    def __init__(
        self,
        emit: Callable[[SpanRecord], None],
        name: str,
        kind: int,
        trace_id: int,
        parent_id: int,
        remote: bool,
        state: str,
        attrs: SpanAttributes,
    ) -> None:
        self.emit = emit  # `Tracing.emit`, read once by the hooks (an attribute lookup a span less)
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = next_span_id() or 1  # (new_id's loop, without its call)
        self.parent_id = parent_id
        self.remote = remote
        self.state = state
        self.start = time_ns()
        self.attrs = attrs
        self.events: tuple[SpanEvent, ...] = ()  # tuples: see contract.spans
        self.links: tuple[SpanLink, ...] = ()
        self.code = 0
        self.description = ""

    def __init_subclass__(cls) -> None:
        """Each subclass runs its own copy of the methods it inherits from here: CPython 3.11
        specializes an attribute access in a code object for one type, and `__init__` and
        `finish` shared by the request's and the attempt's spans took the generic path on
        every other call (callgrind: generic attribute lookups about 5,000 instructions a
        sampled request). Compiled (mypyc: native classes, their methods C functions that read
        the fields as struct members), there is nothing to specialize, nor any code to copy."""
        super().__init_subclass__()
        for name in ("__init__", "finish", "error"):
            shared = vars(SpanBuilder)[name]
            if not isinstance(shared, FunctionType):
                return  # compiled
            if name not in vars(cls):
                own = FunctionType(shared.__code__.replace(), shared.__globals__, name)
                own.__defaults__ = shared.__defaults__
                own.__qualname__ = f"{cls.__qualname__}.{name}"
                setattr(cls, name, own)

    def error(self, description: str = "") -> None:
        self.code = ERROR
        self.description = description

    def finish(self) -> None:
        self.emit(
            (
                self.name,
                self.kind,
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.remote,
                SAMPLED,
                self.state,
                self.start,
                time_ns(),
                self.attrs,
                self.code,
                self.description,
                self.events,
                self.links,
            )
        )
