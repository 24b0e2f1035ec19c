"""A/B experiments: fixed sticky arms over versions, outcomes fed back per key (or per served
version), per-arm results with confidence intervals and a significance verdict. Pure.

Arms are a traffic policy: every arm but the Production version's is a split (variant
`arm-v<N>`), the Production version's arm takes the rest, and assignment is sticky by a key
with the same buckets the gateway uses (`contract.traffic.bucket` / `split_at`), so the
registry can tell which arm a key was on from the key alone.

Results: each arm's mean with a 95 % interval (Wilson for conversions, Student t for rewards)
and, against the control (the Production version's arm, else the first), the difference with
its interval and a p-value (two-proportion z test, or Welch's t test). With several arms the
comparisons share `alpha` (Bonferroni). The verdict names a winner only when an arm beats the
control significantly (or the control beats every other arm) and every arm has its minimum
sample; "needs_data" before that, "no_difference" when the sample is there and nothing differs.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime
from typing import Annotated, Final

import msgspec
from scipy.stats import norm, t, ttest_ind_from_stats

from contract.traffic import Split, StickyKey, TrafficPolicy, bucket, split_at
from registry.errors import InvalidInput, NotFound

Z95: Final = 1.959963984540054


class Metric(enum.StrEnum):
    CONVERSION = "conversion"  # 0 or 1 per outcome
    REWARD = "reward"  # any number per outcome


class Phase(enum.StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]
    weight: Annotated[float, msgspec.Meta(gt=0, le=100)]


class ExperimentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    arms: Annotated[list[Arm], msgspec.Meta(min_length=2, max_length=8)]
    sticky: StickyKey
    metric: Metric = Metric.CONVERSION
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=0.5)] = 0.05
    min_sample_per_arm: Annotated[int, msgspec.Meta(ge=2)] = 100


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

    @property
    def active(self) -> bool:
        return self.phase == Phase.RUNNING


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One fed-back outcome: by the sticky `key` the request carried, or by the `version`
    that served it (its `x-modelyard-version` header)."""

    value: float
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None


class Feedback(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    outcomes: Annotated[list[Outcome], msgspec.Meta(min_length=1, max_length=10_000)]


class Tally(msgspec.Struct, frozen=True):
    """An arm's outcomes so far: count, sum and sum of squares."""

    version: int
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0


class ArmResult(msgspec.Struct, frozen=True):
    version: int
    control: bool
    n: int
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    diff: float | None = None  # mean - control's mean
    diff_ci_low: float | None = None
    diff_ci_high: float | None = None
    p_value: float | None = None


class Results(msgspec.Struct, frozen=True):
    metric: Metric
    alpha_per_comparison: float
    verdict: str  # winner | no_difference | needs_data
    winner: int | None
    reason: str
    arms: list[ArmResult]


# --- starting, assigning, tallying ------------------------------------------------------------


def start(
    spec: ExperimentSpec, *, id: str, model: str, production: int | None, actor: str,
    now: datetime, known: set[int],
) -> Experiment:  # fmt: skip
    versions = [a.version for a in spec.arms]
    if len(set(versions)) != len(versions):
        raise InvalidInput("an arm's version is listed twice", field="arms")
    for i, number in enumerate(versions):
        if number not in known:
            raise NotFound(f"version {number} of {model!r} does not exist", field=f"arms[{i}]")
    total = sum(a.weight for a in spec.arms)
    if abs(total - 100.0) > 1e-6:
        raise InvalidInput(f"arm weights add up to {total:g}%, not 100%", field="arms")
    sources = [spec.sticky.header, spec.sticky.cookie, spec.sticky.json_field]
    if sum(s is not None for s in sources) != 1:
        raise InvalidInput("sticky needs exactly one of header, cookie, json_field", field="sticky")
    control = production if production in versions else versions[0]
    return Experiment(id, model, spec, control, salt=id, phase=Phase.RUNNING, created_by=actor,
                      created_at=now, updated_at=now)  # fmt: skip


def variant(version: int) -> str:
    return f"arm-v{version}"


def policy(experiment: Experiment, base: TrafficPolicy, production: int | None) -> TrafficPolicy:
    """The traffic policy that holds the arms (the Production version's arm is the rest)."""
    splits = [Split(version=a.version, weight=a.weight, variant=variant(a.version))
              for a in experiment.spec.arms if a.version != production]  # fmt: skip
    return msgspec.structs.replace(base, splits=splits, sticky=experiment.spec.sticky,
                                   salt=experiment.salt, steered_by=experiment.id)  # fmt: skip


def assign(experiment: Experiment, production: int | None, key: str) -> int:
    """The version the gateway serves `key` under the experiment's policy."""
    splits = policy(experiment, TrafficPolicy(), production).splits
    found = split_at(splits, bucket(experiment.salt, key), production)
    if found is not None:
        return found.version
    if production is None:  # every arm is a split and their weights add up to 100
        return experiment.spec.arms[-1].version
    return production


def tally(
    experiment: Experiment, production: int | None, outcomes: list[Outcome]
) -> dict[int, Tally]:
    """Each arm's increments from a batch of outcomes; names the first bad one."""
    arms = {a.version for a in experiment.spec.arms}
    sums: dict[int, list[float]] = {v: [0, 0.0, 0.0] for v in arms}
    for i, outcome in enumerate(outcomes):
        if (outcome.key is None) == (outcome.version is None):
            raise InvalidInput("an outcome needs exactly one of key, version",
                               field=f"outcomes[{i}]")  # fmt: skip
        if not math.isfinite(outcome.value):
            raise InvalidInput("value must be a finite number", field=f"outcomes[{i}].value")
        if experiment.spec.metric == Metric.CONVERSION and outcome.value not in (0.0, 1.0):
            raise InvalidInput("a conversion is 0 or 1", field=f"outcomes[{i}].value")
        if outcome.version is not None:
            if outcome.version not in arms:
                raise InvalidInput(f"version {outcome.version} is not an arm",
                                   field=f"outcomes[{i}].version")  # fmt: skip
            arm = outcome.version
        else:
            arm = assign(experiment, production, outcome.key or "")
        acc = sums[arm]
        acc[0] += 1
        acc[1] += outcome.value
        acc[2] += outcome.value * outcome.value
    return {v: Tally(v, int(a[0]), a[1], a[2]) for v, a in sums.items() if a[0]}


# --- results ------------------------------------------------------------------------------------


def _mean_ci(metric: Metric, arm: Tally) -> tuple[float | None, float | None, float | None]:
    if arm.n == 0:
        return None, None, None
    mean = arm.total / arm.n
    if metric == Metric.CONVERSION:  # Wilson's interval
        centre = (mean + Z95**2 / (2 * arm.n)) / (1 + Z95**2 / arm.n)
        half = Z95 * math.sqrt(mean * (1 - mean) / arm.n + Z95**2 / (4 * arm.n**2))
        half /= 1 + Z95**2 / arm.n
        return mean, centre - half, centre + half
    if arm.n < 2:
        return mean, None, None
    half = float(t.ppf(0.975, arm.n - 1)) * math.sqrt(_variance(arm) / arm.n)
    return mean, mean - half, mean + half


def _variance(arm: Tally) -> float:
    mean = arm.total / arm.n
    return max(0.0, (arm.total_sq - arm.n * mean * mean) / (arm.n - 1))


def _compare(metric: Metric, arm: Tally, control: Tally) -> tuple[float, float, float, float]:
    """Difference of means, its 95 % interval, and the two-sided p-value."""
    m1, m0 = arm.total / arm.n, control.total / control.n
    if metric == Metric.CONVERSION:
        se = math.sqrt(m1 * (1 - m1) / arm.n + m0 * (1 - m0) / control.n)
        pooled = (arm.total + control.total) / (arm.n + control.n)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / arm.n + 1 / control.n))
        p = 1.0 if se0 == 0 else float(2 * norm.sf(abs(m1 - m0) / se0))
    else:
        v1, v0 = _variance(arm), _variance(control)
        se = math.sqrt(v1 / arm.n + v0 / control.n)
        if se == 0:
            p = 1.0 if m1 == m0 else 0.0
        else:
            p = float(ttest_ind_from_stats(m1, math.sqrt(v1), arm.n, m0, math.sqrt(v0),
                                           control.n, equal_var=False).pvalue)  # fmt: skip
    return m1 - m0, m1 - m0 - Z95 * se, m1 - m0 + Z95 * se, p


def results(experiment: Experiment, tallies: dict[int, Tally]) -> Results:
    spec = experiment.spec
    control = tallies.get(experiment.control, Tally(experiment.control))
    each = spec.alpha / (len(spec.arms) - 1)
    rows: list[ArmResult] = []
    better: list[tuple[float, int]] = []
    worse = 0
    for arm_spec in spec.arms:
        arm = tallies.get(arm_spec.version, Tally(arm_spec.version))
        mean, low, high = _mean_ci(spec.metric, arm)
        if arm_spec.version == experiment.control or arm.n < 2 or control.n < 2:
            rows.append(ArmResult(arm.version, arm.version == experiment.control, arm.n, mean,
                                  low, high))  # fmt: skip
            continue
        diff, d_low, d_high, p = _compare(spec.metric, arm, control)
        rows.append(ArmResult(arm.version, False, arm.n, mean, low, high, diff, d_low, d_high, p))
        if p < each:
            if diff > 0:
                better.append((diff, arm.version))
            else:
                worse += 1
    short = [r.version for r in rows if r.n < spec.min_sample_per_arm]
    if short:
        why = f"arms {short} have fewer than {spec.min_sample_per_arm} outcomes"
        return Results(spec.metric, each, "needs_data", None, why, rows)
    if better:
        diff, version = max(better)
        why = f"version {version} beats the control by {diff:+.4g} (p < {each:.3g})"
        return Results(spec.metric, each, "winner", version, why, rows)
    if worse == len(spec.arms) - 1:
        why = f"the control (version {experiment.control}) beats every other arm"
        return Results(spec.metric, each, "winner", experiment.control, why, rows)
    why = f"no arm differs from the control at alpha {each:.3g} per comparison"
    return Results(spec.metric, each, "no_difference", None, why, rows)
