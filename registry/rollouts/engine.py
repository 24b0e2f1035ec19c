"""Progressive rollouts: one rollout's state and the pure `step` that moves it on.

`step(state, snapshot, now) -> (state, actions)` is the whole engine: no clock, no IO. The
controller (registry/rollout_control.py) feeds it a snapshot of live traffic (candidate and
baseline summed over every gateway since the current step began) once per analysis interval,
and carries out the actions it returns (weights, promotion) in the same transaction that
stores the new state, so a crash never leaves traffic and state apart.

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

import enum
import itertools
from datetime import datetime, timedelta
from typing import Annotated, Final

import msgspec
from msgspec.structs import replace

from contract.traffic import AnswerField, StickyKey
from registry.errors import InvalidInput, InvalidState
from registry.rollouts.judge import ArmStats, JudgeConfig, JudgeMemory, Outcome, Verdict, judge

DEFAULT_STEPS: Final = (1.0, 5.0, 25.0, 50.0, 100.0)

Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


ACTIVE_PHASES: Final = frozenset({Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})


class Mode(enum.StrEnum):
    CANARY = "canary"
    SHADOW = "shadow"


class RolloutSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a user asks for when starting a rollout."""

    candidate: Annotated[int, msgspec.Meta(ge=1)]
    steps: Annotated[list[Percent], msgspec.Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_STEPS)
    )
    interval_s: Annotated[float, msgspec.Meta(ge=0.2, le=86_400)] = 60.0
    min_sample_per_arm: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_p99_ms: Annotated[float, msgspec.Meta(gt=0)] | None = None
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=0.5)] = 0.01
    latency_effect_floor: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.1
    #: A slower median or p99 fails only when it is also this many ms slower. 1 ms by default: a
    #: canary at a low weight runs on an idler server than the baseline, and a fast model
    #: answers 10-20 % slower from idle alone (iris v2 at 10 %: 3.6 ms against v1's 3.0 ms,
    #: p=1.6e-7, while with equal traffic v2/v1 is 0.97x), a difference no user would notice.
    latency_floor_ms: Annotated[float, msgspec.Meta(ge=0, le=600_000)] = 1.0
    max_inconclusive: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    sticky: StickyKey | None = None
    mode: Mode = Mode.CANARY
    shadow_percent: Percent = 100.0  # shadow mode: the share of requests copied
    min_agreement: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None  # shadow mode
    #: Shadow mode: compare only this field of the answers (a dotted path into nested
    #: objects); None compares the whole answer. An answer without it disagrees.
    compare_field: AnswerField | None = None


class ShadowStats(msgspec.Struct, frozen=True):
    compared: int = 0
    agreed: int = 0


class Snapshot(msgspec.Struct, frozen=True):
    """Live traffic of both arms since `since` (the start of the current step)."""

    since: datetime
    baseline: ArmStats
    candidate: ArmStats
    shadow: ShadowStats = ShadowStats()


class Look(msgspec.Struct, frozen=True):
    """One analysis: when, at which step and weight, and the judge's verdict with evidence."""

    seq: int
    at: datetime
    phase: Phase
    step: int
    weight: float
    verdict: Verdict
    agreement: float | None = None  # shadow mode: agreed / compared, when any was compared
    compared: int | None = None  # shadow mode: the copies whose answers were compared...
    agreed: int | None = None  # ...and those that agreed with the baseline's answer


class Rollout(msgspec.Struct, frozen=True):
    id: str
    model: str
    baseline: int
    spec: RolloutSpec
    phase: Phase
    step: int  # index into spec.steps; -1 while Pending
    weight: float  # the candidate's share of the traffic now (shadow: of the copies)
    step_started_at: datetime
    next_look_at: datetime
    looks_in_step: int
    looks: int
    memory: JudgeMemory
    created_by: str
    created_at: datetime
    updated_at: datetime
    reason: str | None = None
    paused_from: Phase | None = None
    last: Look | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES


# --- actions: what the controller carries out with the new state ----------------------------


class SetWeight(msgspec.Struct, frozen=True, tag=True):
    """Give the candidate `weight` percent of the traffic (0: everything to the baseline)."""

    weight: float


class SetShadow(msgspec.Struct, frozen=True, tag=True):
    """Copy `percent` of the traffic to the candidate (0: no copies)."""

    percent: float


class Promote(msgspec.Struct, frozen=True, tag=True):
    """The candidate becomes Production (the baseline archived) and the split is cleared."""


class RecordLook(msgspec.Struct, frozen=True, tag=True):
    look: Look


Action = SetWeight | SetShadow | Promote | RecordLook
Moved = tuple[Rollout, list[Action]]


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
    return SetShadow(0.0) if state.spec.mode == Mode.SHADOW else SetWeight(0.0)


def pause(state: Rollout, now: datetime, reason: str) -> tuple[Rollout, list[Action]]:
    """Hold the rollout where it is; traffic keeps its current split."""
    _require_active(state, "pause")
    if state.phase == Phase.PAUSED:
        return state, []
    paused = replace(
        state, phase=Phase.PAUSED, paused_from=state.phase, reason=reason, updated_at=now
    )
    return paused, []


def resume(state: Rollout, now: datetime) -> tuple[Rollout, list[Action]]:
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


def abort(state: Rollout, now: datetime, reason: str) -> tuple[Rollout, list[Action]]:
    """Stop now: every request back to the baseline at once."""
    _require_active(state, "be aborted")
    done = replace(state, phase=Phase.ABORTED, weight=0.0, reason=reason, updated_at=now)
    return done, [_off(state)]


def promote_now(state: Rollout, now: datetime, reason: str) -> tuple[Rollout, list[Action]]:
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


def step(state: Rollout, snapshot: Snapshot | None, now: datetime) -> tuple[Rollout, list[Action]]:
    """Move the rollout on by what `now` and the traffic since its step began say."""
    if state.phase == Phase.PENDING:
        return _begin(state, now)
    if state.phase not in (Phase.PROGRESSING, Phase.PROMOTING) or now < state.next_look_at:
        return state, []
    if snapshot is None or snapshot.since != state.step_started_at:
        return state, []  # no traffic figures for this step yet: look again next tick
    if state.phase == Phase.PROMOTING:
        return _finish(state, snapshot, now)
    verdict, memory = judge(snapshot.baseline, snapshot.candidate, judge_config(state.spec),
                            state.memory)  # fmt: skip
    verdict, compared = _with_agreement(state, verdict, snapshot.shadow)
    look = _look(state, now, verdict, compared)
    state = replace(state, memory=memory, looks=state.looks + 1, last=look, updated_at=now)
    record: list[Action] = [RecordLook(look)]
    if verdict.outcome == Outcome.FAIL:
        failed = replace(state, phase=Phase.ROLLED_BACK, weight=0.0, reason=verdict.reason)
        return failed, [*record, _off(state)]
    if verdict.outcome == Outcome.PASS:
        return _advance(state, now, record)
    waited = state.looks_in_step + 1
    if waited >= state.spec.max_inconclusive:
        why = (
            f"no verdict after {waited} looks at {state.weight:g}%: {verdict.reason};"
            " resume to keep waiting, or promote or abort by hand"
        )
        held = replace(state, phase=Phase.PAUSED, paused_from=Phase.PROGRESSING,
                       looks_in_step=waited, reason=why)  # fmt: skip
        return held, record
    return replace(state, looks_in_step=waited, next_look_at=now + _interval(state)), record


def _look(state: Rollout, now: datetime, verdict: Verdict, shadow: ShadowStats | None) -> Look:
    look = Look(state.looks + 1, now, state.phase, state.step, state.weight, verdict)
    if shadow is None:
        return look
    return replace(look, agreement=shadow.agreed / shadow.compared, compared=shadow.compared,
                   agreed=shadow.agreed)  # fmt: skip


def _begin(state: Rollout, now: datetime) -> tuple[Rollout, list[Action]]:
    first = state.spec.shadow_percent if state.spec.mode == Mode.SHADOW else state.spec.steps[0]
    begun = _at_step(state, 0, first, now, Phase.PROGRESSING)
    action: Action = SetShadow(first) if state.spec.mode == Mode.SHADOW else SetWeight(first)
    return begun, [action]


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


def _advance(state: Rollout, now: datetime, record: list[Action]) -> tuple[Rollout, list[Action]]:
    state = replace(state, memory=state.memory.next_step())
    if state.spec.mode == Mode.SHADOW:
        why = "the shadow candidate passed; it was never seen by users"
        done = replace(state, phase=Phase.SUCCEEDED, weight=0.0, reason=why)
        return done, [*record, SetShadow(0.0)]
    following = state.step + 1
    steps = state.spec.steps
    if following >= len(steps) or steps[following] >= 100.0:
        held = _at_step(state, following, 100.0, now, Phase.PROMOTING)
        return held, [*record, SetWeight(100.0)]
    moved = _at_step(state, following, steps[following], now, Phase.PROGRESSING)
    return moved, [*record, SetWeight(steps[following])]


def _finish(state: Rollout, snapshot: Snapshot, now: datetime) -> tuple[Rollout, list[Action]]:
    """Promoting: the candidate alone, checked by the absolute SLO gates only."""
    broken = slo_breach(state.spec, snapshot.candidate)
    if broken is not None:
        failed = replace(state, phase=Phase.ROLLED_BACK, weight=0.0, updated_at=now,
                         reason=f"at 100%: {broken}")  # fmt: skip
        return failed, [SetWeight(0.0)]
    done = replace(state, phase=Phase.SUCCEEDED, updated_at=now,
                   reason="every step passed; the candidate is Production")  # fmt: skip
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
