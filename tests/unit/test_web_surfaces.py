"""The registry's public web surfaces, pinned so that a change to one is a deliberate one:

- the OpenAPI document the registry serves (`/schema/openapi.json`: `/api/v1`, the MLflow
  dialect's served routes, the health probes);
- the MLflow routes, method and path (the stock client calls them by name; the catch-all
  routes that answer `ENDPOINT_NOT_FOUND` included);
- the registry's metric families: name, type, label names.

After changing one on purpose, rewrite the snapshots with
`MODELYARD_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_web_surfaces.py` and
review the diff of tests/snapshots/. Building the app does no IO (its lifespan is not run).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from prometheus_client.parser import text_string_to_metric_families

from modelyard.app import create_app
from modelyard.settings import load_settings
from registry.rollouts.judge import ArmSummary, JudgeMemory, Outcome, Verdict
from registry.rollouts.state import Look, Phase, Rollout, RolloutSpec
from registry.web.metrics import RegistryMetrics
from registry.web.mlflow.api import MLFLOW_PREFIXES

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
#: Paths of the MLflow dialect: its prefixes, and MLflow's UI endpoints (none served today).
MLFLOW_PATHS = (*MLFLOW_PREFIXES, "/ajax-api")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def matches_snapshot(name: str, text: str) -> None:
    snapshot = SNAPSHOTS / name
    if os.environ.get("MODELYARD_UPDATE_SNAPSHOTS"):
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot {snapshot.name}: see this module's docstring"
    assert text == snapshot.read_text(), f"{name} changed: see this module's docstring"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    data = tmp_path_factory.mktemp("data")
    return create_app(load_settings({}, data_dir=str(data)), "registry", env={})


def test_the_openapi_document_is_as_pinned(app: Litestar) -> None:
    document = app.openapi_schema.to_schema()
    assert any(path.startswith("/api/v1/") for path in document["paths"])
    text = msgspec.json.format(msgspec.json.encode(document, order="sorted"), indent=2)
    matches_snapshot("openapi.json", text.decode() + "\n")


def test_the_mlflow_routes_are_as_pinned(app: Litestar) -> None:
    lines = sorted(
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path.startswith(MLFLOW_PATHS)
        for method in route.methods
        if method != "OPTIONS"  # Litestar answers OPTIONS on every route by itself
    )
    assert "POST /api/2.0/mlflow/registered-models/create" in lines
    matches_snapshot("mlflow-routes.txt", "\n".join(lines) + "\n")


def rollout(phase: Phase, weight: float, last: Look | None = None) -> Rollout:
    spec = RolloutSpec(candidate=2, steps=[10, 100])
    return Rollout(
        id="ro-1",
        model="iris",
        baseline=1,
        spec=spec,
        phase=phase,
        step=0,
        weight=weight,
        step_started_at=T0,
        next_look_at=T0,
        looks_in_step=0,
        memory=JudgeMemory(),
        created_by="me",
        created_at=T0,
        updated_at=T0,
        looks=0 if last is None else last.seq,
        last=last,
    )


def test_the_metric_families_are_as_pinned() -> None:
    """Every family with a sample of each kind: its name, type and label names."""
    metrics = RegistryMetrics()
    metrics.request("GET", "/api/v1/models/{name}", 200, 0.002)
    arm = ArmSummary(100, 0, 0.0, 100, 10.0, 15.0, 20.0)
    verdict = Verdict(Outcome.PASS, "why", 1, arm, arm)
    look = Look(1, T0, Phase.PROGRESSING, 0, 10, verdict)
    pending, progressing = rollout(Phase.PENDING, 0), rollout(Phase.PROGRESSING, 10, look)
    metrics.moved(pending, progressing)
    metrics.active([progressing])
    lines = []
    for family in text_string_to_metric_families(metrics.render().decode()):
        labels = sorted({name for s in family.samples for name in s.labels} - {"le"})
        lines.append(f"{family.name} {family.type} {','.join(labels)}")
    matches_snapshot("registry-metrics.txt", "\n".join(sorted(lines)) + "\n")
