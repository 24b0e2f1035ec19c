"""When tracing is on, what the sampler is, span names, and the JSON log line."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import use_span
from opentelemetry.trace.propagation import set_span_in_context

from adapters.json_logs import REQUEST_ID, JsonFormatter
from adapters.telemetry import TelemetryError, setup_tracing, tracing_wanted
from gateway.spans import inject
from gateway.traced import span_name
from modelyard.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("mode", "env", "wanted"),
    [
        ("auto", {}, False),  # the default: tests and a plain `modelyard serve`
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ("auto", {"OTEL_TRACES_EXPORTER": "console"}, True),
        ("auto", {"OTEL_TRACES_EXPORTER": "none"}, False),
        ("on", {}, True),
        ("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ("on", {"OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_when_tracing_is_on(mode: str, env: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(mode, env) is wanted


def test_unknown_exporter_or_mode_is_a_startup_error() -> None:
    with pytest.raises(TelemetryError, match="zipkin"):
        tracing_wanted("auto", {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TelemetryError, match="maybe"):
        tracing_wanted("maybe", {})
    with pytest.raises(SettingsError, match="tracing"):
        load_settings({"MODELYARD_TRACING": "sometimes"})
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER"):
        load_settings({"OTEL_TRACES_EXPORTER": "jaeger"})  # refused before the app is built
    with pytest.raises(SettingsError, match="log format"):
        load_settings({"MODELYARD_LOG_FORMAT": "xml"})


def test_provider_defaults_service_name_and_parent_based_ratio() -> None:
    tracing = setup_tracing("gateway", {"OTEL_TRACES_SAMPLER_ARG": "0.25"}, "on")
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == "modelyard-gateway"
        sampler = tracing.provider.sampler
        assert isinstance(sampler, ParentBasedTraceIdRatio)
        assert "0.25" in sampler.get_description()
    finally:
        tracing.shutdown()
    assert setup_tracing("registry", {}, "auto") is None
    with pytest.raises(TelemetryError, match="within"):
        setup_tracing("registry", {"OTEL_TRACES_SAMPLER_ARG": "2"}, "on")


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/models/iris/classify", "POST /models/{name}/{api}"),
        ("POST", "/models/iris@champion/classify", "POST /models/{name}/{api}"),
        (
            "POST",
            "/models/iris/versions/2/classify",
            "POST /models/{name}/versions/{version}/{api}",
        ),
        ("POST", "/v2/models/iris/infer", "POST /v2/models/{name}/infer"),
        (
            "POST",
            "/v2/models/iris/versions/3/infer",
            "POST /v2/models/{name}/versions/{version}/infer",
        ),
        ("GET", "/v2/models/iris", "GET /v2/models/{name}"),
        ("GET", "/v2/health/ready", "GET /v2/health/ready"),
        ("GET", "/v2", "GET /v2"),
    ],
)
def test_span_names_never_carry_the_model(method: str, path: str, name: str) -> None:
    assert span_name(method, path) == name


def test_json_log_line_carries_trace_span_request_model_and_version() -> None:
    exporter = InMemorySpanExporter()
    tracing = setup_tracing("serve", {}, "off", processor=SimpleSpanProcessor(exporter))
    assert tracing is not None
    span = tracing.tracer("test").start_span("work")
    record = logging.LogRecord(
        "modelyard.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.model, record.version = "iris", 2
    token = REQUEST_ID.set("req-7")
    try:
        with use_span(span, end_on_exit=True):
            line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
        tracing.shutdown()
    context = span.get_span_context()
    assert line["message"] == "hello you" and line["level"] == "warning"
    assert line["logger"] == "modelyard.x" and line["time"].endswith("+00:00")
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert (line["request_id"], line["model"], line["version"]) == ("req-7", "iris", 2)
    plain = json.loads(JsonFormatter().format(record))
    assert "trace_id" not in plain and "request_id" not in plain


@pytest.mark.parametrize("sampled", [True, False])
def test_injected_headers_are_the_propagators(sampled: bool) -> None:
    tracing = setup_tracing(
        "gateway",
        {"OTEL_TRACES_SAMPLER_ARG": "1" if sampled else "0"},
        "on",
        processor=SimpleSpanProcessor(InMemorySpanExporter()),
    )
    assert tracing is not None
    incoming = {
        "traceparent": f"00-{'ab' * 16}-{'cd' * 8}-{'01' if sampled else '00'}",
        "tracestate": "vendor=x,other=y",
    }
    span = tracing.tracer("t").start_span("s", context=tracing.propagator.extract(incoming))
    expected: dict[str, str] = {}
    tracing.propagator.inject(expected, context=set_span_in_context(span))
    caller = [(b"traceparent", b"00-old"), (b"content-type", b"application/json")]
    context = span.get_span_context()
    state = context.trace_state.to_header() if context.trace_state else ""
    got = inject(caller, context.trace_id, context.span_id, context.trace_flags, state)
    assert got[0] == (b"content-type", b"application/json")
    assert {k.decode(): v.decode() for k, v in got[1:]} == expected
    assert expected["traceparent"].endswith("-01" if sampled else "-00")
    tracing.shutdown()


@pytest.mark.parametrize(
    "name",
    ["OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
)
@pytest.mark.parametrize("raw", ["0", "-3", "many"])
def test_the_gateway_export_queue_refuses_a_bad_size_or_delay(name: str, raw: str) -> None:
    with pytest.raises(TelemetryError, match=name):
        setup_tracing("gateway", {"OTEL_TRACES_EXPORTER": "console", name: raw}, "auto")


def test_an_export_batch_larger_than_the_queue_is_refused() -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "101",
    }
    with pytest.raises(TelemetryError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
        setup_tracing("gateway", env, "auto")
