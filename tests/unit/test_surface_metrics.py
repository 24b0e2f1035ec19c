"""The gateway's Prometheus metrics are a public surface (dashboards and alerts query them):
every family's name, type and label names are pinned here. After changing them on purpose,
rewrite the snapshot with
`MODELYARD_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_surface_metrics.py` and
review the diff of tests/snapshots/gateway-metrics.txt."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "gateway-metrics.txt"


def recorded() -> GatewayMetrics:
    """Metrics with a sample in every family."""
    metrics = GatewayMetrics()
    metrics.observe("iris", "1", "stable", 0.004, False)
    metrics.observe("iris", "2", "canary", 0.3, True)
    metrics.shadow_answer("iris", "3", 0.01, True)
    metrics.shadow_answer("iris", "3", 0.02, None)
    metrics.shadow("iris", "3").dropped += 1
    metrics.breakers = lambda: {"http://v1:3000": "closed", "http://v2:3000": "open"}
    metrics.route_revision = 12
    metrics.route_models = 3
    metrics.registry_up = True
    return metrics


def surface(text: str) -> str:
    """One line per sample name: the name, its family's type, its label names (sorted)."""
    lines = []
    for family in text_string_to_metric_families(text):
        labels: dict[str, set[str]] = {}
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
        for name, names in labels.items():
            lines.append(f"{name} {family.type} {','.join(sorted(names)) or '-'}")
    return "\n".join(lines) + "\n"


def test_metric_names_types_and_labels_are_as_pinned() -> None:
    found = surface(recorded().render().decode())
    if os.environ.get("MODELYARD_UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(found)
    assert SNAPSHOT.exists(), f"no snapshot {SNAPSHOT.name}: see this module's docstring"
    assert found == SNAPSHOT.read_text(), "the gateway's metric names, types or labels changed"


def test_the_values_are_the_counts() -> None:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(recorded().render().decode())
        for s in family.samples
    }
    stable = (("model", "iris"), ("variant", "stable"), ("version", "1"))
    canary = (("model", "iris"), ("variant", "canary"), ("version", "2"))
    shadow = (("model", "iris"), ("version", "3"))
    assert samples["modelyard_gateway_requests_total", stable] == 1
    assert samples["modelyard_gateway_errors_total", stable] == 0
    assert samples["modelyard_gateway_errors_total", canary] == 1
    duration = "modelyard_gateway_request_duration_seconds"
    assert samples[f"{duration}_bucket", (("le", "0.0025"), *stable)] == 0
    assert samples[f"{duration}_bucket", (("le", "0.005"), *stable)] == 1
    assert samples[f"{duration}_bucket", (("le", "+Inf"), *canary)] == 1
    assert samples[f"{duration}_sum", canary] == 0.3
    assert samples[f"{duration}_count", canary] == 1
    assert samples["modelyard_gateway_shadow_compared_total", shadow] == 1
    assert samples["modelyard_gateway_shadow_agreed_total", shadow] == 1
    assert samples["modelyard_gateway_shadow_dropped_total", shadow] == 1
    assert samples["modelyard_gateway_shadow_failed_total", shadow] == 1
    breaker = "modelyard_gateway_upstream_breaker_open"
    assert samples[breaker, (("state", "open"), ("upstream", "http://v2:3000"))] == 1
    assert samples[breaker, (("state", "closed"), ("upstream", "http://v1:3000"))] == 0
    assert samples["modelyard_gateway_route_revision", ()] == 12
    assert samples["modelyard_gateway_route_models", ()] == 3
    assert samples["modelyard_gateway_registry_up", ()] == 1


def test_more_families_follow_on_the_same_page() -> None:
    metrics = recorded()
    metrics.extra = lambda: b"# TYPE registry_thing counter\nregistry_thing_total 3\n"
    text = metrics.render().decode()
    assert text.endswith(
        "modelyard_gateway_registry_up 1.0\n# TYPE registry_thing counter\nregistry_thing_total 3\n"
    )
