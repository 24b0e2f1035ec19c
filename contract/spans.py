"""A finished span as plain data: what the gateway records (gateway.traced) and the telemetry
adapter exports (adapters.telemetry, adapters.span_export). Only builtin types, so that a batch
of them crosses to the exporting process with `marshal` (C speed, no objects rebuilt on the
request path). Pure.

    (name, kind, trace_id, span_id, parent_span_id, parent_remote, trace_flags, trace_state,
     start_ns, end_ns, attributes, status_code, status_description, events, links)

- `kind`: `opentelemetry.trace.SpanKind`'s value; `status_code`: `StatusCode`'s value;
- `parent_span_id` 0: a root span; `parent_remote`: the parent came in a `traceparent`;
- `trace_state`: the W3C `tracestate` header ("" when none);
- an event is (name, time ns, attributes); a link is (trace_id, span_id, trace_flags,
  trace_state).

Tuples all the way down (no lists), and attribute values atomic: CPython's collector then
untracks a record at its first pass, so records waiting in the export queue add nothing to the
gateway's garbage collections.
"""

from __future__ import annotations

from typing import TypeAlias

SpanAttributes: TypeAlias = dict[str, str | bool | int | float]
SpanEvent: TypeAlias = tuple[str, int, SpanAttributes]
SpanLink: TypeAlias = tuple[int, int, int, str]
SpanRecord: TypeAlias = tuple[
    str,  # name
    int,  # kind
    int,  # trace_id
    int,  # span_id
    int,  # parent_span_id (0: root)
    bool,  # parent_remote
    int,  # trace_flags
    str,  # trace_state header
    int,  # start_ns
    int,  # end_ns
    SpanAttributes,
    int,  # status_code
    str,  # status_description
    tuple[SpanEvent, ...],
    tuple[SpanLink, ...],
]
