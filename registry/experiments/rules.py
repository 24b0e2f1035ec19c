"""Experiment decisions under a model's lock: start one (its arms become the traffic policy),
stop one (the split is cleared, the winner optionally promoted). Pure."""

from __future__ import annotations

from msgspec.structs import replace

from contract.traffic import TrafficPolicy
from registry.catalog.changes import Decision, ModelState, Op, SaveExperiment, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.decisions import audit, model_change, require_model
from registry.catalog.domain import Stage
from registry.catalog.stages import transition_stage
from registry.errors import InvalidInput, InvalidState, RolloutInProgress
from registry.experiments import stats as experiments
from registry.experiments.stats import Experiment, ExperimentSpec, Phase
from registry.serving.rules import follow_ops, refuse_unservable


def production_of(state: ModelState) -> int | None:
    held = [v.version for v in state.versions.values() if v.stage == Stage.PRODUCTION]
    return held[0] if held else None


def refuse_if_steered(state: ModelState, name: str) -> None:
    """One thing steers a model's traffic at a time: a rollout or an experiment."""
    for what, found in (("rollout", state.rollout), ("experiment", state.experiment)):
        if found is not None:
            raise RolloutInProgress(
                f"{what} {found.id} steers the traffic of {name!r}; stop it first", field=what
            )


def start(
    state: ModelState, ctx: WriteContext, name: str, spec: ExperimentSpec, experiment_id: str
) -> Decision[Experiment]:
    model = require_model(state, name)
    refuse_if_steered(state, name)
    production = production_of(state)
    experiment = experiments.start(spec, id=experiment_id, model=name, production=production,
                                   actor=ctx.principal.name, now=ctx.now,
                                   known=set(state.versions))  # fmt: skip
    ops: list[Op] = []
    for i, arm in enumerate(spec.arms):  # a version in stage None: Staging, so it is served
        found = state.versions[arm.version]
        refuse_unservable(name, found, f"arms[{i}]")
        if found.stage == Stage.NONE:
            ops += transition_stage(state, ctx, name, arm.version, StageChange(Stage.STAGING),
                                    None).ops  # fmt: skip
    policy = experiments.policy(experiment, model.traffic or TrafficPolicy(), production)
    ops += model_change(state, ctx, name, None, "model.traffic", traffic=policy).ops
    ops += [
        SaveExperiment(experiment),
        audit(ctx, "experiment.start", name, after={"id": experiment_id, "spec": spec}),
    ]
    return Decision(ops=ops, result=experiment)


def stop(
    state: ModelState, ctx: WriteContext, name: str, experiment_id: str, promote: int | None
) -> Decision[Experiment]:
    model = require_model(state, name)
    current = state.experiment
    if current is None or current.id != experiment_id:
        raise InvalidState(f"experiment {experiment_id} of {name!r} is not running", field="id")
    arms = [a.version for a in current.spec.arms]
    if promote is not None and promote not in arms:
        raise InvalidInput(f"version {promote} is not an arm of this experiment", field="promote")
    why = ctx.reason or (f"stopped; version {promote} promoted" if promote else "stopped")
    stopped = replace(current, phase=Phase.STOPPED, winner=promote, reason=why, updated_at=ctx.now)
    policy = replace(model.traffic or TrafficPolicy(), splits=[], steered_by="")
    moved: list[Op] = []
    if promote is not None and state.versions[promote].stage != Stage.PRODUCTION:
        change = StageChange(Stage.PRODUCTION, archive_existing=True)
        moved = transition_stage(state, ctx, name, promote, change, None).ops
    policy = follow_ops(policy, moved)  # a rule or shadow of the archived version goes too
    ops: list[Op] = [SaveExperiment(stopped)]
    ops += model_change(state, ctx, name, None, "model.traffic", traffic=policy).ops
    ops += moved
    ops.append(audit(ctx, "experiment.stop", name, version=promote,
                     after={"id": experiment_id, "winner": promote, "reason": why}))  # fmt: skip
    return Decision(ops=ops, result=stopped)
