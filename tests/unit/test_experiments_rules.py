"""Experiment decisions on hand-built states: stopping gives back the traffic policy the model
had before (or, with a winner promoted, that policy without its splits), and a bandit's
rebalance moves the policy only when it is due. No IO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from msgspec.structs import replace

from contract.traffic import HeaderRule, Shadow, Split, StickyKey, TrafficPolicy
from registry.catalog.changes import (
    Audit,
    ModelState,
    Op,
    SaveExperiment,
    UpdateModel,
    UpdateVersion,
    WriteContext,
)
from registry.catalog.domain import Model, ModelVersion, Principal, Role, Stage, VersionStatus
from registry.errors import InvalidState
from registry.experiments import rules
from registry.experiments.stats import Experiment, ExperimentSpec, Phase, Tally

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CTX = WriteContext(principal=Principal(1, "alice", Role.DEPLOYER), now=NOW)
DIGEST = "sha256:" + "ab" * 32

# before the experiment: a 10 % canary of v3, a header rule to v2, a shadow of v4, a deadline
BEFORE = TrafficPolicy(
    splits=[Split(3, 10.0)],
    sticky=StickyKey(cookie="uid"),
    rules=[HeaderRule("x-beta", "1", 2)],
    shadow=Shadow(4, 20.0),
    salt="s0",
    deadline_ms=2500,
)


def version(n: int, stage: Stage = Stage.STAGING) -> ModelVersion:
    return ModelVersion(
        "iris",
        n,
        stage,
        VersionStatus.READY,
        "",
        "s3://b/k",
        DIGEST,
        1,
        "bento",
        None,
        [],
        None,
        None,
        None,
        {},
        {},
        {},
        "alice",
        NOW,
        NOW,
        1,
    )


def state(traffic: TrafficPolicy | None, *extra: ModelVersion) -> ModelState:
    versions = [version(1, Stage.PRODUCTION), version(2), version(3), version(4), *extra]
    model = Model("iris", "", {}, "alice", NOW, NOW, 1, 9, traffic=traffic)
    return ModelState(model, {v.version: v for v in versions}, {})


def spec(mode: str = "fixed") -> ExperimentSpec:
    body = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": {"header": "x-user"},
        "mode": mode,
    }
    return msgspec.convert(body, ExperimentSpec)


def running(before: TrafficPolicy | None, mode: str = "fixed") -> tuple[ModelState, Experiment]:
    """The state once the experiment started on a model whose policy was `before`."""
    started = rules.start(state(before), CTX, "iris", spec(mode), "ex-1")
    return replace(state(traffic_of(started.ops)), experiment=started.result), started.result


def traffic_of(ops: list[Op]) -> TrafficPolicy | None:
    (model,) = [op.model for op in ops if isinstance(op, UpdateModel)]
    return model.traffic


def test_start_keeps_the_policy_it_replaces() -> None:
    s, experiment = running(BEFORE)
    assert experiment.before is not None and experiment.before.traffic == BEFORE
    steered = s.model.traffic if s.model is not None else None
    assert steered is not None and steered.steered_by == "ex-1"
    assert steered.splits == [Split(2, 50.0, "arm-v2")] and steered.sticky == spec().sticky
    assert (steered.rules, steered.shadow, steered.deadline_ms) == (
        BEFORE.rules,
        BEFORE.shadow,
        2500,
    )
    decoded = msgspec.json.decode(msgspec.json.encode(experiment), type=Experiment)
    assert decoded == experiment  # persisted as JSON: no new column


def test_stopping_restores_the_policy_from_before() -> None:
    s, _ = running(BEFORE)
    stopped = rules.stop(s, CTX, "iris", "ex-1", None)
    assert traffic_of(stopped.ops) == BEFORE
    assert stopped.result.phase == Phase.STOPPED and stopped.result.winner is None
    none_before, _ = running(None)
    assert traffic_of(rules.stop(none_before, CTX, "iris", "ex-1", None).ops) is None


def test_promoting_the_winner_gives_it_the_traffic() -> None:
    s, _ = running(BEFORE)
    promoted = rules.stop(s, CTX, "iris", "ex-1", 2)
    stages = {
        op.version.version: op.version.stage for op in promoted.ops if isinstance(op, UpdateVersion)
    }
    assert stages == {2: Stage.PRODUCTION, 1: Stage.ARCHIVED}
    # the splits go (v2, Production now, takes the rest); the header rule to v2 and the
    # shadow of v4 stay, as does everything else the model had
    after = traffic_of(promoted.ops)
    assert after == replace(BEFORE, splits=[])


def test_what_left_service_meanwhile_is_not_restored() -> None:
    s, _ = running(BEFORE)
    gone = replace(s, versions={k: v for k, v in s.versions.items() if k != 4})  # v4 deleted
    archived = replace(gone, versions={**gone.versions, 3: version(3, Stage.ARCHIVED)})
    assert traffic_of(rules.stop(archived, CTX, "iris", "ex-1", None).ops) == replace(
        BEFORE, splits=[], shadow=None
    )
    assert rules.to_restore(s.experiment) == (2, 3, 4)  # type: ignore[arg-type]


def test_an_experiment_started_before_the_policy_was_kept_stops_as_it_did() -> None:
    s, experiment = running(BEFORE)
    legacy = replace(s, experiment=replace(experiment, before=None))
    after = traffic_of(rules.stop(legacy, CTX, "iris", "ex-1", None).ops)
    assert after == replace(s.model.traffic, splits=[], steered_by="")  # type: ignore[union-attr]


def test_a_bandit_rebalances_only_when_due() -> None:
    s, experiment = running(BEFORE, mode="bandit")
    tallies = {1: Tally(1, 2000, 200.0, 200.0), 2: Tally(2, 2000, 300.0, 300.0)}
    early = rules.rebalance(s, CTX, "iris", "ex-1", tallies, every_s=600)
    assert early.ops == [] and early.result is experiment
    later = replace(CTX, now=NOW + timedelta(minutes=10))
    moved = rules.rebalance(s, later, "iris", "ex-1", tallies, every_s=600)
    assert [type(op) for op in moved.ops] == [SaveExperiment, UpdateModel, Audit, Audit]
    split = traffic_of(moved.ops).splits  # type: ignore[union-attr]
    assert split[0].version == 2 and 50 < split[0].weight <= 60  # v2 converts better
    assert moved.result.allocation is not None and moved.result.allocation.updates == 1
    again = rules.rebalance(s, later, "iris", "ex-1", tallies, every_s=600)
    assert again.result == moved.result  # the same seed: the same update
    with pytest.raises(InvalidState) as fixed:
        rules.rebalance(running(BEFORE)[0], later, "iris", "ex-1", tallies, every_s=600)
    assert fixed.value.field == "mode"
