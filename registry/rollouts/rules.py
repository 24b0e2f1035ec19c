"""Rollout decisions under a model's lock: start one, and turn the engine's actions into the
registry's operations (traffic policy, stage changes, stored looks, audit events) so that a
rollout's state and the traffic it implies are committed together. Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from msgspec.structs import replace

from contract.traffic import CANARY_VARIANT, Shadow, Split, TrafficPolicy
from registry.catalog.changes import AppendLook, Decision, ModelState, Op, SaveRollout, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.decisions import audit, model_change, require_model, require_version
from registry.catalog.domain import Stage
from registry.catalog.stages import transition_stage
from registry.errors import InvalidInput, InvalidState, RolloutInProgress
from registry.rollouts import engine as rollouts
from registry.rollouts.state import (
    Action,
    Moved,
    Phase,
    Promote,
    RecordLook,
    Rollout,
    RolloutSpec,
    SetShadow,
    SetWeight,
)
from registry.serving.rules import follow_ops, refuse_unservable, why_unserved

Move = Callable[[Rollout], Moved]


def start(
    state: ModelState, ctx: WriteContext, name: str, spec: RolloutSpec, rollout_id: str
) -> Decision[Rollout]:
    """A rollout of `spec.candidate` against the Production version; one active per model. A
    candidate still in stage None moves to Staging so that the local deployer serves it."""
    require_model(state, name)
    if state.experiment is not None:
        raise RolloutInProgress(
            f"experiment {state.experiment.id} steers the traffic of {name!r}; stop it first",
            field="model",
        )
    if state.rollout is not None:
        raise RolloutInProgress(
            f"rollout {state.rollout.id} of {name!r} is {state.rollout.phase}; a model has one"
            " active rollout at a time",
            field="model",
        )
    holders = [v for v in state.versions.values() if v.stage == Stage.PRODUCTION]
    if not holders:
        raise InvalidInput(
            f"{name!r} has no Production version to compare the candidate with", field="candidate"
        )
    candidate = require_version(state, name, spec.candidate)
    refuse_unservable(name, candidate, "candidate")
    baseline = holders[0].version
    rollout = rollouts.start(
        spec, id=rollout_id, model=name, baseline=baseline, actor=ctx.principal.name, now=ctx.now
    )
    ops: list[Op] = []
    if candidate.stage == Stage.NONE:
        staged = StageChange(Stage.STAGING)
        ops += transition_stage(state, ctx, name, spec.candidate, staged, None).ops
    started = {"id": rollout_id, "baseline": baseline, "spec": spec}
    ops += [
        SaveRollout(rollout),
        audit(ctx, "rollout.start", name, version=spec.candidate, after=started),
    ]
    return Decision(ops=ops, result=rollout)


def apply(
    state: ModelState, ctx: WriteContext, name: str, rollout_id: str, move: Move
) -> Decision[Rollout]:
    """Run `move` on the model's active rollout and commit what it decided."""
    current = state.rollout
    if current is None or current.id != rollout_id:
        raise InvalidState(f"rollout {rollout_id!r} of {name!r} is not active", field="id")
    left = _versions_gone(state, current)
    if left is not None:
        updated, actions = rollouts.abort(current, ctx.now, left)
    else:
        updated, actions = move(current)
    if updated == current and not actions:
        return Decision(ops=[], result=current)
    ops: list[Op] = [SaveRollout(updated)]
    for action in actions:
        state, more = _carry_out(state, ctx, name, updated, action)
        ops += more
    if updated.phase != current.phase:
        before = {"id": current.id, "phase": current.phase, "weight": current.weight}
        after = {
            "id": updated.id,
            "phase": updated.phase,
            "weight": updated.weight,
            "reason": updated.reason,
        }
        event = f"rollout.{updated.phase.value.lower()}"
        version = updated.spec.candidate
        ops.append(audit(ctx, event, name, version=version, before=before, after=after))
    return Decision(ops=ops, result=updated)


def _versions_gone(state: ModelState, rollout: Rollout) -> str | None:
    """Why the rollout cannot go on because someone moved its versions, or None."""
    baseline = state.versions.get(rollout.baseline)
    candidate = state.versions.get(rollout.spec.candidate)
    if candidate is None or candidate.stage == Stage.ARCHIVED:
        return f"candidate version {rollout.spec.candidate} was archived or deleted"
    why = why_unserved(candidate)
    if why is not None:  # e.g. moved back to stage None: the policy let go of it already
        return f"candidate version {rollout.spec.candidate} can no longer be served: {why}"
    if rollout.phase != Phase.SUCCEEDED and (
        baseline is None or baseline.stage != Stage.PRODUCTION
    ):
        return f"baseline version {rollout.baseline} left Production"
    return None


def _carry_out(
    state: ModelState, ctx: WriteContext, name: str, rollout: Rollout, action: Action
) -> tuple[ModelState, list[Op]]:
    model = require_model(state, name)
    policy = model.traffic or TrafficPolicy()
    match action:
        case RecordLook(look):
            return state, [AppendLook(rollout.id, look)]
        case SetWeight(weight):
            splits = [Split(version=rollout.spec.candidate, weight=weight, variant=CANARY_VARIANT)]
            sticky = rollout.spec.sticky or policy.sticky
            salt = policy.salt or rollout.id
            policy = replace(policy, splits=splits if weight > 0 else [], sticky=sticky, salt=salt)
        case SetShadow(percent):
            shadow = Shadow(
                version=rollout.spec.candidate,
                sample_percent=percent,
                compare_field=rollout.spec.compare_field,
            )
            policy = replace(policy, shadow=shadow if percent > 0 else None)
        case Promote():
            change = StageChange(Stage.PRODUCTION, archive_existing=True)
            moved = transition_stage(state, ctx, name, rollout.spec.candidate, change, None)
            policy = follow_ops(replace(policy, splits=[], steered_by=""), moved.ops)
            state, more = _traffic(state, ctx, name, policy)
            return state, moved.ops + more
        case _:
            assert_never(action)
    steered = rollout.id if policy.splits or policy.shadow is not None else ""
    return _traffic(state, ctx, name, replace(policy, steered_by=steered))


def _traffic(
    state: ModelState, ctx: WriteContext, name: str, policy: TrafficPolicy
) -> tuple[ModelState, list[Op]]:
    model = require_model(state, name)
    if policy == model.traffic:
        return state, []
    decided = model_change(state, ctx, name, None, "model.traffic", traffic=policy)
    return replace(state, model=decided.result), decided.ops
