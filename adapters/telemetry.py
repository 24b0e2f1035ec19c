"""OpenTelemetry tracing, set up in one place from the standard `OTEL_*` variables.

When is tracing on? `MODELYARD_TRACING` decides: `on`, `off`, or `auto` (the default), which
means on exactly when an exporter is configured the standard way: `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER` names an exporter other
than `none`. `OTEL_SDK_DISABLED=true` turns it off whatever the rest says. So a plain
`modelyard serve` (and the test suite) runs with tracing off, and the hot path then builds no
span, attaches no context and pays no branch (the gateway picks its traced class at start).

What the SDK reads itself (its own env handling, not re-implemented here): the exporter's
endpoint, headers, timeout and compression (`OTEL_EXPORTER_OTLP_*`), the batch processor
(`OTEL_BSP_*`), resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`) and, when
`OTEL_TRACES_SAMPLER` is set, the sampler. The gateway's own export queue (below) takes
`OTEL_BSP_MAX_QUEUE_SIZE` (default 2048 spans), `OTEL_BSP_SCHEDULE_DELAY` (default 500 ms)
and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (default half the queue, at most 1024 spans: not the SDK's
512, each export costs the exporting process an HTTP request; see adapters.span_export).
Defaults of ours:

- service name `modelyard-<role>` (`modelyard-serve`, `modelyard-registry`, `modelyard-gateway`)
  unless `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) names one;
- sampler parent-based trace-id ratio, the ratio from `OTEL_TRACES_SAMPLER_ARG` (default 1.0):
  an incoming sampled `traceparent` is always followed;
- exporter OTLP over HTTP/protobuf (`OTEL_TRACES_EXPORTER=otlp`, the default), or `console`.

The gateway's spans do not go through SDK span objects: it records plain tuples
(contract.spans) and hands them to `Tracing.emit`, which queues them for a child process that
encodes and exports them (adapters.span_export), so the export never holds the gateway's
interpreter; `Tracing.sample` is the provider's sampler decision without a span. The
registry's spans (fewer, not on the inference path) stay SDK spans with a batch processor.

An unknown exporter or mode is a start-up error (`TelemetryError`), never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters.span_export import (
    DELAY_S,
    MAX_BATCH,
    MAX_QUEUE,
    DirectSpans,
    ExportPipe,
    SpanSink,
    make_exporter,
)
from contract.spans import SpanRecord

__all__ = ["TRACING_MODES", "TelemetryError", "Tracing", "setup_tracing", "tracing_wanted"]

TRACING_MODES: Final = ("auto", "on", "off")
EXPORTERS: Final = ("otlp", "console", "none")
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SERVICE_PREFIX: Final = "modelyard-"
DEFAULT_RATIO: Final = 1.0
_SDK_SAMPLER_ENV: Final = "OTEL_TRACES_SAMPLER"
_BATCH_ENV: Final = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
GATEWAY_SCOPE: Final = "modelyard.gateway"  # the instrumentation scope of emitted records
_ID_MASK: Final = TraceIdRatioBased.TRACE_ID_LIMIT


class _Discard:
    """`OTEL_TRACES_EXPORTER=none`: records go nowhere."""

    dropped = 0

    def emit(self, record: SpanRecord) -> None:
        return None

    def close(self) -> None:
        return None


class TelemetryError(ValueError):
    """The tracing settings are wrong; modelyard refuses to start rather than guess."""


@dataclass(frozen=True)
class Tracing:
    """A running tracer provider and what the instrumented code needs from it."""

    provider: TracerProvider
    propagator: TextMapPropagator
    spans: SpanSink
    #: The parent-based ratio sampler's bound on a trace id's low 64 bits, or None when the
    #: SDK's own `OTEL_TRACES_SAMPLER` decides (then `sample` asks it).
    bound: int | None

    def __post_init__(self) -> None:
        # `emit` runs twice a sampled request: the sink's own method, without a call of ours
        object.__setattr__(self, "emit", self.spans.emit)

    def tracer(self, name: str) -> Tracer:
        return self.provider.get_tracer(name)

    def sample(self, trace_id: int, parent_span_id: int, parent_flags: int, name: str) -> bool:
        """The sampler's decision for a SERVER span; `parent_flags` -1: no parent."""
        if self.bound is not None:  # ParentBasedTraceIdRatio, decided without objects
            if parent_flags >= 0:
                return bool(parent_flags & 1)
            return trace_id & _ID_MASK < self.bound
        parent = None
        if parent_flags >= 0:
            remote = SpanContext(trace_id, parent_span_id, True, TraceFlags(parent_flags))
            parent = set_span_in_context(NonRecordingSpan(remote))
        result = self.provider.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER)
        return result.decision == Decision.RECORD_AND_SAMPLE

    def emit(self, record: SpanRecord) -> None:
        """A finished gateway span, queued for export (dropped and counted when full); the
        instance's is the sink's `emit` itself (see `__post_init__`)."""
        self.spans.emit(record)

    @property
    def dropped(self) -> int:
        """Gateway spans dropped so far because the export queue was full."""
        return self.spans.dropped

    def shutdown(self) -> None:
        """Flush what is still queued and stop the exporters (bounded by their timeouts)."""
        self.spans.close()
        self.provider.shutdown()


def _exporter_name(env: Mapping[str, str]) -> str:
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    if len(names) > 1:
        raise TelemetryError("OTEL_TRACES_EXPORTER: modelyard supports one exporter at a time")
    name = names[0].lower() if names else "otlp"
    if name not in EXPORTERS:
        raise TelemetryError(
            f"unknown OTEL_TRACES_EXPORTER {name!r}: use {', '.join(EXPORTERS)}"
            " (OTLP is sent over HTTP/protobuf)"
        )
    return name


def tracing_wanted(mode: str, env: Mapping[str, str]) -> bool:
    """Whether tracing should run, by `mode` (auto|on|off) and the standard variables."""
    if mode not in TRACING_MODES:
        raise TelemetryError(f"unknown tracing mode {mode!r}: use {', '.join(TRACING_MODES)}")
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or mode == "off":
        return False
    exporter = _exporter_name(env)  # checked even when `on`: a typo is a start-up error
    if mode == "on":
        return True
    configured = any(env.get(name) for name in ENDPOINT_VARIABLES)
    return configured or ("OTEL_TRACES_EXPORTER" in env and exporter != "none")


def _ratio(env: Mapping[str, str]) -> float | None:
    """None lets the SDK read OTEL_TRACES_SAMPLER (and its _ARG) itself."""
    if env.get(_SDK_SAMPLER_ENV):
        return None
    raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else DEFAULT_RATIO
    except ValueError:
        raise TelemetryError(f"OTEL_TRACES_SAMPLER_ARG must be a number, got {raw!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise TelemetryError(f"OTEL_TRACES_SAMPLER_ARG must be within [0, 1], got {ratio:g}")
    return ratio


def _default_processor(env: Mapping[str, str]) -> SpanProcessor | None:
    name = _exporter_name(env)
    return None if name == "none" else BatchSpanProcessor(make_exporter(name))


def _gateway_sink(
    role: str, env: Mapping[str, str], processor: SpanProcessor | None, resource: Resource
) -> SpanSink:
    if processor is not None:
        return DirectSpans(processor, resource, GATEWAY_SCOPE)
    name = _exporter_name(env)
    if name == "none" or role == "registry":  # no gateway in the process: no child
        return _Discard()
    max_queue = _positive(env, "OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE)
    delay_ms = _positive(env, "OTEL_BSP_SCHEDULE_DELAY", round(DELAY_S * 1000))
    batch = _positive(env, _BATCH_ENV, min(MAX_BATCH, max(1, max_queue // 2)))
    if batch > max_queue:
        raise TelemetryError(f"{_BATCH_ENV} ({batch}) must not exceed OTEL_BSP_MAX_QUEUE_SIZE")
    return ExportPipe(
        name,
        resource,
        GATEWAY_SCOPE,
        max_queue=max_queue,
        delay_s=delay_ms / 1000,
        max_batch=batch,
    )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise TelemetryError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def setup_tracing(
    role: str,
    env: Mapping[str, str],
    mode: str = "auto",
    *,
    processor: SpanProcessor | None = None,
) -> Tracing | None:
    """A tracer provider for `role`, or None when tracing is off. Tests hand in `processor`
    (a SimpleSpanProcessor over an in-memory exporter); that turns tracing on by itself.

    The provider is not made the global one: the instrumented code is handed its tracer, so
    several apps in one process (tests) keep their spans apart."""
    if processor is None and not tracing_wanted(mode, env):
        return None
    attributes = {}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes[SERVICE_NAME] = SERVICE_PREFIX + role
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which win).
    resource = Resource.create(attributes)
    ratio = _ratio(env)
    sampler: Sampler | None = None if ratio is None else ParentBasedTraceIdRatio(ratio)
    provider = TracerProvider(sampler=sampler, resource=resource)
    chosen = processor if processor is not None else _default_processor(env)
    if chosen is not None:
        provider.add_span_processor(chosen)
    bound = None if ratio is None else TraceIdRatioBased.get_bound_for_rate(ratio)
    spans = _gateway_sink(role, env, processor, provider.resource)
    return Tracing(provider, TraceContextTextMapPropagator(), spans, bound)
