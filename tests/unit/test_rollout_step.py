"""The rollout engine, tick by tick: a fake clock and synthetic snapshots, no IO."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from registry.catalog.changes import ModelState, UpdateModel
from registry.catalog.domain import Stage
from registry.errors import InvalidInput, InvalidState
from registry.rollouts import engine as rollouts
from registry.rollouts import rules as rollout_rules
from registry.rollouts.judge import ArmStats, Outcome
from registry.rollouts.state import (
    Action,
    Mode,
    Phase,
    Promote,
    RecordLook,
    Rollout,
    RolloutSpec,
    SetShadow,
    SetWeight,
    ShadowStats,
    Snapshot,
)
from tests.unit.test_rules import CTX, model, version

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
INTERVAL = 10.0


def spec(**kw: object) -> RolloutSpec:
    fields: dict[str, object] = {
        "candidate": 2,
        "interval_s": INTERVAL,
        "min_sample_per_arm": 200,
        "max_inconclusive": 3,
    }
    fields.update(kw)
    return msgspec.convert(fields, RolloutSpec)


def arm(requests: int, error_rate: float = 0.0, median_ms: float = 20.0, seed: int = 1) -> ArmStats:
    rng = random.Random(seed)
    errors = round(requests * error_rate)
    latencies = [rng.lognormvariate(0, 0.3) * median_ms for _ in range(requests - errors)]
    return ArmStats(requests, errors, latencies)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float = INTERVAL) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def begin(s: RolloutSpec) -> tuple[Rollout, Clock]:
    clock = Clock()
    state = rollouts.start(s, id="ro-1", model="iris", baseline=1, actor="alice", now=clock.now)
    state, _ = rollouts.step(state, None, clock.now)
    assert state.phase == Phase.PROGRESSING
    return state, clock


def tick(
    state: Rollout, clock: Clock, baseline: ArmStats, candidate: ArmStats, seconds: float = INTERVAL
) -> tuple[Rollout, list[Action]]:
    now = clock.advance(seconds)
    return rollouts.step(state, Snapshot(state.step_started_at, baseline, candidate), now)


def weights(actions: list[Action]) -> list[float]:
    return [a.weight for a in actions if isinstance(a, SetWeight)]


def test_pending_sets_the_first_weight() -> None:
    state = rollouts.start(spec(), id="ro-1", model="iris", baseline=1, actor="a", now=T0)
    assert state.phase == Phase.PENDING and state.weight == 0
    moved, actions = rollouts.step(state, None, T0)
    assert moved.phase == Phase.PROGRESSING and moved.weight == 1.0
    assert actions == [SetWeight(1.0)]
    assert moved.next_look_at == T0 + timedelta(seconds=INTERVAL)


def test_a_healthy_candidate_walks_every_step_then_promotes() -> None:
    state, clock = begin(spec())
    seen = [state.weight]
    for i in range(10):
        state, actions = tick(state, clock, arm(1000, seed=i), arm(1000, seed=100 + i))
        seen += weights(actions)
        if state.phase == Phase.PROMOTING:
            break
    assert seen == [1.0, 5.0, 25.0, 50.0, 100.0]
    assert state.phase == Phase.PROMOTING
    state, actions = tick(state, clock, arm(0), arm(1000, seed=7))
    assert state.phase == Phase.SUCCEEDED
    assert actions == [Promote()]


def test_errors_against_a_clean_baseline_roll_back_at_once() -> None:
    state, clock = begin(spec())
    state, actions = tick(state, clock, arm(1000), arm(1000, error_rate=0.05))
    assert state.phase == Phase.ROLLED_BACK and state.weight == 0
    assert weights(actions) == [0.0]
    look = next(a.look for a in actions if isinstance(a, RecordLook))
    assert look.verdict.outcome == Outcome.FAIL
    assert state.reason == look.verdict.reason and state.reason


def test_slow_candidate_rolls_back() -> None:
    state, clock = begin(spec())
    state, _ = tick(state, clock, arm(1000, median_ms=20), arm(1000, median_ms=60))
    assert state.phase == Phase.ROLLED_BACK


def test_no_traffic_waits_then_pauses_and_never_promotes() -> None:
    state, clock = begin(spec(max_inconclusive=3))
    for expected in (1, 2):
        state, actions = tick(state, clock, arm(0), arm(0))
        assert state.phase == Phase.PROGRESSING and state.looks_in_step == expected
        assert weights(actions) == []
    state, actions = tick(state, clock, arm(0), arm(0))
    assert state.phase == Phase.PAUSED and state.weight == 1.0
    assert state.reason is not None and "no verdict after 3 looks" in state.reason
    state, actions = tick(state, clock, arm(5000), arm(5000))  # paused: no looks
    assert state.phase == Phase.PAUSED and actions == []


def test_low_traffic_below_the_minimum_sample_is_inconclusive() -> None:
    state, clock = begin(spec(min_sample_per_arm=200))
    state, actions = tick(state, clock, arm(5000), arm(150))  # the 1 % arm is short
    look = next(a.look for a in actions if isinstance(a, RecordLook))
    assert look.verdict.outcome == Outcome.INCONCLUSIVE
    assert state.phase == Phase.PROGRESSING and state.weight == 1.0


def test_no_look_before_the_interval_and_none_on_stale_figures() -> None:
    state, clock = begin(spec())
    early, actions = tick(state, clock, arm(1000), arm(1000), seconds=INTERVAL / 2)
    assert early == state and actions == []
    now = clock.advance(INTERVAL)
    stale = Snapshot(state.step_started_at - timedelta(seconds=1), arm(1000), arm(1000))
    assert rollouts.step(state, stale, now) == (state, [])
    assert rollouts.step(state, None, now) == (state, [])


def test_each_step_judges_only_its_own_traffic() -> None:
    state, clock = begin(spec())
    state, _ = tick(state, clock, arm(1000), arm(1000))
    assert state.weight == 5.0 and state.step_started_at == clock.now
    assert state.next_look_at == clock.now + timedelta(seconds=INTERVAL)


def test_pause_resume_abort_promote() -> None:
    state, clock = begin(spec())
    paused, actions = rollouts.pause(state, clock.advance(1), "looking into it")
    assert paused.phase == Phase.PAUSED and actions == [] and paused.weight == 1.0
    resumed, _ = rollouts.resume(paused, clock.advance(1))
    assert resumed.phase == Phase.PROGRESSING and resumed.step_started_at == clock.now
    aborted, actions = rollouts.abort(resumed, clock.advance(1), "no")
    assert aborted.phase == Phase.ABORTED and actions == [SetWeight(0.0)]
    with pytest.raises(InvalidState):
        rollouts.resume(aborted, clock.now)
    with pytest.raises(InvalidState):
        rollouts.abort(aborted, clock.now, "again")
    promoted, actions = rollouts.promote_now(state, clock.now, "ship it")
    assert promoted.phase == Phase.SUCCEEDED and actions == [Promote()]


def test_an_slo_gate_breaks_while_promoting() -> None:
    state, clock = begin(spec(steps=[50, 100], max_error_rate=0.01))
    state, _ = tick(state, clock, arm(1000), arm(1000))
    assert state.phase == Phase.PROMOTING and state.weight == 100.0
    state, actions = tick(state, clock, arm(0), arm(1000, error_rate=0.05))
    assert state.phase == Phase.ROLLED_BACK and actions == [SetWeight(0.0)]
    assert state.reason is not None and "error rate" in state.reason


def test_shadow_mode_copies_then_validates_without_promoting() -> None:
    state, clock = begin(spec(mode=Mode.SHADOW, shadow_percent=50, min_agreement=0.9))
    assert state.weight == 50
    now = clock.advance()
    snap = Snapshot(state.step_started_at, arm(1000), arm(500), ShadowStats(500, 499))
    done, actions = rollouts.step(state, snap, now)
    assert done.phase == Phase.SUCCEEDED and actions[-1] == SetShadow(0.0)
    assert not any(isinstance(a, Promote | SetWeight) for a in actions)


def test_shadow_disagreement_fails() -> None:
    state, clock = begin(spec(mode=Mode.SHADOW, min_agreement=0.9))
    now = clock.advance()
    snap = Snapshot(state.step_started_at, arm(1000), arm(1000), ShadowStats(1000, 700))
    failed, actions = rollouts.step(state, snap, now)
    assert failed.phase == Phase.ROLLED_BACK and actions[-1] == SetShadow(0.0)
    assert failed.reason is not None and "agreed" in failed.reason


def test_a_shadow_look_records_the_agreement_and_its_counts() -> None:
    state, clock = begin(spec(mode=Mode.SHADOW, compare_field="predictions"))
    now = clock.advance()
    snap = Snapshot(state.step_started_at, arm(1000), arm(400), ShadowStats(400, 388))
    done, actions = rollouts.step(state, snap, now)
    look = next(a.look for a in actions if isinstance(a, RecordLook))
    assert (look.agreement, look.compared, look.agreed) == (0.97, 400, 388)
    assert done.phase == Phase.SUCCEEDED  # no min_agreement: agreement is measured, not judged


def test_a_canary_look_has_no_agreement() -> None:
    state, clock = begin(spec())
    _, actions = tick(state, clock, arm(1000), arm(1000))
    look = next(a.look for a in actions if isinstance(a, RecordLook))
    assert (look.agreement, look.compared, look.agreed) == (None, None, None)


def test_the_agreement_failure_says_the_counts() -> None:
    state, clock = begin(spec(mode=Mode.SHADOW, min_agreement=0.9, compare_field="predictions"))
    snap = Snapshot(state.step_started_at, arm(1000), arm(1000), ShadowStats(1000, 850))
    failed, _ = rollouts.step(state, snap, clock.advance())
    assert failed.reason == (
        "the candidate agreed with the baseline on 85.0% (850 of 1000), under 90.0%"
    )


def test_bad_specs_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidInput) as bad:
        rollouts.start(spec(steps=[5, 1]), id="r", model="m", baseline=1, actor="a", now=T0)
    assert bad.value.field == "steps"
    with pytest.raises(InvalidInput) as same:
        rollouts.start(spec(candidate=1), id="r", model="m", baseline=1, actor="a", now=T0)
    assert same.value.field == "candidate"
    with pytest.raises(msgspec.ValidationError):
        spec(steps=[0, 50])
    for shadow_only in ({"min_agreement": 0.9}, {"compare_field": "predictions"}):
        with pytest.raises(InvalidInput) as canary:
            rollouts.start(spec(**shadow_only), id="r", model="m", baseline=1, actor="a", now=T0)
        assert canary.value.field == next(iter(shadow_only))
    with pytest.raises(msgspec.ValidationError, match="compare_field"):
        spec(mode=Mode.SHADOW, compare_field="predictions.")


def test_the_state_round_trips_through_json() -> None:
    state, clock = begin(spec())
    state, _ = tick(state, clock, arm(1000), arm(1000))
    assert msgspec.json.decode(msgspec.json.encode(state), type=Rollout) == state


def test_a_shadow_rollout_sets_a_policy_comparing_its_field() -> None:
    """The decision under the model's lock: the first step of a shadow rollout writes a
    traffic policy whose shadow compares the field the spec names."""
    # v2 in Staging, as `start` leaves it (a policy never names a version nothing serves)
    held = ModelState(model(2), {1: version(1, Stage.PRODUCTION), 2: version(2, Stage.STAGING)}, {})
    shadow = spec(mode=Mode.SHADOW, shadow_percent=50, compare_field="out.label")
    started = rollout_rules.start(held, CTX, "iris", shadow, "ro-1").result
    held = msgspec.structs.replace(held, rollout=started)
    decided = rollout_rules.apply(held, CTX, "iris", "ro-1", lambda r: rollouts.step(r, None, T0))
    [policy] = [op.model.traffic for op in decided.ops if isinstance(op, UpdateModel)]
    assert policy is not None and policy.shadow is not None
    assert (policy.shadow.version, policy.shadow.sample_percent) == (2, 50)
    assert policy.shadow.compare_field == "out.label" and policy.steered_by == "ro-1"
