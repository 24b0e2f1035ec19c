"""What each console page shows, read through the same use cases as the REST API."""

from __future__ import annotations

from typing import Final

import msgspec

from registry.catalog.changes import ModelFilter, VersionFilter
from registry.catalog.domain import AuditEvent, Model, ModelVersion, Stage, model_scope
from registry.catalog.service import Registry
from registry.experiments.service import ExperimentService
from registry.experiments.stats import Experiment
from registry.rollouts.service import RolloutService
from registry.rollouts.state import DEFAULT_STEPS, Look, Mode, Phase, Rollout
from registry.web.console.charts import Chart, error_chart, latency_chart

MODELS_PER_PAGE: Final = 50
LATEST_SHOWN: Final = 3
VERSIONS_SHOWN: Final = 100
AUDIT_SHOWN: Final = 30
ROLLOUTS_SHOWN: Final = 10
EXPERIMENTS_SHOWN: Final = 10
LOOKS_SHOWN: Final = 1000


class ModelRow(msgspec.Struct, frozen=True):
    model: Model
    latest: list[ModelVersion]
    production: int | None
    staging: int | None


class ModelsPage(msgspec.Struct, frozen=True):
    query: str
    rows: list[ModelRow]
    next_after: str | None


async def models_page(registry: Registry, query: str, after: str | None) -> ModelsPage:
    found = await registry.list_models(
        ModelFilter(prefix=query or None), after, MODELS_PER_PAGE + 1
    )
    more = len(found) > MODELS_PER_PAGE
    rows = []
    for model in found[:MODELS_PER_PAGE]:
        latest = await registry.list_versions(model.name, VersionFilter(), None, LATEST_SHOWN)
        holders = {}
        for stage in (Stage.PRODUCTION, Stage.STAGING):
            held = await registry.list_versions(model.name, VersionFilter(stage=stage), None, 1)
            holders[stage] = held[0].version if held else None
        rows.append(ModelRow(model, latest, holders[Stage.PRODUCTION], holders[Stage.STAGING]))
    next_after = found[MODELS_PER_PAGE - 1].name if more else None
    return ModelsPage(query, rows, next_after)


class ModelPage(msgspec.Struct, frozen=True):
    model: Model
    versions: list[ModelVersion]
    audit: list[AuditEvent]  # newest first
    rollouts: list[Rollout]  # newest first
    active: Rollout | None
    experiments: list[Experiment]  # newest first
    production: int | None
    default_steps: str


async def model_page(
    registry: Registry, rollouts: RolloutService, experiments: ExperimentService, name: str
) -> ModelPage:
    model = await registry.get_model(name)
    versions = await registry.list_versions(name, VersionFilter(), None, VERSIONS_SHOWN)
    head, _ = await registry.store.head(model_scope(model.name))
    audit = await registry.audit_events(name, None, max(0, head - AUDIT_SHOWN), AUDIT_SHOWN)
    history = await rollouts.of_model(name, ROLLOUTS_SHOWN)
    production = next((v.version for v in versions if v.stage == Stage.PRODUCTION), None)
    return ModelPage(
        model=model,
        versions=versions,
        audit=audit[::-1],
        rollouts=history,
        active=next((r for r in history if r.active), None),
        experiments=await experiments.of_model(name, EXPERIMENTS_SHOWN),
        production=production,
        default_steps=" ".join(f"{s:g}" for s in DEFAULT_STEPS),
    )


class PlanStep(msgspec.Struct, frozen=True):
    weight: float
    state: str  # done | current | next | skipped


class RolloutPage(msgspec.Struct, frozen=True):
    rollout: Rollout
    looks: list[Look]  # newest first
    plan: list[PlanStep]
    latency: Chart
    errors: Chart
    baseline_share: float
    candidate_share: float
    shadow: bool


def plan_of(rollout: Rollout) -> list[PlanStep]:
    steps = (
        rollout.spec.steps if rollout.spec.mode == Mode.CANARY else [rollout.spec.shadow_percent]
    )
    out = []
    for i, weight in enumerate(steps):
        if rollout.phase == Phase.SUCCEEDED or i < rollout.step:
            state = "done"
        elif i == rollout.step and rollout.active:
            state = "current"
        elif rollout.active:
            state = "next"
        else:
            state = "skipped"
        out.append(PlanStep(weight, state))
    return out


async def rollout_page(rollouts: RolloutService, rollout_id: str) -> RolloutPage:
    rollout = await rollouts.get(rollout_id)
    looks = await rollouts.looks(rollout_id, 0, LOOKS_SHOWN)
    shadow = rollout.spec.mode == Mode.SHADOW
    return RolloutPage(
        rollout=rollout,
        looks=looks[::-1],
        plan=plan_of(rollout),
        latency=latency_chart(rollout, looks),
        errors=error_chart(rollout, looks),
        baseline_share=100.0 if shadow else 100.0 - rollout.weight,
        candidate_share=rollout.weight,
        shadow=shadow,
    )
