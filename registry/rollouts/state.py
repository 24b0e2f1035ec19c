"""One rollout's state and vocabulary: what a user asks for (`RolloutSpec`), its phase, the
looks the judge took, the traffic figures a look reads (`Snapshot`), and the actions the
controller carries out. Pure data; how a rollout moves from phase to phase: `engine`."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Final

import msgspec

from contract.traffic import AnswerField, StickyKey, Version
from registry.rollouts.judge import ArmStats, JudgeMemory, Verdict

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

    candidate: Version
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
#: A rollout as a command or `step` left it, and what the controller carries out for it.
Moved = tuple[Rollout, list[Action]]
