"""Experiment decisions under a model's lock: start one (its arms become the traffic policy,
the policy before is kept in the experiment), rebalance a bandit's arms, stop one (the policy
from before comes back, or with a winner promoted, that policy without its splits: the new
Production version takes the traffic). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from msgspec.structs import replace

from contract.traffic import TrafficPolicy, references
from registry.catalog.changes import Decision, ModelState, Op, SaveExperiment, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.decisions import audit, model_change, require_model
from registry.catalog.domain import Stage
from registry.catalog.stages import transition_stage
from registry.errors import InvalidInput, InvalidState, RolloutInProgress
from registry.experiments import assignment, bandit
from registry.experiments.domain import Experiment, ExperimentSpec, Phase, Tally
from registry.serving.rules import follow, follow_ops, refuse_unservable


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
    experiment = assignment.start(
        spec,
        id=experiment_id,
        model=name,
        production=production,
        actor=ctx.principal.name,
        now=ctx.now,
        known=set(state.versions),
        traffic=model.traffic,
    )
    ops: list[Op] = []
    for i, arm in enumerate(spec.arms):  # a version in stage None: Staging, so it is served
        found = state.versions[arm.version]
        refuse_unservable(name, found, f"arms[{i}]")
        if found.stage == Stage.NONE:
            change = StageChange(Stage.STAGING)
            ops += transition_stage(state, ctx, name, arm.version, change, None).ops
    policy = assignment.policy(experiment, model.traffic or TrafficPolicy(), production)
    ops += model_change(state, ctx, name, None, "model.traffic", traffic=policy).ops
    ops += [
        SaveExperiment(experiment),
        audit(ctx, "experiment.start", name, after={"id": experiment_id, "spec": spec}),
    ]
    return Decision(ops=ops, result=experiment)


def restored(state: ModelState, current: Experiment, promote: int | None) -> TrafficPolicy | None:
    """The policy the model goes back to: the one it had before the experiment (without its
    splits when a winner is promoted), minus what can no longer be served (load the versions
    it names). An experiment that did not record it: the policy now, without the splits."""
    model = require_model(state, current.model)
    if current.before is None:
        return replace(model.traffic or TrafficPolicy(), splits=[], steered_by="")
    before = current.before.traffic
    if before is None:
        return None
    if promote is not None:
        before = replace(before, splits=[])
    named = {number for _, number in references(before)}
    found = [state.versions[n] for n in sorted(named) if n in state.versions]
    return follow(before, found, deleted=[n for n in named if n not in state.versions])


def to_restore(experiment: Experiment) -> tuple[int, ...]:
    """The versions `restored` needs loaded, besides the arms."""
    before = experiment.before.traffic if experiment.before is not None else None
    return tuple(sorted({n for _, n in references(before)})) if before is not None else ()


def stop(
    state: ModelState, ctx: WriteContext, name: str, experiment_id: str, promote: int | None
) -> Decision[Experiment]:
    require_model(state, name)
    current = state.experiment
    if current is None or current.id != experiment_id:
        raise InvalidState(f"experiment {experiment_id} of {name!r} is not running", field="id")
    arms = [a.version for a in current.spec.arms]
    if promote is not None and promote not in arms:
        raise InvalidInput(f"version {promote} is not an arm of this experiment", field="promote")
    why = ctx.reason or (f"stopped; version {promote} promoted" if promote else "stopped")
    stopped = replace(current, phase=Phase.STOPPED, winner=promote, reason=why, updated_at=ctx.now)
    policy = restored(state, current, promote)
    moved: list[Op] = []
    if promote is not None and state.versions[promote].stage != Stage.PRODUCTION:
        change = StageChange(Stage.PRODUCTION, archive_existing=True)
        moved = transition_stage(state, ctx, name, promote, change, None).ops
    if policy is not None:  # a rule or shadow of the archived version goes too
        policy = follow_ops(policy, moved)
    ops: list[Op] = [SaveExperiment(stopped)]
    ops += model_change(state, ctx, name, None, "model.traffic", traffic=policy).ops
    ops += moved
    after = {"id": experiment_id, "winner": promote, "reason": why}
    ops.append(audit(ctx, "experiment.stop", name, version=promote, after=after))
    return Decision(ops=ops, result=stopped)


def seed(experiment: Experiment) -> int:
    """The bandit's random seed for its next update: reproducible from the experiment."""
    updates = experiment.allocation.updates if experiment.allocation is not None else 0
    digest = hashlib.blake2b(f"{experiment.id}:{updates}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rebalance(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    experiment_id: str,
    tallies: Mapping[int, Tally],
    every_s: float,
) -> Decision[Experiment]:
    """One bandit update of the running experiment, if `every_s` seconds have passed since the
    last one (else nothing changes): new served ranges, the traffic policy that follows them."""
    model = require_model(state, name)
    current = state.experiment
    if current is None or current.id != experiment_id:
        raise InvalidState(f"experiment {experiment_id} of {name!r} is not running", field="id")
    if current.allocation is None:
        raise InvalidState(f"experiment {experiment_id} is not in bandit mode", field="mode")
    if not bandit.due(current, ctx.now, every_s):
        return Decision(ops=[], result=current)
    rng = np.random.default_rng(seed(current))
    allocation = bandit.update(current, tallies, rng, ctx.now)
    updated = replace(current, allocation=allocation, updated_at=ctx.now)
    policy = assignment.policy(updated, model.traffic or TrafficPolicy(), production_of(state))
    ops: list[Op] = [SaveExperiment(updated)]
    if policy != model.traffic:
        ops += model_change(state, ctx, name, None, "model.traffic", traffic=policy).ops
    weights = [{"version": s.version, "weight": s.served / 100} for s in allocation.arms]
    after = {"id": experiment_id, "weights": weights, "update": allocation.updates}
    ops.append(audit(ctx, "experiment.rebalance", name, after=after))
    return Decision(ops=ops, result=updated)
