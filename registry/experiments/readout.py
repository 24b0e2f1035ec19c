"""An experiment's results, safe to read at any time. Pure.

Each arm: its mean with a 95 % confidence sequence. Against the control (the Production
version's arm, else the first): the difference of means with its confidence sequence and an
always-valid p-value (`sequential`), CUPED-adjusted when every outcome came with a covariate
(`cuped`). With several arms the comparisons share `alpha` (Bonferroni: each gets
alpha / (arms - 1), and the intervals of the differences are at that level).

The verdict names a winner only when an arm beats the control (always-valid p below its share
of alpha; the best such arm) or the control beats every other arm, and every arm has its
minimum sample; "needs_data" before that, "no_difference" when the sample is there and no arm
differs yet. Because every p-value is always valid, P(an A/A experiment ever shows a winner,
however often it is read) <= alpha: the verdict can be acted on at any read. The fixed-horizon
figures of before stay available as `fixed_horizon`, labelled as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from registry.experiments import cuped, fixed, sequential
from registry.experiments.domain import (
    FIXED_HORIZON_NOTE,
    ArmResult,
    Experiment,
    FixedArm,
    FixedHorizon,
    Metric,
    Results,
    Tally,
)
from registry.experiments.fixed import Sums, variance
from registry.experiments.sequential import TAU_SD, Floats

MDE = 0.10  # the default minimum detectable effect: +10 % of the control's mean

ARM_LEVEL = 0.05  # each arm's own interval: a 95 % confidence sequence


class Verdict(NamedTuple):
    verdict: str  # winner | no_difference | needs_data
    winner: int | None
    reason: str


def compare(
    arm: Sums, control: Sums, alpha: float | Floats, mde: float = MDE, tau_sd: float = TAU_SD
) -> tuple[Floats, Floats, Floats, Floats]:
    """Always-valid comparison of an arm with the control (vectorised): the difference of
    means, its confidence sequence at level 1 - alpha, and the always-valid p-value, from the
    mixture tuned to the minimum detectable effect `mde` (relative to the control's mean).
    Each arm needs at least two outcomes."""
    n1, total1, sq1 = arm.arrays()
    n0, total0, sq0 = control.arrays()
    v1, v0 = variance(n1, total1, sq1), variance(n0, total0, sq0)
    diff = total1 / n1 - total0 / n0
    v = v1 / n1 + v0 / n0
    tau2 = sequential.mixture_variance((v1 + v0) / 2, tau_sd)
    effect = mde * np.abs(total0 / n0)
    low, high = sequential.mde_interval(diff, v, effect, tau2, alpha)
    return diff, low, high, sequential.mde_p_value(diff, v, effect, tau2)


def mean_sequence(metric: Metric, arm: Tally) -> tuple[float | None, float | None, float | None]:
    """An arm's mean and its 95 % confidence sequence (conversions: within [0, 1], with the
    variance of (successes + 1) / (n + 2), so that 0 of n is not an interval of width 0)."""
    if arm.n == 0:
        return None, None, None
    mean = arm.total / arm.n
    if metric == Metric.CONVERSION:
        shrunk = (arm.total + 1) / (arm.n + 2)
        sigma2 = shrunk * (1 - shrunk)
    elif arm.n < 2:
        return mean, None, None
    else:
        sigma2 = float(variance(arm.n, arm.total, arm.total_sq))
    tau2 = sequential.mixture_variance(sigma2)
    half = float(sequential.half_width(sigma2 / arm.n, tau2, ARM_LEVEL))
    if metric == Metric.CONVERSION:
        return mean, max(0.0, mean - half), min(1.0, mean + half)
    return mean, mean - half, mean + half


def decide(
    experiment: Experiment,
    rows: Sequence[tuple[int, int, float | None, float | None]],
    each: float,
) -> Verdict:
    """The verdict from each arm's (version, n, diff from the control, p-value)."""
    spec = experiment.spec
    short = [version for version, n, _, _ in rows if n < spec.min_sample_per_arm]
    if short:
        return Verdict(
            "needs_data", None, f"arms {short} have fewer than {spec.min_sample_per_arm} outcomes"
        )
    better = [
        (d, v) for v, _, d, p in rows if d is not None and p is not None and p < each and d > 0
    ]
    worse = [v for v, _, d, p in rows if d is not None and p is not None and p < each and d < 0]
    if better:
        diff, version = max(better)
        why = f"version {version} beats the control by {diff:+.4g} (p < {each:.3g})"
        return Verdict("winner", version, why)
    if len(worse) == len(spec.arms) - 1:
        why = f"the control (version {experiment.control}) beats every other arm"
        return Verdict("winner", experiment.control, why)
    why = f"no arm differs from the control at alpha {each:.3g} per comparison"
    return Verdict("no_difference", None, why)


def _fixed_view(
    experiment: Experiment, arms: list[Tally], control: Tally, each: float
) -> FixedHorizon:
    metric = experiment.spec.metric
    rows: list[FixedArm] = []
    compared: list[tuple[int, int, float | None, float | None]] = []
    for arm in arms:
        _, low, high = fixed.mean_interval(metric, arm.n, arm.total, arm.total_sq)
        if arm.version == experiment.control or arm.n < 2 or control.n < 2:
            rows.append(FixedArm(arm.version, low, high))
            compared.append((arm.version, arm.n, None, None))
            continue
        found = fixed.compare(metric, _sums(arm), _sums(control))
        diff, d_low, d_high, p = (float(x) for x in found)
        rows.append(FixedArm(arm.version, low, high, diff, d_low, d_high, p))
        compared.append((arm.version, arm.n, diff, p))
    verdict = decide(experiment, compared, each)
    return FixedHorizon(FIXED_HORIZON_NOTE, each, *verdict, rows)


def _sums(arm: Tally) -> Sums:
    return Sums(arm.n, arm.total, arm.total_sq)


def weights(experiment: Experiment) -> dict[int, float]:
    """Each arm's share of the traffic now, in percent."""
    if experiment.allocation is None:
        return {a.version: a.weight for a in experiment.spec.arms}
    return {s.version: s.served / 100 for s in experiment.allocation.arms}


def regret(arms: Sequence[Tally]) -> float | None:
    """What the arms' outcomes so far lost against the arm with the best mean so far."""
    means = [a.total / a.n for a in arms if a.n]
    if not means:
        return None
    best = max(means)
    return float(sum(a.n * best - a.total for a in arms if a.n))


def results(experiment: Experiment, tallies: Mapping[int, Tally]) -> Results:
    spec = experiment.spec
    arms = [tallies.get(a.version, Tally(a.version)) for a in spec.arms]
    control = tallies.get(experiment.control, Tally(experiment.control))
    each = spec.alpha / (len(spec.arms) - 1)
    adjusted = cuped.adjust({a.version: a for a in arms})
    compared_on = adjusted[0] if adjusted is not None else {a.version: a for a in arms}
    share = weights(experiment)
    rows: list[ArmResult] = []
    found: list[tuple[int, int, float | None, float | None]] = []
    for arm in arms:
        mean, low, high = mean_sequence(spec.metric, arm)
        weight = share.get(arm.version)
        if arm.version == experiment.control or arm.n < 2 or control.n < 2:
            rows.append(
                ArmResult(
                    arm.version,
                    arm.version == experiment.control,
                    arm.n,
                    mean,
                    low,
                    high,
                    weight=weight,
                )
            )
            found.append((arm.version, arm.n, None, None))
            continue
        vs = compare(
            _sums(compared_on[arm.version]),
            _sums(compared_on[experiment.control]),
            each,
            spec.mde,
        )
        diff, d_low, d_high, p = (float(np.asarray(x)) for x in vs)
        rows.append(
            ArmResult(arm.version, False, arm.n, mean, low, high, diff, d_low, d_high, p, weight)
        )
        found.append((arm.version, arm.n, diff, p))
    verdict = decide(experiment, found, each)
    return Results(
        spec.metric,
        each,
        *verdict,
        rows,
        mixture_sd=TAU_SD,
        mde=spec.mde,
        regret=regret(arms),
        cuped=adjusted[1] if adjusted is not None else None,
        fixed_horizon=_fixed_view(experiment, arms, control, each),
    )
