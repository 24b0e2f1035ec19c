"""Progressive rollouts: the pure `step` that moves a rollout on, and the commands people give
(pause, resume, abort, promote). The state they move: `registry.rollouts.state`.

`step(state, snapshot, now) -> (state, actions)` is the whole engine: no clock, no IO. The
controller (`RolloutScheduler` in registry/rollouts/service.py) feeds it a snapshot of live
traffic (candidate and baseline summed over every gateway since the current step began) once
per analysis interval; registry/rollouts/rules.py turns the actions it returns (weights,
promotion) into the registry's operations, committed in the same transaction that stores the
new state, so a crash never leaves traffic and state apart.

Phases, as in Flagger and Argo Rollouts:

    Pending -> Progressing -(last step passed)-> Promoting -> Succeeded
                   |  ^                              |
          pause    v  | resume                       v  (an SLO gate broke at 100 %)
                  Paused                          RolledBack
    Progressing -(Fail)-> RolledBack;  any active phase -(abort)-> Aborted

- Progressing: at each look the judge compares candidate with baseline. Pass moves to the
  next weight (fresh data: the looks of a step see only that step's traffic); Fail sets the
  candidate's weight to 0 at once and records why; Inconclusive waits for the next look, and
  after `max_inconclusive` looks in one step the rollout pauses and says why. Inconclusive
  never promotes.
- Promoting: the candidate holds all traffic for one interval while the absolute SLO gates
  watch it (there is no baseline traffic left to compare with); then it becomes Production,
  the baseline is archived and the split is cleared.
- Shadow mode: the candidate only receives copies; it is judged on errors, latency and
  agreement with the baseline's answers (the whole answer, or the field `compare_field`
  names) and is never seen by users. A Pass ends the rollout
  as Succeeded without promoting (it validated the candidate); a Fail stops the copies.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import assert_never

from msgspec.structs import replace

from registry.errors import InvalidInput, InvalidState
from registry.rollouts.judge import ArmStats, JudgeConfig, JudgeMemory, Outcome, Verdict, judge
from registry.rollouts.state import (
    Action,
    Look,
    Mode,
    Moved,
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

# --- starting, and the commands people give -------------------------------------------------


def check_spec(spec: RolloutSpec) -> RolloutSpec:
    steps = spec.steps
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidInput("steps must rise strictly, e.g. [1, 5, 25, 50, 100]", field="steps")
    if spec.mode == Mode.CANARY and spec.min_agreement is not None:
        raise InvalidInput("min_agreement is for shadow rollouts", field="min_agreement")
    if spec.mode == Mode.CANARY and spec.compare_field is not None:
        raise InvalidInput("compare_field is for shadow rollouts", field="compare_field")
    if spec.sticky is not None:
        sources = [spec.sticky.header, spec.sticky.cookie, spec.sticky.json_field]
        if sum(s is not None for s in sources) != 1:
            raise InvalidInput(
                "sticky needs exactly one of header, cookie, json_field", field="sticky"
            )
    return spec


def start(
    spec: RolloutSpec, *, id: str, model: str, baseline: int, actor: str, now: datetime
) -> Rollout:
    """A new rollout, Pending: its first `step` sets the first weight."""
    check_spec(spec)
    if spec.candidate == baseline:
        raise InvalidInput(
            f"version {baseline} is already the Production version", field="candidate"
        )
    return Rollout(
        id=id,
        model=model,
        baseline=baseline,
        spec=spec,
        phase=Phase.PENDING,
        step=-1,
        weight=0.0,
        step_started_at=now,
        next_look_at=now,
        looks_in_step=0,
        looks=0,
        memory=JudgeMemory(),
        created_by=actor,
        created_at=now,
        updated_at=now,
    )


def _require_active(state: Rollout, verb: str) -> None:
    if not state.active:
        raise InvalidState(f"rollout {state.id} is {state.phase}; it cannot {verb}", field="phase")


def _off(state: Rollout) -> Action:
    """The action that takes the candidate out of the traffic (or stops its copies)."""
    mode = state.spec.mode
    match mode:
        case Mode.CANARY:
            return SetWeight(0.0)
        case Mode.SHADOW:
            return SetShadow(0.0)
        case _:
            assert_never(mode)


def pause(state: Rollout, now: datetime, reason: str) -> Moved:
    """Hold the rollout where it is; traffic keeps its current split."""
    _require_active(state, "pause")
    if state.phase == Phase.PAUSED:
        return state, []
    paused = replace(
        state, phase=Phase.PAUSED, paused_from=state.phase, reason=reason, updated_at=now
    )
    return paused, []


def resume(state: Rollout, now: datetime) -> Moved:
    """Go on from the paused step with fresh data and a fresh count of inconclusive looks."""
    if state.phase != Phase.PAUSED:
        raise InvalidState(f"rollout {state.id} is {state.phase}, not Paused", field="phase")
    back = state.paused_from or Phase.PROGRESSING
    resumed = replace(
        state,
        phase=back,
        paused_from=None,
        reason=None,
        step_started_at=now,
        next_look_at=now if back == Phase.PENDING else now + _interval(state),
        looks_in_step=0,
        updated_at=now,
    )
    return resumed, []


def abort(state: Rollout, now: datetime, reason: str) -> Moved:
    """Stop now: every request back to the baseline at once."""
    _require_active(state, "be aborted")
    done = replace(state, phase=Phase.ABORTED, weight=0.0, reason=reason, updated_at=now)
    return done, [_off(state)]


def promote_now(state: Rollout, now: datetime, reason: str) -> Moved:
    """Skip the remaining steps: the candidate becomes Production now."""
    _require_active(state, "be promoted")
    if state.spec.mode == Mode.SHADOW:
        raise InvalidState("a shadow rollout validates; it does not promote", field="mode")
    done = replace(state, phase=Phase.SUCCEEDED, weight=100.0, reason=reason, updated_at=now)
    return done, [Promote()]


# --- the engine -----------------------------------------------------------------------------


def _interval(state: Rollout) -> timedelta:
    return timedelta(seconds=state.spec.interval_s)


def judge_config(spec: RolloutSpec) -> JudgeConfig:
    return JudgeConfig(
        min_sample_per_arm=spec.min_sample_per_arm,
        alpha=spec.alpha,
        max_error_rate=spec.max_error_rate,
        max_p99_ms=spec.max_p99_ms,
        latency_effect_floor=spec.latency_effect_floor,
        latency_floor_ms=spec.latency_floor_ms,
    )


def step(state: Rollout, snapshot: Snapshot | None, now: datetime) -> Moved:
    """Move the rollout on by what `now` and the traffic since its step began say."""
    phase = state.phase
    match phase:
        case Phase.PENDING:
            return _begin(state, now)
        case Phase.PROGRESSING | Phase.PROMOTING:
            if now < state.next_look_at:
                return state, []
            if snapshot is None or snapshot.since != state.step_started_at:
                return state, []  # no traffic figures for this step yet: look again next tick
            if phase == Phase.PROMOTING:
                return _finish(state, snapshot, now)
            return _judged(state, snapshot, now)
        case Phase.PAUSED | Phase.SUCCEEDED | Phase.ROLLED_BACK | Phase.ABORTED:
            return state, []  # held, or over: only a command moves it
        case _:
            assert_never(phase)


def _judged(state: Rollout, snapshot: Snapshot, now: datetime) -> Moved:
    """Progressing: one look of the judge at this step's traffic, and what its verdict says."""
    config = judge_config(state.spec)
    verdict, memory = judge(snapshot.baseline, snapshot.candidate, config, state.memory)
    verdict, compared = _with_agreement(state, verdict, snapshot.shadow)
    look = _look(state, now, verdict, compared)
    state = replace(state, memory=memory, looks=state.looks + 1, last=look, updated_at=now)
    record: list[Action] = [RecordLook(look)]
    outcome = verdict.outcome
    match outcome:
        case Outcome.FAIL:
            failed = replace(state, phase=Phase.ROLLED_BACK, weight=0.0, reason=verdict.reason)
            return failed, [*record, _off(state)]
        case Outcome.PASS:
            return _advance(state, now, record)
        case Outcome.INCONCLUSIVE:
            return _waited(state, now, verdict, record)
        case _:
            assert_never(outcome)


def _waited(state: Rollout, now: datetime, verdict: Verdict, record: list[Action]) -> Moved:
    """An inconclusive look: look again after an interval, or pause after too many."""
    waited = state.looks_in_step + 1
    if waited >= state.spec.max_inconclusive:
        why = (
            f"no verdict after {waited} looks at {state.weight:g}%: {verdict.reason};"
            " resume to keep waiting, or promote or abort by hand"
        )
        held = replace(
            state,
            phase=Phase.PAUSED,
            paused_from=Phase.PROGRESSING,
            looks_in_step=waited,
            reason=why,
        )
        return held, record
    return replace(state, looks_in_step=waited, next_look_at=now + _interval(state)), record


def _look(state: Rollout, now: datetime, verdict: Verdict, shadow: ShadowStats | None) -> Look:
    look = Look(state.looks + 1, now, state.phase, state.step, state.weight, verdict)
    if shadow is None:
        return look
    agreement = shadow.agreed / shadow.compared
    return replace(look, agreement=agreement, compared=shadow.compared, agreed=shadow.agreed)


def _begin(state: Rollout, now: datetime) -> Moved:
    mode = state.spec.mode
    action: Action
    match mode:
        case Mode.CANARY:
            first = state.spec.steps[0]
            action = SetWeight(first)
        case Mode.SHADOW:
            first = state.spec.shadow_percent
            action = SetShadow(first)
        case _:
            assert_never(mode)
    return _at_step(state, 0, first, now, Phase.PROGRESSING), [action]


def _at_step(state: Rollout, index: int, weight: float, now: datetime, phase: Phase) -> Rollout:
    return replace(
        state,
        phase=phase,
        step=index,
        weight=weight,
        step_started_at=now,
        next_look_at=now + _interval(state),
        looks_in_step=0,
        reason=None,
        updated_at=now,
    )


def _advance(state: Rollout, now: datetime, record: list[Action]) -> Moved:
    """A look passed: a canary moves to its next weight (the last one: Promoting); a shadow
    rollout has validated its candidate."""
    state = replace(state, memory=state.memory.next_step())
    mode = state.spec.mode
    match mode:
        case Mode.CANARY:
            pass
        case Mode.SHADOW:
            why = "the shadow candidate passed; it was never seen by users"
            done = replace(state, phase=Phase.SUCCEEDED, weight=0.0, reason=why)
            return done, [*record, SetShadow(0.0)]
        case _:
            assert_never(mode)
    following = state.step + 1
    steps = state.spec.steps
    if following >= len(steps) or steps[following] >= 100.0:
        held = _at_step(state, following, 100.0, now, Phase.PROMOTING)
        return held, [*record, SetWeight(100.0)]
    moved = _at_step(state, following, steps[following], now, Phase.PROGRESSING)
    return moved, [*record, SetWeight(steps[following])]


def _finish(state: Rollout, snapshot: Snapshot, now: datetime) -> Moved:
    """Promoting: the candidate alone, checked by the absolute SLO gates only."""
    broken = slo_breach(state.spec, snapshot.candidate)
    if broken is not None:
        why = f"at 100%: {broken}"
        failed = replace(state, phase=Phase.ROLLED_BACK, weight=0.0, updated_at=now, reason=why)
        return failed, [SetWeight(0.0)]
    why = "every step passed; the candidate is Production"
    done = replace(state, phase=Phase.SUCCEEDED, updated_at=now, reason=why)
    return done, [Promote()]


def slo_breach(spec: RolloutSpec, arm: ArmStats) -> str | None:
    """The first absolute SLO gate the arm breaks (point estimates), or None."""
    if arm.requests < spec.min_sample_per_arm:
        return None  # too little to call: the gate cannot hold a sample this small to account
    if spec.max_error_rate is not None:
        rate = arm.errors / arm.requests
        if rate > spec.max_error_rate:
            return f"error rate {rate:.2%} over the {spec.max_error_rate:.2%} gate"
    if spec.max_p99_ms is not None and len(arm.latencies_ms) >= 100:  # a p99 needs 100
        ordered = sorted(arm.latencies_ms)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        if p99 > spec.max_p99_ms:
            return f"p99 {p99:.1f} ms over the {spec.max_p99_ms:g} ms gate"
    return None


def _with_agreement(
    state: Rollout, verdict: Verdict, shadow: ShadowStats
) -> tuple[Verdict, ShadowStats | None]:
    """Shadow mode: a candidate whose answers agree with the baseline's less often than
    `min_agreement` fails, whatever else the judge said. Returns the counts the look records
    (None: not a shadow rollout, or nothing compared yet)."""
    if state.spec.mode != Mode.SHADOW or not shadow.compared:
        return verdict, None
    agreement = shadow.agreed / shadow.compared
    floor = state.spec.min_agreement
    if floor is not None and agreement < floor and verdict.outcome != Outcome.FAIL:
        why = (
            f"the candidate agreed with the baseline on {agreement:.1%}"
            f" ({shadow.agreed} of {shadow.compared}), under {floor:.1%}"
        )
        return replace(verdict, outcome=Outcome.FAIL, reason=why), shadow
    return verdict, shadow
