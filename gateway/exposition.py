"""The gateway's metric families for prometheus_client, read from `GatewayMetrics` when /metrics
is scraped. The names, types and label names are a public surface (tests/unit/
test_surface_metrics.py pins them):

    modelyard_gateway_requests_total               counter    model, version, variant
    modelyard_gateway_errors_total                 counter    model, version, variant
    modelyard_gateway_request_duration_seconds     histogram  model, version, variant
    modelyard_gateway_shadow_{compared,agreed,dropped,failed}_total   counter  model, version
    modelyard_gateway_upstream_breaker_open        gauge      upstream, state
    modelyard_gateway_route_revision               gauge
    modelyard_gateway_route_models                 gauge
    modelyard_gateway_registry_up                  gauge
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from gateway.metrics import GatewayMetrics

PREFIX: Final = "modelyard_gateway_"
VARIANT_LABELS: Final = ("model", "version", "variant")
SHADOW_LABELS: Final = ("model", "version")
SHADOW_COUNTS: Final = (
    ("shadow_compared", "Shadow answers compared with the primary.", "compared"),
    ("shadow_agreed", "Shadow answers that agreed with the primary.", "agreed"),
    ("shadow_dropped", "Shadow copies dropped because the queue was full.", "dropped"),
    ("shadow_failed", "Shadow copies that got no answer.", "failed"),
)


class GatewayCollector:
    """A prometheus_client collector over the counts of one `GatewayMetrics`."""

    def __init__(self, metrics: GatewayMetrics, buckets_s: tuple[float, ...]) -> None:
        self.metrics = metrics
        self.bounds = [*(str(float(b)) for b in buckets_s), "+Inf"]  # le="0.001" ... le="10.0"

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        stats = list(m.stats.items())
        requests = CounterMetricFamily(
            PREFIX + "requests", "Inference requests.", labels=VARIANT_LABELS
        )
        errors = CounterMetricFamily(
            PREFIX + "errors",
            "Requests answered with a 5xx or gateway error.",
            labels=VARIANT_LABELS,
        )
        for key, s in stats:
            requests.add_metric(key, s.requests)
            errors.add_metric(key, s.errors)
        yield requests
        yield errors
        duration = HistogramMetricFamily(
            PREFIX + "request_duration_seconds",
            "Time from request to answer.",
            labels=VARIANT_LABELS,
        )
        for key, s in stats:
            cumulative: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip(self.bounds, s.buckets, strict=True):
                total += count
                cumulative.append((bound, float(total)))
            duration.add_metric(key, cumulative, s.sum_s)
        yield duration
        shadows = list(m.shadows.items())
        for name, help_, attr in SHADOW_COUNTS:
            family = CounterMetricFamily(PREFIX + name, help_, labels=SHADOW_LABELS)
            for pair, counts in shadows:
                family.add_metric(pair, getattr(counts, attr))
            yield family
        breakers = GaugeMetricFamily(
            PREFIX + "upstream_breaker_open",
            "1 while an upstream is ejected.",
            labels=("upstream", "state"),
        )
        for upstream, state in sorted(m.breakers().items()):
            breakers.add_metric((upstream, state), int(state != "closed"))
        yield breakers
        yield CounterMetricFamily(
            PREFIX + "spans_dropped",
            "Trace spans dropped because the export queue was full.",
            value=m.spans_dropped(),
        )
        yield GaugeMetricFamily(
            PREFIX + "route_revision",
            "Revision of the route table being served.",
            value=m.route_revision,
        )
        yield GaugeMetricFamily(
            PREFIX + "route_models",
            "Models in the route table being served.",
            value=m.route_models,
        )
        yield GaugeMetricFamily(
            PREFIX + "registry_up",
            "1 while the registry's route feed answers.",
            value=int(m.registry_up),
        )
