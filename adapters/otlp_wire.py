"""OTLP protobuf bytes (an ExportTraceServiceRequest) written straight from span records
(contract.spans), for the exporting process of adapters.span_export: the SDK's encoder builds a
ReadableSpan and a protobuf message per span and costs about 5x more. The same message as
`encode_spans` of the same spans (a unit test parses both and compares); the resource and
scope, the same for every span, are encoded once by the SDK's own encoder. Pure."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final, TypeVar

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from contract.spans import SpanAttributes, SpanRecord

_HAS_IS_REMOTE: Final = 0x100  # SpanFlags: the context says whether its parent is remote
_IS_REMOTE: Final = 0x200
_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack


_SMALL: Final = [bytes((i,)) for i in range(0x80)]
_CACHE_MAX: Final = 4096  # distinct attribute (key, value) pairs kept encoded


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: every varint of one or two bytes (a length below 16,384: a span, an attribute), made once
_SHORT: Final = _SMALL + [bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, 0x4000)]


def _length(size: int) -> bytes:
    return _SHORT[size] if size < 0x4000 else _varint(size)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _SHORT[number << 3 | 2] + _length(len(payload)) + payload


def _any_value(value: str | bool | int | float) -> bytes:
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    return b"\x21" + _double(value)


_encoded: dict[tuple[str, type, str | bool | int | float], bytes] = {}


def _key_value(key: str, value: str | bool | int | float) -> bytes:
    """A `KeyValue` message; most repeat from span to span (model, version, path, status),
    so they are kept encoded."""
    ident = (key, type(value), value)
    found = _encoded.get(ident)
    if found is None:
        if len(_encoded) >= _CACHE_MAX:
            _encoded.clear()
        found = _encoded[ident] = _field(1, key.encode()) + _field(2, _any_value(value))
    return found


def _attributes(number: int, attributes: SpanAttributes) -> bytes:
    tag = _varint(number << 3 | 2)
    out = []
    for key, value in attributes.items():
        key_value = _key_value(key, value)
        out.append(tag + _length(len(key_value)) + key_value)
    return b"".join(out)


_ids = struct.Struct(">HQQHQ").pack  # trace id and span id, with their tags (fields 1, 2)
_parent = struct.Struct(">HQ").pack  # parent span id (field 4)
_ids_parent = struct.Struct(">HQQHQHQ").pack  # both, with no trace state between them
_times = struct.Struct("<BQBQ").pack  # start and end (fields 7, 8: fixed64)
_FLAGS: Final = (  # field 16 (fixed32): SpanFlags, without and with a remote parent
    b"\x85\x01" + _fixed32(_HAS_IS_REMOTE),
    b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE),
)
_LOW: Final = (1 << 64) - 1
# kept encoded: names and kinds, statuses, attribute sets (with their values' types)
_names: dict[tuple[str, int], bytes] = {}
_statuses: dict[tuple[int, str], bytes] = {}
_attribute_sets: dict[tuple[tuple[tuple[str, object], ...], tuple[type, ...]], bytes] = {}


_UNSET: Final = b"\x7a\x00"  # field 15, an empty Status: no code, no description

_K = TypeVar("_K")
_V = TypeVar("_V")


def _keep(cache: dict[_K, _V], ident: _K, encoded: _V) -> _V:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[ident] = encoded
    return encoded


def span(record: SpanRecord) -> bytes:
    """One `Span` message. The parts that repeat from span to span (the name and kind, the
    whole attribute set, the status) are kept encoded, looked up by value (and the values'
    types: `True` is not `1`): about 59,000 instructions a span became 30,000 (callgrind)."""
    (name, kind, trace_id, span_id, parent_id, remote, _flags, state, start, end, attributes) = (
        record[:11]
    )
    code, description, events, links = record[11:]
    if state:
        parts = [_ids(0x0A10, trace_id >> 64, trace_id & _LOW, 0x1208, span_id)]
        parts.append(_field(3, state.encode()))
        if parent_id:
            parts.append(_parent(0x2208, parent_id))
    elif parent_id:  # (the usual two in one pack)
        parts = [
            _ids_parent(0x0A10, trace_id >> 64, trace_id & _LOW, 0x1208, span_id, 0x2208, parent_id)
        ]
    else:
        parts = [_ids(0x0A10, trace_id >> 64, trace_id & _LOW, 0x1208, span_id)]
    named = _names.get((name, kind))
    if named is None:  # OTLP's SpanKind counts from UNSPECIFIED
        named = _keep(_names, (name, kind), _field(5, name.encode()) + b"\x30" + _varint(kind + 1))
    parts.append(named)
    parts.append(_times(0x39, start, 0x41, end))
    ident = (tuple(attributes.items()), tuple(map(type, attributes.values())))
    encoded = _attribute_sets.get(ident)
    if encoded is None:
        encoded = _keep(_attribute_sets, ident, _attributes(9, attributes))
    parts.append(encoded)
    for event_name, time_ns, event_attributes in events:
        body = b"\x09" + _fixed64(time_ns) + _field(2, event_name.encode())
        parts.append(_field(11, body + _attributes(3, event_attributes)))
    for link_trace, link_span, _link_flags, _link_state in links:
        body = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08"
        body += link_span.to_bytes(8, "big") + b"\x35" + _fixed32(_HAS_IS_REMOTE)
        parts.append(_field(13, body))
    status = _UNSET if not code and not description else _statuses.get((code, description))
    if status is None:
        status = _keep(
            _statuses,
            (code, description),
            _field(
                15,
                (_field(2, description.encode()) if description else b"")
                + (b"\x18" + _varint(code) if code else b""),
            ),
        )
    parts.append(status)
    parts.append(_FLAGS[1 if parent_id and remote else 0])
    return b"".join(parts)


_be_ids = struct.Struct(">16sHQHQ").pack  # trace id, span id, parent span id (fields 1, 2, 4)
_be_root = struct.Struct(">16sHQ").pack  # trace id, span id: a root span (fields 1, 2)
_le_times = struct.Struct("<QBQ").pack  # start (after its tag, in `mid`), end (fields 7, 8)
#: a span's constant parts, by its shape (see `frame`): its field's head up to the trace id's
#: tag, the name and kind up to the start's tag, and the attributes, status and flags
_shapes: dict[tuple[object, ...], tuple[bytes, bytes, bytes]] = {}


def _shape(record: SpanRecord) -> tuple[bytes, bytes, bytes]:
    """The constant parts of `record`'s span (no trace state, events or links): everything but
    its ids and times, cut around them, with the `ScopeSpans` field's tag and length."""
    (name, kind, _trace, _span, parent_id, remote, _flags, _state, _start, _end, attributes) = (
        record[:11]
    )
    code, description = record[11:13]
    ids = 38 if parent_id else 28  # trace id, span id (and parent id), with their tags
    mid = _field(5, name.encode()) + b"\x30" + _varint(kind + 1) + b"\x39"
    status = _field(
        15,
        (_field(2, description.encode()) if description else b"")
        + (b"\x18" + _varint(code) if code else b""),
    )
    tail = _attributes(9, attributes) + status + _FLAGS[1 if parent_id and remote else 0]
    size = ids + len(mid) + 17 + len(tail)  # 17: the times, less the start's tag
    return b"\x12" + _varint(size) + b"\x0a\x10", mid, tail


class Encoder:
    """ExportTraceServiceRequest bytes for records of one resource and one scope."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource = _field(1, _encode_resource(resource).SerializeToString())
        if resource.schema_url:
            self.resource_tail = _field(3, resource.schema_url.encode())
        else:
            self.resource_tail = b""
        self.scope = _field(1, _encode_instrumentation_scope(scope).SerializeToString())
        self.scope_tail = _field(3, scope.schema_url.encode()) if scope.schema_url else b""

    def encode(self, records: Iterable[SpanRecord]) -> bytes:
        return self.message(list(map(self.span, records)))

    @staticmethod
    def span(record: SpanRecord) -> bytes:
        """One span as the field of its `ScopeSpans` (to be given to `message`)."""
        encoded = span(record)
        size = len(encoded)
        return b"\x12" + (_SHORT[size] if size < 0x4000 else _varint(size)) + encoded

    @staticmethod
    def frame(records: Iterable[SpanRecord]) -> bytes:
        """Records' spans as `span` encodes them, joined (one part for `message`). A span with
        no trace state, events or links is its shape's constant parts (looked up by its name,
        kind, status, parent's presence and remoteness, and its attributes' keys, values and
        values' types: `True` is not `1`) around one big-endian pack of its ids and one
        little-endian pack of its times; any other goes through `span`. Paid for by the
        exporting child's cost: 35,838 instructions a span became 27,312 (`python -m
        loadtests.tracing_instr --modes child`), the bytes the same. Shapes are looked up in
        the frame's own dict first: its keys hold this frame's objects, and `marshal` loads a
        value the gateway shared between records (model, version, server address) as one
        object, so comparing a key is mostly by identity: 24,766 became 23,416. A trace id is
        turned into bytes once for the spans after one another that hold it (a request's two
        spans: one object, through `marshal`'s refs): 23,411 became 23,141."""
        out: list[bytes] = []
        shapes = _shapes
        local: dict[tuple[object, ...], tuple[bytes, bytes, bytes]] = {}
        last_trace = trace = None
        for record in records:
            (
                name,
                kind,
                trace_id,
                span_id,
                parent_id,
                remote,
                _flags,
                state,
                start,
                end,
                attributes,
                code,
                description,
                events,
                links,
            ) = record
            if state or events or links:
                out.append(Encoder.span(record))
                continue
            values = attributes.values()
            key = (
                name,
                kind,
                code,
                description,
                not parent_id,
                remote,
                *attributes,
                *values,
                *map(type, values),
            )
            shape = local.get(key)
            if shape is None:
                shape = shapes.get(key)
                if shape is None:
                    shape = _keep(shapes, key, _shape(record))
                local[key] = shape
            head, mid, tail = shape
            if trace_id is not last_trace:
                last_trace = trace_id
                trace = trace_id.to_bytes(16, "big")
            if parent_id:
                ids = _be_ids(trace, 0x1208, span_id, 0x2208, parent_id)
            else:
                ids = _be_root(trace, 0x1208, span_id)
            out += (head, ids, mid, _le_times(start, 0x41, end), tail)
        return b"".join(out)

    def message(self, spans: list[bytes]) -> bytes:
        """The request for spans encoded by `span` (or frames of them, by `frame`), in one
        join: the spans' bytes copied once, not once for each message around them (a batch's
        few hundred kB were copied seven times: 1,300 instructions a span in the exporting
        child)."""
        size = len(self.scope) + sum(map(len, spans)) + len(self.scope_tail)
        scope_head = b"\x12" + _varint(size)
        size += len(scope_head) + len(self.resource) + len(self.resource_tail)
        return b"".join(
            [
                b"\x0a" + _varint(size),
                self.resource,
                scope_head,
                self.scope,
                *spans,
                self.scope_tail,
                self.resource_tail,
            ]
        )
