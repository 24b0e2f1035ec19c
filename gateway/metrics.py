"""What the gateway measures: per model, version and variant request counts, errors and
latency (Prometheus histograms), shadow agreement, and windows of raw samples for the
rollout judge. Plain counters in dicts: a request costs a few additions, no locks (one loop)."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Final

from contract.traffic import SHADOW_VARIANT
from contract.windows import TrafficWindow

LATENCY_BUCKETS_S: Final = (
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
    5.0,
    10.0,
)
WINDOW_SAMPLES: Final = 5000  # latency samples kept per variant and window (reservoir)

Key = tuple[str, str, str]  # model, version, variant


class _Stats:
    __slots__ = (
        "buckets",
        "errors",
        "requests",
        "samples",
        "seen",
        "sum_s",
        "w_agreed",
        "w_compared",
        "w_errors",
        "w_requests",
    )

    def __init__(self) -> None:
        self.requests = self.errors = 0
        self.sum_s = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.w_requests = self.w_errors = self.seen = 0
        self.w_compared = self.w_agreed = 0
        self.samples: list[float] = []


class _Shadow:
    __slots__ = ("agreed", "compared", "dropped", "failed")

    def __init__(self) -> None:
        self.compared = self.agreed = self.dropped = self.failed = 0


class GatewayMetrics:
    def __init__(self) -> None:
        self._stats: dict[Key, _Stats] = {}
        self._shadow: dict[tuple[str, str], _Shadow] = {}
        self.route_revision = -1
        self.registry_up = False
        self.breakers: Callable[[], dict[str, str]] = dict
        self.extra: Callable[[], bytes] = bytes  # more families for the same /metrics (serve)

    def observe(
        self, model: str, version: str, variant: str, seconds: float, error: bool
    ) -> _Stats:
        key = (model, version, variant)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = _Stats()
        stats.requests += 1
        stats.sum_s += seconds
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        stats.w_requests += 1
        if error:
            stats.errors += 1
            stats.w_errors += 1
        stats.seen += 1
        if len(stats.samples) < WINDOW_SAMPLES:
            stats.samples.append(seconds * 1000.0)
        else:  # reservoir sampling keeps a uniform sample of the window
            slot = random.randrange(stats.seen)
            if slot < WINDOW_SAMPLES:
                stats.samples[slot] = seconds * 1000.0
        return stats

    def shadow_answer(self, model: str, version: str, seconds: float, agreed: bool | None) -> None:
        """A shadow copy's outcome: its latency and error in the `shadow` variant's window
        (the shadow rollout's judge reads them) and, when compared, the agreement."""
        stats = self.observe(model, version, SHADOW_VARIANT, seconds, agreed is None)
        if agreed is not None:
            stats.w_compared += 1
            stats.w_agreed += agreed
            counts = self.shadow(model, version)
            counts.compared += 1
            counts.agreed += agreed
        else:
            self.shadow(model, version).failed += 1

    def shadow(self, model: str, version: str) -> _Shadow:
        found = self._shadow.get((model, version))
        if found is None:
            found = self._shadow[(model, version)] = _Shadow()
        return found

    def agreement(self, model: str, version: str) -> float | None:
        s = self._shadow.get((model, version))
        return s.agreed / s.compared if s and s.compared else None

    def totals(self) -> list[tuple[str, str, str, int, int]]:
        """(model, version, variant, requests, errors) since the gateway started."""
        return [(m, v, var, s.requests, s.errors) for (m, v, var), s in self._stats.items()]

    def shadow_totals(self) -> list[tuple[str, str, int, int, int, int]]:
        """(model, version, compared, agreed, dropped, failed) of the shadow copies."""
        return [
            (m, v, s.compared, s.agreed, s.dropped, s.failed) for (m, v), s in self._shadow.items()
        ]

    def take_windows(self) -> list[TrafficWindow]:
        out = []
        for (model, version, variant), s in self._stats.items():
            if s.w_requests:
                out.append(
                    TrafficWindow(
                        model,
                        int(version),
                        variant,
                        s.w_requests,
                        s.w_errors,
                        s.samples,
                        s.w_compared,
                        s.w_agreed,
                    )
                )
            s.w_requests = s.w_errors = s.seen = s.w_compared = s.w_agreed = 0
            s.samples = []
        return out

    def render(self) -> bytes:
        """Prometheus text exposition format 0.0.4."""
        lines = [
            "# HELP modelyard_gateway_requests_total Inference requests.",
            "# TYPE modelyard_gateway_requests_total counter",
        ]
        for (m, v, var), s in self._stats.items():
            lines.append(f"modelyard_gateway_requests_total{{{_labels(m, v, var)}}} {s.requests}")
        lines += [
            "# HELP modelyard_gateway_errors_total Requests answered with a 5xx or gateway error.",
            "# TYPE modelyard_gateway_errors_total counter",
        ]
        for (m, v, var), s in self._stats.items():
            lines.append(f"modelyard_gateway_errors_total{{{_labels(m, v, var)}}} {s.errors}")
        lines += [
            "# HELP modelyard_gateway_request_duration_seconds Time from request to answer.",
            "# TYPE modelyard_gateway_request_duration_seconds histogram",
        ]
        for (m, v, var), s in self._stats.items():
            labels = _labels(m, v, var)
            total = 0
            name = "modelyard_gateway_request_duration_seconds"
            for bound, count in zip((*LATENCY_BUCKETS_S, "+Inf"), s.buckets, strict=True):
                total += count
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {total}')
            lines.append(f"{name}_sum{{{labels}}} {s.sum_s}")
            lines.append(f"{name}_count{{{labels}}} {s.requests}")
        lines += _shadow_lines(self._shadow)
        lines += [
            "# HELP modelyard_gateway_upstream_breaker_open 1 while an upstream is ejected.",
            "# TYPE modelyard_gateway_upstream_breaker_open gauge",
        ]
        for upstream, state in sorted(self.breakers().items()):
            labels = f'upstream="{_esc(upstream)}",state="{state}"'
            lines.append(
                f"modelyard_gateway_upstream_breaker_open{{{labels}}} {int(state != 'closed')}"
            )
        lines += [
            "# HELP modelyard_gateway_route_revision Revision of the route table being served.",
            "# TYPE modelyard_gateway_route_revision gauge",
            f"modelyard_gateway_route_revision {self.route_revision}",
            "# HELP modelyard_gateway_registry_up 1 while the registry's route feed answers.",
            "# TYPE modelyard_gateway_registry_up gauge",
            f"modelyard_gateway_registry_up {int(self.registry_up)}",
        ]
        return ("\n".join(lines) + "\n").encode() + self.extra()


def _shadow_lines(shadow: dict[tuple[str, str], _Shadow]) -> list[str]:
    out = []
    for name, help_, attr in (
        ("shadow_compared_total", "Shadow answers compared with the primary.", "compared"),
        ("shadow_agreed_total", "Shadow answers that agreed with the primary.", "agreed"),
        ("shadow_dropped_total", "Shadow copies dropped because the queue was full.", "dropped"),
        ("shadow_failed_total", "Shadow copies that got no answer.", "failed"),
    ):
        out += [
            f"# HELP modelyard_gateway_{name} {help_}",
            f"# TYPE modelyard_gateway_{name} counter",
        ]
        for (m, v), s in shadow.items():
            out.append(
                f'modelyard_gateway_{name}{{model="{_esc(m)}",version="{v}"}} {getattr(s, attr)}'
            )
    return out


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(model: str, version: str, variant: str) -> str:
    return f'model="{_esc(model)}",version="{version}",variant="{_esc(variant)}"'
