"""The registry's Prometheus metrics (prometheus_client, one CollectorRegistry per app), served
at `/metrics` in the text format 0.0.4:

    modelyard_registry_requests_total{method,route,status}        API calls (route: its template)
    modelyard_registry_request_duration_seconds{method,route}     histogram
    modelyard_registry_rollout_phase{model,rollout,phase}          1 for the phase it is in
    modelyard_registry_rollout_candidate_weight_ratio{model,rollout}  the candidate's share, 0..1
    modelyard_registry_rollout_verdicts_total{model,outcome}       judged looks
    modelyard_registry_rollout_transitions_total{model,phase}      phases entered
    modelyard_registry_swept_total{kind}                           crash leftovers removed
    modelyard_registry_sweeps_total                                sweeps run (on this replica)

Requests are counted by `RegistryMetricsPlugin`'s middleware. Rollout gauges are the active
rollouts as the controller's latest tick saw them (so they are on the replica that leads): a
collector reads them at scrape time, and a rollout that ended has no gauge any more.

Why not Litestar's PrometheusPlugin: its metrics live in the process-wide registry and a
class-level cache (two apps in one process would share counts), its labels are `path`,
`status_code` and `app_name`, and it adds families of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.enums import ScopeType
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from registry.rollouts.state import Phase, Rollout

DURATION_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)
CONTENT_TYPE: Final = "text/plain; version=0.0.4"
UNMATCHED: Final = "unmatched"
PATH: Final = "/metrics"

_Children = tuple[Any, Any]  # a Counter's and a Histogram's labelled children


class _RolloutGauges:
    """Phase and weight of the active rollouts, read when scraped."""

    def __init__(self) -> None:
        self.rollouts: dict[str, tuple[str, Phase, float]] = {}  # id -> model, phase, weight

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "modelyard_registry_rollout_phase",
            "1 for the phase an active rollout is in.",
            labels=("model", "rollout", "phase"),
        )
        weight = GaugeMetricFamily(
            "modelyard_registry_rollout_candidate_weight_ratio",
            "The candidate's share of the model's traffic (0 to 1).",
            labels=("model", "rollout"),
        )
        for rid, (model, current, share) in sorted(self.rollouts.items()):
            for each in Phase:
                phase.add_metric((model, rid, str(each)), int(each == current))
            weight.add_metric((model, rid), share / 100.0)
        yield phase
        yield weight


class _WithoutCreated:
    """The registry's families without the `_created` series prometheus_client adds to
    counters and histograms (switched off only process-wide there): the page keeps the
    series it always had."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class RegistryMetrics:
    """Request counters and rollout state; also the metrics half of a `RolloutObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "modelyard_registry_requests",
            "Registry API calls.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "modelyard_registry_request_duration_seconds",
            "Time to answer a registry API call.",
            ("method", "route"),
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._rollouts = _RolloutGauges()
        self.registry.register(self._rollouts)
        self._verdicts = Counter(
            "modelyard_registry_rollout_verdicts",
            "Judged looks of rollouts, by outcome.",
            ("model", "outcome"),
            registry=self.registry,
        )
        self._transitions = Counter(
            "modelyard_registry_rollout_transitions",
            "Rollout phases entered.",
            ("model", "phase"),
            registry=self.registry,
        )
        self._swept = Counter(
            "modelyard_registry_swept",
            "Leftovers of crashed uploads removed by the sweeper, by kind"
            " (spool, temporary, multipart, artifact).",
            ("kind",),
            registry=self.registry,
        )
        self._sweeps = Counter(
            "modelyard_registry_sweeps", "Sweeps run by this replica.", registry=self.registry
        )
        # labelled children by (method, route, status): `labels()` costs ~5 us, a lookup ~0.1
        self._children: dict[tuple[str, str, int], _Children] = {}
        self._exposed = _WithoutCreated(self.registry)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self._requests.labels(method, route, str(status)),
                self._durations.labels(method, route),
            )
        found[0].inc()
        found[1].observe(seconds)

    # --- RolloutObserver ------------------------------------------------------------------------

    def active(self, rollouts: list[Rollout]) -> None:
        self._rollouts.rollouts = {r.id: (r.model, r.phase, r.weight) for r in rollouts}

    def tick(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def moved(self, before: Rollout, after: Rollout) -> None:
        if after.last is not None and after.looks != before.looks:
            self._verdicts.labels(after.model, str(after.last.verdict.outcome)).inc()
        if after.phase != before.phase:
            self._transitions.labels(after.model, str(after.phase)).inc()

    # --- the sweeper (registry/catalog/sweeper.py) ----------------------------------------------

    def swept(self, removed: Mapping[str, int]) -> None:
        self._sweeps.inc()
        for kind, count in removed.items():
            self._swept.labels(kind).inc(count)

    # --- exposition -----------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self._exposed)


def _counting(metrics: RegistryMetrics, app: ASGIApp) -> ASGIApp:
    """Count every HTTP call by method, route template and status."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_counted)
        finally:
            route = scope.get("path_template") or UNMATCHED
            metrics.request(scope["method"], route, status, time.perf_counter() - started)

    return middleware


class RegistryMetricsPlugin(InitPluginProtocol):
    """Counts the app's requests into `metrics` and serves them at `/metrics` (no token)."""

    def __init__(self, metrics: RegistryMetrics) -> None:
        self.metrics = metrics

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        metrics = self.metrics

        @get(PATH, include_in_schema=False, sync_to_thread=False)
        def registry_metrics() -> Response[bytes]:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

        app_config.route_handlers.append(registry_metrics)
        app_config.middleware.append(lambda app: _counting(metrics, app))
        return app_config
