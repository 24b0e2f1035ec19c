"""Tracing off the request path: the gateway decides sampling once per request (the same
decision as the SDK's sampler) and an unsampled request records nothing yet forwards the right
`traceparent`; sampled spans reach the processor as the SDK's spans
(tests/integration/test_span_export.py: the bounded queue to the exporting process)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from types import FunctionType

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from adapters.telemetry import Tracing, setup_tracing
from contract.routes import ApiSpec, ModelRoute, RouteTable, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.follow import RouteFollower
from gateway.forward import Forwarder
from gateway.front import Gateway
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.shadow import ShadowCopy, ShadowQueue
from gateway.spans import NO_PARENT, VALUE, below, parent, traceparent_block, traceparents
from gateway.traced import TracingHooks
from gateway.transport import MockTransport, UpstreamRequest, UpstreamResponse
from gateway.transport.http1 import with_end

TARGET = VersionRoute(version=1, endpoint="http://127.0.0.1:9", protocol="bentoml")
ROUTE = ModelRoute(name="iris", stable=1, versions={1: TARGET}, aliases={}, policy=TrafficPolicy())
PATH = "/models/iris/classify"


def traced(ratio: str) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = setup_tracing(
        "gateway",
        {"OTEL_TRACES_SAMPLER_ARG": ratio},
        "on",
        processor=SimpleSpanProcessor(exporter),
    )
    assert tracing is not None
    return tracing, exporter


def traced_gateway(
    tracing: Tracing, route: ModelRoute, answer: Callable[[UpstreamRequest], UpstreamResponse]
) -> Gateway:
    """A gateway serving `route` as model iris over a MockTransport answering with `answer`,
    traced by `tracing`."""
    transport = MockTransport(answer)
    metrics = GatewayMetrics()
    follower = RouteFollower(source=None)  # type: ignore[arg-type]  # never started here
    follower.table = RouteTable(1, {"iris": route})
    forwarder = Forwarder(Resilient(transport), metrics, ShadowQueue(transport, metrics))
    return Gateway(follower, forwarder, hooks=TracingHooks(tracing))


def forwarded(tracing: Tracing, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """What the upstream gets, through the gateway with these hooks, for a request with
    `headers` (a sampled one is traced; an unsampled one only gets other headers)."""
    sent: list[UpstreamRequest] = []

    def answer(request: UpstreamRequest) -> UpstreamResponse:
        sent.append(request)
        return UpstreamResponse(200, [], b"{}")

    gateway = traced_gateway(tracing, ROUTE, answer)
    reply = asyncio.run(gateway.handle("POST", PATH, headers, b"{}"))
    assert reply.status == 200
    (request,) = sent
    return {k.decode(): v.decode() for k, v in request.headers}


@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0])
def test_the_decision_is_the_sdk_samplers(ratio: float) -> None:
    tracing, _ = traced(str(ratio))
    sampler = tracing.provider.sampler
    rng = random.Random(23)
    try:
        for _ in range(2000):
            trace_id, span_id = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
            flags = rng.choice([-1, 0, 1])
            parent = None
            if flags >= 0:
                remote = SpanContext(trace_id, span_id, True, TraceFlags(flags))
                parent = set_span_in_context(NonRecordingSpan(remote))
            sdk = sampler.should_sample(parent, trace_id, "s", SpanKind.SERVER)
            expected = sdk.decision.is_sampled()  # type: ignore[no-untyped-call]
            assert tracing.sample(trace_id, span_id, flags, "s") == expected
    finally:
        tracing.shutdown()


def test_a_root_requests_decision_is_the_sdk_samplers_on_the_trace_id_it_forwards() -> None:
    """The gateway decides a root request from a trace id's low half before it makes the
    rest of the id: the forwarded flag is what the SDK's sampler says of the whole id."""
    tracing, exporter = traced("0.25")
    sampler = tracing.provider.sampler
    try:
        flags = []
        for _ in range(400):
            sent = forwarded(tracing, [(b"content-type", b"application/json")])
            _, trace, span, flag = sent["traceparent"].split("-")
            assert int(trace, 16) and int(span, 16)
            sdk = sampler.should_sample(None, int(trace, 16), "s", SpanKind.SERVER)
            assert flag == ("01" if sdk.decision.is_sampled() else "00")  # type: ignore[no-untyped-call]
            flags.append(flag)
    finally:
        tracing.shutdown()
    assert 40 < flags.count("01") < 160  # about a quarter
    assert len(exporter.get_finished_spans()) == 2 * flags.count("01")


TRACEPARENTS = [
    f"00-{'ab' * 16}-{'cd' * 8}-01",
    f"00-{'ab' * 16}-{'cd' * 8}-00",
    f"  00-{'ab' * 16}-{'cd' * 8}-03\t",
    f"01-{'ab' * 16}-{'cd' * 8}-01-future",
    f"00-{'ab' * 16}-{'cd' * 8}-01-extra",  # version 00 has no more fields
    f"ff-{'ab' * 16}-{'cd' * 8}-01",
    f"00-{'00' * 16}-{'cd' * 8}-01",
    f"00-{'ab' * 16}-{'00' * 8}-01",
    f"00-{'AB' * 16}-{'cd' * 8}-01",
    f"00-{'ab' * 15}-{'cd' * 8}-01",
    "garbage",
    "",
]


@pytest.mark.parametrize("header", TRACEPARENTS)
@pytest.mark.parametrize("state", [None, "vendor=x,other=y", "bad state,=", "k=" + "v" * 600])
def test_the_parent_is_read_as_the_propagator_reads_it(header: str, state: str | None) -> None:
    tracing, _ = traced("1")
    carrier = {"traceparent": header} | ({"tracestate": state} if state is not None else {})
    context = get_current_span(tracing.propagator.extract(carrier)).get_span_context()
    expected = NO_PARENT
    if context.is_valid:
        trace_state = context.trace_state.to_header() if context.trace_state else ""
        expected = (context.trace_id, context.span_id, context.trace_flags, trace_state)
    got = parent(header.encode(), state.encode() if state is not None else None)
    tracing.shutdown()
    assert got == expected


def test_an_unsampled_parent_records_nothing_and_its_trace_goes_on() -> None:
    tracing, exporter = traced("1.0")  # the parent's flag decides, not the ratio
    parent = f"00-{'ab' * 16}-{'cd' * 8}-00"
    try:
        sent = forwarded(
            tracing,
            [(b"traceparent", parent.encode()), (b"tracestate", b"vendor=x,other=y")],
        )
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    version, trace, span, flags = sent["traceparent"].split("-")
    assert (version, trace, flags) == ("00", "ab" * 16, "00")
    assert span != "cd" * 8 and int(span, 16) != 0  # a span id of the gateway's own
    assert sent["tracestate"] == "vendor=x,other=y"


def test_a_request_left_out_by_the_ratio_records_nothing() -> None:
    tracing, exporter = traced("0")
    try:
        sent = [forwarded(tracing, [(b"content-type", b"application/json")]) for _ in range(50)]
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    assert all(s["traceparent"].endswith("-00") for s in sent)
    assert len({s["traceparent"].split("-")[1] for s in sent}) == 50  # a new trace each


def test_a_sampled_parent_gets_a_server_and_a_client_span() -> None:
    tracing, exporter = traced("0")  # a sampled parent is followed whatever the ratio
    parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    try:
        sent = forwarded(tracing, [(b"traceparent", parent.encode())])
    finally:
        tracing.shutdown()
    server, client = sorted(exporter.get_finished_spans(), key=lambda s: s.kind != SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == int("cd" * 8, 16)
    assert server.parent.is_remote and server.context.trace_id == int("ab" * 16, 16)
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert sent["traceparent"] == f"00-{'ab' * 16}-{client.context.span_id:016x}-01"
    assert (
        client.attributes is not None and client.attributes["modelyard.breaker.state"] == "closed"
    )
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "modelyard.gateway"


def test_a_shadow_copy_of_an_unsampled_request_links_to_the_context_it_forwarded() -> None:
    """An unsampled request runs on the gateway's plain path (no hooks, so no `origin`): its
    shadow copy still links to the trace context the primary forwarded."""
    tracing, exporter = traced("1.0")
    forwarded_context = f"00-{'ab' * 16}-{'cd' * 8}-00"
    copy = ShadowCopy(
        ROUTE,
        TARGET,
        b"/classify",
        [(b"content-type", b"application/json"), (b"traceparent", forwarded_context.encode())],
        b"{}",
        b"{}",
    )
    try:
        hooks = TracingHooks(tracing).shadow(copy)
        sent = dict(hooks.copy.headers)[b"traceparent"].decode()
        hooks.end(True, None)
    finally:
        tracing.shutdown()
    (shadow,) = exporter.get_finished_spans()
    assert [(link.context.trace_id, link.context.span_id) for link in shadow.links] == [
        (int("ab" * 16, 16), int("cd" * 8, 16))
    ]
    assert sent.endswith("-01") and sent.split("-")[1] != "ab" * 16  # a trace of its own


@pytest.mark.parametrize("path", ["/metrics", "/v2/health/live", "/v2/health/ready"])
def test_probes_and_scrapes_never_start_a_span(path: str) -> None:
    """The probe check runs only where a span could start (a sampled root, or a caller's
    trace context): at ratio 1 every root would be sampled, and none of these is."""
    tracing, exporter = traced("1.0")
    hooks = TracingHooks(tracing)
    sampled_parent = [(b"traceparent", f"00-{'ab' * 16}-{'cd' * 8}-01".encode())]
    try:
        for _ in range(3):
            assert hooks.request("GET", path, []) is None
            assert hooks.request("GET", path, sampled_parent) is None
        assert hooks.request("POST", PATH, []) is not None  # (an inference request is)
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()


def test_a_block_of_traceparents_is_valid_and_random() -> None:
    block = traceparent_block(512)
    rows = traceparents(block)
    assert len(rows) == 512 and len(set(rows)) == 512
    values = [row[VALUE] for row in rows]
    for row, value in zip(rows, values, strict=True):
        trace_id, span_id, flags, state = parent(value, None)
        assert (flags, state) == (0, "") and trace_id and span_id
        assert value == b"00-%032x-%016x-00" % (trace_id, span_id)
        # the end of an upstream request's head: the header line, then the empty line
        assert row == b"traceparent: " + value + b"\r\n\r\n"
        assert with_end([], row) == [(b"traceparent", value)]
    # every hex digit of the ids about as likely (a bias in the digits' making would show)
    digits = b"".join(v[3:35] + v[36:52] for v in values)
    counts = [digits.count(d) for d in b"0123456789abcdef"]
    assert all(abs(c - len(digits) / 16) < len(digits) / 16 * 0.15 for c in counts)


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.3, 0.97])
def test_below_finds_exactly_the_trace_ids_the_ratio_sampler_takes(ratio: float) -> None:
    tracing, _ = traced(str(ratio))
    sampler = tracing.provider.sampler
    bound = tracing.bound
    tracing.shutdown()
    assert bound is not None
    block = traceparent_block(4096)
    taken = set(below(block, b"%016x" % bound))
    for at, row in enumerate(traceparents(block)):
        sdk = sampler.should_sample(None, int(row[VALUE][3:35], 16), "s", SpanKind.SERVER)
        assert (at in taken) == sdk.decision.is_sampled()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("ratio", ["0.01", "0.5", "1.0"])
def test_a_sampled_roots_trace_id_is_one_the_sampler_takes(ratio: str) -> None:
    tracing, _ = traced(ratio)
    sampler = tracing.provider.sampler
    hooks = TracingHooks(tracing)
    try:
        ids = set()
        for _ in range(200):
            trace_id = hooks._sampled_root()
            sdk = sampler.should_sample(None, trace_id, "s", SpanKind.SERVER)
            assert trace_id and sdk.decision.is_sampled()  # type: ignore[no-untyped-call]
            assert trace_id >> 64  # the high half random too
            ids.add(trace_id)
        assert len(ids) == 200
    finally:
        tracing.shutdown()


def test_the_share_of_sampled_roots_is_the_ratio() -> None:
    tracing, _ = traced("0.05")
    hooks = TracingHooks(tracing)
    try:
        answers = [hooks.request("POST", PATH, []) for _ in range(20_000)]
    finally:
        tracing.shutdown()
    sampled = sum(1 for a in answers if not isinstance(a, list))
    assert 800 < sampled < 1200  # 1,000 expected (sd about 31)
    forwarded_ids = {a[0][1][3:35] for a in answers if isinstance(a, list)}
    assert len(forwarded_ids) == 20_000 - sampled  # a new trace for each


def test_each_kind_of_span_runs_its_own_copy_of_the_shared_methods() -> None:
    """CPython specializes attribute access per code object and type: the request's and the
    attempt's spans must not share `finish` (nor the attempt `__init__`), or one of them
    always takes the generic path (gateway.spans.SpanBuilder.__init_subclass__)."""
    from gateway.spans import SpanBuilder
    from gateway.traced import _AttemptSpan, _RequestSpan, _ShadowSpan

    if not isinstance(vars(SpanBuilder)["finish"], FunctionType):
        # compiled (mypyc): native classes, nothing specialized per code object; each kind
        # of span is native too (its fields C struct members, not a dict or a slot lookup)
        for cls in (SpanBuilder, _RequestSpan, _AttemptSpan, _ShadowSpan):
            assert not isinstance(vars(cls).get("finish", cls.finish), FunctionType)
        return
    finishes = {
        id(cls.finish.__code__) for cls in (SpanBuilder, _RequestSpan, _AttemptSpan, _ShadowSpan)
    }
    assert len(finishes) == 4  # (code objects compare by value: by identity here)
    assert _AttemptSpan.__init__.__code__ is not SpanBuilder.__init__.__code__
    assert _AttemptSpan.error.__defaults__ == ("",)


OIP_BODY = b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}'


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize(("path", "body"), [(PATH, b"{}"), ("/v2/models/iris/infer", OIP_BODY)])
async def test_start_forwards_an_unsampled_traceparent_on_every_kind_of_call(
    path: str, body: bytes, context: bool
) -> None:
    """`Gateway.start` off the lane (a passthrough call on the coroutine path, an OIP
    inference): the unsampled new trace's `traceparent` (made as the end of a head) is among
    the headers sent, once, flag 00; whatever the server said of the caller's context."""
    tracing, exporter = traced("0")
    sent: list[UpstreamRequest] = []

    def answer(request: UpstreamRequest) -> UpstreamResponse:
        sent.append(request)
        return UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"y":[1]}')

    target = VersionRoute(1, "http://127.0.0.1:9", "bentoml", [ApiSpec("classify", ["x"])])
    route = ModelRoute("iris", 1, {1: target}, {}, TrafficPolicy())
    gateway = traced_gateway(tracing, route, answer)
    replies: asyncio.Queue[object] = asyncio.Queue()
    headers = [(b"content-type", b"application/json")]
    gateway.start("POST", path, headers, body, replies.put_nowait, context)
    reply = await asyncio.wait_for(replies.get(), 5)
    tracing.shutdown()
    assert getattr(reply, "status", None) == 200, reply
    (request,) = sent
    (value,) = [v for k, v in request.headers if k == b"traceparent"]
    trace_id, span_id, flags, _ = parent(value, None)
    assert trace_id and span_id and flags == 0
    assert exporter.get_finished_spans() == ()
