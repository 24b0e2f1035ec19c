"""Where the gateway's finished spans (contract.spans records) go, off its request path.

- `ExportPipe`: a bounded in-memory queue; a thread of ours takes it in batches, `marshal`s
  each batch (C, a few us) and writes it to a child process (`python -m adapters.span_export`)
  that rebuilds the spans and runs the SDK's exporter (OTLP protobuf encoding and the HTTP
  export: the expensive part, in another interpreter, so never holding the gateway's GIL).
  A record that finds the queue full is dropped and counted (`dropped`).
- `DirectSpans`: each record handed at once to a span processor in this process: for tests
  (an in-memory exporter) and the registry-style callers that give their own processor.

Wire format to the child: frames of a 4-byte big-endian length, then `marshal.dumps(list of
at most FRAME records)`; a frame of length 0 ends a batch (the child exports what it has);
end of input (stdin closed) means export what is left and exit.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from adapters.otlp_wire import Encoder
from contract.spans import SpanRecord

MAX_QUEUE: Final = 2048  # the SDK's BatchSpanProcessor default (OTEL_BSP_MAX_QUEUE_SIZE)
#: Spans per export (at most; `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`), and the queue length that
#: wakes the sending thread. Half the default queue, not the SDK's 512: an export is an HTTP
#: request that costs the exporting process about 0.6 ms of CPU whatever its size up to a few
#: hundred kB (measured: 0.57 ms for 150 kB, 0.60 for 300 kB), on the gateway's core.
MAX_BATCH: Final = 1024
DELAY_S: Final = 0.5  # how long a record may wait for a fuller batch
#: Records per marshalled frame: the child loads a frame, encodes its spans and lets its
#: records go before the next, so a batch never lives there as objects all at once (1,024
#: records: about 1.3 MB of objects, freed and allocated again for every batch). Measured on
#: the gateway's records (loads and encoding, no HTTP): 2.57 us a span in one frame of 1,024,
#: 2.24 in frames of 128.
FRAME: Final = 128
_END: Final = bytes(4)  # the frame that ends a batch
_KINDS: Final = {k.value: k for k in SpanKind}
_CODES: Final = {c.value: c for c in StatusCode}


class SpanSink(Protocol):
    dropped: int

    def emit(self, record: SpanRecord) -> None: ...

    def close(self) -> None: ...


def _state(header: str) -> TraceState | None:
    return TraceState.from_header([header]) if header else None


def readable(record: SpanRecord, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The SDK's span for `record` (what processors and exporters take)."""
    (name, kind, trace_id, span_id, parent_id, remote, flags, state, start, end) = record[:10]
    attributes, code, description, events, links = record[10:]
    state_ = _state(state)
    context = SpanContext(trace_id, span_id, False, TraceFlags(flags), state_)
    parent = (
        SpanContext(trace_id, parent_id, remote, TraceFlags(flags), state_) if parent_id else None
    )
    status = Status(_CODES[code], description or None) if code else Status(StatusCode.UNSET)
    return ReadableSpan(
        name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=[Event(n, a, t) for n, t, a in events],
        links=[Link(SpanContext(t, s, False, TraceFlags(f), _state(ts))) for t, s, f, ts in links],
        kind=_KINDS[kind],
        status=status,
        start_time=start,
        end_time=end,
        instrumentation_scope=scope,
    )


class DirectSpans:
    """Records handed at once to `processor` in this process (tests, no export cost saved)."""

    def __init__(self, processor: SpanProcessor, resource: Resource, scope: str) -> None:
        self.processor = processor
        self.resource = resource
        self.scope = InstrumentationScope(scope)
        self.dropped = 0

    def emit(self, record: SpanRecord) -> None:
        self.processor.on_end(readable(record, self.resource, self.scope))

    def close(self) -> None:
        return None


class ExportPipe:
    """Records queued here, exported by a child process (see the module's docstring)."""

    def __init__(
        self,
        exporter: str,
        resource: Resource,
        scope: str,
        *,
        max_queue: int = MAX_QUEUE,
        delay_s: float = DELAY_S,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.max_queue = max_queue
        self.delay_s = delay_s
        self.max_batch = max_batch
        self.dropped = 0
        self._queue: deque[SpanRecord] = deque()
        self._wake = threading.Event()
        self._closing = False
        attrs = {
            k: v for k, v in resource.attributes.items() if isinstance(v, str | bool | int | float)
        }
        self._child = subprocess.Popen(
            [sys.executable, "-m", "adapters.span_export", exporter, scope, str(max_batch)],
            stdin=subprocess.PIPE,
            env={**os.environ, "MODELYARD_SPAN_RESOURCE": marshal.dumps(attrs).hex()},
        )
        self._thread = threading.Thread(target=self._send, name="span-export", daemon=True)
        self._thread.start()

    def emit(self, record: SpanRecord) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(record)  # deque.append is thread-safe: no lock taken on the loop
        if len(queue) >= self.max_batch:
            self._wake.set()

    def _send(self) -> None:
        """Woken by a full batch, it sends full batches only (what is left over waits for the
        next, at most `delay_s`): an export costs the child about 0.6 ms whatever its size,
        and a queue a little over `max_batch` sent whole was split by the child into a full
        export and one of a few spans; woken by the timer or the close, it sends all. What it
        sends is counted when it wakes: records that arrive meanwhile wait for the next wake
        (re-reading the queue would send them a few at a time, an export each)."""
        queue = self._queue
        while True:
            full = self._wake.wait(self.delay_s)
            self._wake.clear()
            closing = self._closing
            waiting = len(queue)
            if full and not closing:
                waiting -= waiting % self.max_batch
            while waiting > 0:
                count = min(waiting, self.max_batch)
                self._batch([queue.popleft() for _ in range(count)])
                waiting -= count
            if closing and not queue:
                return

    def _batch(self, batch: list[SpanRecord]) -> None:
        """One batch to the child, with one write."""
        stdin = self._child.stdin
        assert stdin is not None
        try:
            stdin.write(wire(batch))
            stdin.flush()
        except (BrokenPipeError, OSError):
            self.dropped += len(batch)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued, let the child export it and exit (bounded by `timeout_s`)."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._child.stdin is not None:
            with contextlib.suppress(OSError):
                self._child.stdin.close()
        try:
            self._child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()


def wire(batch: list[SpanRecord]) -> bytes:
    """A batch as the child reads it: its frames (see FRAME) and the frame that ends it."""
    out: list[bytes] = []
    for at in range(0, len(batch), FRAME):
        data = marshal.dumps(batch[at : at + FRAME])
        out += (len(data).to_bytes(4, "big"), data)
    out.append(_END)
    return b"".join(out)


def make_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # imported here: it pulls in `requests`, which only exporting processes need
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class _Batches(Protocol):
    def add(self, records: list[SpanRecord]) -> None: ...

    def flush(self) -> None: ...


class _Encoded:
    """OTLP/HTTP: each frame's spans encoded as they arrive (adapters.otlp_wire's `frame`, one
    bytes a frame), so only their bytes wait for the batch's end; posted with the exporter's
    own HTTP client (endpoint, headers, compression, retries from `OTEL_EXPORTER_OTLP_*`)."""

    def __init__(self, post: Callable[[bytes], object], encoder: Encoder, max_batch: int) -> None:
        self.post = post
        self.encoder = encoder
        self.max_batch = max_batch
        self.frames: list[bytes] = []  # each frame's spans, encoded and joined
        self.count = 0  # spans in them

    def add(self, records: list[SpanRecord]) -> None:
        self.frames.append(self.encoder.frame(records))
        self.count += len(records)
        if self.count >= self.max_batch:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.post(self.encoder.message(self.frames))
            self.frames = []
            self.count = 0


class _Readable:
    """Any other exporter: the SDK's spans, through its `export`."""

    def __init__(
        self,
        exporter: SpanExporter,
        resource: Resource,
        scope: InstrumentationScope,
        max_batch: int,
    ) -> None:
        self.exporter = exporter
        self.resource = resource
        self.scope = scope
        self.max_batch = max_batch
        self.records: list[SpanRecord] = []

    def add(self, records: list[SpanRecord]) -> None:
        self.records += records
        if len(self.records) >= self.max_batch:
            self.flush()

    def flush(self) -> None:
        if self.records:
            self.exporter.export([readable(r, self.resource, self.scope) for r in self.records])
            self.records = []


def _batches(
    exporter: SpanExporter, resource: Resource, scope: InstrumentationScope, max_batch: int
) -> _Batches:
    """How batches leave: for OTLP/HTTP our wire encoder and the exporter's HTTP client, else
    the exporter's `export`."""
    post = getattr(getattr(exporter, "_client", None), "export", None)
    if callable(post):
        return _Encoded(post, Encoder(resource, scope), max_batch)
    return _Readable(exporter, resource, scope, max_batch)


def settle_environment(exporter: SpanExporter, env: Mapping[str, str]) -> None:
    """The OTLP/HTTP exporter's `requests` session given, once, what it read from `env` at every
    export (proxies and `NO_PROXY` for the endpoint, `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`,
    `~/.netrc`), then told not to read it again (`trust_env` off): the same request each time
    in a process whose environment never changes (this exporting child), and the proxy lookup
    (two passes over the environment) off every post: 3.50 M instructions a post became 2.18 M
    (10 posts of 160 kB to a no-op receiver under callgrind); the child 27,312 instructions a
    span became 26,015 (`loadtests.tracing_instr --modes child`). What
    `Session.merge_environment_settings` and `prepare_request` would do, in that order; a
    session given its own proxies, CA bundle or auth keeps them as it did."""
    import requests  # here: only exporting processes need it
    from requests.utils import get_environ_proxies, get_netrc_auth

    client = getattr(exporter, "_client", None)
    session = getattr(getattr(client, "_transport", None), "_session", None)
    endpoint = getattr(client, "_endpoint", None)
    if not isinstance(session, requests.Session) or not isinstance(endpoint, str):
        return
    if not session.trust_env:
        return
    proxies = {**session.proxies, **get_environ_proxies(endpoint, no_proxy=None)}
    session.proxies = {k: v for k, v in proxies.items() if v is not None}
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    if not session.auth:
        session.auth = get_netrc_auth(endpoint)
    session.trust_env = False


def _child(exporter_name: str, scope_name: str, max_batch: int, env: Mapping[str, str]) -> int:
    # marshal data only ever comes from the parent that started this process (env, stdin)
    attrs = marshal.loads(bytes.fromhex(env.get("MODELYARD_SPAN_RESOURCE", "")))  # noqa: S302
    resource = Resource(attrs)  # already merged by the parent: not Resource.create again
    exporter = make_exporter(exporter_name)
    settle_environment(exporter, env)
    batches = _batches(exporter, resource, InstrumentationScope(scope_name), max_batch)
    source = sys.stdin.buffer
    try:
        while True:
            head = source.read(4)
            if len(head) < 4:
                batches.flush()
                return 0
            size = int.from_bytes(head, "big")
            if size:
                batches.add(marshal.loads(source.read(size)))  # noqa: S302
            else:
                batches.flush()
    finally:
        exporter.shutdown()


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]), os.environ))
