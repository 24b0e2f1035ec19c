"""The experiment's types: its spec, its persisted state, outcomes and tallies, and the results
a read gives. Pure. (`registry.experiments.stats` is the package's public face.)"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Final

import msgspec

from contract.traffic import StickyKey, TrafficPolicy, Version

#: The always-valid results' method, named in every `Results`.
ALWAYS_VALID: Final = "always-valid (mixture SPRT tuned to the minimum detectable effect)"
FIXED_HORIZON_NOTE: Final = (
    "fixed-horizon figures, for comparison only: valid when read once, at a sample size set"
    " before the experiment; read repeatedly, they find winners between identical arms far"
    " more often than alpha"
)


class Metric(enum.StrEnum):
    CONVERSION = "conversion"  # 0 or 1 per outcome
    REWARD = "reward"  # any number per outcome


class Phase(enum.StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"


class ExperimentMode(enum.StrEnum):
    FIXED = "fixed"  # the arms keep the weights they started with
    BANDIT = "bandit"  # Thompson sampling moves the weights toward the better arms


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Version
    weight: Annotated[float, msgspec.Meta(gt=0, le=100)]


class ExperimentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    arms: Annotated[list[Arm], msgspec.Meta(min_length=2, max_length=8)]
    sticky: StickyKey
    metric: Metric = Metric.CONVERSION
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=0.5)] = 0.05
    min_sample_per_arm: Annotated[int, msgspec.Meta(ge=2)] = 100
    mode: ExperimentMode = ExperimentMode.FIXED
    # the minimum detectable effect, relative to the control's mean (0.1: +10 %): the
    # always-valid test is tuned to find it (see `sequential`)
    mde: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.1


class Before(msgspec.Struct, frozen=True):
    """What the experiment changed, as it was when the experiment started."""

    traffic: TrafficPolicy | None = None  # the model's traffic policy (restored on stop)


class ArmSpan(msgspec.Struct, frozen=True):
    """A bandit arm's place on the sticky buckets: the keys in [start, end) are enrolled in
    it (their outcomes count, and they never change arm); `served` buckets, a range that holds
    the enrolled ones, are routed to its version (the rest are keys not yet enrolled)."""

    version: int
    start: int
    end: int
    served: int
    p_best: float | None = None  # P(this arm is the best), at the last update


class Allocation(msgspec.Struct, frozen=True):
    """A bandit experiment's arms on the buckets, in bucket order (see `bandit`)."""

    arms: list[ArmSpan]
    updates: int = 0
    updated_at: datetime | None = None


class Experiment(msgspec.Struct, frozen=True):
    id: str
    model: str
    spec: ExperimentSpec
    control: int
    salt: str
    phase: Phase
    created_by: str
    created_at: datetime
    updated_at: datetime
    winner: int | None = None
    reason: str | None = None
    before: Before | None = None  # None: started before this was recorded
    allocation: Allocation | None = None  # bandit mode only

    @property
    def active(self) -> bool:
        return self.phase == Phase.RUNNING


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One fed-back outcome: by the sticky `key` the request carried, or by the `version`
    that served it (its `x-modelyard-version` header); with, optionally, a `covariate`
    measured before the experiment (the user's conversions last month, say), for CUPED."""

    value: float
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    version: Version | None = None
    covariate: float | None = None


class Feedback(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    outcomes: Annotated[list[Outcome], msgspec.Meta(min_length=1, max_length=10_000)]


class Tally(msgspec.Struct, frozen=True):
    """An arm's outcomes so far: count, sum and sum of squares; and, of the outcomes that came
    with a pre-experiment covariate x (for CUPED), their count, the sums of x and x^2 and the
    sum of x times the outcome."""

    version: int
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    cov_n: int = 0
    cov_total: float = 0.0
    cov_total_sq: float = 0.0
    cov_cross: float = 0.0


class Read(msgspec.Struct, frozen=True):
    """An experiment's tallies and traffic shares at one moment: the leading registry records
    one whenever they changed (at most every `experiment_read_s`), for the charts over time."""

    at: datetime
    tallies: list[Tally]  # by version
    weights: dict[int, float]  # version -> its share of the traffic, in percent


class ArmResult(msgspec.Struct, frozen=True):
    """An arm's mean with its 95 % confidence sequence, and against the control the difference
    with its confidence sequence (at 1 - alpha per comparison) and always-valid p-value."""

    version: int
    control: bool
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    diff: float | None = None  # mean - control's mean (CUPED-adjusted when `Results.cuped`)
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    p_value: float | None = None
    weight: float | None = None  # its share of the traffic now, in percent


class FixedArm(msgspec.Struct, frozen=True):
    """An arm's fixed-horizon figures: 95 % interval of the mean (Wilson, Student t), 95 %
    interval of the difference and the two-proportion z or Welch t p-value."""

    version: int
    ci_low: float | None
    ci_high: float | None
    diff: float | None = None
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    p_value: float | None = None


class FixedHorizon(msgspec.Struct, frozen=True):
    """The fixed-horizon view: what the results were before they became always valid."""

    note: str
    alpha_per_comparison: float
    verdict: str
    winner: int | None
    reason: str
    arms: list[FixedArm]


class Cuped(msgspec.Struct, frozen=True):
    """The covariate adjustment the differences carry: y - theta (x - mean of x)."""

    theta: float
    covariate_mean: float
    variance_reduction: float  # 1 - var(adjusted) / var(raw), pooled within arms


class Results(msgspec.Struct, frozen=True):
    metric: Metric
    alpha_per_comparison: float
    verdict: str  # winner | no_difference | needs_data
    winner: int | None
    reason: str
    arms: list[ArmResult]
    inference: str = ALWAYS_VALID
    mixture_sd: float | None = None  # the normal component's tau, in sds of one outcome
    mde: float | None = None  # the minimum detectable effect the test is tuned to (relative)
    regret: float | None = None  # sum over arms of n * (best arm's mean - the arm's mean)
    cuped: Cuped | None = None
    fixed_horizon: FixedHorizon | None = None
