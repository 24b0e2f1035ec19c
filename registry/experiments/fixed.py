"""Fixed-horizon statistics (the results' secondary view, and the simulation's comparison):
each arm's mean with a 95 % interval (Wilson for conversions, Student t for rewards), and the
difference from the control with its 95 % interval and a p-value (two-proportion z test, or
Welch's t test). Valid when read once at a sample size set in advance. Pure; `compare` is
vectorised (numbers or numpy arrays).

scipy.stats is imported inside the functions that use it: at the top it cost 0.7-1.4 s at every
start of a process that imports the registry (the CLI's every call among them), measured with
`python -X importtime -m modelyard --help`."""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import numpy as np

from registry.experiments.domain import Metric
from registry.experiments.sequential import Floats, Numbers

Z95: Final = 1.959963984540054


class Sums(NamedTuple):
    """An arm's tally as numbers or arrays (one entry per simulated experiment, say)."""

    n: Numbers
    total: Numbers
    total_sq: Numbers

    def arrays(self) -> tuple[Floats, Floats, Floats]:
        n, total, total_sq = (np.asarray(x, dtype=np.float64) for x in self)
        return n, total, total_sq


def variance(n: Numbers, total: Numbers, total_sq: Numbers) -> Floats:
    """The sample variance of one outcome (0 below two outcomes, never negative)."""
    n, total, total_sq = (np.asarray(x, dtype=np.float64) for x in (n, total, total_sq))
    with np.errstate(divide="ignore", invalid="ignore"):
        found = (total_sq - total * total / n) / (n - 1)
    return np.where(n >= 2, np.maximum(found, 0.0), 0.0)


def mean_interval(
    metric: Metric, n: int, total: float, total_sq: float
) -> tuple[float | None, float | None, float | None]:
    """An arm's mean and its 95 % interval (None where there are too few outcomes)."""
    if n == 0:
        return None, None, None
    mean = total / n
    if metric == Metric.CONVERSION:  # Wilson's interval
        centre = (mean + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
        half = Z95 * math.sqrt(mean * (1 - mean) / n + Z95**2 / (4 * n**2))
        half /= 1 + Z95**2 / n
        return mean, centre - half, centre + half
    if n < 2:
        return mean, None, None
    from scipy.stats import t  # here, not at the top: see the module's docstring

    half = float(t.ppf(0.975, n - 1)) * math.sqrt(float(variance(n, total, total_sq)) / n)
    return mean, mean - half, mean + half


def compare(metric: Metric, arm: Sums, control: Sums) -> tuple[Floats, Floats, Floats, Floats]:
    """Difference of means (arm - control), its 95 % interval, and the two-sided p-value.
    Each arm needs at least two outcomes."""
    from scipy.stats import norm, ttest_ind_from_stats  # see the module's docstring

    n1, total1, sq1 = arm.arrays()
    n0, total0, sq0 = control.arrays()
    m1, m0 = total1 / n1, total0 / n0
    diff = m1 - m0
    if metric == Metric.CONVERSION:
        se = np.sqrt(m1 * (1 - m1) / n1 + m0 * (1 - m0) / n0)
        pooled = (total1 + total0) / (n1 + n0)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        z = np.abs(diff) / np.where(se0 == 0, 1.0, se0)
        p = np.where(se0 == 0, 1.0, 2 * norm.sf(z))
    else:
        v1, v0 = variance(n1, total1, sq1), variance(n0, total0, sq0)
        se = np.sqrt(v1 / n1 + v0 / n0)
        flat = se == 0
        s1 = np.where(flat, 1.0, np.sqrt(v1))  # stand-ins where Welch's test is undefined
        s0 = np.where(flat, 1.0, np.sqrt(v0))
        welch = ttest_ind_from_stats(m1, s1, n1, m0, s0, n0, equal_var=False).pvalue
        p = np.where(flat, np.where(diff == 0, 1.0, 0.0), welch)
    return diff, diff - Z95 * se, diff + Z95 * se, np.asarray(p, dtype=np.float64)
