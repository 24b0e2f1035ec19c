"""Traffic policies against the versions they name, on hand-built states: a policy names only
versions that exist and can be served, never the stable one in a split; a stage change or a
delete that takes a named version out of service takes it out of the policy too. No IO."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from msgspec.structs import replace

from contract.traffic import HeaderRule, Shadow, Split, TrafficPolicy
from registry.catalog import traffic as traffic_rules
from registry.catalog.changes import Audit, ModelState, UpdateModel, UpdateVersion, WriteContext
from registry.catalog.commands import StageChange
from registry.catalog.domain import Model, ModelVersion, Principal, Role, Stage, VersionStatus
from registry.errors import InvalidInput, NotFound, RolloutInProgress, VersionNotServed
from registry.experiments import rules as experiment_rules
from registry.experiments.stats import ExperimentSpec
from registry.rollouts import engine as rollouts
from registry.rollouts import rules as rollout_rules
from registry.rollouts.state import Phase, RolloutSpec
from registry.serving.rules import check_targets, follow, why_unserved

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
CTX = WriteContext(principal=Principal(1, "alice", Role.DEPLOYER), now=NOW)
DIGEST = "sha256:" + "ab" * 32


def version(
    n: int, stage: Stage = Stage.NONE, *, endpoint: str | None = None, fmt: str = "bento"
) -> ModelVersion:
    artifact = None if fmt != "bento" else "s3://b/k"
    return ModelVersion(
        "iris",
        n,
        stage,
        VersionStatus.READY,
        "",
        artifact,
        DIGEST,
        1,
        fmt,
        None,
        [],
        endpoint,
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


def state(*versions: ModelVersion, traffic: TrafficPolicy | None = None) -> ModelState:
    model = Model("iris", "", {}, "alice", NOW, NOW, 1, 9, traffic=traffic)
    return ModelState(model, {v.version: v for v in versions}, {})


def policy(**kw: object) -> TrafficPolicy:
    return msgspec.convert(kw, TrafficPolicy)


SERVED = (
    version(1, Stage.PRODUCTION),
    version(2, Stage.STAGING),
    version(3, endpoint="http://m3:3000"),  # stage None, but it answers at its own endpoint
    version(4, Stage.ARCHIVED, endpoint="http://m4:3000"),
)


@pytest.mark.parametrize(
    "body",
    [
        {"splits": [{"version": 2, "weight": 10}, {"version": 3, "weight": 5}]},
        {"rules": [{"header": "x-beta", "value": "1", "version": 4}]},
        {"rules": [{"header": "x-old", "value": "1", "version": 1}]},  # a rule may name stable
        {"shadow": {"version": 3}},
        {},
    ],
)
def test_servable_versions_pass(body: dict[str, object]) -> None:
    p = policy(**body)
    assert check_targets("iris", p, {v.version: v for v in SERVED}, stable=1) is p


@pytest.mark.parametrize(
    ("body", "field", "number"),
    [
        ({"splits": [{"version": 2, "weight": 10}, {"version": 5, "weight": 5}]}, "splits[1]", 5),
        ({"rules": [{"header": "x-beta", "value": "1", "version": 6}]}, "rules[0]", 6),
        ({"shadow": {"version": 7}}, "shadow", 7),
    ],
)
def test_a_version_that_cannot_be_served_is_refused_with_its_field(
    body: dict[str, object], field: str, number: int
) -> None:
    unserved = {
        5: version(5),  # stage None, no endpoint
        6: version(6, Stage.ARCHIVED),
        7: version(7, Stage.STAGING, fmt="mlflow"),  # Staging, but nothing to run
    }
    known = {**{v.version: v for v in SERVED}, **unserved}
    with pytest.raises(VersionNotServed) as err:
        check_targets("iris", policy(**body), known, stable=1)
    assert err.value.field == f"{field}.version" and err.value.code == "VERSION_NOT_SERVED"
    assert f"version {number} of 'iris' cannot be served" in err.value.message
    assert why_unserved(unserved[number]) in err.value.message  # and why


def test_why_names_the_stage_and_the_missing_endpoint() -> None:
    assert "stage None and has no endpoint" in (why_unserved(version(5)) or "")
    assert "stage Archived" in (why_unserved(version(6, Stage.ARCHIVED)) or "")
    assert "neither an endpoint nor a Bento" in (
        why_unserved(version(7, Stage.STAGING, fmt="mlflow")) or ""
    )


def test_a_version_that_does_not_exist_is_not_found() -> None:
    with pytest.raises(NotFound) as err:
        check_targets(
            "iris",
            policy(rules=[{"header": "h", "value": "v", "version": 9}]),
            {v.version: v for v in SERVED},
            stable=1,
        )
    assert err.value.field == "rules[0].version" and "version 9 of 'iris'" in err.value.message


def test_a_split_of_the_stable_version_is_invalid() -> None:
    p = policy(splits=[{"version": 2, "weight": 10}, {"version": 1, "weight": 50}])
    with pytest.raises(InvalidInput) as err:
        check_targets("iris", p, {v.version: v for v in SERVED}, stable=1)
    assert err.value.field == "splits[1].version" and "Production" in err.value.message


def test_set_traffic_checks_against_the_loaded_stages() -> None:
    p = policy(splits=[{"version": 2, "weight": 10}])
    decided = traffic_rules.set_traffic(state(*SERVED), CTX, "iris", p, None)
    assert decided.result.traffic == p
    archived = state(version(1, Stage.PRODUCTION), version(2, Stage.ARCHIVED))
    with pytest.raises(VersionNotServed):
        traffic_rules.set_traffic(archived, CTX, "iris", p, None)
    promoted = state(version(2, Stage.PRODUCTION))
    with pytest.raises(InvalidInput) as err:
        traffic_rules.set_traffic(promoted, CTX, "iris", p, None)
    assert err.value.field == "splits[0].version"


# --- a stage change or a delete takes the version out of the policy --------------------------

BUSY = policy(
    splits=[{"version": 2, "weight": 10}, {"version": 3, "weight": 5}],
    rules=[{"header": "x-beta", "value": "1", "version": 2}],
    shadow={"version": 2, "sample_percent": 50},
    sticky={"header": "x-user"},
)


def traffic_after(decided_ops: list[object]) -> TrafficPolicy | None:
    updates = [op.model for op in decided_ops if isinstance(op, UpdateModel)]
    assert len(updates) == 1, decided_ops
    return updates[0].traffic


@pytest.mark.parametrize("stage", [Stage.ARCHIVED, Stage.NONE])
def test_moving_a_named_version_out_of_service_drops_it_from_the_policy(stage: Stage) -> None:
    s = state(*SERVED, traffic=BUSY)
    decided = traffic_rules.transition_stage(s, CTX, "iris", 2, StageChange(stage=stage), None)
    assert decided.result.stage == stage
    kept = traffic_after(decided.ops)
    assert kept == replace(BUSY, splits=[Split(3, 5.0)], rules=[], shadow=None)
    actions = [op.action for op in decided.ops if isinstance(op, Audit)]
    assert actions == ["version.stage", "model.traffic"]  # one transaction, both audited


def test_an_endpoint_version_stays_servable_when_archived() -> None:
    s = state(*SERVED, traffic=BUSY)
    decided = traffic_rules.transition_stage(s, CTX, "iris", 3, StageChange(Stage.ARCHIVED), None)
    assert not any(isinstance(op, UpdateModel) for op in decided.ops)


def test_promoting_the_canary_drops_its_split_and_what_named_the_archived_stable() -> None:
    p = policy(
        splits=[{"version": 2, "weight": 10}],
        rules=[{"header": "x-old", "value": "1", "version": 1}],
    )
    s = state(*SERVED, traffic=p)
    change = StageChange(stage=Stage.PRODUCTION, archive_existing=True)
    decided = traffic_rules.transition_stage(s, CTX, "iris", 2, change, None)
    assert traffic_after(decided.ops) == replace(p, splits=[], rules=[])


def test_deleting_a_named_version_drops_it() -> None:
    s = state(*SERVED, traffic=policy(shadow={"version": 3}))
    decided = traffic_rules.delete_version(s, CTX, "iris", 3, None)
    assert traffic_after(decided.ops) == TrafficPolicy()


def test_a_change_that_leaves_the_policy_alone_adds_nothing() -> None:
    s = state(*SERVED, version(5), traffic=BUSY)
    decided = traffic_rules.transition_stage(s, CTX, "iris", 5, StageChange(Stage.ARCHIVED), None)
    assert [type(op) for op in decided.ops] == [UpdateVersion, Audit]


def test_an_experiment_arm_cannot_be_moved_out_from_under_it() -> None:
    p = replace(
        policy(splits=[{"version": 2, "weight": 50, "variant": "arm-v2"}]), steered_by="ex-1"
    )
    spec = msgspec.convert(
        {
            "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
            "sticky": {"header": "x-user"},
        },
        ExperimentSpec,
    )
    started = experiment_rules.start(state(*SERVED), CTX, "iris", spec, "ex-1").result
    s = replace(state(*SERVED, traffic=p), experiment=started)
    with pytest.raises(RolloutInProgress) as err:
        traffic_rules.transition_stage(s, CTX, "iris", 2, StageChange(Stage.ARCHIVED), None)
    assert err.value.field == "experiment" and "ex-1" in err.value.message


def test_follow_keeps_the_policy_object_when_nothing_changes() -> None:
    assert follow(BUSY, [version(5, Stage.ARCHIVED)]) is BUSY
    assert follow(BUSY, [], deleted=[3]).splits == [Split(2, 10.0)]
    assert follow(BUSY, [], deleted=[2]).rules == [] and follow(BUSY, [], [2]).shadow is None
    assert follow(BUSY, [replace(SERVED[1], stage=Stage.ARCHIVED)]).rules == []
    assert follow(BUSY, [version(2, Stage.STAGING)]) is BUSY
    assert BUSY.rules == [HeaderRule("x-beta", "1", 2)] and BUSY.shadow == Shadow(2, 50.0)


# --- rollouts and experiments stage their versions, and refuse what cannot be served ---------


def test_a_rollout_stages_a_candidate_and_refuses_an_archived_or_unrunnable_one() -> None:
    spec = RolloutSpec(candidate=5)
    started = rollout_rules.start(state(*SERVED, version(5)), CTX, "iris", spec, "ro-1")
    staged = [op.version for op in started.ops if isinstance(op, UpdateVersion)]
    assert [(v.version, v.stage) for v in staged] == [(5, Stage.STAGING)]
    for bad in (version(5, Stage.ARCHIVED), version(5, fmt="mlflow")):
        with pytest.raises(VersionNotServed) as err:
            rollout_rules.start(state(*SERVED, bad), CTX, "iris", spec, "ro-1")
        assert err.value.field == "candidate"


def test_an_experiment_refuses_an_archived_arm() -> None:
    spec = msgspec.convert(
        {
            "arms": [{"version": 1, "weight": 50}, {"version": 6, "weight": 50}],
            "sticky": {"header": "x-user"},
        },
        ExperimentSpec,
    )
    with pytest.raises(VersionNotServed) as err:
        experiment_rules.start(
            state(*SERVED, version(6, Stage.ARCHIVED)), CTX, "iris", spec, "ex-1"
        )
    assert err.value.field == "arms[1]"


def test_a_rollout_whose_candidate_left_service_aborts_instead_of_splitting_again() -> None:
    spec = RolloutSpec(candidate=2, steps=[10, 50])
    started = rollout_rules.start(state(*SERVED), CTX, "iris", spec, "ro-1").result
    canary = replace(
        policy(splits=[{"version": 2, "weight": 10, "variant": "canary"}]), steered_by="ro-1"
    )
    steered = replace(state(*SERVED, traffic=canary), rollout=started)
    moved = traffic_rules.transition_stage(steered, CTX, "iris", 2, StageChange(Stage.NONE), None)
    assert traffic_after(moved.ops) == replace(canary, splits=[])  # let go of at once
    after = replace(
        state(version(1, Stage.PRODUCTION), version(2), traffic=replace(canary, splits=[])),
        rollout=started,
    )
    decided = rollout_rules.apply(after, CTX, "iris", "ro-1", lambda r: rollouts.step(r, None, NOW))
    assert decided.result.phase == Phase.ABORTED
    assert "can no longer be served" in (decided.result.reason or "")
    policies = [op.model.traffic for op in decided.ops if isinstance(op, UpdateModel)]
    assert all(p is None or not p.splits for p in policies)  # the split is not put back
