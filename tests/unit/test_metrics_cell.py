"""`Forwarder.measured` keeps each (model, version, variant)'s counters and records into them:
the same figures as `GatewayMetrics.observe`, under the version as text."""

from __future__ import annotations

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.forward import Forwarder
from gateway.metrics import GatewayMetrics
from gateway.resilience import Resilient
from gateway.routing import Choice
from gateway.shadow import ShadowQueue
from gateway.transport.base import UpstreamResponse
from gateway.transport.mock import MockTransport


def _forwarder(metrics: GatewayMetrics) -> Forwarder:
    transport = MockTransport(lambda request: UpstreamResponse(200, [], b""))
    return Forwarder(Resilient(transport), metrics, ShadowQueue(transport, metrics))


def test_measured_counts_under_the_version_as_text_like_observe() -> None:
    metrics = GatewayMetrics()
    forwarder = _forwarder(metrics)
    versions = {v: VersionRoute(v, "http://u", "bentoml") for v in (1, 2)}
    route = ModelRoute("m", 1, versions, {}, TrafficPolicy())
    stable = Choice(1, "stable", versions[1])
    canary = Choice(2, "canary", versions[2])
    forwarder.measured(route, stable, 0.0, False)
    forwarder.measured(route, stable, 0.0, True)
    forwarder.measured(route, canary, 0.0, False)
    metrics.observe("m", "1", "stable", 0.001, False)  # the same cell, found by text
    assert sorted(metrics.totals()) == [("m", "1", "stable", 3, 1), ("m", "2", "canary", 1, 0)]
    cell = metrics.cell("m", "1", "stable")
    assert cell is metrics.cell("m", "1", "stable")
    assert cell.w_requests == 3 and cell.w_errors == 1 and len(cell.samples) == 3
    assert sum(cell.buckets) == 3
