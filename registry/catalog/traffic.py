"""Traffic decisions under a model's lock: set the policy (its versions must exist and be
servable), and keep it truthful when a stage change or a delete takes a version it names out
of service. Pure."""

from __future__ import annotations

from typing import TypeVar

from contract.traffic import TrafficPolicy
from registry.catalog import stages, versions
from registry.catalog.changes import Decision, ModelState, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.decisions import check_if_match, model_change, require_model
from registry.catalog.domain import Model, ModelVersion, Stage, model_etag
from registry.errors import InvalidInput, RolloutInProgress
from registry.serving.rules import check_targets, follow_ops

T = TypeVar("T")


def stable_of(state: ModelState) -> int | None:
    """The Production version among the loaded ones (load with `stage_holders`)."""
    held = [v.version for v in state.versions.values() if v.stage == Stage.PRODUCTION]
    return held[0] if held else None


def set_traffic(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    policy: TrafficPolicy | None,
    if_match: str | None,
) -> Decision[Model]:
    """Set (None: clear) how the model's traffic is split. Every version the policy names must
    exist and be servable, and no split may name the Production version. Load the named
    versions and the stage holders."""
    model = require_model(state, name)
    if state.rollout is not None:
        raise RolloutInProgress(
            f"rollout {state.rollout.id} steers the traffic of {name!r}; abort or promote it first",
            field="rollout",
        )
    if state.experiment is not None:
        raise RolloutInProgress(
            f"experiment {state.experiment.id} steers the traffic of {name!r}; stop it first",
            field="experiment",
        )
    if policy is not None:
        check_policy(policy)
        if policy.steered_by:
            raise InvalidInput(
                "steered_by is set by rollouts and experiments, not by hand", field="steered_by"
            )
        check_targets(name, policy, state.versions, stable_of(state))
    if policy == model.traffic:
        check_if_match(if_match, model_etag(model))
        return Decision(ops=[], result=model)
    return model_change(state, ctx, name, if_match, "model.traffic", traffic=policy)


def transition_stage(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    cmd: StageChange,
    if_match: str | None,
) -> Decision[ModelVersion]:
    """`stages.transition_stage`, and the traffic policy lets go of what it took out of service
    (load the running experiment too: its arms are not dropped, the change is refused)."""
    moved = stages.transition_stage(state, ctx, name, number, cmd, if_match)
    return _followed(state, ctx, name, moved)


def delete_version(
    state: ModelState,
    ctx: WriteContext,
    name: str,
    number: int,
    if_match: str | None,
    release_aliases: bool = False,
) -> Decision[None]:
    """`versions.delete_version`, and the traffic policy lets go of the deleted version."""
    decided = versions.delete_version(state, ctx, name, number, if_match, release_aliases)
    return _followed(state, ctx, name, decided)


def _followed(state: ModelState, ctx: WriteContext, name: str, decided: Decision[T]) -> Decision[T]:
    """Add to a decision that moved or deleted versions the policy change that follows it."""
    model = state.model
    if model is None or model.traffic is None or not decided.ops:
        return decided
    kept = follow_ops(model.traffic, decided.ops)
    if kept == model.traffic:
        return decided
    if state.experiment is not None:
        raise RolloutInProgress(
            f"experiment {state.experiment.id} splits the traffic of {name!r} over the versions"
            " this change moves; stop the experiment first",
            field="experiment",
        )
    change = model_change(state, ctx, name, None, "model.traffic", traffic=kept)
    return Decision(ops=[*decided.ops, *change.ops], result=decided.result)


def check_policy(policy: TrafficPolicy) -> TrafficPolicy:
    """Refuse a policy the gateway could not follow; names the field. (Whether its versions
    exist and can be served is checked against the registry: `registry.serving.rules`.)"""
    total = sum(s.weight for s in policy.splits)
    if total > 100.0 + 1e-9:
        raise InvalidInput(f"split weights add up to {total:g}%, over 100%", field="splits")
    seen: set[int] = set()
    for i, split in enumerate(policy.splits):
        if split.version in seen:
            raise InvalidInput(f"version {split.version} is split twice", field=f"splits[{i}]")
        seen.add(split.version)
    if policy.sticky is not None:
        sources = [policy.sticky.header, policy.sticky.cookie, policy.sticky.json_field]
        if sum(s is not None for s in sources) != 1:
            raise InvalidInput(
                "sticky needs exactly one of header, cookie, json_field", field="sticky"
            )
    return policy
