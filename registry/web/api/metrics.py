"""The registry's Prometheus metrics, served at `/metrics` (text format 0.0.4):

    modelyard_registry_requests_total{method,route,status}        API calls (route: its template)
    modelyard_registry_request_duration_seconds{method,route}     histogram
    modelyard_registry_rollout_phase{model,rollout,phase}          1 for the phase it is in
    modelyard_registry_rollout_candidate_weight_ratio{model,rollout}  the candidate's share, 0..1
    modelyard_registry_rollout_verdicts_total{model,outcome}       judged looks
    modelyard_registry_rollout_transitions_total{model,phase}      phases entered

Rollout gauges come from the controller's ticks, so they are on the replica that leads. Plain
counters in dicts, as in gateway/metrics.py: a request costs a few additions.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from typing import Any, Final

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

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


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Durations:
    __slots__ = ("buckets", "count", "sum_s")

    def __init__(self) -> None:
        self.buckets = [0] * (len(DURATION_BUCKETS_S) + 1)
        self.count = 0
        self.sum_s = 0.0


class RegistryMetrics:
    """Request counters and rollout state; also the metrics half of a `RolloutObserver`."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], _Durations] = {}
        self.rollouts: dict[str, tuple[str, Phase, float]] = {}  # id -> model, phase, weight
        self.verdicts: dict[tuple[str, str], int] = {}
        self.transitions: dict[tuple[str, str], int] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        found = self.durations.get((method, route))
        if found is None:
            found = self.durations[(method, route)] = _Durations()
        found.buckets[bisect.bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        found.count += 1
        found.sum_s += seconds

    # --- RolloutObserver ------------------------------------------------------------------------

    def active(self, rollouts: list[Rollout]) -> None:
        self.rollouts = {r.id: (r.model, r.phase, r.weight) for r in rollouts}

    def tick(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def moved(self, before: Rollout, after: Rollout) -> None:
        if after.last is not None and after.looks != before.looks:
            key = (after.model, str(after.last.verdict.outcome))
            self.verdicts[key] = self.verdicts.get(key, 0) + 1
        if after.phase != before.phase:
            key = (after.model, str(after.phase))
            self.transitions[key] = self.transitions.get(key, 0) + 1

    # --- exposition -----------------------------------------------------------------------------

    def render(self) -> bytes:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.extend((f"# HELP {name} {help_}", f"# TYPE {name} {kind}"))

        family("modelyard_registry_requests_total", "counter", "Registry API calls.")
        for (method, route, status), n in sorted(self.requests.items()):
            labels = f'method="{method}",route="{_esc(route)}",status="{status}"'
            out.append(f"modelyard_registry_requests_total{{{labels}}} {n}")
        name = "modelyard_registry_request_duration_seconds"
        family(name, "histogram", "Time to answer a registry API call.")
        for (method, route), d in sorted(self.durations.items()):
            labels = f'method="{method}",route="{_esc(route)}"'
            total = 0
            for bound, count in zip((*DURATION_BUCKETS_S, "+Inf"), d.buckets, strict=True):
                total += count
                out.append(f'{name}_bucket{{{labels},le="{bound}"}} {total}')
            out.append(f"{name}_sum{{{labels}}} {d.sum_s}")
            out.append(f"{name}_count{{{labels}}} {d.count}")
        family(
            "modelyard_registry_rollout_phase", "gauge", "1 for the phase an active rollout is in."
        )
        for rid, (model, phase, _) in sorted(self.rollouts.items()):
            for each in Phase:
                labels = f'model="{_esc(model)}",rollout="{rid}",phase="{each}"'
                out.append(f"modelyard_registry_rollout_phase{{{labels}}} {int(each == phase)}")
        name = "modelyard_registry_rollout_candidate_weight_ratio"
        family(name, "gauge", "The candidate's share of the model's traffic (0 to 1).")
        for rid, (model, _, weight) in sorted(self.rollouts.items()):
            labels = f'model="{_esc(model)}",rollout="{rid}"'
            out.append(f"{name}{{{labels}}} {weight / 100.0:g}")
        name = "modelyard_registry_rollout_verdicts_total"
        family(name, "counter", "Judged looks of rollouts, by outcome.")
        for (model, outcome), n in sorted(self.verdicts.items()):
            out.append(f'{name}{{model="{_esc(model)}",outcome="{outcome}"}} {n}')
        name = "modelyard_registry_rollout_transitions_total"
        family(name, "counter", "Rollout phases entered.")
        for (model, entered), n in sorted(self.transitions.items()):
            out.append(f'{name}{{model="{_esc(model)}",phase="{entered}"}} {n}')
        return ("\n".join(out) + "\n").encode()


def metrics_middleware(metrics: RegistryMetrics) -> Any:
    """Count every HTTP call by method, route template and status (Litestar middleware)."""

    def factory(app: ASGIApp) -> ASGIApp:
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

    return factory


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def registry_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    metrics: RegistryMetrics = request.app.state.registry_metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE)
