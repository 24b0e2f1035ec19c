"""Tracing off the request path: the gateway decides sampling once per request (the same
decision as the SDK's sampler) and an unsampled request records nothing yet forwards the right
`traceparent`; sampled spans reach the processor as the SDK's spans
(tests/integration/test_span_export.py: the bounded queue to the exporting process)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    set_span_in_context,
)

from adapters.telemetry import Tracing, setup_tracing
from contract.routes import ModelRoute, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.traced import TracingHooks
from gateway.transport.base import UpstreamRequest

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


def forwarded(tracing: Tracing, headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """What the upstream gets, through a request's hooks, for a request with `headers`."""
    hooks = TracingHooks(tracing).request("POST", PATH, headers)
    assert hooks is not None
    request = UpstreamRequest(TARGET.endpoint, b"POST", b"/classify", headers, b"{}", 5.0)
    attempt = hooks.attempt(ROUTE, TARGET, request)
    attempt.end(None, None, "closed")
    hooks.end(200, None)
    return {k.decode(): v.decode() for k, v in attempt.request.headers}


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
